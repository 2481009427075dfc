"""Tests of mtdlearn.autocorrelation.estimator: AutocorrelationEstimator and
AutocorrelationInitializer."""

import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from mtdlearn import AutocorrelationEstimator, AutocorrelationInitializer, FixedInitializer
from mtdlearn.data.simulate import make_measurement
from mtdlearn.metrics import relative_error
from mtdlearn.autocorrelation.moments import measurement_autocorrelations
from mtdlearn.imaging.shifts import density_to_shift_probabilities

L = 5


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
    (dict(shift_radius="all"), ValueError, "shift_radius"),
    (dict(shift_radius=-1.0), ValueError, "shift_radius"),
])
def test_estimator_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        AutocorrelationEstimator(5, **kwargs).fit(np.zeros((20, 20)))


def test_estimator_bad_measurements():
    with pytest.raises(ValueError, match="smaller than one"):
        AutocorrelationEstimator(5).fit(np.zeros((4, 40)))
    with pytest.raises(ValueError, match="finite"):
        AutocorrelationEstimator(5).fit(np.full((20, 20), np.inf))


def test_estimator_shift_radius(basis, coef):
    """'auto' keeps the full third moment at L = 5 (bit for bit the None fit);
    a radius fits on the pairs of the kept shifts, and the initializer passes
    it on."""
    from mtdlearn.autocorrelation.moments import third_order_shifts

    X, _ = make_measurement(coef, basis, 300, snr=5, random_state=0)
    kw = dict(basis=basis, n_init=2, random_state=0)
    auto = AutocorrelationEstimator(5, **kw).fit(X)
    full = AutocorrelationEstimator(5, shift_radius=None, **kw).fit(X)
    assert auto.shift_radius_ is None and auto.autocorrelations_[2].shape == (5, 5, 5, 5)
    np.testing.assert_array_equal(auto.coef_, full.coef_)
    sub = AutocorrelationEstimator(5, shift_radius=3.5, **kw).fit(X)
    assert sub.shift_radius_ == 3.5
    n = len(third_order_shifts(5, 3.5))
    assert sub.autocorrelations_[2].shape == (n, n)
    assert relative_error(coef, sub.coef_, basis) < 0.5
    init = AutocorrelationInitializer(max_iter=5, shift_radius=3.5)
    assert init.get_params()["shift_radius"] == 3.5
    with pytest.warns(ConvergenceWarning) as record:  # 5 iterations on purpose
        state = init.initialize([X], basis, None, np.random.default_rng(0))
    assert state.coef.shape == coef.shape
    # the warning says it is the EM's start, and what to change there (not the
    # moment fit's own advice, addressed to a user who fitted it)
    assert [str(w.message) for w in record] == [
        "AutocorrelationInitializer: the autocorrelation fit of the EM's start did not "
        "converge in max_iter=5 iterations; the EM starts from its estimate all the same.  "
        "If the EM's result is poor, raise the initializer's max_iter or n_init, or give "
        "the EM another initializer."]


def test_n_jobs_changes_no_bit_of_a_fit_on_a_subset(basis, coef):
    """With a shift_radius one start's cost runs on n_jobs threads, by a fixed
    partition of the angles: the estimate is the same, bit for bit; the
    initializer passes n_jobs on."""
    X, _ = make_measurement(coef, basis, 300, snr=5, random_state=0)
    fits = [AutocorrelationEstimator(5, basis=basis, shift_radius=3.5, random_state=0,
                                     n_jobs=n_jobs).fit(X) for n_jobs in (None, 2)]
    np.testing.assert_array_equal(fits[0].coef_, fits[1].coef_)
    assert (fits[0].cost_, fits[0].n_iter_) == (fits[1].cost_, fits[1].n_iter_)
    states = [AutocorrelationInitializer(shift_radius=3.5, n_jobs=n_jobs).initialize(
        [X], basis, None, np.random.default_rng(0)) for n_jobs in (None, 2)]
    np.testing.assert_array_equal(states[0].coef, states[1].coef)
    assert AutocorrelationInitializer(n_jobs=2).get_params()["n_jobs"] == 2
    with pytest.raises(ValueError, match="n_jobs"):
        AutocorrelationInitializer(n_jobs=0).initialize([X], basis, None,
                                                        np.random.default_rng(0))


# ---------------------------------------------------------------------------
# several kinds of particle (n_components)
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_kinds(basis):
    from mtdlearn import make_target

    coefs = np.stack([make_target(basis, random_state=0), make_target(basis, random_state=1)])
    X, truth = make_measurement(coefs, basis, 300, density=0.08, snr=10, weights=[0.5, 0.5],
                                random_state=0)
    return coefs, X, truth


def test_estimator_two_kinds_shapes_and_weights(basis, two_kinds):
    import warnings

    coefs, X, truth = two_kinds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ac = AutocorrelationEstimator(5, basis=basis, n_components=2, max_iter=300,
                                      random_state=0).fit(X)
    p = basis.n_functions
    assert ac.coef_.shape == (2, p) and ac.image_.shape == (2, L, L)
    assert ac.weights_.shape == (2,) and np.all(ac.weights_ >= 0)
    assert ac.weights_.sum() == pytest.approx(1.0, abs=1e-12)
    # density_ is the total density of the copies of both kinds
    assert abs(ac.density_ - truth.density) < 0.02
    np.testing.assert_allclose(ac.shift_probabilities_,
                               density_to_shift_probabilities(ac.density_, L))
    assert ac.n_parameters_ == 2 * p + 1 + 1 + 1
    assert np.isfinite(ac.score(X)) and ac.cost_ > 0
    # the same start, its cost no lower than the fit's
    start = AutocorrelationEstimator(5, basis=basis, n_components=2, max_iter=0,
                                     random_state=0).fit(X)
    assert start.coef_.shape == (2, p) and start.cost_ >= ac.cost_
    np.testing.assert_array_equal(start.weights_, [0.5, 0.5])
    # two independent random images per start
    assert relative_error(start.coef_[0], start.coef_[1], basis) > 0.01


def test_estimator_two_kinds_fixed_start(basis, two_kinds):
    """A 2-D start (FixedInitializer) is used as it is, with equal abundances;
    one image given to a 2-kind fit is spread into two distinct images."""
    coefs, X, truth = two_kinds
    rho = density_to_shift_probabilities(0.08, L)
    ac = AutocorrelationEstimator(5, basis=basis, n_components=2, max_iter=0,
                                  noise_variance=truth.noise_variance,
                                  initializer=FixedInitializer(coefs, rho)).fit(X)
    np.testing.assert_array_equal(ac.coef_, coefs)
    np.testing.assert_array_equal(ac.weights_, [0.5, 0.5])
    assert ac.density_ == pytest.approx(0.08, rel=1e-12)
    spread = AutocorrelationEstimator(5, basis=basis, n_components=2, max_iter=0,
                                      initializer=FixedInitializer(coefs[0], rho),
                                      random_state=0).fit(X)
    assert spread.coef_.shape == coefs.shape
    assert relative_error(spread.coef_[0], spread.coef_[1], basis) > 0.1
    with pytest.raises(ValueError, match=r"coef of shape \(3, 10\)"):
        AutocorrelationEstimator(5, basis=basis, n_components=2, max_iter=0,
                                 initializer=FixedInitializer(np.stack([coefs[0]] * 3),
                                                              rho)).fit(X)


def test_one_component_is_the_default(basis, coef):
    X, _ = make_measurement(coef, basis, 200, snr=5, random_state=0)
    kw = dict(basis=basis, n_init=2, random_state=3)
    a = AutocorrelationEstimator(5, **kw).fit(X)
    b = AutocorrelationEstimator(5, n_components=1, **kw).fit(X)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert b.coef_.shape == (10,) and b.weights_.tolist() == [1.0]


def test_initializer_two_kinds_starts_the_em(basis, two_kinds):
    import warnings

    from mtdlearn import ApproxEMEstimator

    coefs, X, truth = two_kinds
    init = AutocorrelationInitializer(max_iter=100, n_components=2)
    assert init.get_params()["n_components"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        state = init.initialize([X], basis, None, np.random.default_rng(0))
        assert state.coef.shape == (2, basis.n_functions)
        assert state.weights.shape == (2,) and state.weights.sum() == pytest.approx(1.0)
        # the EM keeps a 2-D start as it is (no split): with max_iter=0 it returns it
        em = ApproxEMEstimator(5, basis=basis, rotations=4, n_components=2, max_iter=0,
                               initializer=init, random_state=0).fit(X)
        seed = int(np.random.default_rng(0).integers(np.iinfo(np.int32).max))
        again = init.initialize([X], basis, None, np.random.default_rng(seed))
    np.testing.assert_array_equal(em.coef_, again.coef)
    np.testing.assert_array_equal(em.weights_, again.weights)
    assert AutocorrelationInitializer().initialize(
        [X], basis, None, np.random.default_rng(0)).weights is None
    assert em.converged_ is False and em.n_iter_ == 0


@pytest.mark.parametrize("value, exc", [(0, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_n_components_bad_values(basis, value, exc):
    X = np.random.default_rng(0).standard_normal((40, 40))
    with pytest.raises(exc, match="n_components"):
        AutocorrelationEstimator(5, basis=basis, n_components=value).fit(X)
    with pytest.raises(exc, match="n_components"):
        AutocorrelationInitializer(n_components=value).initialize(
            [X], basis, None, np.random.default_rng(0))


def test_n_components_checkpoint_unsupported(basis, two_kinds, tmp_path):
    with pytest.raises(ValueError, match="n_components > 1"):
        AutocorrelationEstimator(5, basis=basis, n_components=2).fit(
            two_kinds[1], checkpoint=tmp_path / "ac.npz")


# ---------------------------------------------------------------------------
# through CTFs and colored noise
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def through_ctfs():
    """A particle of diameter about 7 in a box of 15 (room for the CTFs' spread), two
    noise-free micrographs at 0.8 and 2.0 um (3 A/px)."""
    from mtdlearn import FourierBesselBasis, make_particle
    from mtdlearn.imaging.ctf import CTF

    basis = FourierBesselBasis(15, radius=5.5)
    coef = make_particle(basis, random_state=0)
    ctfs = [CTF(8000.0, pixel_size=3.0), CTF(20000.0, pixel_size=3.0)]
    X, truth = make_measurement(coef, basis, 400, density=0.04, noise_variance=0.0,
                                n_measurements=2, random_state=0, ctf=ctfs)
    return basis, coef, ctfs, X, truth


def test_ctf_model_moments_describe_filtered_micrographs(through_ctfs):
    """At the truth, the moments' cost through the micrographs' CTFs is what the
    box truncates of the copies' spread; ignoring the CTFs it is the whole filter.
    Measured: 1.3e-8 against 7.2e-5."""
    basis, coef, ctfs, X, truth = through_ctfs
    rho = density_to_shift_probabilities(truth.density, 15)
    aware = AutocorrelationEstimator(15, basis=basis, ctf=ctfs, max_iter=0,
                                     noise_variance=1e-6, initializer=FixedInitializer(coef, rho))
    with pytest.warns(ConvergenceWarning, match="degenerate"):   # the CTF-free truth is
        blind = clone(aware).set_params(ctf=None).fit(X)          # too strong for them
    assert aware.fit(X).cost_ < 1e-3 * blind.cost_


def test_ctf_defocus_group_weighs_once(through_ctfs):
    """A CTF's micrographs are pooled and each distinct CTF weighs once, in the data's
    moments and the model's alike: a micrograph given twice changes nothing."""
    basis, coef, ctfs, X, truth = through_ctfs
    rho = density_to_shift_probabilities(truth.density, 15)
    est = AutocorrelationEstimator(15, basis=basis, max_iter=0, noise_variance=1e-6,
                                   initializer=FixedInitializer(coef, rho))
    once = clone(est).set_params(ctf=ctfs).fit(list(X)).cost_
    twice = clone(est).set_params(ctf=[ctfs[0], ctfs[1], ctfs[0]]).fit(
        [X[0], X[1], X[0]]).cost_
    assert twice == pytest.approx(once, rel=1e-9)


def test_ctf_fit_sees_the_formations(through_ctfs):
    """The fit's moments and model go through the CTFs: its image differs from the
    CTF-free fit's, its fitted moments are the formed ones, and it stays fitted (score,
    predict) through the same CTFs; ctf=None, noise='white' is the paper's model."""
    from mtdlearn.autocorrelation.moments import formed_autocorrelations
    from mtdlearn.imaging.formation import MicroscopeFormation

    basis, coef, ctfs, X, truth = through_ctfs
    rho = density_to_shift_probabilities(truth.density, 15)
    kw = dict(basis=basis, max_iter=30, initializer=FixedInitializer(coef, rho, 1e-3),
              rotations=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        aware = AutocorrelationEstimator(15, ctf=ctfs, **kw).fit(X)
        plain = AutocorrelationEstimator(15, **kw).fit(X)
        white = AutocorrelationEstimator(15, ctf=None, noise="white", **kw).fit(X)
    np.testing.assert_array_equal(plain.coef_, white.coef_)
    assert white.noise_psds_ is None and aware.noise_psds_ is None
    expected = formed_autocorrelations(X, 15, [MicroscopeFormation(c) for c in ctfs],
                                       shift_radius=aware.shift_radius_)
    for got, want in zip(aware.autocorrelations_, expected):
        np.testing.assert_array_equal(got, want)
    assert relative_error(aware.coef_, plain.coef_, basis) > 0.1
    # score sees the CTFs: the fitted image through them explains the data better than
    # the same image taken as it is
    import copy
    blind = copy.deepcopy(aware)
    blind.ctf = None
    assert np.isfinite(aware.score(X)) and aware.score(X) > blind.score(X) + 1.0


def test_ctf_colored_noise_and_bad_input(through_ctfs):
    from mtdlearn.imaging.noise import RadialPSD

    basis, coef, ctfs, X, truth = through_ctfs
    with pytest.raises((TypeError, ValueError), match="ctf"):
        AutocorrelationEstimator(15, basis=basis, ctf="8000").fit(X)
    with pytest.raises(ValueError, match="noise"):
        AutocorrelationEstimator(15, basis=basis, noise="pink").fit(X)
    with pytest.raises(ValueError, match="ctf"):
        AutocorrelationEstimator(15, basis=basis, ctf=ctfs[:1] * 3).fit(X)
    rng = np.random.default_rng(0)
    noisy = [x + rng.standard_normal(x.shape) for x in X]
    ac = AutocorrelationEstimator(15, basis=basis, noise="colored", max_iter=5,
                                  random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ac.fit(noisy)
    assert len(ac.noise_psds_) == 2 and all(isinstance(p, RadialPSD) for p in ac.noise_psds_)


def test_ctf_dask_input_is_refused(through_ctfs):
    da = pytest.importorskip("dask.array")
    basis, coef, ctfs, X, truth = through_ctfs
    with pytest.raises(ValueError, match="not Dask arrays"):
        AutocorrelationEstimator(15, basis=basis, ctf=ctfs).fit(
            [da.from_array(x, chunks=200) for x in X])


def test_initializer_takes_the_em_s_ctf_and_noise(through_ctfs):
    """An AutocorrelationInitializer left at ctf=None, noise='white' fits through the
    EM's CTFs and noise (through); one given its own keeps them."""
    from mtdlearn import ApproxEMEstimator

    basis, coef, ctfs, X, truth = through_ctfs
    init = AutocorrelationInitializer(max_iter=20)
    assert init.through(None, "white") is init
    seen = init.through(ctfs, "colored")
    assert seen.ctf == ctfs and seen.noise == "colored" and seen.max_iter == 20
    assert init.ctf is None and init.noise == "white"          # never modified
    own = AutocorrelationInitializer(ctf=ctfs[0])
    assert own.through(ctfs, "colored") is own
    em = ApproxEMEstimator(15, basis=basis, ctf=ctfs, initializer=init)
    assert em._check_initializer().ctf == ctfs
    # the start is the one the initializer gives through the CTFs
    seed_rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        state = seen.initialize(list(X), basis, None, seed_rng)
        em = ApproxEMEstimator(15, basis=basis, ctf=ctfs, noise="colored", initializer=init,
                               max_iter=0, random_state=0).fit(X)
        seed = int(np.random.default_rng(0).integers(np.iinfo(np.int32).max))
        again = seen.initialize(list(X), basis, None, np.random.default_rng(seed))
    np.testing.assert_array_equal(em.coef_, again.coef)
    assert state.coef.shape == coef.shape


def test_ctf_tables_beyond_working_memory_are_refused(through_ctfs):
    """One model table per distinct CTF: more than working_memory of them is a clear
    error that names the remedy, never a machine out of memory."""
    basis, coef, ctfs, X, truth = through_ctfs
    with pytest.raises(ValueError, match="2 distinct CTFs.*defocus_groups"):
        AutocorrelationEstimator(15, basis=basis, ctf=ctfs, working_memory=1).fit(X)


def test_ctf_mixture_of_equal_kinds_is_one_kind(through_ctfs):
    """Through CTFs, two equal kinds at equal abundances have the one kind's moments:
    the mixture's cost at that start is the one image's."""
    basis, coef, ctfs, X, truth = through_ctfs
    rho = density_to_shift_probabilities(truth.density, 15)
    kw = dict(basis=basis, ctf=ctfs, max_iter=0, noise_variance=1e-6)
    one = AutocorrelationEstimator(15, initializer=FixedInitializer(coef, rho), **kw).fit(X)
    two = AutocorrelationEstimator(15, n_components=2, **kw,
                                   initializer=FixedInitializer(np.stack([coef, coef]), rho))
    two.fit(X)
    assert two.coef_.shape == (2, coef.size) and np.allclose(two.weights_, 0.5)
    assert two.cost_ == pytest.approx(one.cost_, rel=1e-9)


def test_initializer_passes_other_warnings_on(monkeypatch, basis, coef):
    """Only the moment fit's ConvergenceWarning is reworded; any other warning
    of it reaches the user as it was, from where it was, once."""
    X, _ = make_measurement(coef, basis, 200, snr=5, random_state=0)
    fit = AutocorrelationEstimator.fit

    where = []

    def noisy_fit(self, X, *args, **kwargs):
        where.append(sys._getframe().f_lineno + 1)
        warnings.warn("a warning of the moment fit", UserWarning)
        return fit(self, X, *args, **kwargs)

    monkeypatch.setattr(AutocorrelationEstimator, "fit", noisy_fit)
    with pytest.warns(UserWarning) as record:
        AutocorrelationInitializer().initialize([X], basis, None, np.random.default_rng(0))
    assert [(w.category, str(w.message)) for w in record] == [
        (UserWarning, "a warning of the moment fit")]
    assert (record[0].filename, record[0].lineno) == (__file__, where[0])   # where it was
