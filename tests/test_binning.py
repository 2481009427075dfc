"""Tests of binning by Fourier cropping (mtdlearn.imaging.binning)."""

import dataclasses

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from mtdlearn.imaging.binning import (bin_ctf, bin_noise_psd, binned_shape, effective_factor,
                                      fourier_crop)
from mtdlearn.imaging.ctf import CTF
from mtdlearn.imaging.noise import (RadialPSD, draw_colored_noise, estimate_noise_psd,
                                    make_noise_psd)

# (shape, factor): even and odd sizes on both sides, exact and inexact ratios
CASES = [((64, 48), 2), ((64, 48), 4), ((65, 47), 2), ((60, 45), 2.5), ((100, 90), 3),
         ((37, 50), 1.7), ((33, 33), 3), ((40, 30), 7.3)]


def _coarse_index(n, N):
    """Index on the fine FFT axis of each frequency of the coarse one (``fftfreq`` order)."""
    return np.round(np.fft.fftfreq(n) * n).astype(int) % N


def _crop_matrix(shape, factor):
    """The crop as a matrix: ``A @ x.ravel() == fourier_crop(x).ravel()``."""
    N = int(np.prod(shape))
    return np.stack([fourier_crop(np.eye(N)[k].reshape(shape), factor).ravel()
                     for k in range(N)], axis=1)


def test_binned_shape_and_effective_factor():
    assert binned_shape((3838, 3710), 2) == (1919, 1855)
    assert binned_shape((4096, 5760), 3) == (1365, 1920)
    assert binned_shape((10, 9), 1) == (10, 9)
    assert binned_shape((10, 9), 4) == (3, 2)     # 2.5 -> 3, 2.25 -> 2: the nearest integer
    assert binned_shape((10, 9), 18) == (1, 1)    # 9 / 18 = 0.5 -> 1
    assert binned_shape((5, 10, 9), 4) == (5, 3, 2)   # a stack
    assert effective_factor((5, 10, 9), 4) == effective_factor((10, 9), 4)
    assert effective_factor((3838, 3710), 2) == 2.0
    assert effective_factor((4096, 4096), 3) == pytest.approx(4096 / 1365)
    assert effective_factor((10, 9), 4) == pytest.approx(np.sqrt(90 / 6))
    with pytest.raises(ValueError, match="leaves no pixel .* at most 18"):
        binned_shape((10, 9), 18.5)
    with pytest.raises(ValueError, match="factor must be >= 1.0, got 0.5"):
        binned_shape((10, 9), 0.5)
    with pytest.raises(ValueError, match="factor must be finite"):
        effective_factor((10, 9), np.inf)
    with pytest.raises(TypeError, match="factor must be a real number, got bool"):
        binned_shape((10, 9), True)


@pytest.mark.parametrize("shape, factor", CASES)
def test_constant_and_band_limited_images_are_kept(shape, factor):
    N1, N2 = shape
    n1, n2 = binned_shape(shape, factor)
    assert_allclose(fourier_crop(np.full(shape, 7.25), factor), np.full((n1, n2), 7.25),
                    rtol=0, atol=1e-12)
    # cosines of frequencies below the new Nyquist frequency, in cycles per image
    rng = np.random.default_rng(0)
    i, j = np.mgrid[:N1, :N2]
    I, J = np.mgrid[:n1, :n2]
    fine, coarse = np.full(shape, 2.0), np.full((n1, n2), 2.0)
    for _ in range(5):
        m1 = rng.integers(-((n1 - 1) // 2), (n1 - 1) // 2 + 1)
        m2 = rng.integers(-((n2 - 1) // 2), (n2 - 1) // 2 + 1)
        a, phase = rng.normal(), rng.uniform(0, 2 * np.pi)
        fine += a * np.cos(2 * np.pi * (m1 * i / N1 + m2 * j / N2) + phase)
        coarse += a * np.cos(2 * np.pi * (m1 * I / n1 + m2 * J / n2) + phase)
    out = fourier_crop(fine, factor)
    assert out.shape == (n1, n2) and out.dtype == np.float64
    assert_allclose(out, coarse, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape, factor", [((12, 9), 2), ((12, 9), 3), ((11, 10), 1.5),
                                           ((9, 12), 4), ((8, 8), 1.0)])
def test_crop_has_orthogonal_rows_white_noise_stays_white(shape, factor):
    # A A^T = (n1 n2 / N1 N2) I: white noise of variance s2 comes out white, of
    # variance exactly s2 / effective_factor**2 (the Nyquist rows/columns included)
    A = _crop_matrix(shape, factor)
    n = int(np.prod(binned_shape(shape, factor)))
    assert_allclose(A @ A.T, np.eye(n) * n / np.prod(shape), rtol=0, atol=1e-13)
    assert np.trace(A @ A.T) / n == pytest.approx(effective_factor(shape, factor) ** -2,
                                                  rel=1e-13)


def test_white_noise_variance_monte_carlo():
    rng = np.random.default_rng(1)
    noise = 2.0 * rng.standard_normal((1024, 1024))
    binned = fourier_crop(noise, 2)
    # variance 4 / 2**2 = 1; the estimate's standard deviation is sqrt(2 / 512**2)
    assert abs(binned.var() - 1.0) < 4 * np.sqrt(2.0 / binned.size)


@pytest.mark.parametrize("shape, factor", [((12, 8), 2), ((12, 9), 3), ((16, 12), 4)])
def test_colored_noise_covariance_is_bin_noise_psd_exactly(shape, factor):
    # exact ratios (N / factor integers): the cropped noise's covariance A C A^T is
    # the circulant covariance of bin_noise_psd's spectrum on the new grid
    psd = RadialPSD([0.0, 0.1, 0.3, 0.5, 0.7], [5.0, 3.0, 1.5, 1.0, 0.8])
    new = binned_shape(shape, factor)
    acov = np.fft.ifft2(psd.evaluate(shape)).real   # E n[p] n[q] = acov[p - q]
    acov_new = np.fft.ifft2(bin_noise_psd(psd, factor).evaluate(new)).real

    def circulant(c):
        rows, cols = np.indices(c.shape).reshape(2, -1)
        return c[(rows[:, None] - rows[None, :]) % c.shape[0],
                 (cols[:, None] - cols[None, :]) % c.shape[1]]

    A = _crop_matrix(shape, factor)
    assert_allclose(A @ circulant(acov) @ A.T, circulant(acov_new), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape, factor", [((1024, 1024), 2), ((1000, 1000), 2.5)])
def test_colored_noise_spectrum_matches_estimate(shape, factor):
    psd = make_noise_psd(ratio=4.0, width=0.1)
    noise = draw_colored_noise(np.empty(shape), psd, 3.0, np.random.default_rng(2))
    binned = fourier_crop(noise, factor)
    expected = bin_noise_psd(psd.scaled(3.0, shape), effective_factor(shape, factor))
    estimate = estimate_noise_psd(binned, tile_size=32)
    z = (estimate.values - expected(estimate.frequencies)) / estimate.errors
    assert np.all(np.abs(z) < 5), z
    assert abs(np.mean(z)) < 4 / np.sqrt(z.size)
    # the variance per pixel: the mean of the binned spectrum over the new grid
    assert binned.var() == pytest.approx(expected.mean_power(binned.shape), rel=0.02)


def test_dtypes_copies_and_inputs_unchanged(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 30))
    before = x.copy()
    same = fourier_crop(x, 1)
    assert same is not x and not np.shares_memory(same, x)
    assert_array_equal(same, x)
    assert_array_equal(x, before)
    binned64 = fourier_crop(x, 3)
    binned32 = fourier_crop(x.astype(np.float32), 3)
    assert binned32.dtype == np.float32 and binned32.shape == binned64.shape == (13, 10)
    assert_allclose(binned32, binned64, rtol=0, atol=1e-5)
    assert fourier_crop(np.arange(40 * 30, dtype=np.int16).reshape(40, 30), 2).dtype == \
        np.float64
    # a read-only memory map and a stack, section by section
    np.save(tmp_path / "x.npy", np.stack([x, 2 * x]))
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    stack = fourier_crop(mapped, 3)
    assert stack.shape == (2, 13, 10)
    assert_allclose(stack[1], 2 * binned64, rtol=0, atol=1e-12)
    assert_array_equal(fourier_crop([[1.0, 2.0], [3.0, 4.0]], 1), [[1.0, 2.0], [3.0, 4.0]])


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"2-D \(N1, N2\) or a 3-D stack .* got shape \(5,\)"):
        fourier_crop(np.zeros(5), 2)
    with pytest.raises(ValueError, match="got shape"):
        fourier_crop(np.zeros((2, 2, 4, 4)), 2)
    with pytest.raises(TypeError, match="real numbers .* got dtype complex128"):
        fourier_crop(np.zeros((4, 4), complex), 2)
    with pytest.raises(TypeError, match="got dtype object"):
        fourier_crop(np.array([[None, 1]]), 1)
    for bad in (np.nan, np.inf):
        x = np.zeros((8, 8))
        x[3, 4] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            fourier_crop(x, 2)
    with pytest.raises(ValueError, match="factor must be >= 1.0"):
        fourier_crop(np.zeros((8, 8)), 0.9)
    with pytest.raises(ValueError, match="leaves no pixel"):
        fourier_crop(np.zeros((8, 8)), 17)
    with pytest.raises(TypeError, match="ctf must be a CTF, got dict"):
        bin_ctf({"defocus_u": 1e4}, 2)
    with pytest.raises(TypeError, match="psd must be a RadialPSD"):
        bin_noise_psd(lambda k: 1.0 + k, 2)
    with pytest.raises(ValueError, match="factor must be >= 1.0"):
        bin_noise_psd(make_noise_psd(), 0.5)


def test_lazy_dask_arrays(tmp_path):
    da = pytest.importorskip("dask.array")
    from mtdlearn.data.io import read_micrographs

    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 44)).astype(np.float32)
    lazy = fourier_crop(da.from_array(x, chunks=x.shape), 2.5)
    assert hasattr(lazy, "compute") and lazy.shape == (20, 18) and lazy.dtype == np.float32
    assert_array_equal(lazy.compute(scheduler="synchronous"), fourier_crop(x, 2.5))
    # micrographs read lazily from files; a stack of one chunk per section
    for i in range(2):
        np.save(tmp_path / f"m{i}.npy", (i + 1) * x.astype(np.float64))
    mics = read_micrographs(str(tmp_path / "m*.npy"))
    binned = [fourier_crop(m, 2) for m in mics]
    for i, b in enumerate(binned):
        assert b.chunks == ((25,), (22,)) and b.dtype == np.float64
        assert_allclose(b.compute(scheduler="synchronous"),
                        fourier_crop((i + 1) * x.astype(np.float64), 2), rtol=0, atol=1e-12)
    stack = da.from_array(np.stack([x, -x]), chunks=(1, 50, 44))
    assert_array_equal(fourier_crop(stack, 2).compute(scheduler="synchronous"),
                       fourier_crop(np.stack([x, -x]), 2))
    # values are checked by the tasks; a micrograph split in chunks is refused
    bad = x.copy()
    bad[0, 0] = np.nan
    lazy_bad = fourier_crop(da.from_array(bad, chunks=bad.shape), 2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        lazy_bad.compute(scheduler="synchronous")
    with pytest.raises(ValueError, match="one chunk along its last two axes"):
        fourier_crop(da.from_array(x, chunks=(25, 44)), 2)


def test_bin_ctf_samples_the_same_function():
    ctf = CTF(15000.0, 13000.0, 30.0, pixel_size=0.885, b_factor=20.0)
    binned = bin_ctf(ctf, 2)
    assert binned == dataclasses.replace(ctf, pixel_size=1.77)
    assert bin_ctf(ctf, 1) == ctf
    # the CTF on the new grid is the old one at the frequencies kept
    shape, factor = (48, 36), 3
    new = binned_shape(shape, factor)
    rows, cols = _coarse_index(new[0], shape[0]), _coarse_index(new[1], shape[1])
    fine = ctf.evaluate(shape)
    # an astigmatic CTF differs at +-1/2: the new Nyquist lines get the mean of both
    # (CTF.evaluate's convention), of the old values at +-new Nyquist
    expected = fine[np.ix_(rows, cols)]
    expected[:, new[1] // 2] = 0.5 * (fine[rows, new[1] // 2] + fine[rows, -(new[1] // 2)])
    expected[new[0] // 2] = 0.5 * (fine[new[0] // 2, cols] + fine[-(new[0] // 2), cols])
    corner = fine[np.ix_([new[0] // 2, -(new[0] // 2)], [new[1] // 2, -(new[1] // 2)])]
    expected[new[0] // 2, new[1] // 2] = corner.mean()
    assert_allclose(bin_ctf(ctf, effective_factor(shape, factor)).evaluate(new), expected,
                    rtol=0, atol=1e-12)


def test_bin_noise_psd_maps_the_spectrum():
    psd = estimate_noise_psd(np.random.default_rng(5).standard_normal((256, 256)))
    assert bin_noise_psd(psd, 1) == psd
    factor = 2.5
    binned = bin_noise_psd(psd, factor)
    assert binned.frequencies[-1] == pytest.approx(np.sqrt(0.5))
    assert np.all(binned.frequencies <= np.sqrt(0.5))
    kept = psd.frequencies * factor < np.sqrt(0.5)
    assert_allclose(binned.frequencies[:-1], psd.frequencies[kept] * factor)
    assert_allclose(binned.values[:-1], psd.values[kept] / factor ** 2)
    assert_allclose(binned.errors[:-1], psd.errors[kept] / factor ** 2)
    # exactly S(f / factor) / factor**2 at every frequency of the new grid
    shape = (100, 75)
    new = binned_shape(shape, factor)
    rows, cols = _coarse_index(new[0], shape[0]), _coarse_index(new[1], shape[1])
    assert_allclose(binned.evaluate(new), psd.evaluate(shape)[np.ix_(rows, cols)] / factor ** 2,
                    rtol=1e-12)
    # a model without errors; a spectrum that ends below the new corner
    short = RadialPSD([0.0, 0.2], [2.0, 1.0])
    assert bin_noise_psd(short, 2) == RadialPSD([0.0, 0.4], [0.5, 0.25])
    assert bin_noise_psd(make_noise_psd(), 3).errors is None
