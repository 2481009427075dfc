"""A catalogue of bad inputs across the public API.

Every case asserts the type of the error and that its message names the
offending argument (``pytest.raises(match=...)``); the file cases also assert
that no file was changed (bytes and modification time) and that nothing was
left behind, half-written or not (the directory listing).
Parameters are checked before the data are read: the ``*-before-X`` cases
give a bad parameter together with a constant (itself invalid) measurement.
"""

import functools
import io
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from mtdlearn import (ApproxEMEstimator, AutocorrelationEstimator, AutocorrelationInitializer,
                      FixedInitializer, FourierBesselBasis, RandomInitializer,
                      UniformRotationGrid, make_measurement, make_target, relative_error)
from mtdlearn.autocorrelation.moments import measurement_autocorrelations
from mtdlearn.cli.commands import main
from mtdlearn.data.io import read_measurement
from mtdlearn.metrics import align_rotation
from mtdlearn.imaging.shifts import (density_to_shift_probabilities, max_density,
                                shift_probabilities_to_density)

L = 5
BASIS = FourierBesselBasis(L, n_coefficients=10)
COEF = make_target(BASIS, random_state=0)
X, _ = make_measurement(COEF, BASIS, 60, snr=5, random_state=0)
ZEROS = np.zeros((40, 40))


def rng():
    return np.random.default_rng(0)


def em(**kwargs):
    params = dict(basis=BASIS, rotations=2, max_iter=2, random_state=0)
    params.update(kwargs)
    return ApproxEMEstimator(params.pop("image_size", L), **params)


def ac(**kwargs):
    params = dict(basis=BASIS, rotations=2, max_iter=20, random_state=0)
    params.update(kwargs)
    return AutocorrelationEstimator(params.pop("image_size", L), **params)


@functools.cache
def fitted(kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return (em() if kind == "em" else ac()).fit(X)


class _NaNGrid:
    def get_angles(self):
        return np.array([0.0, np.nan])


class _EmptyGrid:
    def get_angles(self):
        return np.array([])


def _masked():
    return np.ma.masked_array(X, mask=X > 1)


class _Labelled:
    """A parameter value with a short, stable test id."""

    def __init__(self, value, label):
        self.value, self.label = value, label


def _value(v):
    return v.value if isinstance(v, _Labelled) else v


def _label(v):
    return v.label if isinstance(v, _Labelled) else repr(v)


def case(call, exc, match, id):
    return pytest.param(call, exc, match, id=id)


# --------------------------------------------------------------------------
# estimator parameters: (parameter, value, exception, message)
PARAMS = [
    ("image_size", 0, ValueError, r"^image_size must be >= 3, got 0"),
    ("image_size", 4, ValueError, r"^image_size must be odd"),
    ("image_size", 5.0, TypeError, r"^image_size must be an integer, got float"),
    ("image_size", True, TypeError, r"^image_size must be an integer, got bool"),
    ("image_size", "5", TypeError, r"^image_size must be an integer, got str"),
    ("rotations", 0, ValueError, r"^rotations must be >= 1, got 0"),
    ("rotations", 2.5, TypeError, r"^rotations must be an int K >= 1 or an object with "
                                  r"get_angles\(\), got float"),
    ("rotations", True, TypeError, r"^rotations must be an int K >= 1 .*got bool"),
    ("rotations", "8", TypeError, r"^rotations must be an int K >= 1 .*got str"),
    ("rotations", _Labelled(_NaNGrid(), "nan-grid"), ValueError, r"^rotations.get_angles\(\) must return a non-empty "
                                          r"1-D array of finite angles"),
    ("rotations", _Labelled(_EmptyGrid(), "empty-grid"), ValueError, r"^rotations.get_angles\(\) must return a "
                                            r"non-empty"),
    ("n_init", 0, ValueError, r"^n_init must be >= 1, got 0"),
    ("n_init", 1.5, TypeError, r"^n_init must be an integer, got float"),
    ("n_init", True, TypeError, r"^n_init must be an integer, got bool"),
    ("max_iter", -1, ValueError, r"^max_iter must be >= 0, got -1"),
    ("max_iter", 2.0, TypeError, r"^max_iter must be an integer, got float"),
    ("max_iter", None, TypeError, r"^max_iter must be an integer, got NoneType"),
    ("tol", np.nan, ValueError, r"^tol must be finite, got nan"),
    ("tol", -1.0, ValueError, r"^tol must be >= 0.0, got -1.0"),
    ("tol", np.inf, ValueError, r"^tol must be finite, got inf"),
    ("tol", "1e-6", TypeError, r"^tol must be a real number( or 'auto')?, got str"),
    ("noise_variance", 0.0, ValueError, r"^noise_variance must be > 0.0, got 0.0"),
    ("noise_variance", -1.0, ValueError, r"^noise_variance must be > 0.0, got -1.0"),
    ("noise_variance", np.nan, ValueError, r"^noise_variance must be finite"),
    ("noise_variance", "1", TypeError, r"^noise_variance must be a real number"),
    ("working_memory", 0, ValueError, r"^working_memory must be > 0.0, got 0.0"),
    ("working_memory", np.nan, ValueError, r"^working_memory must be finite"),
    ("n_jobs", 0, ValueError, r"^n_jobs must be a non-zero integer or None, got 0"),
    ("n_jobs", 1.5, TypeError, r"^n_jobs must be an integer, got float"),
    ("n_jobs", True, TypeError, r"^n_jobs must be an integer, got bool"),
    ("random_state", -1, ValueError, r"^random_state must be non-negative, got -1"),
    ("random_state", "0", TypeError, r"^random_state must be None, an int, a numpy "
                                     r"Generator or RandomState, got str"),
    ("random_state", 1.5, TypeError, r"^random_state must be None, an int.*got float"),
    ("verbose", -1, ValueError, r"^verbose must be >= 0, got -1"),
    ("verbose", 1.5, TypeError, r"^verbose must be an integer, got float"),
    ("basis", "fb", TypeError, r"^basis must follow the basis protocol \(like FourierBesselBasis\); str has no"),
    ("basis", _Labelled(FourierBesselBasis, "class"), TypeError, r"^basis must follow the basis protocol \(like "
                                             r"FourierBesselBasis\); type has no image_size"),
    ("basis", _Labelled(FourierBesselBasis(7), "L7-basis"), ValueError, r"^basis.image_size=7 does not match "
                                                 r"image_size=5"),
    ("initializer", "random", TypeError, r"^initializer must have an initialize\(measurements, "
                                         r"basis, noise_variance, random_state\) method"),
    ("initializer", _Labelled(RandomInitializer(density=-0.1), "random(density<0)"), ValueError, r"^density must be > 0.0"),
    ("initializer", _Labelled(RandomInitializer(density=2.0), "random(density=2)"), ValueError, r"^density must be <= 0.308"),
    ("initializer", _Labelled(FixedInitializer(np.ones(9)), "fixed(coef-len)"), ValueError,
     r"^coef must have shape \(n_functions=10,\) or \(n_components, 10\), got \(9,\)"),
    ("initializer", _Labelled(FixedInitializer(np.full(10, np.nan)), "fixed(coef-nan)"), ValueError,
     r"^coef must contain only finite values"),
    ("initializer", _Labelled(FixedInitializer(COEF, np.ones((10, 10))), "fixed(rho-sum)"), ValueError,
     r"^shift_probabilities must sum to 1, got 100"),
    ("initializer", _Labelled(FixedInitializer(COEF, noise_variance=-1.0), "fixed(noise<0)"), ValueError,
     r"^noise_variance must be > 0.0"),
    ("initializer", _Labelled(AutocorrelationInitializer(n_init=0), "autocorrelation(n_init=0)"), ValueError, r"^n_init must be >= 1"),
]

ESTIMATOR_PARAM_CASES = [
    case(functools.partial(lambda make, k, v: make(**{k: v}).fit(X), make, name, _value(value)),
         exc, match, id=f"{kind}-{name}={_label(value)}")
    for kind, make in (("em", em), ("ac", ac))
    for name, value, exc, match in PARAMS
]

ESTIMATOR_ONLY_CASES = [
    case(lambda: em(dtype=np.int32).fit(X), ValueError,
         r"^dtype must be 'auto', numpy.float64 or numpy.float32", id="em-dtype=int32"),
    case(lambda: em(dtype="float16").fit(X), ValueError,
         r"^dtype must be 'auto', numpy.float64 or numpy.float32, got 'float16'", id="em-dtype=float16"),
    case(lambda: em(dtype="nonsense").fit(X), ValueError, r"^dtype must be 'auto', numpy.float64",
         id="em-dtype=unknown"),
    case(lambda: em(warm_start="yes").fit(X), TypeError, r"^warm_start must be a bool",
         id="em-warm_start=str"),
    case(lambda: em(initializer=RandomInitializer).fit(X), TypeError, r"^initializer must",
         id="em-initializer=class"),
    case(lambda: em(dtype=np.int32).fit(ZEROS), ValueError, r"^dtype must",
         id="em-dtype-before-X"),
    case(lambda: em(initializer="random").fit(ZEROS), TypeError, r"^initializer must",
         id="em-initializer-before-X"),
    case(lambda: em(random_state="0").fit(ZEROS), TypeError, r"^random_state must",
         id="em-random_state-before-X"),
    case(lambda: ac(random_state="0").fit(ZEROS), TypeError, r"^random_state must",
         id="ac-random_state-before-X"),
    case(lambda: measurement_autocorrelations(ZEROS, 3, working_memory=0), ValueError,
         r"^working_memory must", id="moments-working_memory-before-X"),
]

# --------------------------------------------------------------------------
# measurements X given to fit (both estimators)
_STACK_WITH_NAN = np.stack([X, X])
_STACK_WITH_NAN[1, 3, 3] = np.nan
_OBJECT_WITH_DICT = X.astype(object)
_OBJECT_WITH_DICT[5, 5] = {"a": 1}
BAD_X = [
    ("nan", np.full((20, 20), np.nan), ValueError, r"^X must contain only finite values"),
    ("inf", np.where(np.eye(20) > 0, np.inf, 1.0), ValueError, r"^X must contain only finite"),
    ("nan-in-stack", _STACK_WITH_NAN, ValueError, r"^X\[1\] must contain only finite"),
    ("complex", X.astype(complex), TypeError, r"^X must be real-valued, got dtype complex128"),
    # an object array of numbers is read as numbers (scikit-learn's convention)
    ("object", _OBJECT_WITH_DICT, TypeError, r"^X must be numeric, got dtype object holding "
                                             r"a non-number: .*argument must be"),
    ("bool", X > 0, TypeError, r"^X must be numeric, got dtype bool"),
    ("strings", np.full((20, 20), "a"), TypeError, r"^X must be numeric, got dtype <U1"),
    ("datetime", np.zeros((20, 20), dtype="datetime64[s]"), TypeError, r"^X must be numeric"),
    ("1-D", X[0], ValueError, r"^X must be one measurement \(N1, N2\), a stack"),
    ("4-D", X[None, None], ValueError, r"^X must be one measurement .*shape \(1, 1, 60, 60\)"),
    ("too-small", X[:4], ValueError, r"^X of shape \(4, 60\) is smaller than one 5x5 patch"),
    ("empty-rows", np.zeros((0, 20)), ValueError, r"^X of shape \(0, 20\) is smaller"),
    ("empty-list", [], ValueError, r"^X holds no measurement"),
    ("empty-stack", np.zeros((0, 20, 20)), ValueError, r"^X holds no measurement"),
    ("ragged-small-member", [X, X[:3]], ValueError, r"^X\[1\] of shape \(3, 60\) is smaller"),
    ("sparse", scipy.sparse.csr_matrix(X), TypeError, r"^X must be a dense array"),
    ("masked", _masked(), TypeError, r"^X must not be a masked array"),
    ("masked-member", [X, _masked()], TypeError, r"^X\[1\] must not be a masked array"),
    ("constant-zero", ZEROS, ValueError, r"^X is constant \(all values equal 0.0\): it holds "
                                         r"no signal or noise to fit$"),
    ("constant-member", [X, np.full((20, 20), 2.5)], ValueError,
     r"^X\[1\] is constant \(all values equal 2.5\)"),
    ("none", None, TypeError, r"^X must be an array, a sequence of arrays, or a .npy path; "
                              r"got NoneType"),
    ("int", 3, TypeError, r"^X must be an array.*got int"),
    ("dict", {}, TypeError, r"^X must be an array.*got dict"),
    ("generator", (x for x in [X]), TypeError, r"^X must be an array.*got generator"),
    ("missing-path", "no-such-file.npy", FileNotFoundError, r"no-such-file\.npy"),
]
FIT_X_CASES = [
    case(functools.partial(lambda make, bad: make().fit(bad), make, bad), exc, match,
         id=f"{kind}.fit-X={label}")
    for kind, make in (("em", em), ("ac", ac))
    for label, bad, exc, match in BAD_X
]

# score / predict / ... of fitted estimators, and sample
METHOD_CASES = [
    case(functools.partial(lambda kind, m, bad: getattr(fitted(kind), m)(bad), kind, m, bad),
         exc, match, id=f"{kind}.{m}-X={label}")
    for kind in ("em", "ac")
    for m, label, bad, exc, match in [
        ("score", "nan", np.full((20, 20), np.nan), ValueError, r"^X must contain only finite"),
        ("score", "constant", ZEROS, ValueError, r"^X is constant"),
        ("predict", "too-small", X[:4], ValueError, r"^X of shape \(4, 60\) is smaller"),
        ("predict_proba", "complex", X.astype(complex), TypeError, r"^X must be real-valued"),
        ("score_samples", "4-D", X[None, None], ValueError, r"^X must be one measurement"),
    ]
] + [
    case(lambda: em().score(X), NotFittedError, r"ApproxEMEstimator instance is not fitted",
         id="em.score-unfitted"),
    case(lambda: ac().predict(X), NotFittedError, r"AutocorrelationEstimator instance is not "
                                                  r"fitted", id="ac.predict-unfitted"),
    case(lambda: fitted("em").sample(0), ValueError, r"^size must be >= 5, got 0",
         id="em.sample-size=0"),
    case(lambda: fitted("ac").sample(2.5), TypeError, r"^size must be an integer, got float",
         id="ac.sample-size=float"),
    case(lambda: fitted("em").sample("100"), TypeError, r"^size must be an integer, got str",
         id="em.sample-size=str"),
    case(lambda: fitted("em").sample((100, 100, 100)), ValueError,
         r"^size must be an int or a pair of ints", id="em.sample-size=3-tuple"),
    case(lambda: fitted("ac").sample((100, 3)), ValueError, r"^size must be >= 5, got 3",
         id="ac.sample-size=(100,3)"),
    case(lambda: fitted("em").sample(100, n_measurements=0), ValueError,
         r"^n_measurements must be >= 1, got 0", id="em.sample-n_measurements=0"),
    case(lambda: fitted("em").sample(100, random_state="x"), TypeError,
         r"^random_state must be None", id="em.sample-random_state=str"),
]

# --------------------------------------------------------------------------
# the basis
BASIS_CASES = [
    case(functools.partial(FourierBesselBasis, **kw), exc, match, id=f"basis-{ident}")
    for ident, kw, exc, match in [
        ("image_size=4", dict(image_size=4), ValueError, r"^image_size must be odd"),
        ("image_size=1", dict(image_size=1), ValueError, r"^image_size must be >= 3, got 1"),
        ("image_size=float", dict(image_size=5.0), TypeError, r"^image_size must be an integer"),
        ("n_coefficients=0", dict(image_size=5, n_coefficients=0), ValueError,
         r"^n_coefficients must be >= 1, got 0"),
        ("n_coefficients=float", dict(image_size=5, n_coefficients=1.5), TypeError,
         r"^n_coefficients must be an integer"),
        ("n_coefficients=bool", dict(image_size=5, n_coefficients=True), TypeError,
         r"^n_coefficients must be an integer, got bool"),
        ("n_coefficients=1000", dict(image_size=5, n_coefficients=1000), ValueError,
         r"^n_coefficients=1000 exceeds the 10 candidate functions of image_size=5"),
        ("bandlimit=0", dict(image_size=5, bandlimit=0.0), ValueError,
         r"^bandlimit must be > 0.0"),
        ("bandlimit=1", dict(image_size=5, bandlimit=1.0), ValueError,
         r"^bandlimit=1.0 is below the first root of J_0"),
        ("bandlimit=nan", dict(image_size=5, bandlimit=np.nan), ValueError,
         r"^bandlimit must be finite"),
        ("bandlimit=str", dict(image_size=5, bandlimit="3"), TypeError,
         r"^bandlimit must be a real number"),
        ("both", dict(image_size=5, n_coefficients=3, bandlimit=4.0), ValueError,
         r"^give at most one of n_coefficients and bandlimit"),
        ("radius=-1", dict(image_size=5, radius=-1), ValueError, r"^radius must be > 0.0"),
        ("radius=inf", dict(image_size=5, radius=np.inf), ValueError, r"^radius must be finite"),
    ]
] + [
    case(lambda: BASIS.evaluate(np.ones(9)), ValueError,
         r"^coef must have last dimension n_functions=10, got shape \(9,\)", id="evaluate-len"),
    case(lambda: BASIS.evaluate(np.full(10, np.nan)), ValueError,
         r"^coef must contain only finite values", id="evaluate-nan"),
    case(lambda: BASIS.evaluate(np.ones(10, dtype=complex)), TypeError,
         r"^coef must be real-valued", id="evaluate-complex"),
    case(lambda: BASIS.expand(np.ones((4, 4))), ValueError,
         r"^images must end with shape \(5, 5\), got \(4, 4\)", id="expand-shape"),
    case(lambda: BASIS.expand(np.full((5, 5), np.inf)), ValueError,
         r"^images must contain only finite values", id="expand-inf"),
    case(lambda: BASIS.rotate(COEF, np.nan), ValueError, r"^angles must contain only finite",
         id="rotate-nan-angle"),
    case(lambda: BASIS.rotate(COEF, "a"), TypeError, r"^angles must be an array of real",
         id="rotate-str-angle"),
    case(lambda: BASIS.from_complex(np.ones(3)), ValueError,
         r"^z must have last dimension n_functions=10", id="from_complex-len"),
    case(lambda: BASIS.evaluate_points(COEF, np.nan, 0.0), ValueError,
         r"^x must contain only finite values", id="evaluate_points-nan-x"),
    case(lambda: BASIS.evaluate_points(COEF, 0.0, "a"), TypeError,
         r"^y must be an array of real numbers", id="evaluate_points-str-y"),
    case(lambda: BASIS.evaluate_points(COEF, [0.0, 1.0], [0.0, 1.0, 2.0]), ValueError,
         r"^x and y must broadcast together, got shapes \(2,\) and \(3,\)",
         id="evaluate_points-shapes"),
    case(lambda: UniformRotationGrid(0).get_angles(), ValueError,
         r"^n_rotations must be >= 1, got 0", id="rotation-grid-0"),
    case(lambda: UniformRotationGrid(2.5).get_angles(), TypeError,
         r"^n_rotations must be an integer", id="rotation-grid-float"),
]

# --------------------------------------------------------------------------
# simulation, metrics, operators, initializers


def _measurement(**kw):
    args = dict(coef=COEF, basis=BASIS, size=60)
    args.update(kw)
    return make_measurement(**args)


DATASET_CASES = [
    case(functools.partial(_measurement, **kw), exc, match, id=f"make_measurement-{ident}")
    for ident, kw, exc, match in [
        ("size=4", dict(size=4), ValueError, r"^size must be >= 5, got 4"),
        ("size=float", dict(size=10.5), TypeError, r"^size must be an integer, got float"),
        ("size=3-tuple", dict(size=(10, 10, 10)), ValueError,
         r"^size must be an int or a pair of ints"),
        ("density<0", dict(density=-0.1), ValueError, r"^density must be >= 0.0"),
        ("density=1", dict(density=1.0), ValueError, r"^density must be < 1.0"),
        ("density=nan", dict(density=np.nan), ValueError, r"^density must be finite"),
        ("snr=0", dict(snr=0), ValueError, r"^snr must be > 0.0, got 0.0"),
        ("snr=nan", dict(snr=np.nan), ValueError, r"^snr must be finite"),
        ("snr-and-noise", dict(snr=5, noise_variance=1.0), ValueError,
         r"^give at most one of snr and noise_variance"),
        ("noise<0", dict(noise_variance=-1.0), ValueError, r"^noise_variance must be >= 0.0"),
        ("n_measurements=0", dict(n_measurements=0), ValueError,
         r"^n_measurements must be >= 1, got 0"),
        ("coef-len", dict(coef=np.ones(9)), ValueError,
         r"^coef must have length basis.n_functions=10, got 9"),
        ("coef-nan", dict(coef=np.full(10, np.nan)), ValueError, r"^coef must contain only"),
        ("basis=str", dict(basis="fb"), TypeError, r"^basis must follow the basis protocol"),
        ("zero-coef-with-snr", dict(coef=np.zeros(10), snr=5), ValueError,
         r"^coef describes a zero image, whose SNR is undefined: give noise_variance"),
        ("random_state=str", dict(random_state="x"), TypeError, r"^random_state must be None"),
    ]
] + [
    case(lambda: make_target(BASIS, norm=0.0), ValueError, r"^norm must be > 0.0",
         id="make_target-norm=0"),
    case(lambda: make_target(BASIS, norm=np.nan), ValueError, r"^norm must be finite",
         id="make_target-norm=nan"),
    case(lambda: make_target("x"), TypeError, r"^basis must follow the basis protocol",
         id="make_target-basis=str"),
    case(lambda: make_target(BASIS, random_state=-1), ValueError,
         r"^random_state must be non-negative", id="make_target-random_state=-1"),
]

METRIC_CASES = [
    case(functools.partial(func, *args), exc, match, id=f"{func.__name__}-{ident}")
    for func in (relative_error, align_rotation)
    for ident, args, exc, match in [
        ("zero-truth", (np.zeros(10), COEF, BASIS), ValueError,
         r"^true_coef is zero: the relative error is undefined"),
        ("est-len", (COEF, np.ones(9), BASIS), ValueError,
         r"^est_coef must have last dimension n_functions=10"),
        ("basis=str", (COEF, COEF, "basis"), TypeError, r"^basis must follow the basis protocol"),
        ("domain", (COEF, COEF, BASIS, "pixels"), ValueError,
         r"^domain must be 'coef' or 'image', got 'pixels'"),
        ("truth-nan", (np.full(10, np.nan), COEF, BASIS), ValueError,
         r"^true_coef must contain only finite values"),
        ("est-inf", (COEF, np.full(10, np.inf), BASIS), ValueError,
         r"^est_coef must contain only finite values"),
        ("truth-complex", (COEF.astype(complex), COEF, BASIS), TypeError,
         r"^true_coef must be real-valued"),
        ("2-D", (COEF[None], COEF[None], BASIS), ValueError,
         r"^true_coef and est_coef must be one-dimensional"),
        ("est=None", (COEF, None, BASIS), TypeError, r"^est_coef must be an array of real"),
    ]
]

OPERATOR_CASES = [
    case(lambda: density_to_shift_probabilities(-0.1, L), ValueError,
         r"^density must lie in \[0, 0.308642\] for image_size=5", id="density<0"),
    case(lambda: density_to_shift_probabilities("x", L), TypeError,
         r"^density must be a real number", id="density=str"),
    case(lambda: density_to_shift_probabilities(np.nan, L), ValueError,
         r"^density must be finite", id="density=nan"),
    case(lambda: shift_probabilities_to_density(np.ones(5)), ValueError,
         r"^shift_probabilities must be 2-dimensional", id="rho-1-D"),
    case(lambda: shift_probabilities_to_density(np.ones((3, 3))), ValueError,
         r"^shift_probabilities must have shape \(2L, 2L\)", id="rho-odd-shape"),
    case(lambda: max_density(0), ValueError, r"^image_size must be >= 1, got 0",
         id="max_density-0"),
    case(lambda: max_density("x"), TypeError, r"^image_size must be an integer",
         id="max_density-str"),
]

INITIALIZER_CASES = [
    case(lambda: RandomInitializer(density=-1.0).initialize([X], BASIS, None, rng()),
         ValueError, r"^density must be > 0.0", id="random-density<0"),
    case(lambda: RandomInitializer(density=np.nan).initialize([X], BASIS, None, rng()),
         ValueError, r"^density must be finite", id="random-density=nan"),
    case(lambda: AutocorrelationInitializer(n_init=0).initialize([X], BASIS, None, rng()),
         ValueError, r"^n_init must be >= 1", id="autocorrelation-n_init=0"),
    case(lambda: AutocorrelationInitializer(max_iter=1.5).initialize([X], BASIS, None, rng()),
         TypeError, r"^max_iter must be an integer", id="autocorrelation-max_iter=float"),
    case(lambda: FixedInitializer(COEF, np.full((10, 10), -0.01)).initialize(
        [X], BASIS, None, rng()), ValueError, r"^shift_probabilities must be non-negative",
        id="fixed-negative-rho"),
    case(lambda: FixedInitializer(COEF, np.full((3, 3), 1 / 9)).initialize(
        [X], BASIS, None, rng()), ValueError, r"^shift_probabilities must have shape \(10, 10\)",
        id="fixed-rho-shape"),
    case(lambda: FixedInitializer(COEF, noise_variance=0.0).initialize([X], BASIS, None, rng()),
         ValueError, r"^noise_variance must be > 0.0", id="fixed-noise=0"),
    case(lambda: FixedInitializer("abc").initialize([X], BASIS, None, rng()), TypeError,
         r"^coef must be an array of real numbers", id="fixed-coef=str"),
    case(lambda: FixedInitializer(COEF).set_params(bogus=1), ValueError,
         r"^invalid parameter 'bogus' for FixedInitializer", id="fixed-set_params"),
    case(lambda: RandomInitializer().initialize([X], BASIS, None, 0), TypeError,
         r"^random_state must be a numpy.random.Generator", id="random-random_state=int"),
    case(lambda: RandomInitializer().initialize([X], "fb", None, rng()), TypeError,
         r"^basis must follow the basis protocol", id="random-basis=str"),
    case(lambda: RandomInitializer().initialize([], BASIS, None, rng()), ValueError,
         r"^measurements", id="random-measurements=[]"),
    case(lambda: RandomInitializer().initialize([X], BASIS, -1.0, rng()), ValueError,
         r"^noise_variance must be > 0", id="random-noise=-1"),
]

CASES = (ESTIMATOR_PARAM_CASES + ESTIMATOR_ONLY_CASES + FIT_X_CASES + METHOD_CASES
         + BASIS_CASES + DATASET_CASES + METRIC_CASES + OPERATOR_CASES + INITIALIZER_CASES)


@pytest.mark.parametrize("call, exc, match", CASES)
def test_bad_input(call, exc, match):
    with warnings.catch_warnings():
        # a case that does not raise must not pass because a fit did not converge
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.raises(exc, match=match):
            call()


# --------------------------------------------------------------------------
# files: io.read_measurement and the command line


def _npy_bytes(arr, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _mrc_bytes(data):
    mrcfile = pytest.importorskip("mrcfile")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.mrc"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mrcfile warns about NaN in header statistics
            with mrcfile.new(path) as mrc:
                mrc.set_data(data)
        return path.read_bytes()


_NAN = X.copy()
_NAN[1, 2] = np.nan
GOOD = _npy_bytes(X)

# name -> (file name, bytes or None for no file, regex naming the file and what was expected)
FILES = {
    "missing": ("missing.npy", None, r"measurement file not found: .*missing\.npy"),
    "suffix": ("m.txt", b"1 2 3", r"unsupported measurement file type '\.txt' for .*m\.txt"),
    "empty": ("empty.npy", b"", r"cannot read .*empty\.npy as a \.npy array \(the file is "
                                r"empty\); expected"),
    "header-cut": ("cut.npy", GOOD[:30], r"cannot read .*cut\.npy as a \.npy array .*expected "
                                         r"a complete file"),
    "data-cut": ("cut.npy", GOOD[:-200], r"cannot read .*cut\.npy as a \.npy array .*expected "
                                         r"a complete file"),
    "junk": ("junk.npy", b"GIF89a" + bytes(200), r"junk\.npy .*no NumPy header.*expected"),
    "pickled": ("obj.npy", _npy_bytes(np.array([[{"a": 1}]], dtype=object), allow_pickle=True),
                r"obj\.npy holds pickled Python objects .*never loaded; expected"),
    "record": ("rec.npy", _npy_bytes(np.zeros((8, 8), dtype=[("a", "f8")])),
               r"rec\.npy holds an array of dtype .*; expected a 2-D measurement"),
    "complex": ("c.npy", _npy_bytes(X.astype(complex)), r"c\.npy holds an array of dtype "
                                                        r"complex128; expected"),
    "1-D": ("v.npy", _npy_bytes(X[0]), r"v\.npy holds an array of shape \(60,\); expected a "
                                       r"2-D measurement or a 3-D stack"),
    "4-D": ("h.npy", _npy_bytes(X[None, None]), r"h\.npy holds an array of shape "
                                                r"\(1, 1, 60, 60\); expected"),
    "empty-array": ("e.npy", _npy_bytes(np.zeros((0, 60))), r"e\.npy holds an empty array"),
    "nan": ("nan.npy", _npy_bytes(_NAN), r"nan\.npy.* (NaN or infinite values|must contain "
                                         r"only finite values)"),
}
MRC_FILES = {
    "mrc-empty": ("e.mrc", lambda: b"", r"cannot read .*e\.mrc as an MRC file"),
    "mrc-junk": ("j.mrc", lambda: np.random.default_rng(3).bytes(3000),
                 r"cannot read .*j\.mrc as an MRC file"),
    "mrc-cut": ("c.mrc", lambda: _mrc_bytes(X.astype(np.float32))[:-300],
                r"cannot read .*c\.mrc as an MRC file \(Error opening memmap\)"),
    "mrc-complex": ("z.mrc", lambda: _mrc_bytes(np.ones((20, 20), dtype=np.complex64)),
                    r"z\.mrc holds complex MRC data"),
    "mrc-nan": ("n.mrc", lambda: _mrc_bytes(_NAN.astype(np.float32)),
                r"n\.mrc.* (NaN or infinite values|must contain only finite values)"),
}


def _snapshot(directory):
    """Names of everything under ``directory``, and bytes and mtime of the files."""
    return {str(p.relative_to(directory)): ((p.read_bytes(), p.stat().st_mtime_ns)
                                            if p.is_file() else "dir")
            for p in sorted(Path(directory).rglob("*"))}


def _make(tmp_path, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content() if callable(content) else content)
    return path


FILE_CASES = [pytest.param(name, content, match, id=ident)
              for ident, (name, content, match) in {**FILES, **MRC_FILES}.items()]


@pytest.mark.parametrize("name, content, match", FILE_CASES)
def test_read_measurement_bad_file(tmp_path, name, content, match):
    path = _make(tmp_path, name, content)
    before = _snapshot(tmp_path)
    exc = FileNotFoundError if content is None else ValueError
    with pytest.raises(exc, match=match):
        read_measurement(path)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("name, content, match", FILE_CASES)
def test_cli_fit_bad_file(tmp_path, capsys, name, content, match):
    path = _make(tmp_path, name, content)
    before = _snapshot(tmp_path)
    assert main(["fit", str(path), "--output-dir", str(tmp_path / "out"), "--n-jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtdlearn fit: error: "), err
    assert re.search(match, lines[0]), lines[0]
    assert _snapshot(tmp_path) == before                     # no output, nothing partial


def _run_cli(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return exc.code


REFUSE_CASES = [
    pytest.param(lambda d: (d / "m.npy").write_bytes(GOOD),
                 ["simulate", "{d}/m.npy", "--size", "40"],
                 r"m\.npy exists; pass --overwrite to replace it", id="simulate-existing-npy"),
    pytest.param(lambda d: (d / "m.truth.json").write_text("{}"),
                 ["simulate", "{d}/m.npy", "--size", "40"],
                 r"m\.truth\.json exists; pass --overwrite", id="simulate-existing-truth"),
    pytest.param(lambda d: (d / "m.npy").mkdir(),
                 ["simulate", "{d}/m.npy", "--size", "40", "--overwrite"],
                 r"m\.npy is a directory; expected a file path", id="simulate-output-is-dir"),
    pytest.param(lambda d: None, ["simulate", "{d}/m.txt", "--size", "40"],
                 r"output must end in \.npy", id="simulate-suffix"),
    pytest.param(lambda d: (d / "coef.npy").write_bytes(GOOD),
                 ["fit", "{d}/coef.npy", "--output-dir", "{d}"],
                 r"coef\.npy is an input file and would be overwritten", id="fit-output-is-input"),
    pytest.param(lambda d: (d / "coef.npy").write_bytes(GOOD),
                 ["fit", "{d}/coef.npy", "--output-dir", "{d}", "--overwrite"],
                 r"coef\.npy is an input file", id="fit-output-is-input-overwrite"),
    pytest.param(lambda d: ((d / "m.npy").write_bytes(GOOD), (d / "out").mkdir(),
                            (d / "out" / "estimate.png").write_bytes(b"png")),
                 ["fit", "{d}/m.npy", "--output-dir", "{d}/out"],
                 r"estimate\.png exists; pass --overwrite", id="fit-existing-output"),
    pytest.param(lambda d: ((d / "m.npy").write_bytes(GOOD), (d / "out").write_text("x")),
                 ["fit", "{d}/m.npy", "--output-dir", "{d}/out"],
                 r"output-dir .*out is not a directory", id="fit-output-dir-is-file"),
    pytest.param(lambda d: (d / "m.npy").write_bytes(_npy_bytes(ZEROS)),
                 ["fit", "{d}/m.npy", "--output-dir", "{d}/out"],
                 r"X \(.*m\.npy\) is constant \(all values equal 0\.0\)", id="fit-constant-file"),
    pytest.param(lambda d: (d / "demo.png").write_bytes(b"png"),
                 ["demo", "--paper", "--figure", "{d}/demo.png", "--size", "40"],
                 r"demo\.png exists; pass --overwrite", id="demo-existing-figure"),
]


@pytest.mark.parametrize("setup, argv, match", REFUSE_CASES)
def test_cli_refuses_outputs(tmp_path, capsys, setup, argv, match):
    setup(tmp_path)
    before = _snapshot(tmp_path)
    assert _run_cli([a.format(d=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"mtdlearn {argv[0]}: error: ")
    assert re.search(match, lines[0]), lines[0]
    assert _snapshot(tmp_path) == before


def test_catalogue_size():
    """The catalogue holds at least 50 distinct bad inputs."""
    ids = [p.id for p in CASES + FILE_CASES + REFUSE_CASES]
    assert len(ids) == len(set(ids)) >= 50
