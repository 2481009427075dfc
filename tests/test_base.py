"""Tests of mtdlearn.base: behaviour shared by both estimators, the basis
protocol, and the per-fit sharing of data-derived quantities."""

import numpy as np
import pytest

import mtdlearn
from mtdlearn import FourierBesselBasis, make_target

L = 5


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


# ---------------------------------------------------------------------------
# persistence: pickle, joblib and skops round trips
def _same_predictions(a, b, X):
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.sample(30, random_state=0)[0],
                                  b.sample(30, random_state=0)[0])
    for name in ("coef_", "shift_probabilities_", "image_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
def test_persistence_pickle_and_joblib(make, problem, tmp_path):
    import joblib

    basis, coef, X, truth = problem
    est = _fit(make(basis), X[:2])
    _same_predictions(est, pickle.loads(pickle.dumps(est)), X[2])
    joblib.dump(est, tmp_path / "est.joblib")
    _same_predictions(est, joblib.load(tmp_path / "est.joblib"), X[2])


@pytest.mark.parametrize("make", ESTIMATORS + [
    lambda basis: ApproxEMEstimator(
        L, basis=basis, rotations=4, max_iter=3, dtype=np.float32,
        random_state=np.random.default_rng(0),
        initializer=mtdlearn.FixedInitializer(np.ones(basis.n_functions)))],
    ids=IDS + ["em-float32-fixed-init"])
def test_persistence_skops(make, problem):
    sio = pytest.importorskip("skops.io")
    basis, coef, X, truth = problem
    est = _fit(make(basis), X[:2])
    blob = sio.dumps(est)
    untrusted = sio.get_untrusted_types(data=blob)
    # nothing but our own classes needs trusting (numpy, builtins are skops' defaults)
    assert untrusted and all(t.startswith("mtdlearn.") for t in untrusted), untrusted
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.loads(blob)
    again = sio.loads(blob, trusted=untrusted)
    assert type(again) is type(est)
    params, loaded = est.get_params(), again.get_params()
    assert params.keys() == loaded.keys()
    assert all(repr(loaded[k]) == repr(v) for k, v in params.items() if k != "random_state")
    _same_predictions(est, again, X[2])
