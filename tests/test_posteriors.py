"""Tests of mtdlearn.likelihood.posteriors: the fitted model patch by patch."""

import numpy as np
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
