"""Tests of mtdlearn.autocorrelation.fit: the least-squares cost, its gradient, and the fit."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import check_grad

from mtdlearn.data.simulate import make_target
from mtdlearn.metrics import relative_error
from mtdlearn.autocorrelation.fit import (autocorrelation_cost_and_grad, fit_autocorrelations,
                                          mixture_cost_and_grad)
from mtdlearn.autocorrelation.model_moments import model_autocorrelations
from mtdlearn.autocorrelation.moments import third_order_shifts

L = 5


# ---------------------------------------------------------------------------
# cost and gradient
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shift_radius", [None, 2.5])
@pytest.mark.parametrize("estimate_noise", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_matches_finite_differences(basis, coef, estimate_noise, seed, shift_radius):
    """Also with a subset of shifts, where ac2's gradient goes by FFT and
    ac3's through the kept shifts' windows only."""
    rng = np.random.default_rng(seed)
    exact = model_autocorrelations(coef, basis, 0.04, 0.3, shift_radius=shift_radius)
    measured = (exact[0] + 0.01, exact[1] + 0.01 * rng.standard_normal((L, L)),
                exact[2] + 0.01 * rng.standard_normal(exact[2].shape))
    p = basis.n_functions
    fixed_var = 0.5

    def split(z):
        var = z[p + 1] if estimate_noise else fixed_var
        return z[0], z[1:p + 1], var

    def f(z):
        g, c, v = split(z)
        return autocorrelation_cost_and_grad(g, c, v, measured, basis,
                                             estimate_noise=estimate_noise,
                                             shift_radius=shift_radius)[0]

    def grad(z):
        g, c, v = split(z)
        _, gg, gc, gv = autocorrelation_cost_and_grad(g, c, v, measured, basis,
                                                      estimate_noise=estimate_noise,
                                                      shift_radius=shift_radius)
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
        assert autocorrelation_cost_and_grad(z[0], z[1:], fixed_var, measured, basis,
                                             shift_radius=shift_radius)[3] == 0.0


@pytest.mark.parametrize("shift_radius", [None, 2.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_mixture_gradient_matches_finite_differences(basis, shift_radius, seed):
    """The mixture's gradient against central differences: density, every
    coefficient of every kind, sigma**2, the abundances along the simplex
    (w + t (e_i - e_j)), and through the fit's softmax of the abundances."""
    rng = np.random.default_rng(seed)
    coefs = np.stack([make_target(basis, random_state=s) for s in range(3)])
    weights = rng.dirichlet(np.ones(3))
    exact = model_autocorrelations(coefs, basis, 0.06, 0.3, weights=weights,
                                   shift_radius=shift_radius)
    measured = (exact[0] + 0.01, exact[1] + 0.01 * rng.standard_normal((L, L)),
                exact[2] + 0.01 * rng.standard_normal(exact[2].shape))
    gamma, var = 0.04 + 0.04 * rng.uniform(), 0.2 + rng.uniform()
    x = coefs + 0.5 * rng.standard_normal(coefs.shape)
    w = rng.dirichlet(np.ones(3))

    def f(g, c, wt, v):
        return mixture_cost_and_grad(g, c, wt, v, measured, basis, estimate_noise=True,
                                     shift_radius=shift_radius)[0]

    cost, gg, gc, gw, gv = mixture_cost_and_grad(gamma, x, w, var, measured, basis,
                                                 estimate_noise=True, shift_radius=shift_radius)
    assert cost == f(gamma, x, w, var) and gc.shape == x.shape and gw.shape == (3,)
    h = 1e-6
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        num[i] = (f(gamma, x + e, w, var) - f(gamma, x - e, w, var)) / (2 * h)
    assert np.max(np.abs(num - gc)) < 1e-6 * np.max(np.abs(gc))
    hg = 1e-7
    assert (f(gamma + hg, x, w, var) - f(gamma - hg, x, w, var)) / (2 * hg) == \
        pytest.approx(gg, rel=1e-6)
    assert (f(gamma, x, w, var + h) - f(gamma, x, w, var - h)) / (2 * h) == \
        pytest.approx(gv, rel=1e-6)
    hw = 1e-5
    for i, j in ((0, 1), (1, 2), (0, 2)):
        d = np.zeros(3)
        d[i], d[j] = hw, -hw
        assert (f(gamma, x, w + d, var) - f(gamma, x, w - d, var)) / (2 * hw) == \
            pytest.approx(gw[i] - gw[j], rel=1e-5, abs=1e-9 * np.max(np.abs(gw)))

    def softmax(u):
        e = np.exp(u - u.max())
        return e / e.sum()

    u = np.log(w)
    grad_u = w * (gw - w @ gw)  # the chain rule fit_autocorrelations uses
    err = check_grad(lambda v: f(gamma, x, softmax(v), var), lambda v: grad_u, u)
    assert err < 1e-5 * np.linalg.norm(grad_u)
    # no noise gradient when sigma**2 is fixed
    assert mixture_cost_and_grad(gamma, x, w, var, measured, basis,
                                 shift_radius=shift_radius)[4] == 0.0


def test_mixture_of_one_kind_is_the_one_image_cost(basis, coef):
    """A (1, p) coef with weight 1 gives the one-image cost and gradient; its
    abundance's partial derivative is gamma times d cost / d gamma / w."""
    exact = model_autocorrelations(coef, basis, 0.04, 0.3)
    measured = (exact[0] * 1.1, exact[1] * 0.9, exact[2] + 0.01)
    one = autocorrelation_cost_and_grad(0.05, coef, 0.4, measured, basis, estimate_noise=True)
    mix = mixture_cost_and_grad(0.05, coef[None], [1.0], 0.4, measured, basis,
                                estimate_noise=True)
    assert mix[0] == pytest.approx(one[0], rel=1e-13)
    assert mix[1] == pytest.approx(one[1], rel=1e-12)
    np.testing.assert_allclose(mix[2][0], one[2], rtol=1e-12, atol=1e-15 * np.abs(one[2]).max())
    assert mix[3][0] == pytest.approx(0.05 * one[1], rel=1e-12)
    assert mix[4] == pytest.approx(one[3], rel=1e-12)


def test_fit_mixture_from_exact_moments(basis):
    """From the exact moments of two kinds the joint fit (images and abundances
    through a softmax) reaches the truth from a random start, given a tight
    tolerance: the cost's valley along the abundances is long and flat."""
    coefs = np.stack([make_target(basis, random_state=0), make_target(basis, random_state=1)])
    measured = model_autocorrelations(coefs, basis, 0.08, 0.3, weights=[0.4, 0.6])
    rng = np.random.default_rng(1)
    coef0 = 3 * np.stack([basis.expand(rng.uniform(0, 1, (L, L))) for _ in range(2)])
    res = fit_autocorrelations(measured, basis, 0.05, coef0, max_iter=3000, tol=1e-22)
    assert res.coef.shape == (2, basis.n_functions) and res.weights.shape == (2,)
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-15) and np.all(res.weights > 0)
    order = np.argsort(res.weights)  # the kinds' labels are interchangeable
    np.testing.assert_allclose(res.weights[order], [0.4, 0.6], atol=1e-6)
    for true, est in zip(coefs, res.coef[order]):
        assert relative_error(true, est, basis) < 1e-5
    assert res.density == pytest.approx(0.08, rel=1e-6)
    assert res.noise_variance == pytest.approx(0.3, rel=1e-6)


def test_fit_mixture_bad_input(basis, coef):
    coefs = np.stack([coef, -coef])
    measured = model_autocorrelations(coefs, basis, 0.04, 0.1)
    with pytest.raises(ValueError, match="weights0"):
        fit_autocorrelations(measured, basis, 0.04, coefs, weights0=[1.0, 0.0])
    with pytest.raises(ValueError, match="weights0"):
        fit_autocorrelations(measured, basis, 0.04, coefs, weights0=[0.3, 0.3, 0.4])
    with pytest.raises(ValueError, match="weights0"):
        fit_autocorrelations(measured, basis, 0.04, coef, weights0=[1.0])
    with pytest.raises(ValueError, match="coef0"):
        fit_autocorrelations(measured, basis, 0.04, np.zeros_like(coefs))
    with pytest.raises(ValueError, match="coef0 must have shape"):
        fit_autocorrelations(measured, basis, 0.04, coefs[:, :3])
    with pytest.raises(ValueError, match="n_components"):
        mixture_cost_and_grad(0.04, coef, None, 0.1, measured, basis)
    with pytest.raises(ValueError, match="weights"):
        mixture_cost_and_grad(0.04, coefs, [0.2, 0.2], 0.1, measured, basis)


@settings(max_examples=20)
@given(radius=st.floats(0, 6), seed=st.integers(0, 2**16))
def test_subset_cost_is_the_full_cost_on_the_kept_pairs(basis, radius, seed):
    """The subset cost is the full one with R3 restricted to the kept pairs
    and weighted by 1 / (2 n**2): checked against the full model's residuals."""
    rng = np.random.default_rng(seed)
    coef = rng.standard_normal(basis.n_functions)
    full = model_autocorrelations(coef, basis, 0.04, 0.3)
    measured = (full[0] + 0.01, full[1] + 0.01 * rng.standard_normal((L, L)),
                full[2] + 0.01 * rng.standard_normal((L,) * 4))
    shifts = third_order_shifts(L, radius)
    r, c = shifts[:, 0], shifts[:, 1]
    sub = measured[2][r[:, None], c[:, None], r[None], c[None]]
    cost = autocorrelation_cost_and_grad(0.05, coef, 0.2, (measured[0], measured[1], sub),
                                         basis, shift_radius=radius)[0]
    model = model_autocorrelations(coef, basis, 0.05, 0.2)
    R3 = (model[2] - measured[2])[r[:, None], c[:, None], r[None], c[None]]
    expected = (0.5 * (model[0] - measured[0]) ** 2
                + np.sum((model[1] - measured[1]) ** 2) / (2 * L**2)
                + np.sum(R3**2) / (2 * len(shifts) ** 2))
    assert cost == pytest.approx(expected, rel=1e-10)


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


def test_fit_subset_exact_moments_from_random_start(basis, coef):
    """A quarter disk of radius 3.5 (13 of the 25 shifts, 169 of the 625
    pairs) still determines the 10 coefficients from this start (with radius
    2.5, 8 shifts, this start ends in another local minimum)."""
    measured = model_autocorrelations(coef, basis, 0.04, 0.3, shift_radius=3.5)
    res = fit_autocorrelations(measured, basis, 0.03, make_target(basis, random_state=6),
                               shift_radius=3.5)
    assert res.converged
    assert relative_error(coef, res.coef, basis) < 1e-3
    assert abs(res.density - 0.04) < 1e-4 and abs(res.noise_variance - 0.3) < 1e-4
    with pytest.raises(ValueError, match=r"measured\[2\].*third_order_shifts"):
        fit_autocorrelations(measured, basis, 0.03, coef, shift_radius=1.5)
    with pytest.raises(ValueError, match=r"measured\[2\].*\(5, 5, 5, 5\)"):
        fit_autocorrelations(measured, basis, 0.03, coef)


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
    with pytest.raises(ValueError, match="n_jobs"):
        fit_autocorrelations(measured, basis, 0.04, coef, n_jobs=0)
    with pytest.raises(TypeError, match="n_jobs"):
        fit_autocorrelations(measured, basis, 0.04, coef, n_jobs=1.5)


# ---------------------------------------------------------------------------
# the cost on a subset of shifts, by chunks of angles (autocorrelation._chunked)
# ---------------------------------------------------------------------------
@pytest.fixture
def chunked_case(monkeypatch):
    """L = 9 (all its functions), radius 3.5, and chunks of 4 angles."""
    from mtdlearn import FourierBesselBasis
    from mtdlearn.autocorrelation import _chunked
    from mtdlearn.autocorrelation.model_moments import default_n_angles
    from mtdlearn.autocorrelation.moments import _shift_subset

    big = FourierBesselBasis(9)
    sub = _shift_subset(9, 3.5)
    K, n = default_n_angles(big), len(sub[0])
    monkeypatch.setattr(_chunked, "WINDOW_BYTES", 8 * n * 81 * 4)
    assert len(_chunked.chunk_ranges(K, n, 81)) > 2
    rng = np.random.default_rng(0)
    coef = rng.standard_normal(big.n_functions)
    measured = model_autocorrelations(coef + 0.1 * rng.standard_normal(coef.size), big, 0.05,
                                      0.3, shift_radius=3.5)
    return big, sub, coef, measured


@pytest.mark.parametrize("table", [False, True])
def test_chunked_cost_is_the_one_piece_cost(chunked_case, table):
    """By chunks of angles, through the rotations of the coefficients or the
    K x L**2 x p table, the cost and its gradient are the one-piece
    formulas' (windows of all angles at once), to rounding."""
    from mtdlearn.autocorrelation._chunked import RotatedImages
    from mtdlearn.autocorrelation.fit import (_cost_and_grad_flat, _image_grads,
                                              _residual_grads)
    from mtdlearn.autocorrelation.model_moments import _model_flat, _rotated_evaluation

    big, sub, coef, (m1, m2, m3) = chunked_case
    m2 = m2.reshape(81)
    BR = _rotated_evaluation(big, 3 * int(big.frequencies.max()) + 1)
    K = BR.shape[0]
    (a1, a2, a3), (F, W, E1, E2, E3) = _model_flat(BR, coef, 0.04, 0.2, 9, sub)
    cost, G1, G2, G3, G3D = _residual_grads(a1, a2, a3, 0.2, m1, m2, m3, 81)
    grad = 0.04 / (81 * K) * np.einsum("kx,kxp->p", _image_grads(F, W, G1, G2, G3, 9, sub), BR)
    rot = BR if table else RotatedImages(big, K)
    got = _cost_and_grad_flat(rot, 0.04, coef, 0.2, m1, m2, m3, 9, sub)
    assert got[0] == pytest.approx(cost, rel=1e-12)
    assert got[1] == pytest.approx((G1 * E1 + G2 @ E2 + np.vdot(G3, E3)) / 81, rel=1e-10)
    np.testing.assert_allclose(got[2], grad, rtol=0, atol=1e-12 * np.abs(grad).max())
    assert got[3] == pytest.approx(G2[0] + a1 * G3D, rel=1e-12)


def test_shift_windows_adjoint_identity():
    """<windows(F), Q> = <F, adjoint(Q)>, the windows being F shifted by each
    kept shift (zero outside)."""
    from mtdlearn.autocorrelation._chunked import (shift_table, shift_windows,
                                                   shift_windows_adjoint)
    from mtdlearn.autocorrelation.moments import _shift_subset

    rng = np.random.default_rng(1)
    shifts = shift_table(_shift_subset(7, 4.0), 7)
    F, Q = rng.standard_normal((3, 49)), rng.standard_normal((len(shifts), 3 * 49))
    W = shift_windows(F, shifts, 7)
    assert W.shape == Q.shape
    assert np.vdot(W, Q) == pytest.approx(np.vdot(F, shift_windows_adjoint(Q, shifts, 7)),
                                          rel=1e-12)
    window = W[shifts.index((2, 1))].reshape(3, 7, 7)[1]  # image 1 shifted by (2, 1)
    assert window[0, 0] == F[1].reshape(7, 7)[2, 1]
    assert window[5, 0] == 0.0          # (5 + 2, 0 + 1) is outside


def test_fit_on_a_subset_does_not_depend_on_n_jobs(chunked_case):
    big, sub, coef, measured = chunked_case
    start = coef + 0.3 * np.random.default_rng(2).standard_normal(coef.size)
    fits = [fit_autocorrelations(measured, big, 0.04, start, max_iter=30, shift_radius=3.5,
                                 n_jobs=n_jobs) for n_jobs in (None, 2)]
    np.testing.assert_array_equal(fits[0].coef, fits[1].coef)
    assert (fits[0].cost, fits[0].n_iter, fits[0].density, fits[0].noise_variance) == \
        (fits[1].cost, fits[1].n_iter, fits[1].density, fits[1].noise_variance)
