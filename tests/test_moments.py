"""Tests of mtdlearn.autocorrelation.moments and model_moments: measured, image and model
autocorrelations."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtdlearn.autocorrelation.model_moments import (default_n_angles, image_autocorrelations,
                                                    model_autocorrelations)
from mtdlearn.autocorrelation.moments import measurement_autocorrelations, third_order_shifts

L = 5



def naive_autocorrelations(measurements, L):
    """Direct definition: double loop over the shift pairs, zero outside."""
    s1, s2, s3, P = 0.0, np.zeros((L, L)), np.zeros((L, L, L, L)), 0
    for M in measurements:
        M = np.asarray(M, dtype=np.float64)
        N1, N2 = M.shape
        P += M.size
        Mp = np.zeros((N1 + L, N2 + L))
        Mp[:N1, :N2] = M
        s1 += M.sum()
        for a in range(L):
            for b in range(L):
                Mab = M * Mp[a:a + N1, b:b + N2]
                s2[a, b] += Mab.sum()
                for c in range(L):
                    for d in range(L):
                        s3[a, b, c, d] += np.sum(Mab * Mp[c:c + N1, d:d + N2])
    return s1 / P, s2 / P, s3 / P


def naive_image_autocorrelations(F):
    L = F.shape[0]
    Fp = np.zeros((2 * L, 2 * L))
    Fp[:L, :L] = F
    ac2 = np.zeros((L, L))
    ac3 = np.zeros((L, L, L, L))
    for i in range(L):
        for j in range(L):
            for a in range(L):
                for b in range(L):
                    ac2[a, b] += F[i, j] * Fp[i + a, j + b]
                    for c in range(L):
                        for d in range(L):
                            ac3[a, b, c, d] += F[i, j] * Fp[i + a, j + b] * Fp[i + c, j + d]
    return F.sum(), ac2, ac3


def assert_triple_close(x, y, rtol=1e-12, atol=1e-14):
    for u, v in zip(x, y):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


def rel(x, y):
    """Norm-relative difference of two (a1, a2, a3) triples."""
    num = sum(np.sum((np.asarray(u) - np.asarray(v)) ** 2) for u, v in zip(x, y))
    den = sum(np.sum(np.asarray(v) ** 2) for v in y)
    return float(np.sqrt(num / den))


# ---------------------------------------------------------------------------
# measured autocorrelations
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 3, 5])
def test_measured_matches_naive_loop(size):
    rng = np.random.default_rng(size)
    M = rng.standard_normal((23, 17))
    out = measurement_autocorrelations(M, size)
    assert isinstance(out[0], float)
    assert out[1].shape == (size, size) and out[2].shape == (size,) * 4
    assert out[1].dtype == np.float64 and out[2].dtype == np.float64
    assert_triple_close(out, naive_autocorrelations([M], size))


def test_measured_float32_and_symmetry():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((19, 26)).astype(np.float32)
    a1, a2, a3 = measurement_autocorrelations(M, L)
    assert_triple_close((a1, a2, a3), naive_autocorrelations([M], L))
    flat = a3.reshape(L * L, L * L)
    np.testing.assert_array_equal(flat, flat.T)


@pytest.mark.parametrize("working_memory", [1e-4, 5e-3, 0.05])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_measured_independent_of_chunk_size(working_memory, n_jobs):
    rng = np.random.default_rng(1)
    M = rng.standard_normal((157, 131)) + 0.3
    reference = measurement_autocorrelations(M, L, n_jobs=1)
    out = measurement_autocorrelations(M, L, working_memory=working_memory, n_jobs=n_jobs)
    assert rel(out, reference) < 1e-12


def test_measured_stack_sums_over_measurements():
    rng = np.random.default_rng(2)
    A, B = rng.standard_normal((2, 30, 40))
    ra, rb = (measurement_autocorrelations(m, L) for m in (A, B))
    stacked = measurement_autocorrelations(np.stack([A, B]), L)
    # two equal-sized measurements: the mean of the per-measurement values
    assert_triple_close(stacked, tuple((x + y) / 2 for x, y in zip(ra, rb)))
    # different sizes: summed sums over summed pixel counts
    C = rng.standard_normal((21, 33))
    rc = measurement_autocorrelations(C, L)
    both = measurement_autocorrelations([A, C], L)
    pa, pc = A.size, C.size
    assert_triple_close(both, tuple((x * pa + y * pc) / (pa + pc) for x, y in zip(ra, rc)))
    assert_triple_close(both, naive_autocorrelations([A, C], L))


def test_formed_moments_are_the_mean_over_the_distinct_formations():
    """formed_autocorrelations: each measurement whitened by its own formation, those
    of one formation pooled, then the mean over the distinct formations."""
    from mtdlearn.autocorrelation.moments import formed_autocorrelations
    from mtdlearn.imaging.ctf import CTF
    from mtdlearn.imaging.formation import MicroscopeFormation
    from mtdlearn.imaging.noise import make_noise_psd, whiten

    rng = np.random.default_rng(4)
    A, C = rng.standard_normal((40, 48)), rng.standard_normal((33, 37))
    A0 = A.copy()
    psd = make_noise_psd(4.0)
    forms = [MicroscopeFormation(CTF(1e4), psd), MicroscopeFormation(CTF(2e4))]
    got = formed_autocorrelations([A, C], L, forms)
    ra = measurement_autocorrelations(whiten(A, psd), L)
    rc = measurement_autocorrelations(C, L)   # its noise is white: read as it is
    assert_triple_close(got, tuple((x + y) / 2 for x, y in zip(ra, rc)))
    # a formation's measurements are pooled; each distinct formation weighs the same
    D = rng.standard_normal((25, 52))
    got = formed_autocorrelations([A, C, D], L, forms + [forms[0]])
    rad = measurement_autocorrelations([whiten(A, psd), whiten(D, psd)], L)
    assert_triple_close(got, tuple((x + y) / 2 for x, y in zip(rad, rc)))
    # the identity formations on equal sizes: the pooled moments
    B = rng.standard_normal((40, 48))
    assert_triple_close(formed_autocorrelations([A, B], L, [MicroscopeFormation()] * 2),
                        measurement_autocorrelations([A, B], L))
    assert np.array_equal(A, A0)   # whitening made a new array
    with pytest.raises(ValueError, match="formations must have one entry per measurement"):
        formed_autocorrelations([A, C], L, forms[:1])


def test_measured_reads_npy_paths(tmp_path):
    rng = np.random.default_rng(3)
    M = rng.standard_normal((25, 30))
    path = tmp_path / "m.npy"
    np.save(path, M)
    assert_triple_close(measurement_autocorrelations([str(path)], L),
                        measurement_autocorrelations(M, L))


# ---------------------------------------------------------------------------
# image autocorrelations and a single copy in an empty measurement
# ---------------------------------------------------------------------------
def test_image_autocorrelations_naive_and_batch():
    rng = np.random.default_rng(4)
    F = rng.standard_normal((2, 3, L, L))
    total, ac2, ac3 = image_autocorrelations(F)
    assert total.shape == (2, 3) and ac2.shape == (2, 3, L, L)
    assert ac3.shape == (2, 3, L, L, L, L)
    for idx in np.ndindex(2, 3):
        assert_triple_close((total[idx], ac2[idx], ac3[idx]),
                            naive_image_autocorrelations(F[idx]))


@pytest.mark.parametrize("corner", [(11, 7), (25, 30)])  # interior; flush bottom-right
def test_single_copy_measured_equals_image_autocorrelations(basis, coef, corner):
    """A measurement holding one rotated copy G (no noise): the measured sums
    a*P are the autocorrelations of G, i.e. the model with one fixed rotation."""
    G = basis.evaluate(basis.rotate(coef, 0.7))
    M = np.zeros((30, 35))
    M[corner[0]:corner[0] + L, corner[1]:corner[1] + L] = G
    P = M.size
    a1, a2, a3 = measurement_autocorrelations(M, L)
    total, ac2, ac3 = image_autocorrelations(G)
    assert_triple_close((a1 * P, a2 * P, a3 * P), (total, ac2, ac3), atol=1e-12)


# ---------------------------------------------------------------------------
# model autocorrelations
# ---------------------------------------------------------------------------
def test_model_is_average_of_image_autocorrelations(basis, coef):
    gamma, var = 0.03, 0.4
    a1, a2, a3 = model_autocorrelations(coef, basis, gamma, var)
    angles = 2 * np.pi * np.arange(41) / 41  # plenty of angles, computed independently
    total, ac2, ac3 = image_autocorrelations(basis.evaluate(basis.rotate(coef, angles)))
    s = gamma / L**2
    e1 = s * total.mean()
    d2 = np.zeros((L, L))
    d2[0, 0] = 1.0
    D = np.eye(L * L)
    D[0] += 1
    D[:, 0] += 1
    np.testing.assert_allclose(a1, e1, rtol=1e-12)
    np.testing.assert_allclose(a2, s * ac2.mean(0) + var * d2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a3, s * ac3.mean(0) + var * e1 * D.reshape((L,) * 4),
                               rtol=1e-12, atol=1e-15)
    # a3 noise term at s1 = s2 = 0 is E[(f + e)^3] - f^3 = 3 sigma^2 f
    noiseless = model_autocorrelations(coef, basis, gamma, 0.0)
    assert np.isclose(a3[0, 0, 0, 0] - noiseless[2][0, 0, 0, 0], 3 * var * a1)


def test_rotational_average_is_exact(basis, coef):
    assert default_n_angles(basis) == 3 * basis.max_frequency + 1
    exact = model_autocorrelations(coef, basis, 0.04, 0.2)
    for n_angles in (default_n_angles(basis) + 1, 23, 64):
        assert rel(model_autocorrelations(coef, basis, 0.04, 0.2, n_angles=n_angles),
                   exact) < 1e-12
    too_few = model_autocorrelations(coef, basis, 0.04, 0.2, n_angles=3 * basis.max_frequency)
    assert rel(too_few, exact) > 1e-6


def test_model_noise_terms_match_simulation(basis, coef, simulated):
    """On a large noisy simulation the model at the truth explains the data,
    including the sigma^2 terms of a2 and a3 (much larger than the residual)."""
    truth, measured = simulated
    model = model_autocorrelations(coef, basis, truth.density, truth.noise_variance)
    noiseless = model_autocorrelations(coef, basis, truth.density, 0.0)
    for k in (1, 2):
        residual = np.linalg.norm(model[k] - measured[k])
        noise_term = np.linalg.norm(model[k] - noiseless[k])
        assert residual < 0.1 * noise_term


# ---------------------------------------------------------------------------
# a mixture of several kinds of particle
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shift_radius", [None, 2.5])
def test_mixture_is_the_weighted_sum_of_the_kinds(basis, shift_radius):
    """Each kind contributes its moments at w_c gamma; the noise terms sum to
    the one-kind ones (weights on the simplex): the mixture's moments are
    sum_c w_c times each kind's at gamma and sigma**2."""
    from mtdlearn import make_target

    rng = np.random.default_rng(0)
    coefs = np.stack([make_target(basis, random_state=s) for s in range(3)])
    weights = rng.dirichlet(np.ones(3))
    gamma, var = 0.05, 0.3
    mix = model_autocorrelations(coefs, basis, gamma, var, weights=weights,
                                 shift_radius=shift_radius)
    kinds = [model_autocorrelations(c, basis, gamma, var, shift_radius=shift_radius)
             for c in coefs]
    for k in range(3):
        expected = sum(w * kind[k] for w, kind in zip(weights, kinds))
        assert np.max(np.abs(mix[k] - expected)) < 1e-12 * max(1.0, np.max(np.abs(expected)))
    # weights=None: equal abundances; one kind as a (1, p) row: the one-image model
    equal = model_autocorrelations(coefs, basis, gamma, var, shift_radius=shift_radius)
    assert rel(equal, model_autocorrelations(coefs, basis, gamma, var, weights=np.ones(3) / 3,
                                             shift_radius=shift_radius)) == 0.0
    one = model_autocorrelations(coefs[:1], basis, gamma, var, shift_radius=shift_radius)
    assert rel(one, kinds[0]) < 1e-14


def test_mixture_model_matches_simulated_mixture(basis):
    """A simulated measurement of two kinds (make_measurement with weights)
    has the mixture model's moments, up to its sampling noise."""
    from mtdlearn import make_measurement, make_target

    coefs = np.stack([make_target(basis, random_state=0), make_target(basis, random_state=1)])
    X, truth = make_measurement(coefs, basis, 1000, density=0.08, snr=10, weights=[0.3, 0.7],
                                random_state=0)
    measured = measurement_autocorrelations(X, L)
    w = np.bincount(truth.component, minlength=2) / len(truth.component)  # drawn abundances
    model = model_autocorrelations(coefs, basis, truth.density, truth.noise_variance, weights=w)
    single = [model_autocorrelations(c, basis, truth.density, truth.noise_variance)
              for c in coefs]
    for k in (1, 2):
        residual = np.linalg.norm(model[k] - measured[k])
        # the kinds differ by far more than the sampling noise
        assert residual < 0.2 * np.linalg.norm(single[0][k] - single[1][k])


def test_mixture_bad_input(basis, coef):
    coefs = np.stack([coef, coef])
    with pytest.raises(ValueError, match="weights"):
        model_autocorrelations(coef, basis, 0.04, 0.1, weights=[1.0])
    for weights in ([0.5, 0.6], [1.5, -0.5], [1.0]):
        with pytest.raises(ValueError, match="weights"):
            model_autocorrelations(coefs, basis, 0.04, 0.1, weights=weights)
    with pytest.raises(ValueError, match=r"coef must have shape"):
        model_autocorrelations(coefs[:, :-1], basis, 0.04, 0.1)
    with pytest.raises(ValueError, match=r"coef must have shape"):
        model_autocorrelations(coefs[None], basis, 0.04, 0.1)


# ---------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------
def test_measurement_bad_input():
    M = np.arange(100.0).reshape(10, 10)  # valid: only the argument under test is wrong
    with pytest.raises(TypeError, match="image_size"):
        measurement_autocorrelations(M, 2.5)
    with pytest.raises(ValueError, match="image_size"):
        measurement_autocorrelations(M, 0)
    with pytest.raises(ValueError, match="X"):
        measurement_autocorrelations(np.zeros((2, 2, 10, 10)), 3)
    with pytest.raises(ValueError, match="smaller than one"):
        measurement_autocorrelations(np.zeros((4, 10)), 5)
    with pytest.raises(ValueError, match="finite"):
        measurement_autocorrelations(np.full((10, 10), np.nan), 3)
    with pytest.raises(ValueError, match=r"X is constant \(all values equal 0\.0\)"):
        measurement_autocorrelations(np.zeros((10, 10)), 3)
    with pytest.raises(ValueError, match="working_memory"):
        measurement_autocorrelations(M, 3, working_memory=0)
    with pytest.raises(ValueError, match="n_jobs"):
        measurement_autocorrelations(M, 3, n_jobs=0)
    with pytest.raises(TypeError, match="X"):
        measurement_autocorrelations({"a": 1}, 3)


def test_images_bad_input():
    with pytest.raises(ValueError, match="images"):
        image_autocorrelations(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="images"):
        image_autocorrelations(np.zeros(5))


# ---------------------------------------------------------------------------
# the third moment on a subset of shifts (shift_radius)
# ---------------------------------------------------------------------------
def _entries(a3, shifts):
    """The entries of a full (L, L, L, L) a3 at the pairs of ``shifts``."""
    r, c = shifts[:, 0], shifts[:, 1]
    return a3[r[:, None], c[:, None], r[None], c[None]]


def test_third_order_shifts():
    assert third_order_shifts(5).tolist() == [[i, j] for i in range(5) for j in range(5)]
    assert third_order_shifts(5, shift_radius=0).tolist() == [[0, 0]]
    # a quarter disk, row-major; a radius past the far corner keeps every shift
    shifts = third_order_shifts(7, shift_radius=3)
    assert np.all((shifts**2).sum(axis=1) <= 9) and len(shifts) == 11
    assert np.array_equal(third_order_shifts(5, shift_radius=5.7), third_order_shifts(5))
    # "auto": all shifts up to L = 11 (the paper's L = 5 unchanged), L / 2 beyond
    for size in (3, 5, 11):
        assert np.array_equal(third_order_shifts(size, "auto"), third_order_shifts(size))
    assert np.array_equal(third_order_shifts(21, "auto"), third_order_shifts(21, 10.5))


@settings(max_examples=25)
@given(size=st.sampled_from([1, 3, 4, 5]), radius=st.floats(0, 6),
       shape=st.tuples(st.integers(6, 30), st.integers(6, 30)),
       working_memory=st.sampled_from([None, 1e-3]), seed=st.integers(0, 2**16))
def test_measured_subset_equals_entries_of_full(size, radius, shape, working_memory, seed):
    """The subset's a3 holds the full a3's entries at the kept pairs (and a1,
    a2 are the full ones): the same sums, by other GEMMs, so equal up to
    rounding of sums of a few hundred products of O(1) numbers."""
    M = np.random.default_rng(seed).standard_normal(shape)
    full = measurement_autocorrelations(M, size, working_memory=working_memory)
    a1, a2, a3 = measurement_autocorrelations(M, size, working_memory=working_memory,
                                              shift_radius=radius)
    shifts = third_order_shifts(size, radius)
    assert a3.shape == (len(shifts),) * 2
    np.testing.assert_array_equal(a3, a3.T)
    # (the tiles differ in size: sums in another order)
    assert a1 == pytest.approx(full[0], rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(a2, full[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a3, _entries(full[2], shifts), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_measured_subset_blockwise_equals_in_memory(n_jobs):
    """The Dask split (per micrograph, then combined) gives the in-memory
    result bit for bit, with a subset of shifts too; so does any n_jobs."""
    from mtdlearn.autocorrelation.moments import _block_band_sums, _combine_blocks

    rng = np.random.default_rng(5)
    Ms = [rng.standard_normal((60, 47)), rng.standard_normal((33, 70))]
    for radius in (None, 2.5):
        expected = measurement_autocorrelations(Ms, L, shift_radius=radius)
        parts = [_block_band_sums(M, L, shift_radius=radius) for M in Ms]
        for u, v in zip(_combine_blocks(parts, L, shift_radius=radius), expected):
            np.testing.assert_array_equal(u, v)
        for u, v in zip(measurement_autocorrelations(Ms, L, n_jobs=n_jobs,
                                                     shift_radius=radius), expected):
            np.testing.assert_array_equal(u, v)


@settings(max_examples=20)
@given(radius=st.floats(0, 6), seed=st.integers(0, 2**16))
def test_model_subset_equals_entries_of_full(basis, radius, seed):
    """The subset model (windows of the kept shifts, ac2 by FFT) equals the
    full model's entries; relative rounding of sums of 25-term products."""
    coef = np.random.default_rng(seed).standard_normal(basis.n_functions)
    full = model_autocorrelations(coef, basis, 0.04, 0.3)
    a1, a2, a3 = model_autocorrelations(coef, basis, 0.04, 0.3, shift_radius=radius)
    scale = np.abs(full[2]).max()
    assert a1 == full[0]
    np.testing.assert_allclose(a2, full[1], rtol=0, atol=1e-12 * np.abs(full[1]).max())
    np.testing.assert_allclose(a3, _entries(full[2], third_order_shifts(L, radius)),
                               rtol=0, atol=1e-12 * scale)


def test_shift_radius_bad_input(basis, coef):
    M = np.arange(100.0).reshape(10, 10)
    for bad in ("full", -1.0, np.nan):
        with pytest.raises((ValueError, TypeError), match="shift_radius"):
            measurement_autocorrelations(M, 3, shift_radius=bad)
        with pytest.raises((ValueError, TypeError), match="shift_radius"):
            model_autocorrelations(coef, basis, 0.04, 0.1, shift_radius=bad)
        with pytest.raises((ValueError, TypeError), match="shift_radius"):
            third_order_shifts(5, bad)
