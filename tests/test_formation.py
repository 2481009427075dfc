"""Tests of mtdlearn.imaging.formation: the image-formation seam.

The paper's formation (white noise, ``H`` the identity) must hand back its
inputs, so that fits through the seam are bit-identical to the paper's
model.  A formation that is not the identity must reach every place a copy
is modelled: the E-step's templates (GEMM and FFT), the M-step's normal
equations, the model moments and the simulator.  A formation that scales
every copy by ``a`` is the simplest one whose effect is known exactly: the
templates and the evaluation scale by ``a``, so the M-step on data formed
by it returns the unscaled image.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mtdlearn import FourierBesselBasis, make_measurement, make_target
from mtdlearn.basis import rotated_evaluation
from mtdlearn.data.patches import PatchData
from mtdlearn.imaging.formation import (ImageFormation, WhiteNoiseFormation,
                                        check_formation)
from mtdlearn.imaging.shifts import density_to_shift_probabilities
from mtdlearn.likelihood.fft_estep import build_fft_patch_model, estep_statistics_fft
from mtdlearn.likelihood.hypotheses import HypothesisSpace
from mtdlearn.likelihood.patch_model import build_patch_model
from mtdlearn.likelihood.statistics import estep_statistics
from mtdlearn.likelihood.m_step import component_weights, m_step


class ScaledFormation(ImageFormation):
    """``H = a I`` with white noise: every copy appears ``a`` times brighter."""

    def __init__(self, a):
        self.a = a

    def support(self, image_size):
        return image_size

    def form(self, images):
        return self.a * images

    def form_adjoint(self, formed):
        return self.a * formed

    def form_measurement(self, clean):
        return self.a * clean

    def draw_noise(self, out, noise_variance, rng):
        return WhiteNoiseFormation().draw_noise(out, noise_variance, rng)


class MatrixFormation(ScaledFormation):
    """Any linear map of the pixels: ``form(x) = x @ M.T``."""

    def __init__(self, matrix):
        self.matrix = matrix

    def form(self, images):
        return images @ self.matrix.T

    def form_adjoint(self, formed):
        return formed @ self.matrix


@pytest.fixture
def basis():
    return FourierBesselBasis(5, n_coefficients=10)


def test_white_noise_formation_hands_back_its_inputs():
    formation = WhiteNoiseFormation()
    x = np.arange(50.0).reshape(2, 25)
    assert formation.form(x) is x
    assert formation.form_adjoint(x) is x
    table = np.ones((3, 25, 10))
    assert formation.form_columns(table) is table
    assert formation.form_measurement(x) is x
    assert formation.support(7) == 7 and formation.is_identity
    assert check_formation(None) == formation


def test_check_formation_names_the_argument():
    with pytest.raises(TypeError, match="formation must be an ImageFormation"):
        check_formation("ctf")
    with pytest.raises(TypeError, match="mine must be"):
        check_formation(3, "mine")


def test_white_noise_is_drawn_as_the_simulator_always_did():
    # the same draws, in the same order, as make_measurement's noise before the seam
    out = WhiteNoiseFormation().draw_noise(np.empty((2100, 7)), 2.5, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    expected = np.empty((2100, 7))
    for r0 in range(0, 2100, 1024):
        blk = expected[r0:r0 + 1024]
        rng.standard_normal(out=blk)
        blk *= np.sqrt(2.5)
    np.testing.assert_array_equal(out, expected)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_generic_form_columns_is_form_of_every_coefficient(seed):
    # ImageFormation.form_columns (the default for filters) maps every
    # coefficient vector as form() maps its image: (H B R) alpha = H (B R alpha)
    rng = np.random.default_rng(seed)
    formation = MatrixFormation(rng.standard_normal((25, 25)))
    BR = rng.standard_normal((3, 25, 10))
    alpha = rng.standard_normal(10)
    formed = ImageFormation.form_columns(formation, BR)
    np.testing.assert_allclose(formed @ alpha, formation.form(BR @ alpha), rtol=1e-12,
                               atol=1e-12 * np.abs(formed).max())
    # and form_adjoint is its transpose: <H x, y> = <x, H^T y>
    x, y = rng.standard_normal(25), rng.standard_normal(25)
    assert np.isclose(formation.form(x) @ y, x @ formation.form_adjoint(y), rtol=1e-12)


def test_templates_and_evaluation_go_through_the_formation(basis):
    angles = [0.0, 1.0, 2.5]
    coef = make_target(basis, random_state=0)
    plain = HypothesisSpace(basis, angles)
    scaled = HypothesisSpace(basis, angles, formation=ScaledFormation(3.0))
    np.testing.assert_allclose(scaled.templates(coef), 3.0 * plain.templates(coef))
    np.testing.assert_allclose(scaled.rotated_evaluation, 3.0 * rotated_evaluation(basis, angles))
    # the paper's formation: the very arrays of the direct computation
    np.testing.assert_array_equal(plain.rotated_evaluation, rotated_evaluation(basis, angles))


@pytest.mark.parametrize("kernel", ["gemm", "fft"])
def test_m_step_through_a_formation_recovers_the_unformed_image(basis, kernel):
    # noise-free data formed by H = 2 I: the E-step and M-step through the same
    # formation return the image itself (through the identity, twice the image)
    coef = make_target(basis, random_state=1)
    formation = ScaledFormation(2.0)
    X, truth = make_measurement(coef, basis, 150, density=0.05, random_state=1,
                                formation=formation)
    np.testing.assert_allclose(X, 2.0 * make_measurement(coef, basis, 150, density=0.05,
                                                         random_state=1)[0])
    np.testing.assert_allclose(truth.clean, X)
    angles = 2 * np.pi * np.arange(64) / 64
    space = HypothesisSpace(basis, angles, formation=formation)
    build, estep = ((build_patch_model, estep_statistics) if kernel == "gemm"
                    else (build_fft_patch_model, estep_statistics_fft))
    rho = density_to_shift_probabilities(truth.density, 5)
    model = build(coef, rho, 1e-2, space)
    stats = estep(PatchData([X], 5), model, chunk=128)
    new_coef, _, sigma2 = m_step(stats, rho, space, coef=coef)
    # the grid's angular error (64 rotations) bounds how close one step lands
    assert np.linalg.norm(new_coef - coef) < 0.02 * np.linalg.norm(coef)
    assert sigma2 < 1e-2


@pytest.mark.parametrize("kernel", ["gemm", "fft"])
def test_identical_components_are_the_one_component_model(basis, kernel):
    # the component axis: a mixture of C identical images (equal abundances)
    # explains the data exactly as one image does, and each component's
    # M-step (half the weights in both sides of its normal equations) lands
    # where the one-component M-step does
    coef = make_target(basis, random_state=2)
    X, truth = make_measurement(coef, basis, 120, snr=5, random_state=2)
    angles = 2 * np.pi * np.arange(8) / 8
    rho = density_to_shift_probabilities(0.04, 5)
    build, estep = ((build_patch_model, estep_statistics) if kernel == "gemm"
                    else (build_fft_patch_model, estep_statistics_fft))
    one = HypothesisSpace(basis, angles)
    two = HypothesisSpace(basis, angles, n_components=2)
    start = coef + 0.3 * np.random.default_rng(0).standard_normal(coef.size)
    s1 = estep(PatchData([X], 5), build(start, rho, truth.noise_variance, one), chunk=64)
    s2 = estep(PatchData([X], 5), build(np.stack([start, start]), rho, truth.noise_variance,
                                        two), chunk=64)
    assert s2.weights.shape == (2 * s1.weights.shape[0],)
    assert np.isclose(s2.loglik, s1.loglik, rtol=1e-12)
    np.testing.assert_allclose(s2.weights.reshape(2, -1), 0.5 * s1.weights[None].repeat(2, 0),
                               rtol=1e-10, atol=1e-14)
    c1, rho1, v1 = m_step(s1, rho, one, coef=start)
    c2, rho2, v2 = m_step(s2, rho, two, coef=np.stack([start, start]))
    assert c2.shape == (2, coef.size)
    np.testing.assert_allclose(c2, np.stack([c1, c1]), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rho2, rho1, rtol=1e-10, atol=1e-15)
    assert np.isclose(v2, v1, rtol=1e-10)


def test_components_are_laid_out_component_major(basis):
    space = HypothesisSpace(basis, [0.0, 1.0, 2.0], n_components=3)
    h = np.arange(space.n_hypotheses)
    assert space.n_hypotheses == 3 * 3 * 81 and space.n_images == 9
    np.testing.assert_array_equal(space.component(h), space.component_index)
    np.testing.assert_array_equal(space.decode(h)[0], space.rotation_index)
    assert space.component_index[3 * 81] == 1 and space.rotation_index[3 * 81] == 0
    with pytest.raises(ValueError, match="one per component"):
        space.templates(np.ones(10))
    with pytest.raises(ValueError, match="n_components"):
        HypothesisSpace(basis, [0.0], n_components=0)


def test_model_moments_go_through_the_formation(basis):
    # H = a I: the signal parts of the moments scale as a, a**2, a**3 (the
    # moments of the image a F), and the white-noise terms follow a1
    from mtdlearn.autocorrelation.fit import autocorrelation_cost_and_grad
    from mtdlearn.autocorrelation.model_moments import model_autocorrelations

    coef = make_target(basis, random_state=3)
    formed = model_autocorrelations(coef, basis, 0.04, 0.3, formation=ScaledFormation(2.0))
    direct = model_autocorrelations(2.0 * coef, basis, 0.04, 0.3)
    for a, b in zip(formed, direct):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    plain = model_autocorrelations(coef, basis, 0.04, 0.3, formation=WhiteNoiseFormation())
    for a, b in zip(plain, model_autocorrelations(coef, basis, 0.04, 0.3)):
        np.testing.assert_array_equal(a, b)
    # and the fit's cost sees the formed model: zero at the formed truth
    cost = autocorrelation_cost_and_grad(0.04, coef, 0.3, direct, basis,
                                         formation=ScaledFormation(2.0))[0]
    assert cost < 1e-20


def test_model_moments_refuse_copies_wider_than_the_image(basis):
    from mtdlearn.autocorrelation.model_moments import model_autocorrelations

    class Wide(ScaledFormation):
        def support(self, image_size):
            return image_size + 2

    with pytest.raises(ValueError, match="own size L=5"):
        model_autocorrelations(np.ones(10), basis, 0.04, 0.3, formation=Wide(1.0))


def test_model_moments_of_several_formations_are_their_mean(basis):
    # one formation per micrograph (each its own CTF): the model of the pooled
    # equal-area micrographs is the mean of each one's moments, and the cost's
    # gradient goes through all of them (against central differences)
    from mtdlearn.autocorrelation.fit import autocorrelation_cost_and_grad
    from mtdlearn.autocorrelation.model_moments import model_autocorrelations
    from mtdlearn.imaging.ctf import CTF
    from mtdlearn.imaging.formation import MicroscopeFormation

    coef = make_target(basis, random_state=4)
    formations = [MicroscopeFormation(CTF(d, pixel_size=3.0)) for d in (8000.0, 20000.0)]
    both = model_autocorrelations(coef, basis, 0.04, 0.3, formation=formations)
    each = [model_autocorrelations(coef, basis, 0.04, 0.3, formation=f) for f in formations]
    for k in range(3):
        np.testing.assert_allclose(both[k], 0.5 * (each[0][k] + each[1][k]), rtol=1e-12,
                                   atol=1e-15)
    measured = model_autocorrelations(coef * 0.9, basis, 0.05, 0.3, formation=formations)
    cost, _, grad, _ = autocorrelation_cost_and_grad(0.04, coef, 0.3, measured, basis,
                                                     formation=formations)
    h = 1e-6
    for j in (0, 4, 9):
        e = np.zeros(10)
        e[j] = h
        plus = autocorrelation_cost_and_grad(0.04, coef + e, 0.3, measured, basis,
                                             formation=formations)[0]
        minus = autocorrelation_cost_and_grad(0.04, coef - e, 0.3, measured, basis,
                                              formation=formations)[0]
        # central differences: error O(h**2) relative, plus rounding of the cost / h
        assert np.isclose(grad[j], (plus - minus) / (2 * h), rtol=1e-5,
                          atol=1e-9 * abs(cost) / h)


@settings(max_examples=25, deadline=None)
@given(w=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=4),
       density=st.floats(0.001, 0.2))
def test_weighted_prior_is_a_distribution_over_kinds_and_shifts(w, density):
    # P(c, k, l) = w_c rho_l / K sums to one with the empty mass, and each
    # kind's hypotheses hold w_c of the non-empty mass
    weights = np.asarray(w) / np.sum(w)
    C = len(weights)
    space = HypothesisSpace(FourierBesselBasis(5, n_coefficients=10), [0.0, 1.0, 2.0],
                            n_components=C)
    rho = density_to_shift_probabilities(density, 5)
    lp, lp_empty = space.log_prior(rho, weights)
    mass = np.exp(lp).reshape(C, -1).sum(axis=1)
    assert np.isclose(mass.sum() + np.exp(lp_empty), 1.0, rtol=1e-12)
    np.testing.assert_allclose(mass / mass.sum(), weights, rtol=1e-12)
    equal, _ = space.log_prior(rho)
    np.testing.assert_allclose(space.log_prior(rho, np.full(C, 1.0 / C))[0], equal,
                               rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="weights must have one entry per component"):
        space.log_prior(rho, weights[:-1])


@pytest.mark.parametrize("kernel", ["gemm", "fft"])
def test_component_weights_are_each_kinds_share_of_the_posterior(basis, kernel):
    # the abundances' M-step, in both kernels: each kind's posterior mass
    # over the non-empty mass; unequal prior weights move it the right way
    coefs = np.stack([make_target(basis, random_state=3), make_target(basis, random_state=4)])
    X, truth = make_measurement(coefs, basis, 150, snr=5, weights=[0.3, 0.7], random_state=3)
    build, estep = ((build_patch_model, estep_statistics) if kernel == "gemm"
                    else (build_fft_patch_model, estep_statistics_fft))
    space = HypothesisSpace(basis, 2 * np.pi * np.arange(4) / 4, n_components=2)
    rho = density_to_shift_probabilities(0.04, 5)
    shares = []
    for w in ([0.5, 0.5], [0.2, 0.8]):
        stats = estep(PatchData([X], 5), build(coefs, rho, truth.noise_variance, space,
                                               weights=np.array(w)), chunk=64)
        W = space.per_rotation(stats.weights).reshape(2, -1).sum(axis=1)
        got = component_weights(stats, space)
        np.testing.assert_allclose(got, W / W.sum(), rtol=1e-12)
        shares.append(got[1])
    assert shares[1] > shares[0]


@settings(max_examples=10, deadline=None)
@given(perm=st.permutations([0, 1, 2]), seed=st.integers(0, 2**16))
def test_component_labels_are_interchangeable(perm, seed):
    # permuting the kinds (rows and abundances together) leaves the
    # likelihood unchanged and permutes each kind's posterior mass, in both
    # kernels
    basis = FourierBesselBasis(5, n_coefficients=10)
    rng = np.random.default_rng(seed)
    coefs = np.stack([make_target(basis, random_state=s) for s in rng.integers(0, 99, 3)])
    weights = rng.dirichlet(np.ones(3))
    X, truth = make_measurement(coefs, basis, 100, density=0.08, snr=5, weights=weights,
                                random_state=seed)
    space = HypothesisSpace(basis, [0.0, 2.0], n_components=3)
    rho = density_to_shift_probabilities(0.05, 5)
    perm = np.asarray(perm)
    for build, estep in ((build_patch_model, estep_statistics),
                         (build_fft_patch_model, estep_statistics_fft)):
        a = estep(PatchData([X], 5), build(coefs, rho, truth.noise_variance, space,
                                           weights=weights), chunk=64)
        b = estep(PatchData([X], 5), build(coefs[perm], rho, truth.noise_variance, space,
                                           weights=weights[perm]), chunk=64)
        assert np.isclose(a.loglik, b.loglik, rtol=1e-12)
        np.testing.assert_allclose(component_weights(b, space),
                                   component_weights(a, space)[perm], rtol=1e-9, atol=1e-15)
