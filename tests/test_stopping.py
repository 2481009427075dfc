"""Tests of mtdlearn.em._stopping: the statistical stopping rule of ``tol="auto"``."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtdlearn import (ApproxEMEstimator, FixedInitializer, FourierBesselBasis, make_measurement,
                      make_target, relative_error)
from mtdlearn.em import _stopping
from mtdlearn.em._state import _Run


def _linear_map(lam, seed, n=9):
    rng = np.random.default_rng(seed)
    x_star = rng.normal(size=n)
    return x_star, rng.normal(size=n), (lambda x: x_star + lam * (x - x_star))


def _unit_run():
    run = _Run(np.dtype(np.float64))
    run.normal = ([np.eye(1)], None, 1.0)   # a standard error of 1
    return run


@settings(max_examples=50, deadline=None)
@given(lam=st.floats(0.0, 0.999), seed=st.integers(0, 2**32 - 1))
def test_squarem_projection_is_the_distance_of_a_linear_contraction(lam, seed):
    # a map that contracts by lam towards x*: the two EM steps of a cycle
    # give lam, and step / (1 - lam) is the coefficients' distance to x*
    x_star, x0, F = _linear_map(lam, seed)
    p = 6   # the coefficients are the first p coordinates
    x1 = F(x0)
    x2 = F(x1)
    run = _unit_run()
    _stopping.record_squarem(run, x1 - x0, x2 - 2 * x1 + x0, p)
    assert run.remaining == np.inf   # one rate is not enough
    _stopping.record_squarem(run, x1 - x0, x2 - 2 * x1 + x0, p)
    assert run.remaining == pytest.approx(np.linalg.norm((x_star - x0)[:p]), rel=1e-9)


@settings(max_examples=50, deadline=None)
@given(lam=st.floats(0.01, 0.999), seed=st.integers(0, 2**32 - 1))
def test_plain_projection_is_the_distance_of_a_linear_contraction(lam, seed):
    x_star, x, F = _linear_map(lam, seed)
    run = _unit_run()
    path = [x]
    for _ in range(3):
        path.append(F(path[-1]))
    for point in path:
        _stopping.record_plain(run, point)
    # the last step, from path[2], projects to x*
    assert run.remaining == pytest.approx(np.linalg.norm(x_star - path[2]), rel=1e-6)


def test_a_step_that_does_not_shrink_counts_as_the_largest_rate():
    run = _unit_run()
    for _ in range(2):
        _stopping.record_plain(run, np.zeros(3))
    for x in (1.0, 2.0, 3.0):   # steps of 1, not shrinking: drift
        _stopping.record_plain(run, np.full(3, x))
    assert run.remaining == pytest.approx(np.sqrt(3) / (1 - _stopping._MAX_RATE))


@settings(max_examples=5, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), snr=st.sampled_from([2.0, 5.0, 20.0]))
def test_auto_stops_only_when_what_is_left_is_small_against_the_error(seed, snr):
    # known truth: the fit with the default rule, continued to tol 1e-10,
    # moves by less than half of the converged estimate's own error.  Both
    # distances are taken up to a rotation of the image: on a grid of K
    # rotations, turning the whole image is a nearly flat direction of the
    # likelihood, along which the EM creeps without changing the error
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=seed)
    X, truth = make_measurement(coef, basis, 240, density=0.04, snr=snr, random_state=seed)
    kw = dict(basis=basis, rotations=8, noise_variance=truth.noise_variance,
              random_state=seed)
    em = ApproxEMEstimator(5, **kw).fit(X)
    assert em.converged_ and em.remaining_change_ <= _stopping._SHARE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # tol 1e-10 may take all of max_iter
        limit = ApproxEMEstimator(5, initializer=FixedInitializer(em.coef_,
                                                                  em.shift_probabilities_),
                                  tol=1e-10, max_iter=500, dtype=np.float64, **kw).fit(X)
    left = relative_error(limit.coef_, em.coef_, basis) * np.linalg.norm(limit.coef_)
    error = relative_error(coef, limit.coef_, basis) * np.linalg.norm(coef)
    assert left <= 0.5 * error


@pytest.mark.parametrize("acceleration", ["squarem", None])
def test_auto_reports_what_is_left_and_a_float_keeps_the_gain_rule(acceleration):
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=1)
    X, truth = make_measurement(coef, basis, 300, snr=5, random_state=1)
    kw = dict(basis=basis, rotations=8, noise_variance=truth.noise_variance, random_state=1,
              acceleration=acceleration, max_iter=500)
    em = ApproxEMEstimator(5, **kw).fit(X)
    assert em.converged_ and em.remaining_change_ <= _stopping._SHARE
    assert em.tol_ == 1e-6   # the phases' gain per patch, 4e-8 L**2
    gain = ApproxEMEstimator(5, tol=1e-6, **kw).fit(X)
    gains = np.diff(gain.log_likelihood_history_)
    assert gain.converged_ and gains[-1] < 1e-6 and gain.remaining_change_ == np.inf


def test_verbose_names_the_value_each_rule_tests(capsys):
    # tol="auto" tests the projected change still to come against its
    # standard error, not a gain of the log-likelihood; the line says which
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=1)
    X, truth = make_measurement(coef, basis, 200, snr=5, random_state=1)
    kw = dict(basis=basis, rotations=8, random_state=1, verbose=1, refinement=None)
    ApproxEMEstimator(5, **kw).fit(X)
    auto = capsys.readouterr().out
    assert "remaining change n/a (not measured yet)" in auto
    assert re.search(r"remaining change \d\.\d{3}e[+-]\d\d SE", auto) and " gain " not in auto
    ApproxEMEstimator(5, tol=1e-4, **kw).fit(X)
    gain = capsys.readouterr().out
    assert " gain " in gain and "remaining change" not in gain


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_components=st.sampled_from([1, 2]))
def test_rotation_tangent_is_the_derivative_of_rotate_and_is_projected_out(seed, n_components):
    # the tangent is d/dphi rotate(coef, phi) at 0 (normalized): orthogonal
    # to coef (a rotation keeps the norm) and, to second order, the step of
    # a small rotation; projecting it out leaves only that second order
    basis = FourierBesselBasis(9)
    rng = np.random.default_rng(seed)
    coef = rng.normal(size=(n_components, basis.n_functions))
    t = _stopping.rotation_tangents(basis, coef)
    assert t.shape == coef.shape
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.sum(t * coef, axis=1), 0.0, atol=1e-9)
    delta = 1e-4
    step = np.ravel(basis.rotate(coef, delta) - coef)
    nu = np.abs(basis.frequencies).max()
    # what is left is the rotation's second order, (nu delta)**2 / 2 of coef
    left = np.linalg.norm(_stopping.without_rotation(step, t))
    assert left <= (nu * delta) ** 2 * np.linalg.norm(coef)
    assert left <= 1e-2 * np.linalg.norm(step)
    # a change orthogonal to every tangent is kept as it is; projecting twice is projecting once
    other = rng.normal(size=coef.shape)
    other -= np.sum(other * t, axis=1, keepdims=True) * t
    np.testing.assert_allclose(_stopping.without_rotation(np.ravel(other), t), np.ravel(other),
                               atol=1e-12)
    once = _stopping.without_rotation(np.ravel(rng.normal(size=coef.shape)), t)
    np.testing.assert_allclose(_stopping.without_rotation(once, t), once, atol=1e-12)


def test_an_image_without_angular_dependence_has_no_rotation_to_project_out():
    basis = FourierBesselBasis(9)
    coef = np.where(basis.frequencies == 0, 1.0, 0.0)
    assert np.all(_stopping.rotation_tangents(basis, coef) == 0.0)
    assert np.all(_stopping.rotation_tangents(basis, np.zeros(basis.n_functions)) == 0.0)


def test_a_rotating_image_is_not_a_change_still_to_come():
    # steps that only turn the image (the EM creeping along the grid's
    # nearly flat rotation, at a rate of 1) leave almost nothing to come:
    # the rotation's second order; without the basis (a float tol's run)
    # they are measured whole
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=0)
    r = np.ravel(basis.rotate(coef, 1e-3) - coef)
    remaining = []
    for b in (basis, None):
        run = _unit_run()
        run.basis = b
        for _ in range(2):   # the second step as large as the first: a rate of 1
            _stopping.record_squarem(run, r, np.zeros_like(r), basis.n_functions, coef)
        remaining.append(run.remaining)
    assert remaining[1] == pytest.approx(np.linalg.norm(r) / (1 - _stopping._MAX_RATE))
    assert remaining[0] < 1e-2 * remaining[1]
