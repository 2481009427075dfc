"""Tests of mtdlearn.imaging.noise: noise spectra, whitening, colored noise.

Statistical assertions carry their tolerance's reason.  A bin of
``estimate_noise_psd`` is compared with the truth in units of its own
standard error: with ~45 bins per spectrum, ``|z| < 4.5`` fails by chance
with probability ~3e-4 per spectrum (and the seeds are fixed).
"""

import dataclasses
import pickle

import numpy as np
import pytest
import scipy.fft
from hypothesis import given, strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from mtdlearn.imaging.noise import (RadialPSD, draw_colored_noise, estimate_noise_psd,
                                    is_white, make_noise_psd, whiten, whitening_filter)

Z_MAX = 4.5


def colored(shape, variance, seed, psd=None):
    """Colored noise of ``make_noise_psd()``'s shape (or ``psd``'s) and mean power ``variance``."""
    psd = make_noise_psd() if psd is None else psd
    return draw_colored_noise(np.empty(shape), psd, variance, np.random.default_rng(seed))


def add_blobs(micrograph, n_blobs, sigma, amplitude, seed):
    """Add ``n_blobs`` Gaussian blobs (the copies) at random places, wrapping around."""
    rng = np.random.default_rng(seed)
    r = int(4 * sigma)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    blob = amplitude * np.exp(-(yy ** 2 + xx ** 2) / (2.0 * sigma ** 2))
    n0, n1 = micrograph.shape
    for y, x in zip(rng.integers(0, n0, n_blobs), rng.integers(0, n1, n_blobs)):
        micrograph[np.ix_((np.arange(y - r, y + r + 1)) % n0,
                          (np.arange(x - r, x + r + 1)) % n1)] += blob
    return micrograph


def blobs_covering(fraction, shape, sigma):
    """How many blobs cover ``fraction`` of the area (a blob covers its disk of radius 2 sigma)."""
    return int(round(fraction * shape[0] * shape[1] / (np.pi * (2 * sigma) ** 2)))


def z_scores(psd, truth):
    """``(estimate - truth) / error`` per bin; ``truth`` a callable of k."""
    return (psd.values - truth(psd.frequencies)) / psd.errors


# ------------------------------------------------------------------ RadialPSD
increasing = st.lists(st.floats(0.001, 0.2), min_size=1, max_size=8).map(
    lambda d: np.cumsum(d) - d[0])


@given(freq=increasing, data=st.data())
def test_radial_psd_interpolates_linearly_and_extrapolates_constant(freq, data):
    values = np.array(data.draw(st.lists(st.floats(0.1, 10.0), min_size=len(freq),
                                         max_size=len(freq))))
    psd = RadialPSD(freq, values)
    assert_array_equal(psd(freq), values)  # exact at the bins
    k = np.linspace(0.0, 1.0, 57)
    assert_allclose(psd(k), np.interp(k, freq, values), rtol=1e-12)
    assert float(psd(freq[-1] + 1.0)) == values[-1]
    if len(freq) > 1:
        mid = 0.5 * (freq[0] + freq[1])
        assert float(psd(mid)) == pytest.approx(0.5 * (values[0] + values[1]), rel=1e-12)


@given(n0=st.integers(1, 40), n1=st.integers(1, 40))
def test_evaluate_rfft_layout_is_the_full_layout_s_first_columns(n0, n1):
    psd = make_noise_psd(ratio=3.0, width=0.15)
    full, half = psd.evaluate((n0, n1)), psd.evaluate((n0, n1), rfft=True)
    assert full.shape == (n0, n1) and half.shape == (n0, n1 // 2 + 1)
    assert_array_equal(full[:, :n1 // 2 + 1], half)
    k = np.hypot(np.fft.fftfreq(n0)[:, None], np.fft.fftfreq(n1)[None, :])
    assert_array_equal(full, psd(k))
    # the mean power is the mean over the full grid, computed from the rfft half
    assert psd.mean_power((n0, n1)) == pytest.approx(full.mean(), rel=1e-12)
    # and the filter's two layouts agree too
    assert_allclose(whitening_filter(psd, (n0, n1), rfft=False)[:, :n1 // 2 + 1],
                    whitening_filter(psd, (n0, n1)), rtol=1e-14)


def test_scaled_sets_the_mean_power_and_scales_errors():
    psd = RadialPSD([0.0, 0.3, 0.6], [4.0, 2.0, 1.0], errors=[0.4, 0.2, 0.1])
    out = psd.scaled(7.0, (48, 33))
    assert out.mean_power((48, 33)) == pytest.approx(7.0, rel=1e-12)
    assert_allclose(out.values / psd.values, out.errors / psd.errors, rtol=1e-12)
    assert_array_equal(out.frequencies, psd.frequencies)


def test_radial_psd_is_an_immutable_value():
    freq, values = np.array([0.0, 0.5]), np.array([2.0, 1.0])
    psd = RadialPSD(freq, values)
    values[0] = 99.0  # our own copy
    assert psd.values[0] == 2.0
    with pytest.raises(ValueError):
        psd.values[0] = 3.0  # read-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        psd.values = values
    assert psd == RadialPSD([0, 0.5], [2, 1])
    assert psd != RadialPSD([0, 0.5], [2, 1], errors=[0.1, 0.1])
    assert psd != RadialPSD([0, 0.5], [2, 1.5])
    with pytest.raises(TypeError):
        hash(psd)
    assert "2 bins" in repr(psd)
    assert pickle.loads(pickle.dumps(psd)) == psd  # joblib ships it to workers


@pytest.mark.parametrize("kwargs, match", [
    (dict(frequencies=[0.2, 0.1], values=[1, 1]), "strictly increasing"),
    (dict(frequencies=[-0.1, 0.1], values=[1, 1]), ">= 0"),
    (dict(frequencies=[], values=[]), "non-empty"),
    (dict(frequencies=[0.0, 0.1], values=[1.0]), r"values must have the shape of frequencies"),
    (dict(frequencies=[0.0, 0.1], values=[1.0, 0.0]), "values must be > 0"),
    (dict(frequencies=[0.0, 0.1], values=[1, 1], errors=[1, -1]), "errors must be >= 0"),
    (dict(frequencies=[[0.0, 0.1]], values=[1, 1]), "frequencies must be 1-dimensional"),
    (dict(frequencies=[0.0, np.nan], values=[1, 1]), "frequencies must contain only finite"),
])
def test_radial_psd_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RadialPSD(**kwargs)


def test_radial_psd_methods_reject_bad_arguments():
    psd = make_noise_psd()
    with pytest.raises(ValueError, match="k must be >= 0"):
        psd(-0.1)
    with pytest.raises(ValueError, match=r"shape must be a pair \(n0, n1\)"):
        psd.evaluate((4, 4, 4))
    with pytest.raises(ValueError, match=r"shape\[1\] must be >= 1"):
        psd.mean_power((4, 0))
    with pytest.raises(TypeError, match=r"shape\[0\] must be an integer"):
        psd.evaluate((4.5, 4))
    with pytest.raises(ValueError, match="noise_variance must be > 0"):
        psd.scaled(0.0, (8, 8))


# ------------------------------------------------------------- make_noise_psd
@pytest.mark.parametrize("ratio", [0.5, 1.0, 4.0, 10.0])
def test_make_noise_psd_shape_and_normalization(ratio):
    psd = make_noise_psd(ratio=ratio, width=0.1)
    assert psd.errors is None
    assert float(psd(0.0) / psd(0.5)) == pytest.approx(ratio, rel=1e-9)  # exp(-25) ~ 1e-11
    assert np.all(np.diff(psd.values) <= 0) if ratio >= 1 else np.all(np.diff(psd.values) >= 0)
    for n in (32, 100, 512):  # the continuum mean: grids converge to it (documented 1e-4)
        assert psd.mean_power((n, n)) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(ratio=0.0), ValueError, "ratio must be > 0"),
    (dict(ratio="4"), TypeError, "ratio must be a real number"),
    (dict(width=-0.1), ValueError, "width must be > 0"),
    (dict(n_bins=1), ValueError, "n_bins must be >= 2"),
    (dict(n_bins=10.0), TypeError, "n_bins must be an integer"),
])
def test_make_noise_psd_rejects(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_noise_psd(**kwargs)


# ---------------------------------------------------------- draw_colored_noise
def test_draw_colored_noise_has_the_requested_variance():
    psd, variance, shape = make_noise_psd(), 3.0, (512, 512)
    out = np.empty(shape)
    assert draw_colored_noise(out, psd, variance, np.random.default_rng(0)) is out
    # the sample variance of Gaussian noise of PSD S has the standard error
    # sqrt(2 sum S_k**2) / N (each |fft2|**2 / N is S_k times an Exp(1))
    s = psd.scaled(variance, shape).evaluate(shape)
    se = np.sqrt(2.0 * np.sum(s ** 2)) / s.size
    assert abs(out.var() - variance) < 4 * se


def test_draw_colored_noise_has_the_requested_spectrum():
    # ring means of |fft2(n)|**2 / N over 4 draws: each ring of ~2 pi r
    # coefficients (pairs +-k equal) has a relative standard error of
    # sqrt(2 / (4 n_ring)); compare with the ring's mean of S
    psd, shape = make_noise_psd(ratio=4.0), (256, 256)
    power = np.mean([np.abs(np.fft.fft2(colored(shape, 2.0, seed))) ** 2 / 256 ** 2
                     for seed in range(4)], axis=0)
    truth = psd.scaled(2.0, shape).evaluate(shape)
    k = np.hypot(np.fft.fftfreq(256)[:, None], np.fft.fftfreq(256)[None, :])
    rings = np.floor(k * 256 + 0.5).astype(int).ravel()
    count = np.bincount(rings)
    ok = count >= 8
    rel = np.bincount(rings, power.ravel())[ok] / np.bincount(rings, truth.ravel())[ok]
    se = np.sqrt(2.0 / (4 * count[ok]))
    assert np.all(np.abs(rel - 1.0) < Z_MAX * se)
    ring_power = np.bincount(rings, power.ravel()) / count
    assert ring_power[1:5].mean() > 3.0 * ring_power[100:120].mean()  # ~4x at low k


@given(n0=st.integers(2, 24), n1=st.integers(2, 24), variance=st.floats(0.01, 100.0),
       seed=st.integers(0, 2 ** 16))
def test_whitening_undoes_drawing_exactly(n0, n1, variance, seed):
    # draw: irfft2(Z sqrt(v S / mean S)); whiten: times sqrt(mean S / S) -> sqrt(v) z
    psd = make_noise_psd(ratio=5.0, width=0.2)
    noise = draw_colored_noise(np.empty((n0, n1)), psd, variance, np.random.default_rng(seed))
    z = np.random.default_rng(seed).standard_normal((n0, n1))
    assert_allclose(whiten(noise, psd), np.sqrt(variance) * z, atol=1e-10 * np.sqrt(variance))


def test_draw_colored_noise_accepts_a_callable_and_float32():
    def rising(k):
        return 1.0 + 3.0 * k
    out = draw_colored_noise(np.empty((64, 65), dtype=np.float32), rising, 2.0, 5)
    assert out.dtype == np.float32
    z = np.random.default_rng(5).standard_normal((64, 65))
    assert_allclose(whiten(out, rising), np.sqrt(2.0) * z, atol=1e-5)


@pytest.mark.parametrize("out, psd, variance, exc, match", [
    ([[0.0]], None, 1.0, TypeError, "out must be a float32 or float64 numpy array"),
    (np.zeros((4, 4), dtype=int), None, 1.0, TypeError, "out must be a float32 or float64"),
    (np.zeros((4, 4, 4)), None, 1.0, ValueError, "out must be 2-D"),
    (np.zeros((4, 4)), None, -1.0, ValueError, "noise_variance must be >= 0"),
    (np.zeros((4, 4)), "white", 1.0, TypeError, "psd must be a RadialPSD or a callable"),
    (np.zeros((4, 4)), lambda k: np.ones(3), 1.0, ValueError, "psd\\(k\\) must return"),
    (np.zeros((4, 4)), lambda k: -np.ones_like(k), 1.0, ValueError, "psd\\(k\\) must return"),
])
def test_draw_colored_noise_rejects(out, psd, variance, exc, match):
    psd = make_noise_psd() if psd is None else psd
    with pytest.raises(exc, match=match):
        draw_colored_noise(out, psd, variance, np.random.default_rng(0))


def test_draw_colored_noise_rejects_a_read_only_buffer():
    out = np.zeros((4, 4))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        draw_colored_noise(out, make_noise_psd(), 1.0, 0)


# ---------------------------------------------------------- estimate_noise_psd
@pytest.fixture(scope="module")
def white_estimates():
    """20 white-noise micrographs of 1024 x 1024 at variances 0.01 to 100."""
    variances = [0.01, 1.0, 7.0, 100.0] * 5
    return [(v, estimate_noise_psd(np.sqrt(v) * np.random.default_rng(seed).standard_normal(
        (1024, 1024)))) for seed, v in enumerate(variances)]


def test_error_bars_are_calibrated_on_white_noise(white_estimates):
    z = np.concatenate([(psd.values - v) / psd.errors for v, psd in white_estimates])
    # 20 x 44 z-scores: a standard normal's sample std is 1 +- 0.025, its mean 0 +- 0.04
    assert 0.85 < z.std() < 1.15
    assert abs(z.mean()) < 0.2
    assert np.abs(z).max() < 5.0


def test_white_noise_is_called_white(white_estimates):
    assert all(is_white(psd) for _, psd in white_estimates)
    for v, psd in white_estimates:  # the mean power is the variance, to a few per mille
        assert psd.mean_power((1024, 1024)) == pytest.approx(v, rel=0.02)


def test_estimate_recovers_a_colored_spectrum():
    truth = make_noise_psd(ratio=4.0).scaled(2.0, (1024, 1024))
    psd = estimate_noise_psd(colored((1024, 1024), 2.0, seed=1))
    assert len(psd.frequencies) == 44 and psd.frequencies[0] > 0
    assert np.all(np.abs(z_scores(psd, truth)) < Z_MAX)
    assert not is_white(psd)


def test_estimate_ignores_a_few_tiles_with_strong_copies():
    # 8 copies of amplitude 10 sigma (SNR ~ 100 at their centre) touch <= 16 of the
    # 256 tiles: the median moves by well under a standard error
    truth = make_noise_psd(ratio=4.0).scaled(1.0, (1024, 1024))
    micrograph = add_blobs(colored((1024, 1024), 1.0, seed=2), 8, 3.0, 10.0, seed=3)
    psd = estimate_noise_psd(micrograph)
    assert np.all(np.abs(z_scores(psd, truth)) < Z_MAX)


def test_copies_over_5_percent_of_the_area():
    # copies in most tiles: above the copies' band (blobs of sigma 3 px have no
    # power beyond k ~ 0.15) the rings are recovered; below it they hold the
    # copies' own power too (documented), which only makes colored look colored
    shape = (512, 512)
    truth = make_noise_psd(ratio=4.0).scaled(1.0, shape)
    for seed in range(3):
        micrograph = add_blobs(colored(shape, 1.0, seed=10 + seed),
                               blobs_covering(0.05, shape, 3.0), 3.0, 3.0, seed=20 + seed)
        psd = estimate_noise_psd(micrograph)
        high = psd.frequencies > 0.2
        assert np.all(np.abs(z_scores(psd, truth)[high]) < Z_MAX)
        assert not is_white(psd)


def test_white_noise_with_weak_copies_stays_white():
    # at low SNR (blobs of amplitude 0.3 sigma on 5 % of the area) the copies'
    # power (+8 % in the first ring) is too little to call the noise colored
    shape = (1024, 1024)
    noise = np.random.default_rng(40).standard_normal(shape)
    assert is_white(estimate_noise_psd(add_blobs(noise, blobs_covering(0.05, shape, 3.0),
                                                 3.0, 0.3, seed=41)))


def test_colored_noise_on_512_is_called_colored():
    for seed in range(5):
        assert not is_white(estimate_noise_psd(colored((512, 512), 0.5, seed=30 + seed)))


def test_whitened_noise_is_white_by_its_estimated_spectrum():
    shape = (1024, 1024)
    noise = colored(shape, 2.0, seed=4)
    psd = estimate_noise_psd(noise)
    again = estimate_noise_psd(whiten(noise, psd))
    assert is_white(again)
    flat = np.average(again.values, weights=again.errors ** -2.0)
    assert flat == pytest.approx(2.0, rel=0.02)  # whitening keeps the variance per pixel
    assert np.all(np.abs(again.values - flat) < Z_MAX * again.errors)


def test_estimate_reads_float32_and_memory_maps_without_modifying_them(tmp_path):
    data = colored((300, 260), 1.5, seed=5)
    single = data.astype(np.float32)
    mapped = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.float32,
                                       shape=data.shape)
    mapped[:] = single
    mapped.flush()
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    keep = single.copy()
    psd32 = estimate_noise_psd(single, tile_size=32)
    assert_array_equal(single, keep)
    assert estimate_noise_psd(mapped, tile_size=32) == psd32
    assert_allclose(estimate_noise_psd(data, tile_size=32).values, psd32.values, rtol=1e-5)


@pytest.mark.parametrize("tile_size, n_bins", [(32, None), (33, None), (64, 12), (16, 2)])
def test_estimate_with_other_tiles_and_bins(tile_size, n_bins):
    psd = estimate_noise_psd(3.0 * np.random.default_rng(6).standard_normal((512, 512)),
                             tile_size=tile_size, n_bins=n_bins)
    if n_bins is not None:
        assert len(psd.frequencies) <= n_bins
    assert np.all(np.diff(psd.frequencies) > 0)
    assert np.all(np.abs(psd.values - 9.0) < Z_MAX * psd.errors)


@pytest.mark.parametrize("micrograph, kwargs, exc, match", [
    (np.zeros(4096), {}, ValueError, "micrograph must be 2-dimensional"),
    (np.zeros((2, 64, 64)), {}, ValueError, "micrograph must be 2-dimensional"),
    (np.zeros((40, 300)), {}, ValueError,
     r"smaller than one tile of tile_size=64 .* pass a smaller tile_size \(8 to 40\)"),
    (np.zeros((64, 64), dtype=complex), {}, TypeError, "micrograph must be real"),
    (np.full((64, 64), np.nan), {}, ValueError, "micrograph must contain only finite"),
    (np.ones((64, 64)), {}, ValueError, "no power in some frequency rings"),
    (np.ones((64, 64)), dict(tile_size=4), ValueError, "tile_size must be >= 8"),
    (np.ones((64, 64)), dict(tile_size=32.0), TypeError, "tile_size must be an integer"),
    (np.ones((64, 64)), dict(n_bins=46), ValueError, "n_bins must be <= 45"),
    (np.ones((64, 64)), dict(n_bins=1), ValueError, "n_bins must be >= 2"),
])
def test_estimate_noise_psd_rejects(micrograph, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        estimate_noise_psd(micrograph, **kwargs)


# ------------------------------------------------------------------- is_white
def test_is_white_on_model_spectra():
    flat = RadialPSD([0.0, 0.5], [1.0, 1.05])
    assert is_white(flat) and not is_white(flat, tolerance=0.01)
    assert not is_white(make_noise_psd(ratio=4.0))
    assert is_white(make_noise_psd(ratio=1.0))


def test_is_white_needs_both_significance_and_size():
    k = np.linspace(0.01, 0.7, 40)
    tilted = 1.0 + 0.05 * (k > 0.35)  # a 5 % step, 50 error bars high
    assert is_white(RadialPSD(k, tilted, errors=np.full(40, 0.001)))
    stepped = 1.0 + 0.5 * (k > 0.35)  # a 50 % step, well within huge error bars
    assert is_white(RadialPSD(k, stepped, errors=np.full(40, 1.0)))
    assert not is_white(RadialPSD(k, stepped, errors=np.full(40, 0.01)))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(significance=0.0), ValueError, "significance must be > 0"),
    (dict(significance=1.0), ValueError, "significance must be < 1"),
    (dict(tolerance=-0.1), ValueError, "tolerance must be >= 0"),
])
def test_is_white_rejects(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        is_white(make_noise_psd(), **kwargs)
    with pytest.raises(TypeError, match="psd must be a RadialPSD"):
        is_white(np.ones(5))


# ---------------------------------------------------------------------- whiten
def test_whiten_returns_a_new_array_and_keeps_its_input():
    x = colored((96, 80), 1.0, seed=7)
    keep = x.copy()
    w = whiten(x, make_noise_psd())
    assert w is not x and w.dtype == np.float64 and w.shape == x.shape
    assert_array_equal(x, keep)
    expected = scipy.fft.irfft2(scipy.fft.rfft2(x) * whitening_filter(make_noise_psd(), x.shape),
                                s=x.shape)
    assert_allclose(w, expected, rtol=1e-12, atol=1e-12)
    out = np.empty((96, 80), dtype=np.float32)
    assert whiten(x, make_noise_psd(), out=out) is out
    assert_allclose(out, w, rtol=1e-5, atol=1e-5)
    assert whiten(x, make_noise_psd(), out=x) is x  # in place, when asked
    assert_allclose(x, w, rtol=1e-12, atol=1e-12)


@given(n0=st.integers(1, 30), n1=st.integers(1, 30), ratio=st.floats(0.2, 20.0))
def test_whitening_filter_flattens_the_spectrum_to_its_mean(n0, n1, ratio):
    psd = make_noise_psd(ratio=ratio)
    for rfft in (True, False):
        W = whitening_filter(psd, (n0, n1), rfft=rfft)
        assert_allclose(W ** 2 * psd.evaluate((n0, n1), rfft=rfft), psd.mean_power((n0, n1)),
                        rtol=1e-12)


def test_whitening_a_flat_spectrum_changes_nothing():
    x = np.random.default_rng(8).standard_normal((33, 40))
    assert_allclose(whiten(x, RadialPSD([0.0], [5.0])), x, atol=1e-12)


def test_whiten_rejects():
    with pytest.raises(ValueError, match="micrograph must be 2-dimensional"):
        whiten(np.zeros(16), make_noise_psd())
    with pytest.raises(ValueError, match=r"out must be of shape \(8, 8\)"):
        whiten(np.zeros((8, 8)), make_noise_psd(), out=np.zeros((8, 9)))
    with pytest.raises(TypeError, match="psd must be a RadialPSD or a callable"):
        whiten(np.zeros((8, 8)), [1.0, 2.0])
