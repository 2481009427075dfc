"""Tests of mtdlearn.half_sets: the seeded split, two independent fits, their FRC."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target
from mtdlearn.half_sets import combined_estimator, fit_half_sets, split_half_sets
from mtdlearn.imaging.ctf import CTF
from mtdlearn.metrics import relative_error


@settings(max_examples=50, deadline=None)
@given(n=st.integers(2, 200), seed=st.integers(0, 2**31 - 1))
def test_split_is_a_seeded_partition_into_halves(n, seed):
    first, second = split_half_sets(n, random_state=seed)
    assert len(first) == (n + 1) // 2 and len(second) == n // 2
    assert sorted(np.concatenate([first, second]).tolist()) == list(range(n))
    assert np.all(np.diff(first) > 0) and np.all(np.diff(second) > 0)
    again = split_half_sets(n, random_state=seed)
    assert all(np.array_equal(a, b) for a, b in zip((first, second), again))


@pytest.mark.parametrize("n", [0, 1, -3, 2.0, True, "4"])
def test_split_needs_two_measurements(n):
    with pytest.raises(ValueError, match="n_measurements"):
        split_half_sets(n)


@pytest.fixture(scope="module")
def paper_data():
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=1)
    X, truth = make_measurement(coef, basis, 300, snr=10, n_measurements=4, random_state=1)
    return basis, coef, X


@pytest.fixture(scope="module")
def paper_result(paper_data):
    basis, coef, X = paper_data
    em = ApproxEMEstimator(5, basis=basis, random_state=3)
    return em, fit_half_sets(em, X, random_state=0)


def test_each_half_is_fitted_on_its_own_measurements(paper_data, paper_result):
    basis, coef, X = paper_data
    em, result = paper_result
    for est, half in zip(result.estimators, result.halves):
        alone = ApproxEMEstimator(5, basis=basis, random_state=3).fit(X[half])
        # a clone with the same random_state on the half's measurements, bit for bit
        np.testing.assert_array_equal(est.coef_, alone.coef_)
        assert est.n_patches_ == sum(X[i].size for i in half) // 25
    assert not hasattr(em, "coef_")   # the estimator given is not fitted


def test_halves_agree_and_combine_towards_the_truth(paper_data, paper_result):
    basis, coef, X = paper_data
    _, result = paper_result
    first, second = result.estimators
    errors = [relative_error(coef, e.coef_, basis) for e in (first, second)]
    combined = relative_error(coef, result.coef, basis)
    # the mean of two independent estimates of equal quality has about 1/sqrt(2) of
    # their error; it is never worse than the worse one
    assert combined <= max(errors)
    assert combined < 0.1
    # aligned, the two halves' images agree well below Nyquist (SNR 10, 2 x 1800 copies)
    assert np.all(result.frc.correlation[1:] > 0.9)
    np.testing.assert_allclose(result.image, basis.evaluate(result.coef))
    assert result.resolution == pytest.approx(1 / result.frc.frequencies[-1])


def test_rotation_of_one_half_is_found():
    """A half rotated by phi is aligned back: the FRC of the halves is that of the images."""
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=2)
    X, _ = make_measurement(coef, basis, 300, snr=50, n_measurements=2, random_state=2)
    result = fit_half_sets(ApproxEMEstimator(5, basis=basis, random_state=0), X,
                           random_state=0)
    aligned = basis.rotate(result.estimators[1].coef_, result.angle)
    assert relative_error(result.estimators[0].coef_, aligned, basis) < relative_error(
        result.estimators[0].coef_, result.estimators[1].coef_, basis) + 1e-12


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_per_measurement_ctfs_follow_their_half():
    basis = FourierBesselBasis(7)
    coef = make_target(basis, random_state=0)
    ctfs = [CTF(df, pixel_size=3.0) for df in (8000.0, 12000.0, 16000.0, 20000.0)]
    X, _ = make_measurement(coef, basis, 150, snr=20, n_measurements=4, random_state=0,
                            ctf=ctfs)
    em = ApproxEMEstimator(7, basis=basis, ctf=ctfs, max_iter=3, tol=1e-2, random_state=0)
    result = fit_half_sets(em, X, random_state=5)
    for est, half in zip(result.estimators, result.halves):
        assert est.ctf == [ctfs[i] for i in half]
    model = combined_estimator(result, em)
    assert model.ctf == ctfs
    assert set(model.predict(X)["measurement"].tolist()) == {0, 1, 2, 3}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_combined_noise_spectra_are_each_micrographs_in_order():
    # each half estimates its micrographs' spectra; the combined model holds
    # all of them in the order of X, so that it samples and checks all four
    basis = FourierBesselBasis(5, n_coefficients=10)
    X, _ = make_measurement(make_target(basis, random_state=1), basis, 140, snr=10,
                            n_measurements=4, random_state=1)
    X = X * np.array([1.0, 2.0, 3.0, 4.0])[:, None, None]     # four noise levels
    em = ApproxEMEstimator(5, basis=basis, noise="colored", max_iter=2, tol=1e-2,
                           random_state=0)
    result = fit_half_sets(em, X, random_state=5)
    model = combined_estimator(result, em)
    for est, half in zip(result.estimators, result.halves):
        for i, psd in zip(half, est.noise_psds_):
            assert model.noise_psds_[i] is psd
    assert model.sample(60, random_state=0)[0].shape == (4, 60, 60)
    assert model.check_fit(X, n_simulated=2000).n_patches == 4 * 28 * 28


def test_combined_estimator_holds_the_combined_model(paper_data, paper_result):
    basis, coef, X = paper_data
    em, result = paper_result
    model = combined_estimator(result, em)
    np.testing.assert_array_equal(model.coef_, result.coef)
    first, second = result.estimators
    assert model.noise_variance_ == pytest.approx(
        (first.noise_variance_ + second.noise_variance_) / 2)
    assert model.converged_ == (first.converged_ and second.converged_)
    assert first.coef_ is not model.coef_ and not np.array_equal(first.coef_, model.coef_)


def test_bad_inputs(paper_data):
    basis, coef, X = paper_data
    em = ApproxEMEstimator(5, basis=basis)
    with pytest.raises(ValueError, match="two or more measurements"):
        fit_half_sets(em, X[0])
    with pytest.raises(ValueError, match="n_measurements"):
        fit_half_sets(em, [X[0]])
    with pytest.raises(ValueError, match="n_components"):
        fit_half_sets(ApproxEMEstimator(5, basis=basis, n_components=2), X)
    bad = ApproxEMEstimator(5, basis=basis, ctf=[CTF(1e4)] * 3)
    with pytest.raises(ValueError, match="ctf has 3 entries"):
        fit_half_sets(bad, X)
