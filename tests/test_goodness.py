"""Tests of mtdlearn.likelihood.goodness: the posterior predictive check of a fit."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from mtdlearn import (ApproxEMEstimator, FixedInitializer, FourierBesselBasis, make_measurement,
                      make_target)
from mtdlearn.imaging.ctf import CTF
from mtdlearn.imaging.noise import make_noise_psd
from mtdlearn.imaging.shifts import density_to_shift_probabilities
from mtdlearn.likelihood.goodness import STATISTIC_MAX, FitCheck, check_fit

BASIS = FourierBesselBasis(5, n_coefficients=10)


def at_truth(coef, truth, **kw):
    """An estimator 'fitted' at the true parameters: the model that made the data."""
    start = FixedInitializer(coef, density_to_shift_probabilities(truth.density, 5),
                             noise_variance=truth.noise_variance)
    return dict(basis=BASIS, rotations=16, max_iter=0, initializer=start, **kw)


def truth_fit(seed, size=300, snr=5.0, **kw):
    coef = make_target(BASIS, random_state=seed)
    X, truth = make_measurement(coef, BASIS, size, density=0.04, snr=snr, random_state=seed)
    return ApproxEMEstimator(5, **at_truth(coef, truth, **kw)).fit(X), X


def test_under_the_true_model_the_statistic_is_kolmogorovs():
    # 16 independent data sets, each checked under the model that made it:
    # the scaled two-sample KS statistic follows Kolmogorov's distribution
    # (mean 0.8687, standard deviation 0.2603) for independent patches; its
    # mean over 16 is within 3 standard errors (0.2) of 0.87, allowing as
    # much again for the patches' dependence (a copy straddles four)
    checks = [check_fit(*truth_fit(seed), n_simulated=5000, random_state=seed)
              for seed in range(16)]
    statistic = np.array([c.statistic for c in checks])
    assert abs(statistic.mean() - 0.8687) < 0.4, statistic
    assert np.all(statistic < STATISTIC_MAX) and all(c.passed for c in checks)
    # the lower tail holds its share: 1 % of the patches, within a few
    # binomial standard deviations of the pooled count (16 x 3600 patches)
    pooled = np.mean([c.outlier_fraction for c in checks])
    assert abs(pooled - 0.01) < 4 * np.sqrt(0.01 * 0.99 * 2 / (16 * 3600))


def test_result_fields_and_reproducibility():
    est, X = truth_fit(0)
    a = est.check_fit(X, n_simulated=5000, random_state=1)
    b = check_fit(est, X, n_simulated=5000, random_state=1)
    assert isinstance(a, FitCheck) and a.passed
    assert a.n_patches == 60 * 60 and a.n_simulated >= 5000
    assert a.outliers.shape == (a.n_patches,) and a.outliers.dtype == np.bool_
    assert a.outlier_fraction == a.outliers.mean()
    assert 0 < a.distance < 1 and a.statistic == pytest.approx(
        a.distance * np.sqrt(a.n_patches * a.n_simulated / (a.n_patches + a.n_simulated)))
    assert 0 < a.p_value <= 1
    np.testing.assert_array_equal(a.outliers, b.outliers)
    assert (a.threshold, a.statistic) == (b.threshold, b.statistic)
    # the threshold is the simulated patches' quantile: the outliers are the
    # data's patches scored below it
    np.testing.assert_array_equal(a.outliers, est.score_samples(X) < a.threshold)
    # the estimator's random_state seeds it when none is given; n_jobs does not matter
    est.set_params(random_state=1, n_jobs=2)
    c = est.check_fit(X, n_simulated=5000)
    assert c.threshold == a.threshold and "Kolmogorov-Smirnov" in c.summary()


def test_a_carbon_edge_fails_and_is_where_the_outliers_are():
    est, X = truth_fit(2)
    Y = X.copy()
    Y[:, 240:] += 1.5 * np.sqrt(est.noise_variance_)      # a step over a fifth
    result = est.check_fit(Y, n_simulated=5000)
    assert not result.passed and result.statistic > 5 and result.distance > 0.1
    out = result.outliers.reshape(60, 60)
    assert out[:, 48:].mean() > 10 * out[:, :48].mean()
    assert "something the model does not explain" in result.summary()


def test_through_ctfs_and_colored_noise_and_two_kinds():
    # the simulation draws each micrograph through its fitted CTF and noise
    # spectrum (sample), so a fit at the truth passes there too
    coef = make_target(BASIS, random_state=3)
    ctfs = [CTF(8000.0, pixel_size=3.0), CTF(15000.0, 14000.0, defocus_angle=30.0,
                                                pixel_size=3.0)]
    psd = make_noise_psd(4.0)
    X, truth = make_measurement(coef, BASIS, 240, density=0.04, snr=5, n_measurements=2,
                                random_state=3, ctf=ctfs, noise_psd=psd)
    est = ApproxEMEstimator(5, ctf=ctfs, noise=[psd, psd], **at_truth(coef, truth)).fit(X)
    result = est.check_fit(X, n_simulated=5000)
    assert result.passed and result.n_patches == 2 * 48 * 48
    # two kinds
    coefs = np.stack([coef, make_target(BASIS, random_state=4)])
    X2, truth2 = make_measurement(coefs, BASIS, 300, density=0.04, snr=5, random_state=4,
                                  weights=[0.5, 0.5])
    start = FixedInitializer(coefs, density_to_shift_probabilities(truth2.density, 5),
                             noise_variance=truth2.noise_variance)
    two = ApproxEMEstimator(5, basis=BASIS, rotations=16, max_iter=0, initializer=start,
                            n_components=2).fit(X2)
    assert two.check_fit(X2, n_simulated=5000).passed


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(level=0.0), ValueError, "level must be > 0"),
    (dict(level=0.6), ValueError, "level must be <= 0.5"),
    (dict(level="a"), TypeError, "level must be a real number"),
    (dict(n_simulated=0), ValueError, "n_simulated must be >= 1"),
    (dict(level=0.001, n_simulated=5000), ValueError, "level \\* n_simulated must be >= 10"),
])
def test_bad_arguments_name_themselves(kwargs, error, match):
    est, X = truth_fit(0, size=100)
    with pytest.raises(error, match=match):
        est.check_fit(X, **kwargs)


def test_needs_a_fitted_estimator():
    with pytest.raises(NotFittedError):
        ApproxEMEstimator(5).check_fit(np.zeros((50, 50)))


def test_drawn_patches_have_the_patch_models_energy():
    # E ||y||**2 = L**2 sigma**2 + sum_h p_h ||T_h||**2 over the hypotheses'
    # prior (the empty one's template is 0); the mean over 40000 draws is
    # within 5 standard errors of it
    from mtdlearn.likelihood.goodness import draw_patches
    from mtdlearn.likelihood.posteriors import build_per_patch_model

    est, X = truth_fit(5)
    space = est._hypotheses()
    model = build_per_patch_model(est.coef_, est.shift_probabilities_, est.noise_variance_,
                                  space)
    drawn = draw_patches(est, model, 40000, np.random.default_rng(0))
    assert drawn.n_patches == 200 * 200
    energy = np.sum(drawn.get(0, drawn.n_patches) ** 2, axis=1)
    log_prior, _ = space.log_prior(est.shift_probabilities_)
    expected = (25 * est.noise_variance_
                + np.exp(log_prior) @ np.sum(space.templates(est.coef_) ** 2, axis=1))
    assert abs(energy.mean() - expected) < 5 * energy.std() / np.sqrt(energy.size)
