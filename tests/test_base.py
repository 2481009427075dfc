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


# ---------------------------------------------------------------------------
# behaviour shared by both estimators
import pickle  # noqa: E402
import warnings  # noqa: E402

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402

from mtdlearn import (ApproxEMEstimator, AutocorrelationEstimator,  # noqa: E402
                      make_measurement)

ESTIMATORS = [
    lambda basis: ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=10, random_state=0),
    lambda basis: AutocorrelationEstimator(L, basis=basis, rotations=4, n_init=2,
                                           random_state=0),
]
IDS = ["em", "autocorrelation"]


@pytest.fixture(scope="module")
def problem():
    basis = FourierBesselBasis(L, n_coefficients=10)
    coef = make_target(basis, random_state=0)
    X, truth = make_measurement(coef, basis, 100, snr=5, n_measurements=4, random_state=0)
    return basis, coef, X, truth


def _fit(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X)


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
def test_shared_fitted_model(make, problem):
    basis, coef, X, truth = problem
    X0 = X.copy()
    est = make(basis)
    assert _fit(est, X) is est
    np.testing.assert_array_equal(X, X0)                  # input untouched
    assert est.coef_.shape == (basis.n_functions,)
    assert est.image_.shape == (L, L)
    np.testing.assert_allclose(est.image_, basis.evaluate(est.coef_))
    rho = est.shift_probabilities_
    assert rho.shape == (2 * L, 2 * L) and np.all(rho >= 0) and np.isclose(rho.sum(), 1)
    from mtdlearn.operators import shift_probabilities_to_density
    assert np.isclose(est.density_, shift_probabilities_to_density(rho))
    assert est.noise_variance_ > 0 and est.n_patches_ == 4 * (100 // L) ** 2
    assert isinstance(est.converged_, bool) and est.n_iter_ >= 0
    s = est.score_samples(X)
    assert s.shape == (est.n_patches_,) and np.all(np.isfinite(s))
    assert np.isclose(est.score(X), s.mean())
    det = est.predict(X)
    assert det.dtype.names == ("measurement", "row", "col", "angle", "probability")
    assert np.all((det["row"] > -L) & (det["row"] < 100) & (det["col"] > -L))
    p = est.predict_proba(X)
    assert p.shape == s.shape and np.all((p >= 0) & (p <= 1 + 1e-12))
    Y, t = est.sample(60, n_measurements=2, random_state=1)
    assert Y.shape == (2, 60, 60) and np.isclose(t.noise_variance, est.noise_variance_)


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
def test_shared_sklearn_protocol(make, problem):
    basis, coef, X, truth = problem
    est = make(basis)
    c = clone(est)
    assert c.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    a = _fit(c, X)
    b = _fit(clone(est), X)
    np.testing.assert_array_equal(a.coef_, b.coef_)       # same random_state, same result
    again = pickle.loads(pickle.dumps(a))
    assert np.isclose(again.score(X[:1]), a.score(X[:1]))
    grid = GridSearchCV(clone(est), {"basis__n_coefficients": [4, 10]}, cv=KFold(2))
    _fit(grid, X)
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    assert basis.n_coefficients == 10                     # the user's basis untouched


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
def test_shared_unfitted_and_bad_input(make, problem):
    basis = problem[0]
    est = make(basis)
    with pytest.raises(NotFittedError):
        est.score(np.zeros((20, 20)))
    with pytest.raises(NotFittedError):
        est.sample(20)
    with pytest.raises(ValueError, match="smaller than one"):
        est.fit(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="finite"):
        est.fit(np.full((20, 20), np.nan))
    with pytest.raises(TypeError, match="X must be"):
        est.fit(42)
    _fit(est, problem[2])
    with pytest.raises(ValueError, match="smaller than one"):
        est.score(np.zeros((3, 3)))


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
def test_constant_measurement_rejected_up_front(make, problem):
    """An all-zero or constant measurement used to reach the EM and fail
    there with a FloatingPointError; it is rejected by the validation."""
    basis, _, X, _ = problem
    est = make(basis)
    with pytest.raises(ValueError, match=r"^X is constant \(all values equal 0\.0\): it holds "
                                         r"no signal or noise to fit$"):
        est.fit(np.zeros((40, 40)))
    stack = X[:3].copy()
    stack[1] = 4.0
    with pytest.raises(ValueError, match=r"^X\[1\] is constant \(all values equal 4\.0\)"):
        est.fit(stack)
    _fit(est, X)
    with pytest.raises(ValueError, match=r"^X is constant"):
        est.score(np.full((20, 20), -1.0))
