"""Tests of mtdlearn.likelihood.fft_estep: the FFT E-step against the GEMM E-step, the
cost model, and the M-step fed by either."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target
from mtdlearn.likelihood.fft_estep import (build_fft_patch_model, choose_estep, estep_statistics_fft,
                                fft_chunk_size, fft_grid_size)
from mtdlearn.likelihood.hypotheses import HypothesisSpace
from mtdlearn.imaging.shifts import density_to_shift_probabilities
from mtdlearn.likelihood.patch_model import build_patch_model
from mtdlearn.likelihood.statistics import Statistics, estep_statistics
from mtdlearn.likelihood.m_step import m_step
from mtdlearn.data.patches import PatchData


def _basis(L):
    # few functions: the M-step's normal equations stay well conditioned
    return FourierBesselBasis(L, n_coefficients=None if L == 3 else min(L + 3, 12))


def _both(L, K, coef, rho, sigma2, X, chunks=(7, 5), dtype=np.float64):
    basis = _basis(L)
    space = HypothesisSpace(basis, 2 * np.pi * np.arange(K) / K)
    data = PatchData([X], L)
    gemm = estep_statistics(data, build_patch_model(coef, rho, sigma2, space, dtype=dtype),
                            chunk=chunks[0])
    fft = estep_statistics_fft(data, build_fft_patch_model(coef, rho, sigma2, space,
                                                           dtype=dtype), chunk=chunks[1])
    return space, gemm, fft


def _assert_agree(space, gemm, fft, rho, tol=1e-10):
    scale = max(abs(gemm.loglik), 1.0)
    assert abs(gemm.loglik - fft.loglik) <= tol * scale
    np.testing.assert_allclose(fft.weights, gemm.weights, rtol=0, atol=tol * gemm.n_patches)
    assert abs(fft.weight_empty - gemm.weight_empty) <= tol * gemm.n_patches
    assert fft.patch_sq == pytest.approx(gemm.patch_sq, rel=1e-13)
    assert fft.n_patches == gemm.n_patches and fft.weighted_patches is None
    y = space.adjoint(gemm.weighted_patches)
    np.testing.assert_allclose(fft.rotation_images, y, rtol=0,
                               atol=tol * max(np.abs(y).max(), 1.0))
    a, b = m_step(gemm, rho, space), m_step(fft, rho, space)
    np.testing.assert_allclose(b[0], a[0], rtol=0, atol=tol * max(np.abs(a[0]).max(), 1.0))
    np.testing.assert_allclose(b[1], a[1], rtol=0, atol=tol)
    assert b[2] == pytest.approx(a[2], rel=tol)


@settings(max_examples=12, deadline=None)
@given(L=st.sampled_from([3, 5, 7, 9]), K=st.integers(1, 5), seed=st.integers(0, 2**16),
       snr=st.floats(0.5, 50), density=st.floats(0.01, 0.2), perturb=st.floats(0, 1))
def test_fft_and_gemm_esteps_agree(L, K, seed, snr, density, perturb):
    """Same statistics (and M-step) to 1e-10 for any size, grid, data and parameters."""
    basis = _basis(L)
    coef = make_target(basis, random_state=seed)
    X, truth = make_measurement(coef, basis, 12 * L + 3, snr=snr, random_state=seed)
    rng = np.random.default_rng(seed)
    guess = coef + perturb * rng.standard_normal(coef.shape) * np.abs(coef).max()
    rho = density_to_shift_probabilities(min(density, 0.2), L)
    space, gemm, fft = _both(L, K, guess, rho, truth.noise_variance, X)
    _assert_agree(space, gemm, fft, rho)


def test_underflow_guard_agrees():
    """Patches far from every template take the exact row-maximum path in both kernels."""
    L = 7
    basis = _basis(L)
    coef = make_target(basis, random_state=0)
    X = 50 + np.random.default_rng(0).standard_normal((30, 30))
    rho = density_to_shift_probabilities(0.04, L)
    space, gemm, fft = _both(L, 2, coef, rho, 1e-3, X)
    assert np.isfinite(fft.loglik)
    _assert_agree(space, gemm, fft, rho)


def test_zero_probability_shifts_agree():
    L = 5
    basis = _basis(L)
    coef = make_target(basis, random_state=0)
    rho = np.zeros((2 * L, 2 * L))
    rho[0, 0] = rho[L, 0] = 0.5                       # one non-empty, one empty shift
    X = np.random.default_rng(0).standard_normal((30, 30))
    space, gemm, fft = _both(L, 1, coef, rho, 1.0, X)
    assert np.flatnonzero(fft.weights).tolist() == [0]
    _assert_agree(space, gemm, fft, rho)


def test_float32_agrees_to_single_precision():
    L = 9
    basis = _basis(L)
    coef = make_target(basis, random_state=1)
    X, truth = make_measurement(coef, basis, 120, snr=3, random_state=1)
    rho = density_to_shift_probabilities(0.1, L)
    space, gemm, fft = _both(L, 4, coef, rho, truth.noise_variance, X, dtype=np.float32)
    assert fft.loglik == pytest.approx(gemm.loglik, rel=1e-5)
    np.testing.assert_allclose(fft.weights, gemm.weights, atol=1e-3)


def test_results_do_not_depend_on_n_jobs_or_subset_sum():
    L = 9
    basis = _basis(L)
    coef = make_target(basis, random_state=2)
    X, truth = make_measurement(coef, basis, 150, snr=3, random_state=2)
    space = HypothesisSpace(basis, np.linspace(0, 2 * np.pi, 3, endpoint=False))
    model = build_fft_patch_model(coef, density_to_shift_probabilities(0.1, L),
                                  truth.noise_variance, space)
    data = PatchData([X], L)
    one = estep_statistics_fft(data, model, chunk=8, n_jobs=1)
    two = estep_statistics_fft(data, model, chunk=8, n_jobs=2)
    assert one.loglik == two.loglik
    np.testing.assert_array_equal(one.rotation_images, two.rotation_images)
    parts = (estep_statistics_fft(data, model, (0, 100), chunk=8)
             + estep_statistics_fft(data, model, (100, data.n_patches), chunk=8))
    np.testing.assert_allclose(parts.rotation_images, one.rotation_images, rtol=1e-12)
    with pytest.raises(ValueError, match="subset"):
        estep_statistics_fft(data, model, (5, 5))


def test_measurements_are_partitioned_and_summed_on_their_own():
    """Several measurements give the sum, in order, of each one alone: what the
    blocks of a Dask source give (tests/test_dask.py), to the last bit."""
    L = 9
    basis = _basis(L)
    coef = make_target(basis, random_state=3)
    X, truth = make_measurement(coef, basis, 70, snr=3, n_measurements=3, random_state=3)
    X = [X[0], X[1][:50, :61], X[2]]
    space = HypothesisSpace(basis, np.linspace(0, 2 * np.pi, 3, endpoint=False))
    model = build_fft_patch_model(coef, density_to_shift_probabilities(0.1, L),
                                  truth.noise_variance, space)
    kw = dict(chunk=5, tasks_per_block=2)
    together = estep_statistics_fft(PatchData(X, L), model, n_jobs=2, **kw)
    alone = [estep_statistics_fft(PatchData([M], L), model, **kw) for M in X]
    total = alone[0]
    for part in alone[1:]:
        total += part
    for field in Statistics._FIELDS:
        np.testing.assert_array_equal(getattr(together, field), getattr(total, field))


def test_statistics_of_both_kernels_do_not_mix():
    a = Statistics(np.ones(2), 0.0, np.ones((2, 4)), 0.0, 0.0, 1)
    b = Statistics(np.ones(2), 0.0, None, 0.0, 0.0, 1, np.ones((1, 4)))
    assert (b + b).rotation_images.sum() == 8 and (0.5 * b).weighted_patches is None
    with pytest.raises(ValueError, match="rotation_images"):
        a + b


def test_cost_model_and_grid():
    assert choose_estep(5, 16) == "gemm"            # the paper's size keeps its GEMM
    assert choose_estep(11, 16) == "gemm"
    assert all(choose_estep(L, 16) == "fft" for L in (13, 21, 41, 65))
    for L in (3, 5, 21, 41):
        assert fft_grid_size(L) >= 2 * L - 1
    space = HypothesisSpace(FourierBesselBasis(21), np.zeros(16))
    small = fft_chunk_size(space, working_memory=2)
    assert 1 <= small <= fft_chunk_size(space)
    with pytest.raises(ValueError, match="working_memory"):
        fft_chunk_size(space, working_memory=1e-6)


def test_estimator_uses_fft_at_large_size_and_matches_gemm():
    """A short fit at L = 13 (FFT by the cost model) equals the GEMM's to rounding."""
    L = 13
    basis = FourierBesselBasis(L, n_coefficients=20)
    coef = make_target(basis, random_state=0)
    X, _ = make_measurement(coef, basis, 160, snr=5, density=0.1, random_state=0)
    kw = dict(basis=basis, rotations=4, max_iter=3, tol=0, random_state=0, dtype=np.float64,
              acceleration=None)  # the kernels compared exactly: no float32, no SQUAREM
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fft = ApproxEMEstimator(L, **kw).fit(X)
        from mtdlearn.em import _state   # where the E-step's kernels are chosen
        orig = _state.choose_estep
        _state.choose_estep = lambda *a, **k: "gemm"
        try:
            gemm = ApproxEMEstimator(L, **kw).fit(X)
        finally:
            _state.choose_estep = orig
    np.testing.assert_allclose(fft.coef_, gemm.coef_, rtol=0,
                               atol=1e-9 * np.abs(gemm.coef_).max())
    np.testing.assert_allclose(fft.log_likelihood_history_, gemm.log_likelihood_history_,
                               rtol=1e-10)


def test_clamped_mass_stays_in_the_shift_weights(monkeypatch):
    """The float32 FFT E-step's clamped hypotheses are exact zeros in its
    FFTs (the GEMM E-step keeps exp(floor)), and their mass is back in every
    possible hypothesis's weight, so the statistics match exp(floor) left in
    place."""
    import mtdlearn.likelihood.patch_model as pm

    L, K = 5, 4
    basis = _basis(L)
    coef = make_target(basis, random_state=1)
    X, truth = make_measurement(coef, basis, 60, snr=500, random_state=1)
    rho = density_to_shift_probabilities(0.04, L)
    rho[0, 3] = 0.0                                   # an impossible shift stays so
    rho /= rho.sum()
    space = HypothesisSpace(basis, 2 * np.pi * np.arange(K) / K)
    model = build_fft_patch_model(coef, rho, truth.noise_variance, space, dtype=np.float32)
    data = PatchData([X], L)
    zeros = estep_statistics_fft(data, model, chunk=16)
    monkeypatch.setitem(pm._EXP_FLOOR, np.dtype(np.float32), 0.0)   # exp(floor) kept
    kept = estep_statistics_fft(data, model, chunk=16)
    lp, _ = space.log_prior(rho)
    assert np.all(zeros.weights[np.isfinite(lp)] > 0)
    assert np.all(zeros.weights[~np.isfinite(lp)] == 0) and not np.all(np.isfinite(lp))
    np.testing.assert_allclose(zeros.weights, kept.weights, rtol=1e-5, atol=0)
    assert zeros.loglik == pytest.approx(kept.loglik, rel=1e-6)


def test_score_of_a_fit_on_the_fft_path():
    # score() used to run the GEMM statistics on the FFT model of L >= 13
    # (AttributeError: 'FFTPatchModel' object has no attribute 'templates')
    from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target

    basis = FourierBesselBasis(15)
    X, _ = make_measurement(make_target(basis, random_state=0), basis, 150, snr=3,
                            random_state=0)
    em = ApproxEMEstimator(15, max_iter=0, random_state=0).fit(X)
    assert type(em._patch_model(X)[0][0][2]).__name__ == "FFTPatchModel"
    np.testing.assert_allclose(em.score(X), em.score_samples(X).mean(), rtol=1e-10)
