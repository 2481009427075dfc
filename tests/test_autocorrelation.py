"""Tests of mtdlearn.autocorrelation: measured and model autocorrelations, the
least-squares cost, its gradient, and the fit."""

import time

import numpy as np
import pytest
from scipy.optimize import check_grad

from mtdlearn import FourierBesselBasis
from mtdlearn.autocorrelation import (autocorrelation_cost_and_grad, default_n_angles,
                                      fit_autocorrelations, image_autocorrelations,
                                      measurement_autocorrelations, model_autocorrelations)
from mtdlearn.datasets import make_measurement, make_target
from mtdlearn.metrics import relative_error

L = 5


@pytest.fixture(scope="module")
def basis():
    return FourierBesselBasis(L, n_coefficients=10)


@pytest.fixture(scope="module")
def coef(basis):
    return make_target(basis, random_state=0)


@pytest.fixture(scope="module")
def simulated(basis, coef):
    """A large simulated measurement (N=2000, SNR=5, density 0.04) and its
    autocorrelations."""
    X, truth = make_measurement(coef, basis, 2000, density=0.04, snr=5, random_state=0)
    return truth, measurement_autocorrelations(X, L)


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
# cost and gradient
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("estimate_noise", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_matches_finite_differences(basis, coef, estimate_noise, seed):
    rng = np.random.default_rng(seed)
    exact = model_autocorrelations(coef, basis, 0.04, 0.3)
    measured = (exact[0] + 0.01, exact[1] + 0.01 * rng.standard_normal((L, L)),
                exact[2] + 0.01 * rng.standard_normal((L,) * 4))
    p = basis.n_functions
    fixed_var = 0.5

    def split(z):
        var = z[p + 1] if estimate_noise else fixed_var
        return z[0], z[1:p + 1], var

    def f(z):
        g, c, v = split(z)
        return autocorrelation_cost_and_grad(g, c, v, measured, basis,
                                             estimate_noise=estimate_noise)[0]

    def grad(z):
        g, c, v = split(z)
        _, gg, gc, gv = autocorrelation_cost_and_grad(g, c, v, measured, basis,
                                                      estimate_noise=estimate_noise)
        out = [np.array([gg]), gc] + ([np.array([gv])] if estimate_noise else [])
        return np.concatenate(out)

    z = [np.array([0.02 + 0.05 * rng.uniform()]), coef + 0.5 * rng.standard_normal(p)]
    if estimate_noise:
        z.append(np.array([0.2 + rng.uniform()]))
    z = np.concatenate(z)
    g = grad(z)
    err = check_grad(f, grad, z)
    assert err / np.linalg.norm(g) < 1e-5
    if not estimate_noise:
        assert autocorrelation_cost_and_grad(z[0], z[1:], fixed_var, measured, basis)[3] == 0.0


def test_cost_zero_at_exact_moments(basis, coef):
    exact = model_autocorrelations(coef, basis, 0.04, 0.3)
    cost, gg, gc, gv = autocorrelation_cost_and_grad(0.04, coef, 0.3, exact, basis,
                                                     estimate_noise=True)
    assert cost == 0.0 and gg == 0.0 and gv == 0.0 and not np.any(gc)


def test_cost_smallest_at_truth(basis, coef, simulated):
    truth, measured = simulated
    at_truth = autocorrelation_cost_and_grad(truth.density, coef, truth.noise_variance,
                                             measured, basis)[0]
    rng = np.random.default_rng(5)
    scale = np.linalg.norm(coef) / np.sqrt(coef.size)
    for _ in range(5):
        perturbed = coef + 0.05 * scale * rng.standard_normal(coef.size)
        cost = autocorrelation_cost_and_grad(truth.density, perturbed, truth.noise_variance,
                                             measured, basis)[0]
        assert cost > at_truth
    for gamma in (0.9 * truth.density, 1.1 * truth.density):
        assert autocorrelation_cost_and_grad(gamma, coef, truth.noise_variance, measured,
                                             basis)[0] > at_truth
    for var in (0.9 * truth.noise_variance, 1.1 * truth.noise_variance):
        assert autocorrelation_cost_and_grad(truth.density, coef, var, measured,
                                             basis)[0] > at_truth


# ---------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("estimate_noise", [False, True])
def test_fit_exact_moments_from_random_start(basis, coef, estimate_noise):
    measured = model_autocorrelations(coef, basis, 0.04, 0.3)
    start = make_target(basis, random_state=6)
    t0 = time.perf_counter()
    res = fit_autocorrelations(measured, basis, 0.03, start,
                               noise_variance=None if estimate_noise else 0.3)
    assert time.perf_counter() - t0 < 5.0
    assert res.converged
    assert relative_error(coef, res.coef, basis) < 1e-3
    assert abs(res.density - 0.04) < 1e-4
    assert abs(res.noise_variance - 0.3) < 1e-4
    assert res.estimate_noise is estimate_noise
    assert res.n_iter >= 1 and res.cost >= 0.0
    if not estimate_noise:
        assert res.noise_variance == 0.3


@pytest.mark.parametrize("noise", ["fixed", "estimated"])
def test_fit_recovers_target_from_perturbed_truth(basis, coef, simulated, noise):
    truth, measured = simulated
    rng = np.random.default_rng(7)
    start = coef + 0.1 * np.linalg.norm(coef) / np.sqrt(coef.size) * rng.standard_normal(
        coef.size)
    nv = truth.noise_variance if noise == "fixed" else None
    res = fit_autocorrelations(measured, basis, 0.03, start, noise_variance=nv)
    assert res.converged
    assert relative_error(coef, res.coef, basis) < 0.1
    assert abs(res.density - truth.density) < 0.1 * truth.density
    assert abs(res.noise_variance - truth.noise_variance) < 0.05 * truth.noise_variance
    # the fit lowers the cost below that at the truth (it is the minimizer)
    at_truth = autocorrelation_cost_and_grad(truth.density, coef, truth.noise_variance,
                                             measured, basis)[0]
    assert res.cost <= at_truth


def test_fit_respects_density_bound(basis, coef):
    """Moments of a too-dense model: gamma is held at the well-separated max."""
    gmax = L**2 / (2 * L - 1) ** 2
    measured = model_autocorrelations(coef, basis, gmax, 0.3)
    measured = (measured[0] * 1.5, measured[1], measured[2])
    res = fit_autocorrelations(measured, basis, gmax, coef, noise_variance=0.3, max_iter=50)
    assert 0.0 < res.density <= gmax


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


def test_model_and_cost_bad_input(basis, coef):
    with pytest.raises(TypeError, match="basis"):
        model_autocorrelations(coef, "basis", 0.04, 0.1)
    with pytest.raises(ValueError, match="coef"):
        model_autocorrelations(coef[:-1], basis, 0.04, 0.1)
    with pytest.raises(ValueError, match="density"):
        model_autocorrelations(coef, basis, 0.5, 0.1)
    with pytest.raises(ValueError, match="noise_variance"):
        model_autocorrelations(coef, basis, 0.04, -1.0)
    with pytest.raises(ValueError, match="n_angles"):
        model_autocorrelations(coef, basis, 0.04, 0.1, n_angles=0)
    measured = model_autocorrelations(coef, basis, 0.04, 0.1)
    with pytest.raises(TypeError, match="measured"):
        autocorrelation_cost_and_grad(0.04, coef, 0.1, measured[:2], basis)
    with pytest.raises(ValueError, match=r"measured\[2\]"):
        autocorrelation_cost_and_grad(0.04, coef, 0.1,
                                      (measured[0], measured[1], measured[2][0]), basis)
    with pytest.raises(TypeError, match="estimate_noise"):
        autocorrelation_cost_and_grad(0.04, coef, 0.1, measured, basis, estimate_noise="yes")


def test_fit_bad_input(basis, coef):
    measured = model_autocorrelations(coef, basis, 0.04, 0.1)
    with pytest.raises(ValueError, match="density0"):
        fit_autocorrelations(measured, basis, 0.0, coef)
    with pytest.raises(ValueError, match="density0"):
        fit_autocorrelations(measured, basis, 0.5, coef)
    with pytest.raises(ValueError, match="coef0"):
        fit_autocorrelations(measured, basis, 0.04, np.zeros_like(coef))
    with pytest.raises(ValueError, match="coef0"):
        fit_autocorrelations(measured, basis, 0.04, coef[:3])
    with pytest.raises(ValueError, match="noise_variance0"):
        fit_autocorrelations(measured, basis, 0.04, coef, noise_variance=0.1,
                             noise_variance0=0.2)
    with pytest.raises(TypeError, match="noise_variance"):
        fit_autocorrelations(measured, basis, 0.04, coef, noise_variance="auto")
    with pytest.raises(ValueError, match="noise_variance0"):
        fit_autocorrelations(measured, basis, 0.04, coef, noise_variance0=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        fit_autocorrelations(measured, basis, 0.04, coef, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        fit_autocorrelations(measured, basis, 0.04, coef, tol=0.0)


# ---------------------------------------------------------------------------
# the estimator
import warnings  # noqa: E402

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from mtdlearn import AutocorrelationEstimator, FixedInitializer  # noqa: E402
from mtdlearn.operators import density_to_shift_probabilities  # noqa: E402


def test_estimator_fitted_attributes(basis, coef):
    X, truth = make_measurement(coef, basis, 400, snr=5, random_state=3)
    ac = AutocorrelationEstimator(5, basis=basis, n_init=2, random_state=0).fit(X)
    a1, a2, a3 = ac.autocorrelations_
    assert a2.shape == (5, 5) and a3.shape == (5, 5, 5, 5)
    np.testing.assert_allclose(a2, measurement_autocorrelations(X, 5)[1])
    L = 5
    # rho derived from gamma: gamma / L^2 per non-empty shift
    np.testing.assert_allclose(ac.shift_probabilities_,
                               density_to_shift_probabilities(ac.density_, L))
    assert ac.shift_probabilities_[0, 0] == pytest.approx(ac.density_ / L**2)
    assert ac.cost_ >= 0 and ac.n_iter_ > 0 and ac.converged_
    assert abs(ac.density_ - truth.density) < 0.02
    assert ac.image_.shape == (L, L) and ac.n_patches_ == (400 // L) ** 2


def test_estimator_fixed_initializer_density_mapping(basis, coef):
    """FixedInitializer's rho gives gamma = (L^2/(2L-1)^2) sum of rho over non-empty
    shifts: with max_iter=0 the estimator returns exactly that start."""
    X, truth = make_measurement(coef, basis, 200, snr=5, random_state=0)
    rho = density_to_shift_probabilities(0.025, 5)
    ac = AutocorrelationEstimator(5, basis=basis, max_iter=0, noise_variance=0.5,
                                  initializer=FixedInitializer(coef, rho)).fit(X)
    assert ac.density_ == pytest.approx(0.025, rel=1e-12)
    np.testing.assert_array_equal(ac.coef_, coef)
    assert ac.n_iter_ == 0 and ac.noise_variance_ == 0.5


def test_estimator_error_decreases_with_size(basis, coef):
    errors = []
    for size in (300, 1200):
        errs = [relative_error(coef, AutocorrelationEstimator(
            5, basis=basis, n_init=3, random_state=seed).fit(
                make_measurement(coef, basis, size, snr=5, random_state=seed)[0]).coef_, basis)
            for seed in range(3)]
        errors.append(np.mean(errs))
    # 16x the pixels; the paper's Fig. 3 shows the -1/2 slope only at large N,
    # so ask only for a clear decrease
    assert errors[1] < errors[0]


def test_estimator_reproducible_and_n_jobs_independent(basis, coef):
    X, _ = make_measurement(coef, basis, 300, snr=5, random_state=0)
    a = AutocorrelationEstimator(5, basis=basis, n_init=3, random_state=4).fit(X)
    b = AutocorrelationEstimator(5, basis=basis, n_init=3, random_state=4, n_jobs=2).fit(X)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-10, atol=1e-12)
    assert a.cost_ == pytest.approx(b.cost_, rel=1e-10)
    c = clone(a).fit(X)
    np.testing.assert_array_equal(a.coef_, c.coef_)


def test_estimator_n_init_picks_lowest_cost(basis, coef):
    X, _ = make_measurement(coef, basis, 300, snr=5, random_state=1)
    one = AutocorrelationEstimator(5, basis=basis, n_init=1, random_state=2).fit(X)
    five = AutocorrelationEstimator(5, basis=basis, n_init=5, random_state=2).fit(X)
    assert five.cost_ <= one.cost_ + 1e-15


def test_estimator_convergence_warning(basis, coef):
    X, _ = make_measurement(coef, basis, 200, snr=5, random_state=1)
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=2"):
        AutocorrelationEstimator(5, basis=basis, max_iter=2, random_state=0).fit(X)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(n_init=0), ValueError, "n_init"),
    (dict(noise_variance=-1.0), ValueError, "noise_variance"),
    (dict(max_iter=-1), ValueError, "max_iter"),
    (dict(tol=-1.0), ValueError, "tol"),
    (dict(basis="fb"), TypeError, "basis"),
])
def test_estimator_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        AutocorrelationEstimator(5, **kwargs).fit(np.zeros((20, 20)))


def test_estimator_bad_measurements():
    with pytest.raises(ValueError, match="smaller than one"):
        AutocorrelationEstimator(5).fit(np.zeros((4, 40)))
    with pytest.raises(ValueError, match="finite"):
        AutocorrelationEstimator(5).fit(np.full((20, 20), np.inf))
