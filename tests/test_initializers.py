"""Tests of mtdlearn.initializers."""

import numpy as np
import pytest
from sklearn.base import clone

from mtdlearn import FourierBesselBasis, make_measurement, make_target
from mtdlearn.initializers import (FixedInitializer, InitialState, RandomInitializer,
                                   data_statistics)
from mtdlearn.imaging.shifts import (density_to_shift_probabilities, max_density,
                                shift_probabilities_to_density)

L = 5


@pytest.fixture(scope="module")
def setup():
    basis = FourierBesselBasis(L, n_coefficients=10)
    coef = make_target(basis, random_state=0)
    X, truth = make_measurement(coef, basis, 600, snr=5, random_state=0)
    return basis, coef, X, truth


def test_data_statistics(setup):
    basis, coef, X, truth = setup
    a1, m2, s2 = data_statistics([X], L)
    assert np.isclose(a1, X.mean()) and np.isclose(m2, np.mean(X**2))
    # 13% of patches hold signal at density 0.04: the lower-quartile estimate is
    # within a few percent of sigma^2 (sampling error of a quantile of 14400 patches ~1%)
    assert abs(s2 / truth.noise_variance - 1) < 0.06


def test_data_statistics_pure_noise():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 500)) * 1.5
    _, _, s2 = data_statistics([X], L)
    # quantile of 10^4 chi2(25)/25 values: relative standard error ~ 1.5%
    assert abs(s2 / 2.25 - 1) < 0.05


def test_random_initializer_is_data_driven_and_reproducible(setup):
    basis, coef, X, truth = setup
    init = RandomInitializer()
    a = init.initialize([X], basis, None, np.random.default_rng(1))
    b = init.initialize([X], basis, None, np.random.default_rng(1))
    c = init.initialize([X], basis, None, np.random.default_rng(2))
    assert isinstance(a, InitialState)
    np.testing.assert_array_equal(a.coef, b.coef)
    assert not np.allclose(a.coef, c.coef)
    gamma = shift_probabilities_to_density(a.shift_probabilities)
    assert 0 < gamma < max_density(L)
    # the moment match puts gamma and the image energy in the right range
    assert 0.01 < gamma < 0.12
    assert np.isclose(a.shift_probabilities.sum(), 1.0)
    # the fixed noise variance is passed through
    d = init.initialize([X], basis, 0.7, np.random.default_rng(1))
    assert d.noise_variance == 0.7


def test_random_initializer_fixed_density(setup):
    basis, _, X, _ = setup
    st = RandomInitializer(density=0.03).initialize([X], basis, 1.0, np.random.default_rng(0))
    assert np.isclose(shift_probabilities_to_density(st.shift_probabilities), 0.03)
    with pytest.raises(ValueError, match="density"):
        RandomInitializer(density=0.9).initialize([X], basis, 1.0, np.random.default_rng(0))


def test_fixed_initializer(setup):
    basis, coef, X, truth = setup
    rho = density_to_shift_probabilities(0.02, L)
    st = FixedInitializer(coef, rho).initialize([X], basis, 0.5, np.random.default_rng(0))
    np.testing.assert_array_equal(st.coef, coef)
    np.testing.assert_allclose(st.shift_probabilities, rho)
    assert st.noise_variance == 0.5
    # without rho, gamma matches the signal energy: close to the true 0.04
    st = FixedInitializer(coef).initialize([X], basis, truth.noise_variance,
                                           np.random.default_rng(0))
    assert abs(shift_probabilities_to_density(st.shift_probabilities) - 0.04) < 0.01
    st = FixedInitializer(coef, noise_variance=2.0).initialize([X], basis, None,
                                                               np.random.default_rng(0))
    assert st.noise_variance == 2.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(coef=np.ones(3)), "coef"),
    (dict(coef=np.ones(10), shift_probabilities=np.ones((10, 10))), "sum to 1"),
    (dict(coef=np.ones(10), shift_probabilities=np.ones((4, 4)) / 16), "shape"),
    (dict(coef=np.full(10, np.nan)), "finite"),
    (dict(coef=np.ones(10), noise_variance=-1.0), "noise_variance"),
])
def test_fixed_initializer_bad_input(setup, kwargs, match):
    basis, _, X, _ = setup
    with pytest.raises(ValueError, match=match):
        FixedInitializer(**kwargs).initialize([X], basis, None, np.random.default_rng(0))


def test_params_clone():
    init = FixedInitializer(np.ones(10))
    c = clone(init)
    assert c is not init and np.array_equal(c.coef, init.coef)
    assert RandomInitializer().set_params(density=0.05).density == 0.05
    with pytest.raises(ValueError, match="invalid parameter"):
        RandomInitializer().set_params(foo=1)
    assert "RandomInitializer(density=None)" == repr(RandomInitializer())


def test_data_statistics_with_margins_and_several_measurements():
    """Pixels outside the patch grid count in the moments, not in the energies."""
    rng = np.random.default_rng(1)
    Ms = [rng.standard_normal((103, 107)), 2 + rng.standard_normal((51, 49))]
    a1, m2, _ = data_statistics(Ms, L, chunk_rows=12)
    allpix = np.concatenate([M.ravel() for M in Ms])
    assert np.isclose(a1, allpix.mean(), rtol=1e-12)
    assert np.isclose(m2, np.mean(allpix**2), rtol=1e-12)


def test_fixed_initializer_reads_no_data_when_fully_given(setup):
    basis, coef, _, _ = setup
    rho = density_to_shift_probabilities(0.02, L)
    # an unreadable "measurement" proves the data are not touched
    st = FixedInitializer(coef, rho).initialize([object()], basis, 0.5,
                                                np.random.default_rng(0))
    assert st.noise_variance == 0.5


def test_data_statistics_quartile_is_numpys_exactly():
    """The lower quartile comes from a radix selection in bounded memory; it is
    bit for bit numpy.quantile of all the patch energies."""
    from scipy import stats

    from mtdlearn.data.measurements import extract_patches

    rng = np.random.default_rng(3)
    d = L * L
    cases = [[rng.normal(size=(97, 103))],
             [rng.normal(size=(50, 60)) * (rng.random((50, 60)) < 0.02)],  # many zero patches
             [rng.normal(size=(40, 41)), 3 * rng.normal(size=(23, 77))],
             [np.full((10, 10), 2.0)]]
    for Ms in cases:
        energies = np.concatenate([np.einsum("pij,pij->p", P, P) / d
                                   for P in (extract_patches(M, L) for M in Ms)])
        expected = float(np.quantile(energies, 0.25) / (stats.chi2.ppf(0.25, d) / d))
        for chunk_rows, block_bytes in [(1024, 2**22), (5, 100), (12, 2**22)]:
            assert data_statistics(Ms, L, chunk_rows, block_bytes)[2] == expected


def test_order_statistics_in_several_passes():
    from mtdlearn.initializers import _fold, _order_statistics, _radix_digits

    rng = np.random.default_rng(4)
    for values in (rng.chisquare(25, 999) / 25, np.zeros(50),
                   np.r_[np.zeros(300), rng.random(20) * 1e-300],
                   np.r_[np.full(40, 3.0), np.full(40, np.nextafter(3.0, 4))]):
        values = values + 0.0
        parts = np.array_split(values, 4)
        first = sum(np.bincount(_radix_digits(p.view(np.uint64), 0, 0)[0].astype(np.intp),
                                minlength=1 << 17) for p in parts)
        ordered = np.sort(values)
        for rank in (0, values.size // 4, values.size // 2, values.size - 1):
            for max_collect in (0, 3, 2**16):  # 0 and 3 force more passes
                got = _order_statistics(
                    lambda per_values, pair, *args: _fold(parts, per_values, pair, args),
                    values.size, rank, first, max_collect=max_collect)
                assert got == (ordered[rank], ordered[min(rank + 1, values.size - 1)])
