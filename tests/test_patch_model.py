"""Tests of mtdlearn.likelihood.patch_model: the hypothesis space, the E-step kernels
against brute force, the sufficient statistics and the M-step."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, strategies as st
from numpy.testing import assert_array_equal
from scipy.special import logsumexp

from mtdlearn import FourierBesselBasis, make_measurement, make_target
from mtdlearn.em._stopping import trace_pinv
from mtdlearn.imaging.shifts import (density_to_shift_probabilities, empty_shifts, nonempty_shifts,
                                pad_shift_crop)
from mtdlearn.likelihood.hypotheses import HypothesisSpace
from mtdlearn.likelihood.patch_model import build_patch_model, chunk_size
from mtdlearn.likelihood.statistics import Statistics, estep_statistics
from mtdlearn.likelihood.m_step import m_step, solve_gram
from mtdlearn.likelihood.posteriors import estep_per_patch
from mtdlearn.data.measurements import extract_patches
from mtdlearn.data.patches import PatchData

L = 5


def _space(basis, angles):
    return HypothesisSpace(basis, np.asarray(angles, dtype=np.float64))


# ------------------------------------------------------------- hypotheses
@pytest.mark.parametrize("L, K", [(1, 1), (3, 4), (5, 8), (5, 16)])
def test_hypothesis_layout(L, K):
    # the layout needs only the image size of the basis
    space = _space(SimpleNamespace(image_size=L), np.arange(K))
    rotation, shift, empty = space.rotation_index, space.shift_index, space.empty
    H = K * (2 * L - 1) ** 2
    assert rotation.shape == shift.shape == (H,)
    assert_array_equal(empty, empty_shifts(L))
    assert empty.size == 4 * L - 1
    # rotation-major, each rotation paired with every non-empty shift once
    assert_array_equal(rotation, np.repeat(np.arange(K), (2 * L - 1) ** 2))
    for k in range(K):
        assert_array_equal(shift[rotation == k], nonempty_shifts(L))
    assert len(set(zip(rotation.tolist(), shift.tolist()))) == H


@pytest.mark.parametrize("K", [1, 3])
def test_decode_inverts_the_layout(basis, K):
    space = _space(basis, 2 * np.pi * np.arange(K) / K)
    h = np.arange(space.n_hypotheses)
    k, d0, d1 = space.decode(h)
    assert_array_equal(k, space.rotation_index)
    # the offsets are those of the shifts (shift_to_offset), in [-(L-1), L-1]
    from mtdlearn.imaging.shifts import offset_to_shift

    s = offset_to_shift(d0, L) * 2 * L + offset_to_shift(d1, L)
    assert_array_equal(s, space.shift_index)


def test_templates_are_shifted_rotated_images(basis, coef):
    angles = np.array([0.0, 1.0, 2.5])
    space = _space(basis, angles)
    T = space.per_rotation(space.templates(coef))
    imgs = basis.evaluate(basis.rotate(coef, angles))
    ref = pad_shift_crop(imgs, None).reshape(3, 4 * L * L, L * L)[:, nonempty_shifts(L)]
    np.testing.assert_allclose(T, ref, rtol=0, atol=1e-12)
    # the adjoint of the shifts: <T, Y> = <F, adjoint(Y)> per rotation
    Y = np.random.default_rng(0).standard_normal((space.n_hypotheses, L * L))
    lhs = np.einsum("ksd,ksd->k", T, space.per_rotation(Y))
    rhs = np.einsum("kd,kd->k", imgs.reshape(3, -1), space.adjoint(Y))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)
    # the rotated evaluation gives the rotated images
    np.testing.assert_allclose(space.rotated_evaluation @ coef, imgs.reshape(3, -1), atol=1e-12)
    # some hypotheses only, in any order and repeated: the same rows, exactly
    full = space.templates(coef)
    some = [space.n_hypotheses - 1, 0, 7, 7, 200]
    assert_array_equal(space.templates(coef, some), full[some])


# ------------------------------------------------------------- statistics
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def statistics(draw, H=3, d=4):
    vec = st.lists(finite, min_size=H * (d + 1), max_size=H * (d + 1))
    v = np.array(draw(vec))
    return Statistics(v[:H], draw(finite), v[H:].reshape(H, d), draw(finite), draw(finite),
                      draw(st.integers(0, 1000)))


def _as_vector(s):
    return np.concatenate([s.weights, [s.weight_empty], s.weighted_patches.ravel(),
                           [s.patch_sq, s.loglik, s.n_patches]])


@given(a=statistics(), b=statistics(), c=statistics(), t=st.floats(-4, 4))
def test_statistics_form_a_vector_space(a, b, c, t):
    """+, - and scaling act field by field: what incremental and stochastic EM rely on."""
    np.testing.assert_allclose(_as_vector((a + b) - b), _as_vector(a), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(_as_vector(a + (b + c)), _as_vector((a + b) + c), rtol=1e-12,
                               atol=1e-9)
    np.testing.assert_allclose(_as_vector(t * (a + b)), _as_vector(t * a + b * t),
                               rtol=1e-12, atol=1e-9)
    z = Statistics.zeros(3, 4)
    assert_array_equal(_as_vector(a + z), _as_vector(a))
    acc = Statistics.zeros(3, 4)
    acc += a
    assert_array_equal(_as_vector(acc), _as_vector(a))


def test_statistics_of_a_partition_add_up(basis, coef):
    """E-step statistics over a partition of the patches add up to the whole."""
    X, truth = make_measurement(coef, basis, 80, snr=3, random_state=4)
    space = _space(basis, 2 * np.pi * np.arange(4) / 4)
    model = build_patch_model(coef, density_to_shift_probabilities(0.04, L),
                              truth.noise_variance, space)
    data = PatchData([X], L)
    whole = estep_statistics(data, model, chunk=16)
    parts = [estep_statistics(data, model, (a, b), chunk=16) for a, b in
             [(0, 100), (100, 101), (101, data.n_patches)]]
    total = parts[0] + parts[1] + parts[2]
    np.testing.assert_allclose(_as_vector(total), _as_vector(whole), rtol=1e-12, atol=1e-9)
    ll = estep_per_patch(data, model, (100, 200), chunk=16)[0]
    np.testing.assert_allclose(ll, estep_per_patch(data, model, chunk=16)[0][100:200],
                               rtol=1e-13)
    for bad in [(0, 0), (5, 3), (-1, 4), (0, data.n_patches + 1)]:
        with pytest.raises(ValueError, match="subset"):
            estep_statistics(data, model, bad)


def test_per_patch_chunks_follow_the_model_dtype(basis, coef):
    """score/predict run in float64: their chunks are sized for float64."""
    space = _space(basis, [0.0, np.pi])
    rho = density_to_shift_probabilities(0.04, L)
    m64 = build_patch_model(coef, rho, 1.0, space)
    m32 = build_patch_model(coef, rho, 1.0, space, dtype=np.float32)
    assert m64.dtype == np.float64 and m32.dtype == np.float32
    H = space.n_hypotheses
    assert chunk_size(H, L, 1, 8) < chunk_size(H, L, 1, 4)


# ---------------------------------------------------------------- E-step
def test_chunk_size_follows_working_memory():
    H = 16 * 81
    assert chunk_size(H, L) == 4 * 2**20 // (8 * H)   # capped for cache residency
    small = chunk_size(H, L, working_memory=1)
    assert 1 <= small < chunk_size(H, L)
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
    model = build_patch_model(coef, rho, sigma2, _space(basis, angles))
    ll = estep_per_patch(PatchData([X], L), model, chunk=5)[0]
    assert np.all(np.isfinite(ll))
    # direct: the best hypothesis dominates completely at this noise level
    P = extract_patches(X, L).reshape(-1, L * L)
    T = np.vstack([model.templates, np.zeros(L * L)])
    lp = np.concatenate([model.log_prior, [model.log_prior_empty]])
    d2 = ((P[:, None] - T[None]) ** 2).sum(-1)
    logp = -d2 / (2 * sigma2) + lp
    ref = logsumexp(logp, axis=1) - 0.5 * L * L * np.log(2 * np.pi * sigma2)
    np.testing.assert_allclose(ll, ref, rtol=1e-10)
    stats = estep_statistics(PatchData([X], L), model, chunk=5)
    assert np.isclose(stats.loglik, ref.sum(), rtol=1e-10)
    assert np.isclose(stats.weights.sum() + stats.weight_empty, len(P))


def test_large_patches_take_the_row_shift_and_keep_float32_precision():
    """At L=13 pure noise puts every logit about L**2/2 = 84 below the prior
    bound: every float32 row is shifted by its own maximum (before wave 2 each
    was recomputed), and the per-patch log-likelihoods equal float64's to
    float32's precision (relative 1e-6 of terms of size ~1e2)."""
    import mtdlearn.likelihood.patch_model as pm

    L13 = 13
    basis = FourierBesselBasis(L13)
    coef = make_target(basis, random_state=0)
    X = np.random.default_rng(0).standard_normal((4 * L13, 4 * L13))
    rho = density_to_shift_probabilities(0.05, L13)
    space = _space(basis, [0.0, np.pi / 2])
    data = PatchData([X], L13)
    ll = {}
    for dtype in (np.float64, np.float32):
        model = build_patch_model(coef, rho, 1.0, space, dtype=dtype)
        ll[dtype] = estep_per_patch(data, model)[0]
    P = extract_patches(X, L13).reshape(-1, L13 * L13)
    model = build_patch_model(coef, rho, 1.0, space, dtype=np.float32)
    Pa = np.hstack([P, np.ones((len(P), 1)), -0.5 * (P * P).sum(1, keepdims=True)])
    top = np.maximum((Pa.astype(np.float32) @ model.augmented.T).max(axis=1),
                     model.log_prior_empty - model.shift + Pa[:, -1])
    assert np.all(top < pm._LOW[np.dtype(np.float32)])       # the guard's rows, all of them
    np.testing.assert_allclose(ll[np.float32], ll[np.float64], rtol=1e-6)


def test_zero_probability_shifts_are_handled():
    basis = FourierBesselBasis(L, n_coefficients=10)
    coef = make_target(basis, random_state=0)
    rho = np.zeros((2 * L, 2 * L))
    rho[0, 0] = 0.5
    rho[L, 0] = 0.5                                  # an empty shift
    model = build_patch_model(coef, rho, 1.0, _space(basis, [0.0]))
    X = np.random.default_rng(0).standard_normal((30, 30))
    stats = estep_statistics(PatchData([X], L), model, chunk=4)
    assert np.isfinite(stats.loglik)
    nz = np.flatnonzero(stats.weights)
    assert nz.tolist() == [0]                        # only shift (0, 0), rotation 0
    assert np.isclose(stats.weights.sum() + stats.weight_empty, 36)


def _brute_force_loglik(X, coef, rho, sigma2, basis, angles):
    """log sum_{l, k} rho_l / K N(P; C T_l Z F_k, sigma2 I) per patch, with every
    one of the 4 L^2 shifts (empty ones included) enumerated separately."""
    P = extract_patches(X, L).reshape(-1, L * L)
    imgs = basis.evaluate(basis.rotate(coef, angles))
    T = pad_shift_crop(imgs, None).reshape(len(angles), 4 * L * L, L * L)
    d2 = ((P[:, None, None, :] - T[None]) ** 2).sum(-1)          # (N_d, K, 4L^2)
    with np.errstate(divide="ignore"):
        logp = -d2 / (2 * sigma2) + np.log(rho.ravel())[None, None, :] - np.log(len(angles))
    return logsumexp(logp.reshape(len(P), -1), axis=1) - 0.5 * L * L * np.log(
        2 * np.pi * sigma2), logp, P, T


def test_estep_matches_brute_force(basis, coef):
    X, _ = make_measurement(coef, basis, 60, snr=3, random_state=1)
    angles = 2 * np.pi * np.arange(6) / 6
    rng = np.random.default_rng(0)
    rho = rng.uniform(0.5, 1.5, (2 * L, 2 * L))
    rho /= rho.sum()
    sigma2 = 0.8
    est_coef = coef + 0.3 * rng.standard_normal(coef.shape)
    model = build_patch_model(est_coef, rho, sigma2, _space(basis, angles))
    stats = estep_statistics(PatchData([X], L), model, chunk=7)
    ll, logp, P, T = _brute_force_loglik(X, est_coef, rho, sigma2, basis, angles)
    assert np.isclose(stats.loglik, ll.sum(), rtol=1e-12)
    # posterior weights of the non-empty hypotheses, rotation-major
    w = np.exp(logp - logsumexp(logp.reshape(len(P), -1), axis=1)[:, None, None])
    ne = nonempty_shifts(L)
    W = w[:, :, ne].sum(0).ravel()
    np.testing.assert_allclose(stats.weights, W, rtol=1e-10, atol=1e-12)
    assert np.isclose(stats.weight_empty, w[:, :, empty_shifts(L)].sum(), rtol=1e-10)
    S = np.einsum("mkh,md->khd", w[:, :, ne], P).reshape(-1, L * L)
    np.testing.assert_allclose(stats.weighted_patches, S, rtol=1e-10, atol=1e-12)
    assert np.isclose(stats.patch_sq, (P**2).sum())


def test_m_step_solves_normal_equations(basis, coef):
    """The alpha update maximizes Q (eq. 16): compare with explicit A_h matrices."""
    X, _ = make_measurement(coef, basis, 60, snr=3, random_state=2)
    angles = 2 * np.pi * np.arange(4) / 4
    rho = density_to_shift_probabilities(0.05, L)
    model = build_patch_model(coef, rho, 0.5, _space(basis, angles))
    stats = estep_statistics(PatchData([X], L), model, chunk=50)
    info = {}
    new_coef, new_rho, s2 = m_step(stats, rho, model.hypotheses, estimate_noise=True, info=info)
    ne = nonempty_shifts(L)
    # A_h: alpha -> C T_l Z B R_k alpha, built column by column
    eye = np.eye(basis.n_functions)
    imgs = basis.evaluate(basis.rotate(eye[None], angles[:, None]))  # (K, p, L, L)
    A = pad_shift_crop(imgs, None).reshape(len(angles), basis.n_functions, 4 * L * L, -1)
    A = A[:, :, ne].transpose(0, 2, 3, 1).reshape(-1, L * L, basis.n_functions)  # (H, d, p)
    lhs = np.einsum("h,hdp,hdq->pq", stats.weights, A, A)
    rhs = np.einsum("hdp,hd->p", A, stats.weighted_patches)
    np.testing.assert_allclose(new_coef, np.linalg.solve(lhs, rhs), rtol=1e-9)
    # the stopping rule's complete-data variance factor: tr of the inverse
    (A,) = info["normal_matrices"]
    assert trace_pinv(A) == pytest.approx(np.trace(np.linalg.inv(lhs)), rel=1e-9)
    np.testing.assert_allclose(new_rho.reshape(-1)[ne],
                               stats.weights.reshape(len(angles), -1).sum(0) / stats.n_patches,
                               rtol=1e-12)
    assert np.isclose(new_rho.sum(), 1.0)
    # sigma^2 = expected residual per pixel
    P = extract_patches(X, L).reshape(-1, L * L)
    _, logp, _, _ = _brute_force_loglik(X, coef, rho, 0.5, basis, angles)
    w = np.exp(logp - logsumexp(logp.reshape(len(P), -1), axis=1)[:, None, None])
    imgs_new = basis.evaluate(basis.rotate(new_coef, angles))
    T = pad_shift_crop(imgs_new, None).reshape(len(angles), 4 * L * L, L * L)
    resid = np.einsum("mks,mks->", w, ((P[:, None, None] - T[None]) ** 2).sum(-1))
    assert np.isclose(s2, resid / P.size, rtol=1e-9)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_exponent_floor_does_not_change_the_statistics(monkeypatch, dtype, rtol):
    # at high SNR most exponents are far below -708 (float64) / -87 (float32),
    # where exp is slow; the floor must not move the statistics
    import mtdlearn.likelihood.patch_model as pm

    basis = FourierBesselBasis(L, n_coefficients=10)
    coef = make_target(basis, random_state=1)
    X, truth = make_measurement(coef, basis, 60, snr=500, random_state=1)
    model = build_patch_model(coef, density_to_shift_probabilities(0.04, L),
                              truth.noise_variance, _space(basis, np.arange(4) * np.pi / 2),
                              dtype=dtype)
    data = PatchData([X], L)
    floored = estep_statistics(data, model, chunk=16)
    monkeypatch.setitem(pm._FLOOR, np.dtype(dtype), -np.inf)
    monkeypatch.setitem(pm._EXP_FLOOR, np.dtype(dtype), 0.0)
    plain = estep_statistics(data, model, chunk=16)
    for name in ("weights", "weighted_patches", "loglik", "weight_empty"):
        a, b = np.asarray(getattr(floored, name)), np.asarray(getattr(plain, name))
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * np.max(np.abs(b)), err_msg=name)


def test_clamped_float32_exponents_give_exact_zeros_not_subnormals():
    """With ``exact_zeros`` (the FFT E-step), float32 exponents at or below
    the floor become exact zeros (not exp(floor), whose products are
    subnormal and slow); the others move by at most exp(floor), and the row
    sums keep the clamped mass.  Without it (the GEMM E-step) nothing moves."""
    from mtdlearn.likelihood.patch_model import _EXP_FLOOR, _FLOOR, _exp_rows

    dtype = np.dtype(np.float32)
    floor, f = _FLOOR[dtype], float(_EXP_FLOOR[dtype])
    logits = np.array([[0.0, -1.0, floor, floor - 50.0, floor + 0.5],
                       [-3.0, -2.0 * abs(floor), -7.0, floor - 1e3, -20.0]], dtype=dtype)
    kept = logits.copy()
    _exp_rows(kept, np.array([-5.0, -6.0]), 0.0, None)
    np.testing.assert_array_equal(kept, np.exp(np.maximum(logits, np.float32(floor))))
    E = logits.copy()
    _, s, e_empty = _exp_rows(E, np.array([-5.0, -6.0]), 0.0, None, exact_zeros=True)
    assert E[0, 2] == E[0, 3] == E[1, 1] == E[1, 3] == 0.0
    assert np.all((E == 0) | (E >= np.finfo(dtype).tiny))      # no subnormal numbers
    kept = logits > floor
    np.testing.assert_allclose(E[kept], np.exp(logits[kept].astype(np.float64)),
                               rtol=2 * np.finfo(dtype).eps, atol=f)
    clamped = np.exp(np.maximum(logits.astype(np.float64), floor)).sum(axis=1)
    np.testing.assert_allclose(s, clamped + e_empty, rtol=4 * np.finfo(dtype).eps)


def test_weighted_gram_in_blocks_equals_one_gemm(monkeypatch):
    """The M-step's ``sum_k BR_k^T diag(D_k) BR_k`` in blocks of rotations
    (bounded memory at large L and K) is the one-GEMM sum, to rounding."""
    from mtdlearn.likelihood import m_step as m_step_module

    rng = np.random.default_rng(0)
    BR = rng.standard_normal((7, 25, 10))
    D = rng.random((7, 25))
    whole = m_step_module._weighted_gram(BR, D)
    expected = np.einsum("kfp,kf,kfq->pq", BR, D, BR)
    np.testing.assert_allclose(whole, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    # two rotations per block: 4 blocks, the last one short
    monkeypatch.setattr(m_step_module, "_GRAM_BLOCK_BYTES", 2 * 25 * 10 * 8)
    blocks = m_step_module._weighted_gram(BR, D)
    np.testing.assert_allclose(blocks, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("n_components", [1, 2])
def test_m_step_with_the_table_made_block_by_block_equals_the_kept_table(monkeypatch,
                                                                          n_components):
    """Above ``TABLE_MAX_BYTES`` the M-step makes ``B R(phi_k)`` in blocks of
    rotations (by ``basis.rotate``) and never keeps it whole: the same
    M-step, to rounding (L = 41 at K = 128: 1.8 GB not held)."""
    from mtdlearn.likelihood import hypotheses as hypotheses_module
    from mtdlearn.likelihood import m_step as m_step_module

    basis = FourierBesselBasis(7)
    coefs = np.stack([make_target(basis, random_state=s) for s in range(n_components)])
    coef = coefs[0] if n_components == 1 else coefs
    X, truth = make_measurement(coef, basis, 140, density=0.05, snr=5, random_state=0,
                                weights=None if n_components == 1 else [0.5, 0.5])
    angles = np.linspace(0, 2 * np.pi, 5, endpoint=False)
    rho = density_to_shift_probabilities(0.05, 7)
    stats = estep_statistics(PatchData([X], 7), build_patch_model(
        coef, rho, truth.noise_variance, HypothesisSpace(basis, angles,
                                                          n_components=n_components)))
    kept_space = HypothesisSpace(basis, angles, n_components=n_components)
    kept = m_step(stats, rho, kept_space)
    assert kept_space.keeps_table and "rotated_evaluation" in vars(kept_space)
    monkeypatch.setattr(hypotheses_module, "TABLE_MAX_BYTES", 0)
    # blocks of two rotations: 3 blocks, the last one short
    monkeypatch.setattr(m_step_module, "_GRAM_BLOCK_BYTES", 2 * 49 * basis.n_functions * 8)
    space = HypothesisSpace(basis, angles, n_components=n_components)
    streamed = m_step(stats, rho, space)
    assert not space.keeps_table and "rotated_evaluation" not in vars(space)
    np.testing.assert_allclose(streamed[0], kept[0], rtol=1e-12,
                               atol=1e-12 * np.abs(kept[0]).max())
    assert_array_equal(streamed[1], kept[1])
    assert streamed[2] == pytest.approx(kept[2], rel=1e-12)


@given(seed=st.integers(0, 2**16), p=st.integers(2, 12), rank=st.integers(0, 12),
       keep_previous=st.booleans())
def test_solve_gram_is_a_generalized_m_step(seed, p, rank, keep_previous):
    """Well conditioned: the Cholesky solution.  Rank deficient: the exact
    solution on A's range, ``previous`` kept on its null space, and the
    M-step objective ``2 b.x - x.A.x`` no lower than at ``previous``."""
    rng = np.random.default_rng(seed)
    rank = min(rank, p)
    Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    w = np.zeros(p)
    w[:rank] = rng.uniform(0.5, 2.0, rank)      # condition number <= 4 on the range
    A = (Q * w) @ Q.T
    b = rng.standard_normal(p)
    previous = rng.standard_normal(p) if keep_previous else None
    x = solve_gram(A, b, previous)
    start = np.zeros(p) if previous is None else previous
    if rank == p:
        # |x| <= |b| / min(w) <= 2 |b|: rounding of a condition-4 solve
        np.testing.assert_allclose(A @ x, b, rtol=0, atol=1e-12 * np.abs(b).max())
        return
    R, N = Q[:, :rank], Q[:, rank:]
    # on the range A x is b's projection; on the null space x is `previous`
    np.testing.assert_allclose(R.T @ (A @ x), R.T @ b, rtol=0, atol=1e-10 * np.abs(b).max())
    np.testing.assert_allclose(N.T @ x, N.T @ start, rtol=0, atol=1e-10 * (1 + np.abs(start).max()))

    def objective(v):
        return 2 * b @ v - v @ A @ v

    assert objective(x) >= objective(start) - 1e-10 * (1 + abs(objective(start)))


def test_solve_gram_keeps_what_rounding_cannot_determine():
    """Below ``rcond`` a direction is kept at ``previous`` instead of being
    solved from the rounding of ``b`` (the exact solve would give 1e8 there)."""
    A = np.diag([4.0, 1.0, 1e-12])
    b = np.array([4.0, 2.0, 1e-4])
    x = solve_gram(A, b, previous=np.array([9.0, 9.0, 0.25]), rcond=1e-7)
    np.testing.assert_allclose(x, [1.0, 2.0, 0.25], rtol=1e-12)
    # the default rcond (p * float64 epsilon) solves it
    np.testing.assert_allclose(solve_gram(A, b), [1.0, 2.0, 1e8], rtol=1e-6)
