"""Tests of mtdlearn.em.residual: noise spectra from the fitted copies' residual."""

import copy
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from mtdlearn import (ApproxEMEstimator, AutocorrelationEstimator, FourierBesselBasis,
                      make_measurement, make_particle, relative_error)
from mtdlearn.imaging.ctf import CTF
from mtdlearn.imaging.noise import RadialPSD, estimate_noise_psd, is_white, make_noise_psd
from mtdlearn.em.residual import (_distinct, _fitted_copies, residual_noise_psds,
                                  _residual_spectra)
from mtdlearn.imaging.shifts import density_to_shift_probabilities
from mtdlearn.initializers import FixedInitializer

L = 11


def _truth_model(snr, ctf=None, noise_psd=None, size=512, n=1, seed=0):
    """Micrographs of a particle and an estimator holding the true parameters."""
    basis = FourierBesselBasis(L)
    coef = make_particle(basis, random_state=seed)
    X, truth = make_measurement(coef, basis, size, density=0.08, snr=snr, n_measurements=n,
                                random_state=seed, ctf=ctf, noise_psd=noise_psd)
    init = FixedInitializer(coef, density_to_shift_probabilities(0.08, L),
                            truth.noise_variance)
    est = ApproxEMEstimator(L, basis=basis, rotations=64, max_iter=0, initializer=init,
                            ctf=ctf, noise="white" if noise_psd is None else "colored")
    return X, truth, est.fit(X)


def _low_over_high(psd):
    return psd.values[:3].mean() / psd.values[-10:].mean()


def test_residual_of_white_micrographs_is_white():
    # at SNR 100 the copies' own power fills the micrograph's lowest rings;
    # subtracting the copies the model finds leaves the white noise
    X, truth, est = _truth_model(100.0)
    raw = estimate_noise_psd(X[0])
    assert not is_white(raw) and _low_over_high(raw) > 5
    psd, = residual_noise_psds(est, X)
    assert is_white(psd)
    assert residual_noise_psds(est, X, noise="auto") == [None]
    # the mean power is the noise's: (values - sigma**2) / errors of a unit normal's size
    z = (psd.values - truth.noise_variance) / psd.errors
    assert np.all(np.abs(z) < 6) and abs(z.mean()) < 1.5


def test_residual_through_a_ctf_reads_the_colored_spectrum():
    # the copies are formed through the micrograph's CTF before they are
    # subtracted; what is left is the noise's own spectrum (4x at low
    # frequencies), which the micrograph's copies overstate
    model = make_noise_psd(4.0)
    X, truth, est = _truth_model(100.0, ctf=CTF(8000.0, pixel_size=3.0), noise_psd=model)
    before = X.copy()
    psd, = residual_noise_psds(est, X, noise="auto")
    np.testing.assert_array_equal(X, before)          # never modified
    assert psd is not None                            # colored: kept
    true = model.scaled(truth.noise_variance, X[0].shape)(psd.frequencies)
    raw = estimate_noise_psd(X[0])
    z, z_raw = (psd.values - true) / psd.errors, (raw.values - true) / raw.errors
    # measured: largest |z| 3.1 from the residual, 8.2 from the micrograph
    assert np.abs(z).max() < 5 < np.abs(z_raw).max()
    assert abs(np.log(psd.values[0] / true[0])) < 0.5 * abs(np.log(raw.values[0] / true[0]))


def test_below_the_detection_limit_the_spectrum_is_the_micrographs():
    # no pick reaches min_probability: nothing is subtracted
    X, _, est = _truth_model(0.1)
    assert np.all(est.predict(X)["probability"] < 0.5)
    psd, = residual_noise_psds(est, X)
    assert psd == estimate_noise_psd(X[0])


def test_an_edge_copy_is_rendered_in_part():
    basis = FourierBesselBasis(5, n_coefficients=10)
    est = ApproxEMEstimator(5, basis=basis)
    est.basis_, est.coef_ = basis, np.arange(1.0, 11.0)
    picks = np.array([(0, -2, 3, 0.0, 0.9)], dtype=[("measurement", np.int64),
                                                     ("row", np.int64), ("col", np.int64),
                                                     ("angle", np.float64),
                                                     ("probability", np.float64)])
    out = _fitted_copies(est, (12, 12), picks, None)
    image = basis.evaluate(est.coef_)
    np.testing.assert_allclose(out[:3, 3:8], image[2:], rtol=0, atol=1e-12)
    assert np.count_nonzero(out) == np.count_nonzero(image[2:])


def test_a_copy_named_by_several_patches_is_kept_once():
    picks = np.array([(0, 10, 10, 0.0, 0.6), (0, 11, 10, 0.1, 0.9), (0, 40, 40, 0.0, 0.7)],
                     dtype=[("measurement", np.int64), ("row", np.int64), ("col", np.int64),
                            ("angle", np.float64), ("probability", np.float64)])
    kept = _distinct(picks, 11)
    assert kept["probability"].tolist() == [0.9, 0.7]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_refit_with_the_spectra_and_none_entries():
    # the list it returns is a valid noise; None entries are white noise,
    # and a list of only None is the paper's model, bit-identical
    basis = FourierBesselBasis(5, n_coefficients=10)
    X, _ = make_measurement(np.linspace(1, 3, 10), basis, 120, snr=5, n_measurements=2,
                            random_state=0)
    kw = dict(basis=basis, rotations=4, max_iter=3, random_state=0)
    white = ApproxEMEstimator(5, **kw).fit(X)
    nones = ApproxEMEstimator(5, noise=[None, None], **kw).fit(X)
    np.testing.assert_array_equal(white.coef_, nones.coef_)
    assert nones.noise_psds_ is None
    psd = RadialPSD([0.0, 0.5], [2.0, 1.0])
    mixed = ApproxEMEstimator(5, noise=[None, psd], **kw).fit(X)
    assert mixed.noise_psds_[0] is None and mixed.noise_psds_[1] == psd
    with pytest.raises(TypeError, match=r"noise\[1\] must be a RadialPSD or None"):
        ApproxEMEstimator(5, noise=[None, "white"], **kw).fit(X)
    with pytest.raises(ValueError, match="has 3 entries"):
        ApproxEMEstimator(5, noise=[None, psd, psd], **kw).fit(X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_bad_arguments():
    basis = FourierBesselBasis(5, n_coefficients=10)
    X, _ = make_measurement(np.linspace(1, 3, 10), basis, 120, snr=5, random_state=0)
    with pytest.raises(NotFittedError):
        residual_noise_psds(ApproxEMEstimator(5), X)
    est = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="noise must be 'colored' or 'auto'"):
        residual_noise_psds(est, X, noise="white")
    with pytest.raises(ValueError, match="min_probability"):
        residual_noise_psds(est, X, min_probability=1.5)
    with pytest.raises(ValueError, match="measurement 0"):
        residual_noise_psds(est, X, tile_size=200)          # larger than the micrograph
    assert residual_noise_psds(est, X, noise="auto", tile_size=200) == [None]


def test_dask_input_gives_the_same_spectra():
    da = pytest.importorskip("dask.array")
    X, _, est = _truth_model(100.0, n=2, size=256)
    lazy = da.from_array(X, chunks=(1, 256, 256))
    assert residual_noise_psds(est, lazy) == residual_noise_psds(est, X)


def test_a_mixture_subtracts_each_pick_as_its_kind():
    basis = FourierBesselBasis(L)
    kinds = np.stack([make_particle(basis, random_state=1),
                      make_particle(basis, diameter=5.0, random_state=2)])
    X, truth = make_measurement(kinds, basis, 384, density=0.08, snr=100.0, weights=[0.5, 0.5],
                                n_measurements=1, random_state=0)
    init = FixedInitializer(kinds, density_to_shift_probabilities(0.08, L),
                            truth.noise_variance)
    est = ApproxEMEstimator(L, basis=basis, rotations=64, max_iter=0, initializer=init,
                            n_components=2).fit(X)
    assert not is_white(estimate_noise_psd(X[0]))
    assert residual_noise_psds(est, X, noise="auto") == [None]
    assert set(est.predict(X)["component"]) == {0, 1}


def _truth_start(X, truth, coef, **kw):
    init = FixedInitializer(coef, density_to_shift_probabilities(0.08, L), truth.noise_variance)
    # float64 E-steps: lower_bound_ is then score's number, up to summation order
    return ApproxEMEstimator(L, basis=FourierBesselBasis(L), rotations=32, initializer=init,
                             dtype=np.float64, random_state=0, **kw)


def test_noise_residual_is_the_auto_fit_continued_with_the_residuals_spectra():
    basis = FourierBesselBasis(L)
    coef = make_particle(basis, random_state=0)
    X, truth = make_measurement(coef, basis, 384, density=0.08, snr=100.0, random_state=0)
    auto = _truth_start(X, truth, coef, noise="auto", max_iter=2)
    with pytest.warns(ConvergenceWarning):
        auto.fit(X)
    assert auto.noise_psds_ is not None       # the copies colour the micrograph's spectrum
    em = _truth_start(X, truth, coef, noise="residual", max_iter=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        em.fit(X)
    # the first phase's max_iter (it warned above) is not the fit's: the second converged
    assert caught == [] and em.converged_
    assert em.auto_noise_n_iter_ == auto.n_iter_ and em.n_iter_ > auto.n_iter_
    assert em.n_e_steps_ > auto.n_e_steps_                  # both phases' work
    n = len(auto.log_likelihood_history_)
    assert em.log_likelihood_history_[:n] == auto.log_likelihood_history_
    # what the first phase's copies leave is white: the second phase is the paper's model
    assert em.noise_psds_ is None and _residual_spectra(em, X) == [None]
    # predict and score see X as the fit did (the same spectra, computed again): the
    # fit's last objective, up to the float64 rounding of a different summation order
    assert em.score(X) == pytest.approx(em.lower_bound_, rel=1e-10)
    assert relative_error(coef, em.coef_, basis) < 0.05
    # a refit under another noise model keeps nothing of this one
    em.set_params(noise="white", max_iter=1)
    with pytest.warns(ConvergenceWarning):
        em.fit(X)
    assert not hasattr(em, "auto_noise_n_iter_") and not hasattr(em, "_residual_picker")


def test_noise_residual_through_a_ctf_whitens_by_the_noises_own_spectrum():
    model = make_noise_psd(4.0)
    ctf = CTF(8000.0, pixel_size=3.0)
    basis = FourierBesselBasis(L)
    coef = make_particle(basis, random_state=0)
    X, truth = make_measurement(coef, basis, 512, density=0.08, snr=100.0, random_state=0,
                                ctf=ctf, noise_psd=model)
    em = _truth_start(X, truth, coef, noise="residual", ctf=ctf, max_iter=1)
    with pytest.warns(ConvergenceWarning):
        em.fit(X)
    psd, = em.noise_psds_
    true = model.scaled(truth.noise_variance, X.shape)(psd.frequencies)
    raw = estimate_noise_psd(X)
    z, z_raw = (psd.values - true) / psd.errors, (raw.values - true) / raw.errors
    assert np.abs(z).max() < 5 < np.abs(z_raw).max()
    assert _residual_spectra(em, X) == em.noise_psds_
    assert em.score(X) == pytest.approx(em.lower_bound_, rel=1e-10)


def test_noise_residual_arguments(tmp_path):
    basis = FourierBesselBasis(5, n_coefficients=10)
    X, _ = make_measurement(np.linspace(1, 3, 10), basis, 120, snr=5, random_state=0)
    em = ApproxEMEstimator(5, basis=basis, rotations=4, noise="residual")
    with pytest.raises(ValueError, match="checkpoint is not supported with noise='residual'"):
        em.fit(X, checkpoint=tmp_path / "fit.npz")
    with pytest.raises(ValueError, match="'residual'"):
        ApproxEMEstimator(5, noise="resid").fit(X)
    with pytest.raises(ValueError, match="noise must be one of"):
        AutocorrelationEstimator(5, basis=basis, noise="residual").fit(X)
    with pytest.raises(ValueError, match="acceleration='incremental'"):
        ApproxEMEstimator(5, basis=basis, noise="residual", acceleration="incremental").fit(X)
    with pytest.raises(NotFittedError):
        _residual_spectra(em, X)


def test_noise_residual_stops_at_a_degenerate_first_phase():
    # nothing to subtract: the first phase's result and its warning are the fit's
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = np.linspace(1, 3, 10)
    X, truth = make_measurement(coef, basis, 120, snr=5, random_state=0)
    init = FixedInitializer(100.0 * coef, density_to_shift_probabilities(0.03, 5),
                            truth.noise_variance)
    em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=0, initializer=init,
                           noise="residual")
    with pytest.warns(ConvergenceWarning, match="degenerate"):
        em.fit(X)
    assert em.degenerate_ is not None and not em.converged_
    assert not hasattr(em, "auto_noise_n_iter_")


def test_noise_residual_on_dask_input_is_the_in_memory_fit():
    da = pytest.importorskip("dask.array")
    basis = FourierBesselBasis(L)
    coef = make_particle(basis, random_state=0)
    X, truth = make_measurement(coef, basis, 256, density=0.08, snr=100.0, n_measurements=2,
                                random_state=0, noise_psd=make_noise_psd(4.0))
    fits = []
    for data in (X, da.from_array(X, chunks=(1, 256, 256))):
        em = _truth_start(X, truth, coef, noise="residual", max_iter=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(em.fit(data))
    np.testing.assert_array_equal(fits[0].coef_, fits[1].coef_)
    assert fits[0].noise_psds_ == fits[1].noise_psds_
    assert fits[0].noise_psds_ is not None and fits[0].auto_noise_n_iter_ == 1


def test_noise_residual_is_the_recipe_by_hand():
    # where "auto" reads every micrograph as colored, noise="residual" is the
    # colored fit continued (warm, no second white-noise phase) with
    # residual_noise_psds's spectra, to the bit
    basis = FourierBesselBasis(L)
    coef = make_particle(basis, random_state=0)
    ctfs = [CTF(8000.0, pixel_size=3.0), CTF(20000.0, pixel_size=3.0)]
    X, truth = make_measurement(coef, basis, 256, density=0.08, snr=20.0, n_measurements=2,
                                random_state=0, ctf=ctfs, noise_psd=make_noise_psd(4.0))
    kw = dict(basis=basis, ctf=ctfs, rotations=16, max_iter=3, dtype=np.float64,
              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        colored = ApproxEMEstimator(L, noise="colored", **kw).fit(X)
        psds = residual_noise_psds(colored, X, noise="auto")
        by_hand = copy.deepcopy(colored).set_params(noise=psds, warm_start=True).fit(X)
        em = ApproxEMEstimator(L, noise="residual", **kw).fit(X)
    n = len(colored.log_likelihood_history_)
    assert em.log_likelihood_history_[:n] == colored.log_likelihood_history_
    assert all(p is not None for p in psds) and em.noise_psds_ == psds
    np.testing.assert_array_equal(em.coef_, by_hand.coef_)
    assert em.white_noise_n_iter_ == colored.white_noise_n_iter_ > 0
    assert not hasattr(by_hand, "white_noise_n_iter_")      # warm: no white-noise phase
    assert em.n_iter_ == colored.n_iter_ + by_hand.n_iter_
    assert em.n_e_steps_ == colored.n_e_steps_ + by_hand.n_e_steps_
