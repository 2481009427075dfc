"""Tests of mtdlearn.base: behaviour shared by both estimators, the basis
protocol, and the per-fit sharing of data-derived quantities."""

import numpy as np
import pytest

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


# ---------------------------------------------------------------------------
# the basis protocol
class DelegatingBasis:
    """Not a FourierBesselBasis: forwards the basis protocol to one."""

    def __init__(self, inner):
        self.inner = inner

    def get_params(self, deep=True):
        return {"inner": self.inner}

    def set_params(self, **params):
        self.inner = params.get("inner", self.inner)
        return self

    image_size = property(lambda self: self.inner.image_size)
    n_functions = property(lambda self: self.inner.n_functions)
    frequencies = property(lambda self: self.inner.frequencies)
    matrix = property(lambda self: self.inner.matrix)

    def evaluate(self, coef):
        return self.inner.evaluate(coef)

    def expand(self, images):
        return self.inner.expand(images)

    def rotate(self, coef, angles):
        return self.inner.rotate(coef, angles)

    def rotation_matrices(self, angles):
        return self.inner.rotation_matrices(angles)


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
def test_any_object_with_the_basis_protocol_gives_identical_fits(make, problem):
    basis, coef, X, truth = problem
    plain = _fit(make(basis), X)
    wrapped_basis = DelegatingBasis(FourierBesselBasis(L, n_coefficients=10))
    wrapped = _fit(make(wrapped_basis), X)
    assert isinstance(wrapped.basis_, DelegatingBasis)
    assert wrapped.basis_ is not wrapped_basis               # cloned, never the user's object
    assert wrapped.basis_.inner is not wrapped_basis.inner
    for attr in ("coef_", "shift_probabilities_", "noise_variance_", "image_"):
        np.testing.assert_array_equal(getattr(wrapped, attr), getattr(plain, attr))
    np.testing.assert_array_equal(wrapped.score_samples(X), plain.score_samples(X))
    assert wrapped.predict(X).tolist() == plain.predict(X).tolist()


def test_basis_protocol_is_checked():
    class Incomplete:
        image_size = 5

        def get_params(self, deep=True):
            return {}

    for make in ESTIMATORS:
        est = make(None).set_params(basis=Incomplete())
        with pytest.raises(TypeError, match="basis must follow the basis protocol.*evaluate"):
            est.fit(np.zeros((20, 20)))


# ---------------------------------------------------------------------------
# what the data give is computed once per fit
def test_data_quantities_computed_once_per_fit(monkeypatch, problem):
    import mtdlearn.autocorrelation
    import mtdlearn.initializers
    from mtdlearn import AutocorrelationInitializer

    basis, coef, X, truth = problem
    calls = {"stats": 0, "moments": 0}
    stats, moments = (mtdlearn.initializers.data_statistics,
                      mtdlearn.autocorrelation.measurement_autocorrelations)

    def counted_stats(*args, **kwargs):
        calls["stats"] += 1
        return stats(*args, **kwargs)

    def counted_moments(*args, **kwargs):
        calls["moments"] += 1
        return moments(*args, **kwargs)

    monkeypatch.setattr(mtdlearn.initializers, "data_statistics", counted_stats)
    monkeypatch.setattr(mtdlearn.autocorrelation, "measurement_autocorrelations",
                        counted_moments)
    _fit(ApproxEMEstimator(L, basis=basis, rotations=2, max_iter=1, n_init=3,
                           random_state=0), X)
    assert calls == {"stats": 1, "moments": 0}
    # the EM's autocorrelation start: the measured moments once for all EM starts
    # (each start runs an autocorrelation fit with its own random starts)
    _fit(ApproxEMEstimator(L, basis=basis, rotations=2, max_iter=1, n_init=3, random_state=0,
                           initializer=AutocorrelationInitializer(n_init=2)), X)
    assert calls["moments"] == 1
