"""Tests of mtdlearn.em.estimator: ApproxEMEstimator (its E/M kernels: test_patch_model)."""

import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, KFold

from mtdlearn import (ApproxEMEstimator, FixedInitializer, FourierBesselBasis,
                      make_measurement, make_target, relative_error)
from mtdlearn.data.simulate import place_copies, render_copies
from mtdlearn.metrics import align_rotation
from mtdlearn.imaging.shifts import density_to_shift_probabilities

L = 5


@pytest.fixture(scope="module")
def basis():
    return FourierBesselBasis(L, n_coefficients=10)


@pytest.fixture(scope="module")
def coef(basis):
    return make_target(basis, random_state=0)


def _grid_measurement(coef, basis, size, K, sigma2, seed):
    """A measurement whose copies sit exactly on the K-point rotation grid, so the
    model of the EM holds exactly (continuous rotations bias a K-grid EM by
    about sinc(nu pi / K) per frequency, see test_continuous_rotations_bias)."""
    rng = np.random.default_rng(seed)
    pos = place_copies((size, size), L, int(0.04 * size * size / L**2), rng)
    angles = 2 * np.pi * rng.integers(0, K, len(pos)) / K
    X = rng.standard_normal((1, size, size)) * np.sqrt(sigma2)
    render_copies(X, coef, basis, pos, angles, np.zeros(len(pos), dtype=np.int64))
    return X[0], pos, angles


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), snr=st.sampled_from([0.5, 2.0, 10.0]),
       K=st.integers(1, 8), fixed_noise=st.booleans())
def test_log_likelihood_never_decreases(basis, coef, seed, snr, K, fixed_noise):
    X, truth = make_measurement(coef, basis, 80, snr=snr, random_state=seed)
    # one grid (refinement="auto" refines K = 1 < nu_max = 2: each grid its own objective)
    em = ApproxEMEstimator(L, basis=basis, rotations=K, max_iter=15, tol=0.0, dtype=np.float64,
                           noise_variance=truth.noise_variance if fixed_noise else None,
                           refinement=None, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        em.fit(X)
    h = np.asarray(em.log_likelihood_history_)
    # EM is monotone; allow float64 rounding of a sum over N_d patches
    assert np.all(np.diff(h) >= -1e-12 * np.abs(h[1:]).max())


def test_warm_start_steps_are_monotone(basis, coef):
    X, _ = make_measurement(coef, basis, 100, snr=2, random_state=3)
    # float64: the bound and score() are then the same float64 arithmetic
    # (equal to 1e-12).  With dtype="auto" this data runs in float32, where
    # the two differ at float32's rounding (1.6e-9 relative measured on an
    # AVX-512 CPU, 0 on an AVX2 one) and monotonicity holds only to it.
    em = ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=1, warm_start=True,
                           random_state=0, dtype=np.float64)
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(6):
            em.fit(X)
            scores.append(em.lower_bound_)
    assert np.all(np.diff(scores) >= -1e-12)
    assert np.isclose(em.score(X), scores[-1], rtol=1e-12)


def test_results_do_not_depend_on_n_jobs_or_chunk_size(basis, coef):
    X, _ = make_measurement(coef, basis, 150, snr=3, random_state=4)
    # float64: chunking changes float32 sums at float32's rounding level
    kw = dict(basis=basis, rotations=6, max_iter=8, tol=0.0, random_state=7, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = ApproxEMEstimator(L, **kw).fit(X)
        others = [ApproxEMEstimator(L, n_jobs=2, **kw).fit(X),
                  ApproxEMEstimator(L, working_memory=0.05, **kw).fit(X),
                  ApproxEMEstimator(L, working_memory=0.05, n_jobs=-1, **kw).fit(X),
                  ApproxEMEstimator(L, **kw).fit(X)]
    for other in others:
        np.testing.assert_allclose(other.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(other.shift_probabilities_, ref.shift_probabilities_,
                                   rtol=1e-10, atol=1e-14)
        assert np.isclose(other.noise_variance_, ref.noise_variance_, rtol=1e-10)
    assert np.array_equal(others[-1].coef_, ref.coef_)  # same settings: bit-identical
    # the default (float32 E-steps, SQUAREM): n_jobs does not change a bit
    kw.pop("dtype")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = ApproxEMEstimator(L, **kw).fit(X)
        b = ApproxEMEstimator(L, n_jobs=2, **kw).fit(X)
    assert np.array_equal(a.coef_, b.coef_) and a.n_e_steps_ == b.n_e_steps_


def test_noise_free_recovery_and_detection(basis, coef):
    """Copies on the rotation grid, (almost) no noise: exact recovery, and
    predict finds the copies."""
    K = 8
    X, pos, angles = _grid_measurement(coef, basis, 200, K, 0.0, seed=5)
    em = ApproxEMEstimator(L, basis=basis, rotations=K, noise_variance=1e-2, max_iter=200,
                           tol=1e-10, random_state=0,
                           initializer=FixedInitializer(coef + 0.5 * np.ones_like(coef)))
    em.fit(X)
    assert relative_error(coef, em.coef_, basis) < 1e-3
    assert abs(em.density_ - 0.04) < 0.005
    _check_detections(em, X, pos, angles, coef, basis, K, 0.95)


def test_high_snr_recovery_from_random_start(basis, coef):
    K = 8
    X, pos, angles = _grid_measurement(coef, basis, 250, K, 1e-4, seed=6)
    em = ApproxEMEstimator(L, basis=basis, rotations=K, max_iter=300, tol=1e-9,
                           n_init=3, random_state=1)
    em.fit(X)
    assert relative_error(coef, em.coef_, basis) < 1e-3
    _check_detections(em, X, pos, angles, coef, basis, K, 0.95)


def test_continuous_rotations_high_snr_detection(basis, coef):
    """Continuous angles at SNR 100: within one pixel and one rotation step."""
    K = 16
    X, truth = make_measurement(coef, basis, 250, snr=100, random_state=8)
    em = ApproxEMEstimator(L, basis=basis, rotations=K, max_iter=200, tol=1e-8,
                           initializer=FixedInitializer(coef), random_state=0).fit(X)
    # K-grid bias of about 1 - sinc(2 pi / 16) on nu = 2 (see the helper's docstring)
    assert relative_error(coef, em.coef_, basis) < 0.05
    _check_detections(em, X, truth.positions, truth.angles, coef, basis, K, 0.95)


def _check_detections(em, X, pos, angles, coef, basis, K, fraction):
    det = em.predict(X)
    beta, _ = align_rotation(coef, em.coef_, basis)
    found = 0
    for (r, c), a in zip(pos, angles):
        near = (np.abs(det["row"] - r) <= 1) & (np.abs(det["col"] - c) <= 1)
        diff = np.angle(np.exp(1j * (det["angle"][near] - (a + beta))))
        found += bool(np.any(np.abs(diff) <= 2 * np.pi / K + 1e-9))
    assert found >= fraction * len(pos)
    assert np.all((det["probability"] > 0) & (det["probability"] <= 1))


def test_recovery_improves_with_measurement_size(basis, coef):
    """Paper's settings (L=5, 10 coefficients, density 0.04, SNR 5), K=8."""
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for size in (200, 800):
            errs = []
            for seed in range(2):
                X, truth = make_measurement(coef, basis, size, snr=5, random_state=seed)
                em = ApproxEMEstimator(L, basis=basis, rotations=8, max_iter=150, tol=1e-6,
                                       noise_variance=truth.noise_variance,
                                       initializer=FixedInitializer(
                                           coef + 0.3 * np.linalg.norm(coef) / 3),
                                       random_state=seed).fit(X)
                errs.append(relative_error(coef, em.coef_, basis))
            errors.append(np.mean(errs))
    # 16x more patches: the error should drop by ~4x (1/sqrt(N_d)); ask for 1.5x
    assert errors[1] < errors[0] / 1.5


def test_score_predict_proba_sample(basis, coef):
    X, truth = make_measurement(coef, basis, 120, snr=5, random_state=9)
    em = ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=30, random_state=0,
                           initializer=FixedInitializer(coef))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        em.fit(X)
    s = em.score_samples(X)
    assert s.shape == (em.n_patches_,) == ((120 // L) ** 2,)
    assert np.isclose(em.score(X), s.mean())
    assert np.isclose(em.score(X), em.lower_bound_, rtol=1e-12)
    p = em.predict_proba(X)
    assert p.shape == s.shape and np.all((p >= 0) & (p <= 1))
    Y, t2 = em.sample(100, random_state=0)
    assert Y.shape == (100, 100) and np.isclose(t2.noise_variance, em.noise_variance_)
    stack, _ = em.sample(50, n_measurements=3, random_state=0)
    assert stack.shape == (3, 50, 50)
    assert em.image_.shape == (L, L) and em.shift_probabilities_.shape == (2 * L, 2 * L)
    assert np.isclose(em.shift_probabilities_.sum(), 1.0)


def test_auto_tol_is_per_pixel_of_the_patch(basis, coef):
    # "auto"'s gain per patch (its phases' and float32 finish's, tol_) is
    # 4e-8 per pixel: the paper's 1e-6 at L = 5 exactly, 4e-8 L**2 beyond;
    # a float is kept as given, and stops the fit by the gain rule
    X, _ = make_measurement(coef, basis, 60, snr=5, random_state=0)
    assert ApproxEMEstimator(L, max_iter=0).fit(X).tol_ == 1e-6
    assert ApproxEMEstimator(L, max_iter=0, tol=1e-3).fit(X).tol_ == 1e-3
    assert ApproxEMEstimator(L, max_iter=0, tol=0).fit(X).tol_ == 0.0
    big = FourierBesselBasis(9)
    X, _ = make_measurement(make_target(big, random_state=0), big, 150, snr=5, random_state=0)
    assert ApproxEMEstimator(9, max_iter=0).fit(X).tol_ == pytest.approx(4e-8 * 81, rel=1e-15)
    em = ApproxEMEstimator(9, dtype=np.float64, tol=4e-8 * 81, random_state=0).fit(X)
    # it stopped at the first iteration that gained less than tol_
    gains = np.diff(em.log_likelihood_history_)
    assert em.converged_ and gains[-1] < em.tol_ and np.all(gains[:-1] >= em.tol_)


def test_max_iter_zero_returns_initialization(basis, coef):
    X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    init = FixedInitializer(coef, density_to_shift_probabilities(0.03, L))
    em = ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=0, initializer=init,
                           noise_variance=truth.noise_variance).fit(X)
    np.testing.assert_array_equal(em.coef_, coef)
    assert em.n_iter_ == 0 and not em.converged_
    assert np.isclose(em.density_, 0.03)
    assert len(em.log_likelihood_history_) == 1


def test_convergence_warning(basis, coef):
    X, _ = make_measurement(coef, basis, 80, snr=5, random_state=0)
    em = ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=2, tol=0.0, random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"did not converge in max_iter=2 .*Increase"):
        em.fit(X)
    assert em.n_iter_ == 2 and not em.converged_


def test_n_init_never_worse_than_one_start(basis, coef):
    X, _ = make_measurement(coef, basis, 100, snr=2, random_state=1)
    kw = dict(basis=basis, rotations=4, max_iter=20, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = ApproxEMEstimator(L, n_init=1, **kw).fit(X)
        five = ApproxEMEstimator(L, n_init=5, **kw).fit(X)
        five_par = ApproxEMEstimator(L, n_init=5, n_jobs=2, **kw).fit(X)
    assert five.lower_bound_ >= one.lower_bound_ - 1e-12
    np.testing.assert_allclose(five_par.coef_, five.coef_, rtol=1e-10, atol=1e-12)


def test_float32_fast_path_close_to_float64(basis, coef):
    X, _ = make_measurement(coef, basis, 120, snr=5, random_state=2)
    kw = dict(basis=basis, rotations=4, max_iter=10, tol=0.0, random_state=0,
              initializer=FixedInitializer(coef))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = ApproxEMEstimator(L, **kw).fit(X)
        b = ApproxEMEstimator(L, dtype=np.float32, **kw).fit(X)
    assert relative_error(a.coef_, b.coef_, basis) < 1e-3


def test_stack_and_sequence_inputs(basis, coef):
    X, _ = make_measurement(coef, basis, 60, snr=5, n_measurements=3, random_state=0)
    kw = dict(basis=basis, rotations=4, max_iter=3, tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = ApproxEMEstimator(L, **kw).fit(X)
        b = ApproxEMEstimator(L, **kw).fit(list(X))
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.n_patches_ == 3 * (60 // L) ** 2
    det = a.predict(X)
    assert set(np.unique(det["measurement"])) <= {0, 1, 2}


def test_input_is_not_modified(basis, coef):
    X, _ = make_measurement(coef, basis, 60, snr=5, random_state=0)
    X0 = X.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=3).fit(X)
    np.testing.assert_array_equal(X, X0)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(rotations=0), ValueError, "rotations"),
    (dict(rotations="8"), TypeError, "rotations"),
    (dict(noise_variance=0.0), ValueError, "noise_variance"),
    (dict(noise_variance=-1.0), ValueError, "noise_variance"),
    (dict(max_iter=-1), ValueError, "max_iter"),
    (dict(n_init=0), ValueError, "n_init"),
    (dict(tol=-1.0), ValueError, "tol"),
    (dict(tol="fast"), TypeError, "tol must be a real number or 'auto'"),
    (dict(n_jobs=0), ValueError, "n_jobs"),
    (dict(working_memory=0), ValueError, "working_memory"),
    (dict(dtype=np.int32), ValueError, "dtype"),
    (dict(initializer="random"), TypeError, "initializer"),
    (dict(basis=FourierBesselBasis(7)), ValueError, "image_size"),
])
def test_bad_parameters(kwargs, exc, match, coef):
    # a valid measurement, so that only the parameter is wrong (a constant one
    # is itself rejected, and em.py checks dtype and initializer after X)
    X = np.random.default_rng(0).normal(size=(20, 20))
    with pytest.raises(exc, match=match):
        ApproxEMEstimator(L, **kwargs).fit(X)


@pytest.mark.parametrize("X, exc, match", [
    (np.zeros((3, 20)), ValueError, "smaller than one"),
    (np.full((20, 20), np.nan), ValueError, "finite"),
    (np.zeros((2, 2, 20, 20)), ValueError, "shape"),
    (np.zeros(20), ValueError, "shape"),
    ("not-a-file.npy", FileNotFoundError, "not found"),
    (np.zeros((20, 20), dtype=complex), TypeError, "real"),
])
def test_bad_measurements(X, exc, match):
    with pytest.raises(exc, match=match):
        ApproxEMEstimator(L).fit(X)


def test_even_image_size():
    with pytest.raises(ValueError, match="image_size must be odd"):
        ApproxEMEstimator(4).fit(np.zeros((20, 20)))


def test_unfitted_use():
    em = ApproxEMEstimator(L)
    for method in (em.score, em.predict, em.predict_proba, em.score_samples):
        with pytest.raises(NotFittedError):
            method(np.zeros((20, 20)))
    with pytest.raises(NotFittedError):
        em.sample(20)


def test_sklearn_protocol(basis, coef):
    em = ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=3, random_state=0)
    c = clone(em)
    assert c.get_params()["rotations"] == 4 and c.basis is not basis
    c.set_params(basis__n_coefficients=6, rotations=8)
    assert c.basis.n_functions == 6 and c.get_params()["rotations"] == 8
    assert basis.n_functions == 10  # the user's object is untouched
    X, _ = make_measurement(coef, basis, 60, snr=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        em.fit(X)
    em2 = pickle.loads(pickle.dumps(em))
    np.testing.assert_array_equal(em2.coef_, em.coef_)
    assert np.isclose(em2.score(X), em.score(X))


def test_grid_search_over_stack(basis, coef):
    X, _ = make_measurement(coef, basis, 60, snr=5, n_measurements=4, random_state=0)
    em = ApproxEMEstimator(L, basis=FourierBesselBasis(L, n_coefficients=10), rotations=4,
                           max_iter=5, random_state=0)
    grid = GridSearchCV(em, {"basis__n_coefficients": [4, 10], "rotations": [2, 4]},
                        cv=KFold(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X)
    assert set(grid.best_params_) == {"basis__n_coefficients", "rotations"}
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    assert grid.best_estimator_.coef_.shape[0] in (4, 5, 10)


def test_verbose_prints_iterations(basis, coef, capsys):
    X, _ = make_measurement(coef, basis, 60, snr=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ApproxEMEstimator(L, basis=basis, rotations=2, max_iter=2, verbose=1).fit(X)
    out = capsys.readouterr().out.strip().splitlines()
    # the default tol="auto" tests the change still to come, not a gain
    assert len(out) == 3 and "iter 2" in out[-1] and "remaining change" in out[-1]


def test_em_from_autocorrelation_beats_autocorrelation(basis, coef):
    """The paper's Fig. 2-3 claim at its settings (L=5, 10 coefficients,
    density 0.04, SNR 5): EM initialized by autocorrelation analysis has the
    smaller rotation-aligned error."""
    from mtdlearn import AutocorrelationEstimator, AutocorrelationInitializer

    for seed in range(2):
        X, truth = make_measurement(coef, basis, 600, snr=5, random_state=seed)
        ac = AutocorrelationEstimator(L, basis=basis, n_init=3, random_state=seed).fit(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            em = ApproxEMEstimator(L, basis=basis, rotations=8, max_iter=100, tol=1e-5,
                                   initializer=AutocorrelationInitializer(n_init=3),
                                   random_state=seed).fit(X)
        assert relative_error(coef, em.coef_, basis) < relative_error(coef, ac.coef_, basis)


@pytest.mark.slow
def test_error_decays_like_inverse_square_root_of_size(basis):
    """Fig. 3's law of large numbers at the paper's settings (SNR 5, K = 16,
    EM from autocorrelation analysis): the mean error over 4 targets falls
    with a slope near -1/2 in N^2 (accepting -0.8 to -0.3 for 4 trials)."""
    from mtdlearn.experiments import run_trials

    sizes = [400, 800, 1600]
    res = run_trials([dict(seed=s, size=n, snr=5, rotations=16, n_init=3)
                      for n in sizes for s in range(4)], n_jobs=-1)
    err = np.array([r["error_em"] for r in res]).reshape(3, 4).mean(1)
    slope = np.polyfit(np.log(np.square(sizes)), np.log(err), 1)[0]
    assert -0.8 < slope < -0.3
    ac = np.array([r["error_ac"] for r in res]).reshape(3, 4).mean(1)
    assert np.all(err < ac)


def test_warm_start_checks_the_previous_state(basis, coef):
    X, truth = make_measurement(coef, basis, 80, snr=5, random_state=0)
    em = ApproxEMEstimator(L, basis=basis, rotations=2, max_iter=2, warm_start=True,
                           noise_variance=truth.noise_variance, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        em.fit(X)
        em.set_params(noise_variance=2 * truth.noise_variance)
        em.fit(X)
    assert em.noise_variance_ == 2 * truth.noise_variance    # the new fixed value is used
    em.set_params(basis=FourierBesselBasis(L, n_coefficients=6))
    with pytest.raises(ValueError, match="coef of shape"):
        em.fit(X)


def test_numerical_failure_is_reported_not_returned(basis, coef):
    """float32 with a tiny fixed noise variance on huge values overflows: the fit
    raises with advice instead of returning NaN coefficients."""
    X, _ = make_measurement(coef, basis, 60, snr=5, random_state=0)
    em = ApproxEMEstimator(L, basis=basis, rotations=2, max_iter=3, dtype=np.float32,
                           noise_variance=1e-30, initializer=FixedInitializer(coef))
    with pytest.raises(FloatingPointError, match="not finite: scale the measurement"):
        with np.errstate(all="ignore"):
            em.fit(X * 1e10)
    # values whose squares float32 cannot hold are refused before any arithmetic
    with pytest.raises(ValueError, match="too large for the floating-point arithmetic of "
                                         "ApproxEMEstimator .* scale the measurement"):
        em.fit(X * 1e20)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_underdetermined_m_steps_stay_finite_and_monotone(seed):
    """L = 13's 162 default functions from 49 patches at SNR 3: from the random
    start the posteriors leave combinations of the functions unobserved, and
    the normal equations are singular.  Solved exactly, float32 rounding there
    blew the coefficients up and the fit raised FloatingPointError at every
    seed; the generalized M-step (patch_model.solve_gram) keeps them and EM
    stays monotone (float64 to rounding, float32 to its resolution)."""
    basis13 = FourierBesselBasis(13)
    rng = np.random.default_rng(seed)
    X, _ = make_measurement(0.1 * rng.standard_normal(basis13.n_functions), basis13, 120,
                            snr=3, random_state=seed + 1)
    for dtype, slack in ((np.float64, 1e-12), (np.float32, 1e-6)):
        # center=False: a move of the image is not an EM step (its iteration
        # may lower the log-likelihood); what is tested here is the M-step
        em = ApproxEMEstimator(13, max_iter=5, tol=0.0, dtype=dtype, acceleration=None,
                               refinement=None, center=False, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            em.fit(X)
        h = np.asarray(em.log_likelihood_history_)
        assert np.all(np.isfinite(em.coef_))
        assert np.all(np.diff(h) >= -slack * np.abs(h).max())


# ------------------------------------------------------ time to accuracy
def _fit(X, basis, **kw):
    params = dict(basis=basis, rotations=4, max_iter=2000, tol=1e-10, random_state=0,
                  dtype=np.float64, acceleration=None, refinement=None)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return ApproxEMEstimator(L, **params).fit(X)


@pytest.fixture(scope="module")
def small_problem(basis, coef):
    X, _ = make_measurement(coef, basis, 100, snr=10, random_state=11)
    return X, _fit(X, basis)


def _assert_monotone(em):
    h = np.asarray(em.log_likelihood_history_)
    start = em.float64_from_iter_ or 0
    # monotone within each precision (float32 rounding level before the switch)
    assert np.all(np.diff(h[start + 1:]) >= -1e-12 * np.abs(h).max())
    if start:
        assert np.all(np.diff(h[:start + 1]) >= -1e-6 * np.abs(h).max())


@pytest.mark.parametrize("kw", [dict(acceleration="squarem"),
                                dict(acceleration="squarem", dtype="auto"),
                                dict(dtype="auto", tol=1e-8)])
def test_variants_reach_the_plain_fixed_point_monotonically(basis, small_problem, kw):
    X, plain = small_problem
    other = _fit(X, basis, **kw)
    assert plain.converged_ and other.converged_
    _assert_monotone(other)
    # plain EM crawls: at its stop it is still ~1e-8 below the fixed point
    assert abs(other.lower_bound_ - plain.lower_bound_) < (1e-7 if other.tol < 1e-9 else 1e-5)
    np.testing.assert_allclose(other.coef_, plain.coef_, atol=5e-3 * np.abs(plain.coef_).max())


def test_squarem_saves_e_steps_and_counts_them(basis, small_problem):
    X, plain = small_problem
    sq = _fit(X, basis, acceleration="squarem")
    assert plain.n_e_steps_ == plain.n_iter_ + 1          # one E-step per iteration + start
    assert sq.n_iter_ + 1 <= sq.n_e_steps_ <= 3 * sq.n_iter_ + 1
    assert sq.n_e_steps_ < plain.n_e_steps_ / 2
    assert sq.lower_bound_ >= plain.lower_bound_ - 1e-12


def test_auto_precision_finishes_in_float64(basis, small_problem):
    X, plain = small_problem
    em = _fit(X, basis, dtype="auto", tol=1e-8)
    assert em.float64_from_iter_ is not None and em.float64_from_iter_ < em.n_iter_
    # high SNR: float32 logits would cancel, so "auto" runs in float64 throughout
    X_hi, _ = make_measurement(plain.coef_, basis, 60, snr=1e6, random_state=0)
    hi = _fit(X_hi, basis, dtype="auto", max_iter=3)
    assert hi.float64_from_iter_ is None and hi.n_e_steps_ == 4


def test_incremental_em_reaches_the_batch_fixed_point(basis, small_problem, monkeypatch):
    from mtdlearn.em import _incremental

    monkeypatch.setattr(_incremental, "_BLOCK_PATCHES", 100)   # 4 blocks of the 400 patches
    X, plain = small_problem
    em = _fit(X, basis, acceleration="incremental")
    assert em.converged_
    assert abs(em.lower_bound_ - plain.lower_bound_) < 1e-7
    np.testing.assert_allclose(em.coef_, plain.coef_, atol=5e-3 * np.abs(plain.coef_).max())
    h = np.asarray(em.log_likelihood_history_)
    assert h[1] > plain.log_likelihood_history_[1]           # a pass beats one EM step
    # monotone once the batch phase has started (after the passes' histories)
    batch = np.flatnonzero(np.diff(h) < 0)
    assert batch.size <= 1
    tail = h[(batch[0] + 1 if batch.size else 0):]
    assert np.all(np.diff(tail) >= -1e-12 * np.abs(h).max())


def test_refinement_reaches_the_fine_grid(basis, coef):
    """Continuous angles at SNR 100: K=4 then 4x finer matches K=16 directly."""
    X, _ = make_measurement(coef, basis, 150, snr=100, random_state=8)
    kw = dict(basis=basis, max_iter=300, tol=1e-8, initializer=FixedInitializer(coef),
              random_state=0)
    coarse = ApproxEMEstimator(L, rotations=4, refinement=None, **kw).fit(X)
    fine = ApproxEMEstimator(L, rotations=16, refinement=None, **kw).fit(X)
    refined = ApproxEMEstimator(L, rotations=4, refinement=4, **kw).fit(X)
    err = [relative_error(coef, em.coef_, basis) for em in (coarse, fine, refined)]
    # the grid bias goes (err[0] is ~10x err[1]); the refined and the direct
    # fine fits end at different local fixed points of the same 16-point
    # objective (from 4->8->16 and from the truth), whose errors differ by
    # the estimation noise of 36 copies: 1.25x is the bound
    assert err[2] < 0.25 * err[0] and err[2] < 1.25 * err[1]
    assert refined.angles_.shape == (16,) and refined.rotations_.n_rotations == 16
    assert 0 < refined.coarse_n_iter_ < refined.n_iter_
    # a refit without refinement does not keep the previous fit's coarse count
    refined.set_params(refinement=None).fit(X)
    assert not hasattr(refined, "coarse_n_iter_") and refined.n_iter_ > 0
    assert refined.predict(X)["angle"].max() < 2 * np.pi
    with pytest.raises(ValueError, match="refinement must be None, 'auto' or an int >= 2"):
        ApproxEMEstimator(L, refinement=1).fit(X)
    with pytest.raises(ValueError, match="refinement must be None, 'auto' or an int >= 2"):
        ApproxEMEstimator(L, refinement="fine").fit(X)


def test_auto_refinement_is_the_default_and_keeps_the_paper_setting(basis, coef, tmp_path):
    """The paper's basis (nu_max = 2) at K >= 2 runs one grid, bit for bit as
    refinement=None; where K < nu_max, "auto" fits the grid of r K rotations
    alone, bit for bit as rotations=r K; a grid that is not uniform is kept;
    a checkpointed fit runs the fine grid too."""
    X, _ = make_measurement(coef, basis, 80, snr=20, random_state=5)
    kw = dict(basis=basis, max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        default = ApproxEMEstimator(L, rotations=4, **kw).fit(X)
        assert default.refinement == "auto"
        plain = ApproxEMEstimator(L, rotations=4, refinement=None, **kw).fit(X)
        np.testing.assert_array_equal(default.coef_, plain.coef_)
        assert default.log_likelihood_history_ == plain.log_likelihood_history_
        # K = 1 < nu_max = 2: auto fits the 2-point grid, without the 1-point one
        auto = ApproxEMEstimator(L, rotations=1, **kw).fit(X)
        two = ApproxEMEstimator(L, rotations=2, refinement=None, **kw).fit(X)
        np.testing.assert_array_equal(auto.coef_, two.coef_)
        assert auto.log_likelihood_history_ == two.log_likelihood_history_
        assert auto.rotations_.n_rotations == 2 and auto.angles_.shape == (2,)
        assert not hasattr(auto, "coarse_n_iter_")
        assert auto.get_params()["rotations"] == 1   # the parameter is not touched
        # a grid of one's own is kept as given
        from mtdlearn.basis.rotations import check_rotation_grid

        class OneAngle:
            def get_angles(self):
                return np.array([0.3])

        custom = ApproxEMEstimator(L, rotations=OneAngle(), **kw).fit(X)
        assert check_rotation_grid(custom.rotations_)[1].tolist() == [0.3]
        # checkpointed: the same fine grid (an explicit refinement is refused there)
        saved = ApproxEMEstimator(L, rotations=1, **kw).fit(X, checkpoint=tmp_path / "c.npz")
        assert saved.rotations_.n_rotations == 2
        np.testing.assert_array_equal(saved.coef_, auto.coef_)
        with pytest.raises(ValueError, match="refinement"):
            ApproxEMEstimator(L, rotations=1, refinement=2, **kw).fit(
                X, checkpoint=tmp_path / "d.npz")


def test_refinement_history_holds_every_grid(basis, coef):
    """K=4, refinement=4 runs the grids 4, 8, 16: each phase's history in turn."""
    X, _ = make_measurement(coef, basis, 120, snr=100, random_state=3)
    em = ApproxEMEstimator(L, basis=basis, rotations=4, refinement=4, max_iter=300, tol=1e-8,
                           initializer=FixedInitializer(coef), random_state=0).fit(X)
    # one entry for each phase's first E-step, one per iteration
    assert len(em.log_likelihood_history_) == em.n_iter_ + 3
    assert em.converged_ and em.rotations_.n_rotations == 16


@given(st.lists(st.integers(1, 50000), min_size=1, max_size=20))
def test_incremental_blocks_of_a_distributed_source_end_on_micrographs(sizes):
    """On a distributed source each block edge is the micrograph boundary
    nearest to the in-memory edge (the lower one on a tie)."""
    from types import SimpleNamespace

    from mtdlearn.em._incremental import blocks

    offsets = np.concatenate([[0], np.cumsum(sizes)])
    data = SimpleNamespace(distributed=True, offsets=offsets, n_patches=int(offsets[-1]))
    edges = [a for a, _ in blocks(data)] + [blocks(data)[-1][1]]
    memory = blocks(SimpleNamespace(distributed=False, n_patches=data.n_patches))
    ideal = np.array([a for a, _ in memory] + [memory[-1][1]])
    nearest = offsets[np.abs(offsets[:, None] - ideal[None, :]).argmin(axis=0)]
    assert edges == np.unique(nearest).tolist()
    assert edges[0] == 0 and edges[-1] == data.n_patches


def test_coarse_phase_threshold_scales_with_the_phase_gain():
    """A coarse grid's phase ends below 1e-4 per patch (or ``tol``), or below
    1e-3 of what the phase has gained since its first E-step."""
    from mtdlearn.em import _refinement

    est = ApproxEMEstimator(5, tol=1e-6)
    est._validate_params()                 # the fit resolves tol into tol_
    assert _refinement.coarse_tol(est.tol_, [-50.0, -40.0, -39.9]) == pytest.approx(1e-3 * 10.1)
    assert _refinement.coarse_tol(est.tol_, [-50.0, -49.99]) == _refinement._COARSE_TOL
    loose = ApproxEMEstimator(5, tol=1e-3)
    loose._validate_params()
    assert _refinement.coarse_tol(loose.tol_, [-50.0, -49.99]) == 1e-3


def test_particle_diameter_restricts_the_image_to_a_smaller_disk():
    from mtdlearn import make_particle

    basis = FourierBesselBasis(11)
    coef = make_particle(basis, diameter=6.0, random_state=0)
    X, _ = make_measurement(coef, basis, 220, density=0.08, snr=20, random_state=0)
    em = ApproxEMEstimator(11, particle_diameter=8, max_iter=3, random_state=0)
    with pytest.warns(ConvergenceWarning):   # three iterations on purpose
        em.fit(X)
    assert em.basis_ == FourierBesselBasis(11, radius=4.0)
    assert em.basis_.n_functions < FourierBesselBasis(11).n_functions
    # nothing outside the disk of diameter 8 around the centre pixel
    y, x = np.mgrid[-5:6, -5:6]
    assert np.all(em.image_[np.hypot(x, y) >= 4.0] == 0)
    for bad, match in ((0.5, "particle_diameter must be >= 3"),
                       (13, "at most image_size")):
        with pytest.raises(ValueError, match=match):
            ApproxEMEstimator(11, particle_diameter=bad).fit(X)


# -- several kinds of particle (n_components) --------------------------------
@pytest.fixture(scope="module")
def two_kinds():
    basis = FourierBesselBasis(5, n_coefficients=10)
    coefs = np.stack([make_target(basis, random_state=0), make_target(basis, random_state=1)])
    X, truth = make_measurement(coefs, basis, 600, density=0.08, snr=20, weights=[0.4, 0.6],
                                random_state=0)
    return basis, coefs, X, truth


def test_n_components_recovers_both_kinds_and_their_abundances(two_kinds):
    basis, coefs, X, truth = two_kinds
    em = ApproxEMEstimator(5, basis=basis, rotations=8, n_components=2, random_state=0)
    em.fit(X)
    assert em.coef_.shape == (2, 10) and em.image_.shape == (2, 5, 5)
    # the default start fits one image first, then splits it
    assert 1 <= em.one_component_n_iter_ < em.n_iter_
    # each estimate against its nearest kind: the label is arbitrary
    errors = np.array([[relative_error(c, e, basis) for c in coefs] for e in em.coef_])
    match = errors.argmin(axis=1)
    assert sorted(match) == [0, 1]
    # one-kind fits of as many copies reach ~0.02 at this SNR; a blend of the two is 0.2-0.4
    assert errors[[0, 1], match].max() < 0.06, errors
    # abundances: the kinds' shares of the copies, within 5 binomial standard deviations
    share = np.bincount(truth.component, minlength=2) / truth.n_copies
    sd = np.sqrt(share * (1 - share) / truth.n_copies)
    np.testing.assert_array_less(np.abs(em.weights_ - share[match]), 5 * sd + 0.02)
    assert abs(em.weights_.sum() - 1.0) < 1e-12
    # the picks name the kind: each true copy's most probable pick at its
    # corner names its kind in 90 % of the 1152 copies (measured; L = 5 leaves
    # 25 pixels to tell two random images apart at SNR 20)
    det = em.predict(X)
    assert det.dtype.names[-1] == "component"
    kind = {tuple(p): c for p, c in zip(truth.positions, truth.component)}
    best = {}
    for r, c, k, prob in zip(det["row"], det["col"], det["component"], det["probability"]):
        if (r, c) in kind and prob > best.get((r, c), (0, -1.0))[1]:
            best[(r, c)] = (match[k], prob)
    assert len(best) > 0.9 * truth.n_copies
    assert np.mean([kind[key] == k for key, (k, _) in best.items()]) > 0.85
    # a mixture draws mixtures
    X_new, truth_new = em.sample(200, random_state=0)
    assert truth_new.component is not None and truth_new.coef.shape == (2, 10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_two_identical_components_are_the_one_component_fit(two_kinds):
    # identical rows with equal abundances stay identical: each takes half of
    # every posterior, solves the same normal equations, and the fit is the
    # one-image fit (to rounding)
    basis, coefs, X, _ = two_kinds
    start = coefs.mean(axis=0)
    common = dict(basis=basis, rotations=4, dtype=np.float64, acceleration=None,
                  refinement=None, center=False, max_iter=5, tol=0.0, random_state=0)
    one = ApproxEMEstimator(5, initializer=FixedInitializer(start), **common).fit(X)
    two = ApproxEMEstimator(5, initializer=FixedInitializer(np.stack([start, start])),
                            n_components=2, **common).fit(X)
    np.testing.assert_allclose(two.coef_, np.stack([one.coef_] * 2), rtol=0, atol=1e-9)
    np.testing.assert_allclose(two.weights_, [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(two.log_likelihood_history_, one.log_likelihood_history_,
                               rtol=1e-12)
    assert two.n_parameters_ == one.n_parameters_ + 10 + 1
    assert one.weights_.tolist() == [1.0]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_bic_and_aic_follow_gaussian_mixture_conventions(two_kinds):
    basis, _, X, _ = two_kinds
    em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=3, random_state=0).fit(X)
    n = em.n_patches_
    assert em.n_parameters_ == 10 + 4 * 25 - 1 + 1
    loglik = em.score(X) * n
    assert em.bic(X) == pytest.approx(-2 * loglik + em.n_parameters_ * np.log(n), rel=1e-12)
    assert em.aic(X) == pytest.approx(-2 * loglik + 2 * em.n_parameters_, rel=1e-12)


def test_n_components_validation():
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        ApproxEMEstimator(5, n_components=0).fit(np.zeros((50, 50)))
    with pytest.raises(ValueError, match="n_components > 1 does not support select_bandlimit"):
        ApproxEMEstimator(5, n_components=2, select_bandlimit=True).fit(np.zeros((50, 50)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_continues_a_mixture_with_its_abundances(two_kinds):
    basis, coefs, X, _ = two_kinds
    # a start with one row per kind: no one-image phase, iterations add up
    common = dict(basis=basis, rotations=4, n_components=2, dtype=np.float64,
                  acceleration=None, refinement=None, tol=0.0, random_state=0,
                  initializer=FixedInitializer(coefs + 0.3))
    straight = ApproxEMEstimator(5, max_iter=6, **common).fit(X)
    warm = ApproxEMEstimator(5, max_iter=3, warm_start=True, **common).fit(X)
    assert not np.allclose(warm.weights_, 0.5)
    warm.set_params(max_iter=3).fit(X)     # continues from coef_ and weights_
    np.testing.assert_allclose(warm.coef_, straight.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(warm.weights_, straight.weights_, rtol=1e-10)


def test_a_start_with_one_row_per_kind_and_no_abundances_has_equal_ones(two_kinds):
    # max_iter=0 returns the start: its abundances are the equal ones the
    # E-step used, one per kind, and the model scores and predicts with them
    basis, coefs, X, _ = two_kinds
    em = ApproxEMEstimator(5, basis=basis, rotations=4, n_components=2, max_iter=0,
                           initializer=FixedInitializer(coefs)).fit(X)
    assert em.weights_.tolist() == [0.5, 0.5]
    assert em.predict_proba(X).shape == (em.n_patches_, 2)
