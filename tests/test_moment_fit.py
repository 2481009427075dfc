"""Tests of mtdlearn.moment_fit: the least-squares cost, its gradient, and the fit."""

import time

import numpy as np
import pytest
from scipy.optimize import check_grad

from mtdlearn.datasets import make_target
from mtdlearn.metrics import relative_error
from mtdlearn.moment_fit import autocorrelation_cost_and_grad, fit_autocorrelations
from mtdlearn.moments import model_autocorrelations

L = 5


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
