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
    from mtdlearn.imaging.shifts import shift_probabilities_to_density
    assert np.isclose(est.density_, shift_probabilities_to_density(rho))
    assert est.noise_variance_ > 0 and est.n_patches_ == 4 * (100 // L) ** 2
    assert isinstance(est.converged_, bool) and est.n_iter_ >= 0
    s = est.score_samples(X)
    assert s.shape == (est.n_patches_,) and np.all(np.isfinite(s))
    assert np.isclose(est.score(X), s.mean())
    det = est.predict(X)
    assert det.dtype.names == ("measurement", "row", "col", "angle", "probability")
    assert np.all((det["row"] > -L) & (det["row"] < 100) & (det["col"] > -L))
    groups = list(est.predict_per_measurement(X))   # the same rows, one measurement at a time
    assert [i for i, _ in groups] == list(range(len(X)))
    assert all(np.all(g["measurement"] == i) for i, g in groups)
    np.testing.assert_array_equal(np.concatenate([g for _, g in groups]), det)
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


# ---------------------------------------------------------------------------
# extremes: no NaN or inf, and a warning or a clear message where the data
# cannot support a fit
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sklearn.exceptions import DataDimensionalityWarning  # noqa: E402

EXTREME = [
    lambda basis, **kw: ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=20,
                                          random_state=0, **kw),
    lambda basis, **kw: AutocorrelationEstimator(L, basis=basis, rotations=4, random_state=0,
                                                 **kw),
]


def _fit_finite(est, X, allowed=(ConvergenceWarning,)):
    """Fit, allowing only the given warnings; check that the model and the
    per-patch outputs are finite."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X)
        s, p, det = est.score_samples(X), est.predict_proba(X), est.predict(X)
    assert all(issubclass(w.category, allowed) for w in caught), \
        [f"{w.category.__name__}: {w.message}" for w in caught]
    for value in (est.coef_, est.shift_probabilities_, est.noise_variance_, est.density_,
                  est.image_, s, p, det["probability"]):
        assert np.all(np.isfinite(value))
    assert est.noise_variance_ > 0 and np.all(est.shift_probabilities_ >= 0)
    return est, caught


@pytest.mark.parametrize("make", EXTREME, ids=IDS)
@pytest.mark.parametrize("snr", [1e-3, 1e-1, 1e2, 1e6, None], ids=lambda v: f"snr={v}")
def test_extreme_snr_and_noise_free(make, snr, problem):
    basis, coef = problem[:2]
    X, truth = make_measurement(coef, basis, 100, snr=snr, random_state=0)
    est, _ = _fit_finite(make(basis), X)
    if snr is None:  # a fixed, tiny noise variance is fine too
        _fit_finite(make(basis, noise_variance=1e-12), X)


@pytest.mark.parametrize("make", EXTREME, ids=IDS)
def test_no_copy_one_copy_one_patch(make, problem):
    basis, coef = problem[:2]
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(60, 60))
    _fit_finite(make(basis), noise)                            # no copy
    one = noise.copy()
    one[20:25, 20:25] += basis.evaluate(coef)
    _fit_finite(make(basis), one)                              # one copy
    clean = np.zeros((60, 60))
    clean[20:25, 20:25] = basis.evaluate(coef)
    _fit_finite(make(basis), clean)                            # one copy, no noise
    # exactly one patch: fewer numbers than the EM has parameters
    est = make(basis)
    est._validate_params()
    n_params = est._n_parameters()
    allowed = (ConvergenceWarning, DataDimensionalityWarning)
    _, caught = _fit_finite(est, noise[:L, :L], allowed=allowed)
    assert any(w.category is DataDimensionalityWarning for w in caught) == (n_params > L * L)
    if n_params > L * L:
        with pytest.warns(DataDimensionalityWarning,
                          match=f"X holds 1 patch\\(es\\) of 5x5 pixels, 25 numbers for the "
                                f"{n_params} parameters of the model"):
            _fit(make(basis), noise[:L, :L])


@pytest.mark.parametrize("make", EXTREME, ids=IDS)
def test_float32_input_gives_the_float64_result(make, problem):
    basis, coef, X = problem[:3]
    X32 = X[0].astype(np.float32)
    a, _ = _fit_finite(make(basis), X32)
    b, _ = _fit_finite(make(basis), X32.astype(np.float64))   # the same numbers
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.score_samples(X32), b.score_samples(X32))


@pytest.mark.parametrize("make", EXTREME, ids=IDS)
def test_data_the_arithmetic_cannot_hold(make, problem):
    basis, coef, X = problem[:3]
    for scale in (1e200, 1e-200):
        with pytest.raises(ValueError, match="X holds values up to .* too (large|small) for "
                                             "the floating-point arithmetic .* scale the "
                                             "measurement"):
            make(basis).fit(X[0] * scale)
    zero_patches = np.zeros((23, 23))
    zero_patches[22, 3] = 1.0  # outside the patch grid only
    est = make(basis)
    if est._reads_margins:
        _fit_finite(est, zero_patches, allowed=(ConvergenceWarning, DataDimensionalityWarning))
    else:
        with pytest.raises(ValueError, match="X is zero in every 5x5 patch: there is "
                                             "nothing to fit"):
            est.fit(zero_patches)
    fitted = _fit(make(basis), X[0])
    with pytest.raises(ValueError, match="too large .* scale the measurement"):
        fitted.score(X[0] * 1e200)
    assert np.isfinite(fitted.score(zero_patches))  # zero patches can be scored


@st.composite
def _measurements(draw):
    """Small measurements of any real dtype, shape and scale (not constant: that is
    check_measurements' business)."""
    side = st.integers(3, 16)
    n = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int16,
                                  np.uint8]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = (10.0 ** draw(st.integers(-8, 8)) if np.dtype(dtype).kind == "f"
             else draw(st.sampled_from([1, 10, 100])))
    shape = (draw(side), draw(side))
    ms = []
    for _ in range(n):
        M = rng.normal(size=shape if draw(st.booleans()) else (draw(side), draw(side)))
        M = M * (rng.random(M.shape) < draw(st.sampled_from([0.05, 1.0])))  # sparse?
        M = scale * (M + draw(st.sampled_from([0, 5])))                    # offset?
        if np.dtype(dtype).kind == "f":
            M = np.clip(M, -np.finfo(dtype).max, np.finfo(dtype).max)
        else:
            M = np.clip(np.round(M), np.iinfo(dtype).min, np.iinfo(dtype).max)
        ms.append(M.astype(dtype))
    assume(any(M.max() != M.min() for M in ms))
    if len({M.shape for M in ms}) == 1 and draw(st.booleans()):
        return np.stack(ms) if n > 1 else ms[0]
    return ms


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(X=_measurements(), which=st.sampled_from(["em", "em-float32", "em-fixed-noise",
                                                  "autocorrelation"]),
       seed=st.integers(0, 3))
def test_fit_fuzz(X, which, seed):
    L3 = 3
    est = {
        "em": ApproxEMEstimator(L3, rotations=2, max_iter=3, random_state=seed),
        "em-float32": ApproxEMEstimator(L3, rotations=2, max_iter=3, random_state=seed,
                                        dtype=np.float32),
        "em-fixed-noise": ApproxEMEstimator(L3, rotations=2, max_iter=3, random_state=seed,
                                            noise_variance=1.0),
        "autocorrelation": AutocorrelationEstimator(L3, rotations=2, max_iter=30,
                                                    random_state=seed),
    }[which]
    try:
        _fit_finite(est, X, allowed=(ConvergenceWarning, DataDimensionalityWarning))
    except ValueError as exc:  # only these data-dependent refusals
        assert any(reason in str(exc) for reason in (
            "smaller than one 3x3 patch", "is constant", "nothing to fit",
            "scale the measurement")), str(exc)


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
    import mtdlearn.autocorrelation.estimator
    import mtdlearn.initializers
    from mtdlearn import AutocorrelationInitializer

    basis, coef, X, truth = problem
    calls = {"stats": 0, "moments": 0}
    stats, moments = (mtdlearn.initializers.data_statistics,
                      mtdlearn.autocorrelation.estimator.measurement_autocorrelations)

    def counted_stats(*args, **kwargs):
        calls["stats"] += 1
        return stats(*args, **kwargs)

    def counted_moments(*args, **kwargs):
        calls["moments"] += 1
        return moments(*args, **kwargs)

    monkeypatch.setattr(mtdlearn.initializers, "data_statistics", counted_stats)
    monkeypatch.setattr(mtdlearn.autocorrelation.estimator, "measurement_autocorrelations",
                        counted_moments)
    _fit(ApproxEMEstimator(L, basis=basis, rotations=2, max_iter=1, n_init=3,
                           random_state=0), X)
    assert calls == {"stats": 1, "moments": 0}
    # the EM's autocorrelation start: the measured moments once for all EM starts
    # (each start runs an autocorrelation fit with its own random starts)
    _fit(ApproxEMEstimator(L, basis=basis, rotations=2, max_iter=1, n_init=3, random_state=0,
                           initializer=AutocorrelationInitializer(n_init=2)), X)
    assert calls["moments"] == 1


# ---------------------------------------------------------------------------
# a degenerate fit is never reported as converged
def _result(coef, density, noise_variance, L):
    from mtdlearn.imaging.shifts import density_to_shift_probabilities

    return {"coef": coef, "shift_probabilities": density_to_shift_probabilities(density, L),
            "noise_variance": noise_variance}


def test_degenerate_states_are_recognized(problem):
    from mtdlearn.base import _degenerate_reason

    basis, coef, X, truth = problem
    # the data's mean square per pixel: noise plus density x image power
    power = float(np.sum(basis.evaluate(coef) ** 2)) / L**2
    ms = truth.noise_variance + truth.density * power
    assert _degenerate_reason(_result(coef, truth.density, truth.noise_variance, L),
                              basis, ms) is None
    # a huge image at a vanishing density (the collapse seen on CTF data)
    reason = _degenerate_reason(_result(138 * coef, 1.2e-4, truth.noise_variance, L), basis, ms)
    assert reason.startswith("the density collapsed to 0.00012")
    # an image far brighter than the data at a normal density
    reason = _degenerate_reason(_result(5 * coef, truth.density, truth.noise_variance, L),
                                basis, ms)
    assert reason.startswith("the model's power per pixel")
    # sigma**2 holds all the power, the image none
    reason = _degenerate_reason(_result(1e-4 * coef, truth.density, ms, L), basis, ms)
    assert reason.startswith("the noise variance absorbed the signal")


def test_a_collapsed_fit_warns_and_is_not_converged(problem):
    from mtdlearn import FixedInitializer
    from mtdlearn.imaging.shifts import density_to_shift_probabilities

    basis, coef, X, truth = problem
    start = FixedInitializer(138 * coef, density_to_shift_probabilities(1.2e-4, L),
                             truth.noise_variance)
    em = ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=0, initializer=start)
    with pytest.warns(ConvergenceWarning, match="ended in a degenerate state: the density "
                                                "collapsed"):
        em.fit(X)
    assert not em.converged_ and em.degenerate_.startswith("the density collapsed")
    # a proper fit says so
    good = _fit(ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=30, random_state=0), X)
    assert good.degenerate_ is None


def test_best_start_is_a_proper_one(problem, monkeypatch):
    # several starts: a degenerate one is not chosen, even at the highest objective
    import mtdlearn.base as base_module

    basis, coef, X, truth = problem
    seen = []
    monkeypatch.setattr(base_module, "_degenerate_reason",
                        lambda res, *a: seen.append(res["objective"]))
    make = lambda: ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=3, n_init=3,
                                     random_state=0)
    first = _fit(make(), X)
    objectives = sorted(set(seen))
    assert len(objectives) == 3 and first.lower_bound_ == objectives[-1]
    monkeypatch.setattr(base_module, "_degenerate_reason",
                        lambda res, *a: "made up" if res["objective"] == objectives[-1] else None)
    second = _fit(make(), X)
    assert second.degenerate_ is None and second.lower_bound_ == objectives[-2]


def test_verbose_never_prints_an_infinite_gain(problem, capsys):
    # dtype="auto" switches to float64: that iteration's objective is another
    # function, and the line says so instead of "gain inf"
    basis, coef, X, truth = problem
    _fit(ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=40, tol=1e-9, verbose=1,
                           random_state=0), X)
    out = capsys.readouterr().out
    assert "gain n/a (new objective)" in out
    assert "inf" not in out
