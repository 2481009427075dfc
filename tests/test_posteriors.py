"""Tests of mtdlearn.likelihood.posteriors: the fitted model patch by patch."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mtdlearn import make_measurement
from mtdlearn.likelihood.hypotheses import HypothesisSpace
from mtdlearn.imaging.shifts import density_to_shift_probabilities
from mtdlearn.likelihood.patch_model import build_patch_model
from mtdlearn.likelihood.statistics import estep_statistics
from mtdlearn.data.patches import PatchData
from mtdlearn.likelihood.posteriors import estep_detections, estep_per_patch, iter_detections

L = 5


def _space(basis, angles):
    return HypothesisSpace(basis, np.asarray(angles, dtype=np.float64))


def test_streamed_per_patch_reductions(basis, coef):
    """predict's detections, kept task by task, and score's sum agree with the
    per-patch arrays, for any chunking and any n_jobs."""

    X, _ = make_measurement(coef, basis, 120, snr=3, n_measurements=2, random_state=1)
    data = PatchData(list(X), L)
    model = build_patch_model(coef, density_to_shift_probabilities(0.04, L), 0.5,
                              _space(basis, np.linspace(0, 2 * np.pi, 4, endpoint=False)))
    ll, best, best_p, _ = estep_per_patch(data, model)
    keep = np.flatnonzero(best >= 0)
    assert 0 < keep.size < data.n_patches
    for chunk, n_jobs, subset in [(None, 1, None), (7, 2, None), (16, 1, (5, 1000))]:
        a, b = subset or (0, data.n_patches)
        total = estep_statistics(data, model, subset, chunk=chunk, n_jobs=n_jobs,
                                 tasks_per_block=3).loglik
        assert np.isclose(total, ll[a:b].sum(), rtol=1e-13)
        patch, b_, p_ = estep_detections(data, model, subset, chunk=chunk, n_jobs=n_jobs,
                                         tasks_per_block=3)
        inside = keep[(keep >= a) & (keep < b)]
        assert_array_equal(patch, inside)
        assert_array_equal(b_, best[inside])
        # the chunk size changes the GEMM's blocking, hence the last bits
        np.testing.assert_allclose(p_, best_p[inside], rtol=1e-12)
        # per-patch arrays filled task by task equal the whole computation
        part = estep_per_patch(data, model, subset, chunk=chunk, n_jobs=n_jobs,
                               tasks_per_block=3)
        assert_array_equal(part[1], best[a:b])
    # the detections do not depend on n_jobs, to the last bit
    one, two = (estep_detections(data, model, chunk=7, n_jobs=n, tasks_per_block=3)
                for n in (1, 2))
    for x, y in zip(one, two):
        assert_array_equal(x, y)


def test_detections_per_measurement(basis, coef):
    """One group per measurement, in order, the same rows as estep_detections."""
    X, _ = make_measurement(coef, basis, 60, snr=3, n_measurements=3, random_state=2)
    data = PatchData([X[0], X[1][:37, :44], X[2]], L)
    model = build_patch_model(coef, density_to_shift_probabilities(0.04, L), 0.5,
                              _space(basis, np.linspace(0, 2 * np.pi, 4, endpoint=False)))
    whole = estep_detections(data, model, chunk=7, n_jobs=2, tasks_per_block=2)
    groups = list(iter_detections(data, model, chunk=7, n_jobs=2, tasks_per_block=2))
    assert [g[0] for g in groups] == [0, 1, 2]
    for i, patch, _, _ in groups:
        assert np.all((patch >= data.offsets[i]) & (patch < data.offsets[i + 1]))
    for j in range(3):
        assert_array_equal(np.concatenate([g[j + 1] for g in groups]), whole[j])


def test_fft_kernel_gives_the_gemm_posteriors_patch_by_patch():
    """At L = 13 the per-patch model is the FFT one (no H x L**2 table); its
    log-likelihoods, MAP hypotheses and posteriors are the GEMM's to rounding:
    1e-10, the criterion of the two E-steps' statistics (tests/test_fft_estep.py)."""
    from mtdlearn import FourierBesselBasis, make_target
    from mtdlearn.likelihood.fft_estep import FFTPatchModel
    from mtdlearn.likelihood.posteriors import build_per_patch_model

    L13 = 13
    basis = FourierBesselBasis(L13, n_coefficients=12)
    coef13 = make_target(basis, random_state=3)
    X, _ = make_measurement(coef13, basis, 70, snr=4, density=0.1, n_measurements=2,
                            random_state=3)
    data = PatchData([X[0], X[1][:53, :66]], L13)
    args = (coef13, density_to_shift_probabilities(0.1, L13), 0.8,
            _space(basis, np.linspace(0, 2 * np.pi, 5, endpoint=False)))
    fft = build_per_patch_model(*args)
    assert isinstance(fft, FFTPatchModel)
    gemm = build_patch_model(*args)
    ll, best, best_p, p_empty = estep_per_patch(data, gemm)
    assert 0 < np.count_nonzero(best >= 0) < data.n_patches
    for chunk, n_jobs in [(None, 1), (3, 2)]:
        ll_f, best_f, best_p_f, p_empty_f = estep_per_patch(data, fft, chunk=chunk,
                                                            n_jobs=n_jobs, tasks_per_block=2)
        np.testing.assert_allclose(ll_f, ll, rtol=1e-10)
        assert_array_equal(best_f, best)
        np.testing.assert_allclose(best_p_f, best_p, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(p_empty_f, p_empty, rtol=1e-10, atol=1e-14)
    patch, b_, p_ = estep_detections(data, fft, chunk=3)
    assert_array_equal(patch, np.flatnonzero(best >= 0))
    assert_array_equal(b_, best[patch])
    groups = [g[1] for g in iter_detections(data, fft, chunk=3)]
    assert_array_equal(np.concatenate(groups), patch)


# ---------------------------------------------------------------------------
# mixtures: the posterior mass of each component, patch by patch
WEIGHTS = np.array([0.3, 0.7])


def _two_kinds(basis):
    """Two kinds of particle (abundances ``WEIGHTS``) in a 40 x 40 measurement: 64 patches."""
    from mtdlearn import make_target

    coefs = np.stack([make_target(basis, random_state=0), make_target(basis, random_state=1)])
    X, truth = make_measurement(coefs, basis, 40, density=0.1, snr=3, weights=WEIGHTS,
                                random_state=4)
    return coefs, X, truth


def _brute_force_masses(data, coefs, rho, sigma2, space, weights):
    """Per-component posterior masses and P(empty) from the full posterior,
    every hypothesis's logit written out and normalized by hand."""
    T = space.templates(coefs)                                   # (H, d)
    lp, lp_empty = space.log_prior(rho, weights)
    P = data.get(0, data.n_patches)                              # (n, d)
    logits = -((P[:, None, :] - T[None]) ** 2).sum(axis=2) / (2 * sigma2) + lp
    logit_empty = -(P ** 2).sum(axis=1) / (2 * sigma2) + lp_empty
    top = np.maximum(logits.max(axis=1), logit_empty)
    e, e_empty = np.exp(logits - top[:, None]), np.exp(logit_empty - top)
    total = e.sum(axis=1) + e_empty
    mass = np.stack([e[:, space.component_index == c].sum(axis=1)
                     for c in range(space.n_components)], axis=1)
    return mass / total[:, None], e_empty / total


def test_component_posteriors_are_the_full_posteriors_masses(basis):
    """On a tiny mixture, both kernels' per-component masses equal the sums of
    the full posterior over each component's hypotheses; a row sums to
    1 - P(empty); the GEMM and the FFT kernel agree to 1e-10, for any
    chunking, n_jobs and subset."""
    from mtdlearn.likelihood.fft_estep import build_fft_patch_model

    coefs, X, truth = _two_kinds(basis)
    data = PatchData([X], L)
    rho, sigma2 = density_to_shift_probabilities(0.1, L), truth.noise_variance
    space = HypothesisSpace(basis, np.linspace(0, 2 * np.pi, 3, endpoint=False),
                            n_components=2)
    mass_bf, p_empty_bf = _brute_force_masses(data, coefs, rho, sigma2, space, WEIGHTS)
    # a mixture whose patches hold both kinds, and empty ones
    kind = mass_bf.argmax(axis=1)[p_empty_bf < 0.5]
    assert set(kind.tolist()) == {0, 1} and (p_empty_bf > 0.5).any()

    gemm = build_patch_model(coefs, rho, sigma2, space, weights=WEIGHTS)
    fft = build_fft_patch_model(coefs, rho, sigma2, space, weights=WEIGHTS)
    plain = estep_per_patch(data, gemm)
    assert len(plain) == 4   # the masses only when asked
    results = {}
    for name, model in [("gemm", gemm), ("fft", fft)]:
        out = estep_per_patch(data, model, components=True)
        assert len(out) == 5
        ll, best, best_p, p_empty, mass = out
        assert mass.shape == (data.n_patches, 2) and mass.dtype == np.float64
        np.testing.assert_allclose(mass, mass_bf, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(p_empty, p_empty_bf, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(mass.sum(axis=1), 1.0 - p_empty, rtol=0, atol=1e-13)
        # the MAP hypothesis's component holds at least its posterior
        has = best >= 0
        assert np.all(mass[has, space.component(best[has])] >= best_p[has] * (1 - 1e-12))
        results[name] = out
        # the other outputs are those of the default call
        ref = plain if name == "gemm" else estep_per_patch(data, model)
        for x, y in zip(out[:4], ref):
            assert_array_equal(x, y)
        for chunk, n_jobs, subset in [(7, 2, None), (5, 1, (9, 50))]:
            a, b = subset or (0, data.n_patches)
            part = estep_per_patch(data, model, subset, chunk=chunk, n_jobs=n_jobs,
                                   tasks_per_block=2, components=True)
            np.testing.assert_allclose(part[4], mass[a:b], rtol=1e-12, atol=1e-15)
    for x, y in zip(results["gemm"], results["fft"]):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-14)


def test_component_posteriors_of_one_component_and_in_float32(basis, coef):
    """One component: its mass is 1 - P(empty).  float32 kernels keep the rows'
    sums (the FFT's clamped hypotheses, exact zeros, keep their mass)."""
    from mtdlearn.likelihood.fft_estep import build_fft_patch_model

    X, truth = make_measurement(coef, basis, 40, density=0.1, snr=50, random_state=5)
    data = PatchData([X], L)
    rho = density_to_shift_probabilities(0.1, L)
    space = _space(basis, np.linspace(0, 2 * np.pi, 4, endpoint=False))
    for build in (build_patch_model, build_fft_patch_model):
        *_, p_empty, mass = estep_per_patch(
            data, build(coef, rho, truth.noise_variance, space), components=True)
        assert mass.shape == (data.n_patches, 1)
        np.testing.assert_allclose(mass[:, 0], 1.0 - p_empty, rtol=0, atol=1e-13)
    coefs, X, truth = _two_kinds(basis)
    data = PatchData([X], L)
    space = HypothesisSpace(basis, np.linspace(0, 2 * np.pi, 4, endpoint=False),
                            n_components=2)
    ref = estep_per_patch(data, build_patch_model(coefs, rho, truth.noise_variance, space,
                                                  weights=WEIGHTS), components=True)[4]
    for build in (build_patch_model, build_fft_patch_model):
        model = build(coefs, rho, truth.noise_variance, space, dtype=np.float32,
                      weights=WEIGHTS)
        *_, p_empty, mass = estep_per_patch(data, model, components=True)
        np.testing.assert_allclose(mass.sum(axis=1), 1.0 - p_empty, rtol=0, atol=1e-6)
        np.testing.assert_allclose(mass, ref, rtol=0, atol=1e-4)


def test_component_posteriors_at_l13_fft_equals_gemm():
    """At L = 13, where the per-patch model is the FFT one, a mixture's masses
    are the GEMM's to 1e-10."""
    from mtdlearn import FourierBesselBasis, make_target
    from mtdlearn.likelihood.fft_estep import FFTPatchModel
    from mtdlearn.likelihood.posteriors import build_per_patch_model

    L13 = 13
    basis = FourierBesselBasis(L13, n_coefficients=12)
    coefs = np.stack([make_target(basis, random_state=3), make_target(basis, random_state=4)])
    X, truth = make_measurement(coefs, basis, 70, density=0.1, snr=4, weights=WEIGHTS,
                                random_state=3)
    data = PatchData([X], L13)
    space = HypothesisSpace(basis, np.linspace(0, 2 * np.pi, 3, endpoint=False),
                            n_components=2)
    args = (coefs, density_to_shift_probabilities(0.1, L13), truth.noise_variance, space)
    fft = build_per_patch_model(*args, weights=WEIGHTS)
    assert isinstance(fft, FFTPatchModel)
    gemm = estep_per_patch(data, build_patch_model(*args, weights=WEIGHTS), components=True)
    out = estep_per_patch(data, fft, chunk=3, n_jobs=2, tasks_per_block=2, components=True)
    assert (gemm[4] > 0.5).any(axis=0).all()   # both kinds are seen
    np.testing.assert_allclose(out[4], gemm[4], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(out[4].sum(axis=1), 1.0 - out[3], rtol=0, atol=1e-13)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predict_proba_per_component():
    """A fitted mixture's predict_proba has a column per component; its rows
    sum to the probability of holding a copy, at most 1."""
    from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_target

    basis = FourierBesselBasis(5, n_coefficients=10)
    coefs = np.stack([make_target(basis, random_state=0), make_target(basis, random_state=1)])
    X, _ = make_measurement(coefs, basis, 200, density=0.08, snr=10, random_state=0)
    em = ApproxEMEstimator(5, basis=basis, rotations=4, n_components=2, max_iter=3,
                           random_state=0).fit(X)
    proba = em.predict_proba(X)
    n_patches = (200 // 5) ** 2
    assert proba.shape == (n_patches, 2)
    assert np.all(proba >= 0) and np.all(proba.sum(axis=1) <= 1 + 1e-12)
    p_empty = em._per_patch(X)[3]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0 - p_empty, rtol=0, atol=1e-12)
    assert (proba > 0.5).any(axis=0).all()   # both kinds are found
    # the same numbers through the distributed source (a task per micrograph)
    da = pytest.importorskip("dask.array")
    halves = [X[:, :100], X[:, 100:]]
    proba_d = em.predict_proba([da.from_array(M) for M in halves])
    expected = np.concatenate([em.predict_proba(M) for M in halves])
    np.testing.assert_allclose(proba_d, expected, rtol=1e-12, atol=1e-15)
