"""Tests of mtdlearn.em.multiresolution: binning, upsampling against the basis,
and the frequency-marching initializer."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.base import clone

from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, MultiresolutionInitializer,
                      RandomInitializer, make_measurement, make_target)
from mtdlearn.em.multiresolution import bin_measurement, upsample_image


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 4), n1=st.integers(4, 40), n2=st.integers(4, 40),
       seed=st.integers(0, 2**16))
def test_binning_preserves_the_mean_of_blocks(b, n1, n2, seed):
    X = np.random.default_rng(seed).standard_normal((n1, n2)) + 3.0
    Y = bin_measurement(X, b)
    assert Y.shape == (n1 // b, n2 // b)
    crop = X[:Y.shape[0] * b, :Y.shape[1] * b]
    assert Y.mean() == pytest.approx(crop.mean(), rel=1e-12)
    assert Y[0, 0] == pytest.approx(crop[:b, :b].mean(), rel=1e-12)


@pytest.mark.parametrize("b", [2, 4])
def test_binning_scales_the_noise_variance(b):
    X = 2.0 * np.random.default_rng(0).standard_normal((800, 800))   # sigma**2 = 4
    assert bin_measurement(X, b).var() == pytest.approx(4.0 / b ** 2, rel=0.03)


def test_binning_rejects_bad_factors():
    with pytest.raises(ValueError, match="factor"):
        bin_measurement(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="factor"):
        bin_measurement(np.zeros((4, 4)), 5)


@pytest.mark.parametrize("L, b, tol", [(21, 1, 1e-12), (21, 3, 0.15), (41, 3, 0.1)])
def test_bin_upsample_expand_approximates_a_smooth_image(L, b, tol):
    """A smooth image (band limit 8), binned with blocks centred on the small
    grid, upsampled and expanded in the full default basis comes back close
    (the block mean blurs a little); the expansion is a fixed point."""
    basis = FourierBesselBasis(L)
    smooth = FourierBesselBasis(L, bandlimit=8.0)
    F = smooth.evaluate(make_target(smooth, random_state=0))
    n = (L - 1) // 2
    half = (n - (b - 1) // 2) // b            # small image of 2 * half + 1 pixels
    first = n - b * half - (b - 1) // 2       # block `half` is centred on pixel n
    small = bin_measurement(np.pad(F, ((0, b), (0, b)))[first:, first:], b)
    small = small[:2 * half + 1, :2 * half + 1]
    up = upsample_image(small, L, b)
    est = basis.evaluate(basis.expand(up))
    err = np.linalg.norm(est - F) / np.linalg.norm(F)
    assert err < tol
    np.testing.assert_allclose(basis.expand(est), basis.expand(up), atol=1e-8)


def test_upsample_keeps_values_and_centre():
    small = np.zeros((5, 5))
    small[2, 2] = 1.0
    up = upsample_image(small, 9, 2)
    assert up[4, 4] == pytest.approx(1.0)
    np.testing.assert_allclose(up, up[::-1, ::-1], atol=1e-14)
    assert upsample_image(np.ones((5, 5)), 9, 2)[2:7, 2:7] == pytest.approx(1.0)


def test_initializer_protocol_and_params():
    init = MultiresolutionInitializer(factor=2, max_iter=3)
    assert clone(init).get_params() == init.get_params()
    init.set_params(rotations=8)
    assert init.rotations == 8
    basis = FourierBesselBasis(11, n_coefficients=20)
    X, truth = make_measurement(make_target(basis, random_state=0), basis, 200, snr=10,
                                density=0.1, random_state=0)
    a = init.initialize([X], basis, None, np.random.default_rng(0))
    b = init.initialize([X], basis, None, np.random.default_rng(0))
    np.testing.assert_array_equal(a.coef, b.coef)              # all randomness from the rng
    assert a.coef.shape == (basis.n_functions,) and a.shift_probabilities.shape == (22, 22)
    assert a.shift_probabilities.sum() == pytest.approx(1.0)
    assert 0.3 * truth.noise_variance < a.noise_variance < 3 * truth.noise_variance
    fixed = init.initialize([X], basis, 2.5, np.random.default_rng(0))
    assert fixed.noise_variance == 2.5
    with pytest.raises(ValueError, match="factor"):
        MultiresolutionInitializer(factor=0).initialize([X], basis, None,
                                                         np.random.default_rng(0))
    with pytest.raises(TypeError, match="random_state"):
        init.initialize([X], basis, None, 0)


def test_factor_one_is_the_random_start():
    basis = FourierBesselBasis(7)
    X, _ = make_measurement(make_target(basis, random_state=0), basis, 100, snr=10,
                            random_state=0)
    a = MultiresolutionInitializer(factor=1).initialize([X], basis, None,
                                                        np.random.default_rng(3))
    b = RandomInitializer().initialize([X], basis, None, np.random.default_rng(3))
    np.testing.assert_array_equal(a.coef, b.coef)


def test_default_initializer_stays_random():
    """initializer=None is the paper's random start at every size (measured: the
    multiresolution start is no better on average)."""
    for L in (5, 11, 21):
        em = ApproxEMEstimator(L)
        em.basis_ = FourierBesselBasis(L)
        assert isinstance(em._check_initializer(), RandomInitializer)
