"""Tests of mtdlearn.imaging._centring: the EM fixes the translation the data cannot see."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from mtdlearn import (ApproxEMEstimator, FixedInitializer, FourierBesselBasis, make_measurement,
                      make_particle, make_target)
from mtdlearn.imaging._centring import MIN_OFFSET, centre_of_mass, recentred
from mtdlearn.imaging.shifts import density_to_shift_probabilities


def _displaced(basis, coef, dy, dx):
    """The image moved by (dy, dx) pixels: evaluated at shifted points, re-expanded."""
    grid = np.arange(basis.image_size) - basis.image_size // 2
    return basis.expand(basis.evaluate_points(coef, grid[None, :] - dx, grid[:, None] - dy))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recentring_leaves_the_log_likelihood_unchanged(seed):
    # With 4 rotations an integer displacement d stays integer under every
    # rotation (R_phi d), so a copy of the displaced image at one shift is a
    # copy of the centred image at another, and with rho uniform over the
    # non-empty shifts the likelihood of a compact image is the same: up to
    # the basis's re-expansion of the displaced image (measured 1e-7 to
    # 5e-7 per pixel at L = 15, SNR 3; tolerance 10x that).
    L = 15
    basis = FourierBesselBasis(L)
    coef = make_particle(basis, diameter=5, random_state=seed)
    centred = recentred(basis, coef)
    centred = coef if centred is None else centred
    moved = _displaced(basis, centred, 1, -2)
    assert np.hypot(*centre_of_mass(basis, moved)) > 2
    back = recentred(basis, moved)
    X, truth = make_measurement(centred, basis, 600, density=0.05, snr=3, random_state=seed)
    rho = density_to_shift_probabilities(truth.density, L)
    scores = []
    for c in (centred, moved, back):
        em = ApproxEMEstimator(L, rotations=4, refinement=None, max_iter=0, center=False,
                               dtype=np.float64,
                               initializer=FixedInitializer(c, rho, truth.noise_variance))
        scores.append(em.fit(X).score(X) / L**2)
    assert abs(scores[1] - scores[0]) < 5e-6
    assert abs(scores[2] - scores[1]) < 5e-6


def test_a_displaced_particle_is_moved_back_to_the_centre():
    basis = FourierBesselBasis(21)
    coef = make_particle(basis, diameter=9, random_state=3)
    moved = _displaced(basis, coef, -2.3, 1.6)
    dy, dx = centre_of_mass(basis, moved)
    c0 = centre_of_mass(basis, coef)
    # the centre of mass moves with the image, to the interpolation's accuracy
    np.testing.assert_allclose((dy - c0[0], dx - c0[1]), (-2.3, 1.6), atol=0.02)
    back = recentred(basis, moved)
    # moved back by whole pixels: (2, -2), to within half a pixel of the centre
    assert max(map(abs, centre_of_mass(basis, back))) <= MIN_OFFSET
    np.testing.assert_allclose(basis.evaluate(back), basis.evaluate(_displaced(basis, moved, 2, -2)),
                               atol=1e-12)
    # nothing of the compact image was lost on the way
    assert np.isclose(np.sum(basis.evaluate(back) ** 2), np.sum(basis.evaluate(coef) ** 2),
                      rtol=1e-3)
    # a centred image is left alone
    assert recentred(basis, back) is None


@pytest.mark.parametrize("basis", [FourierBesselBasis(5, n_coefficients=10),
                                   FourierBesselBasis(11), FourierBesselBasis(21)],
                         ids=["paper", "L11", "L21"])
def test_images_that_fill_their_disk_are_never_moved(basis):
    # the paper's random-coefficient targets: their centre is within half a
    # pixel, and moving them would push their edge out of the disk
    for seed in range(20):
        coef = make_target(basis, random_state=seed)
        assert recentred(basis, coef) is None


def test_the_em_recentres_a_drifted_start():
    L = 11
    basis = FourierBesselBasis(L)
    coef = make_particle(basis, diameter=5, random_state=0)
    X, truth = make_measurement(coef, basis, 500, density=0.08, snr=10, random_state=0)
    start = FixedInitializer(_displaced(basis, coef, 2, -1.5),
                             density_to_shift_probabilities(truth.density, L),
                             truth.noise_variance)
    em = ApproxEMEstimator(L, max_iter=5, initializer=start, random_state=0)
    _fit_quietly(em, X)
    assert em.n_recentred_ >= 1
    assert max(map(abs, centre_of_mass(basis, em.coef_))) <= MIN_OFFSET
    off = ApproxEMEstimator(L, max_iter=5, initializer=start, random_state=0, center=False)
    _fit_quietly(off, X)
    assert off.n_recentred_ == 0


def test_center_must_be_a_bool():
    with pytest.raises(TypeError, match="center must be a bool"):
        ApproxEMEstimator(5, center="yes").fit(np.zeros((20, 20)) + np.eye(20))


def _fit_quietly(est, X):
    """The fit may stop at max_iter (a ConvergenceWarning): not what is tested here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X)
