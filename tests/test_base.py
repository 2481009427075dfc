"""Tests of mtdlearn.base: patch access, chunking, the E-step's numerics."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mtdlearn import FourierBesselBasis, make_target
from mtdlearn.base import (PatchData, build_patch_model, chunk_size, estep_per_patch,
                           estep_statistics)
from mtdlearn.operators import density_to_shift_probabilities, extract_patches

L = 5


@settings(max_examples=25, deadline=None)
@given(shapes=st.lists(st.tuples(st.integers(5, 23), st.integers(5, 23)), min_size=1,
                       max_size=3),
       start_frac=st.floats(0, 1), length=st.integers(1, 40))
def test_patch_data_matches_extract_patches(shapes, start_frac, length):
    rng = np.random.default_rng(0)
    Ms = [rng.standard_normal(s) for s in shapes]
    data = PatchData(Ms, L)
    ref = np.concatenate([extract_patches(M, L).reshape(-1, L * L) for M in Ms])
    assert data.n_patches == len(ref)
    start = int(start_frac * (len(ref) - 1))
    stop = min(len(ref), start + length)
    np.testing.assert_array_equal(data.get(start, stop), ref[start:stop])
    meas, r, c = data.locate(np.arange(len(ref)))
    for m in np.unique(meas):
        sel = meas == m
        M = Ms[m]
        np.testing.assert_array_equal(
            np.stack([M[i:i + L, j:j + L].ravel() for i, j in zip(r[sel], c[sel])]), ref[sel])


def test_chunk_size_follows_working_memory():
    H = 16 * 81
    assert chunk_size(H, L) == 1024            # capped for cache residency
    small = chunk_size(H, L, working_memory=1)
    assert 1 <= small < 1024
    assert small * 8 * (H + 2 * 25 + 3) <= 2**20
    with pytest.raises(ValueError, match="working_memory"):
        chunk_size(H, L, working_memory=1e-6)


def test_underflow_guard_gives_exact_loglik():
    """Patches far from every template (huge ||P - T||^2 / sigma^2) take the exact
    row-maximum path: the log-likelihood stays finite and equals the direct value."""
    basis = FourierBesselBasis(L, n_coefficients=10)
    coef = make_target(basis, random_state=0)
    rng = np.random.default_rng(0)
    X = 50 + rng.standard_normal((20, 20))          # far from any template or zero
    sigma2 = 1e-3
    rho = density_to_shift_probabilities(0.04, L)
    angles = np.array([0.0, np.pi])
    model = build_patch_model(coef, rho, sigma2, basis, angles)
    ll = estep_per_patch(PatchData([X], L), model, chunk=5)[0]
    assert np.all(np.isfinite(ll))
    # direct: the best hypothesis dominates completely at this noise level
    P = extract_patches(X, L).reshape(-1, L * L)
    T = np.vstack([model.templates, np.zeros(L * L)])
    from mtdlearn.operators import empty_shifts
    lp = np.concatenate([model.log_prior, [model.log_prior_empty]])
    d2 = ((P[:, None] - T[None]) ** 2).sum(-1)
    logp = -d2 / (2 * sigma2) + lp
    from scipy.special import logsumexp
    ref = logsumexp(logp, axis=1) - 0.5 * L * L * np.log(2 * np.pi * sigma2)
    np.testing.assert_allclose(ll, ref, rtol=1e-10)
    stats = estep_statistics(PatchData([X], L), model, chunk=5)
    assert np.isclose(stats.loglik, ref.sum(), rtol=1e-10)
    assert np.isclose(stats.weights.sum() + stats.weight_empty, len(P))


def test_zero_probability_shifts_are_handled():
    basis = FourierBesselBasis(L, n_coefficients=10)
    coef = make_target(basis, random_state=0)
    rho = np.zeros((2 * L, 2 * L))
    rho[0, 0] = 0.5
    rho[L, 0] = 0.5                                  # an empty shift
    model = build_patch_model(coef, rho, 1.0, basis, np.array([0.0]))
    X = np.random.default_rng(0).standard_normal((30, 30))
    stats = estep_statistics(PatchData([X], L), model, chunk=4)
    assert np.isfinite(stats.loglik)
    nz = np.flatnonzero(stats.weights)
    assert nz.tolist() == [0]                        # only shift (0, 0), rotation 0
    assert np.isclose(stats.weights.sum() + stats.weight_empty, 36)
