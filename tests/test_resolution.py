"""Tests of mtdlearn.resolution: Fourier ring correlation and resolution.

Statistical assertions carry their tolerance's reason; the statistical
property runs with ``derandomize=True``, so its seeds are the same on every
run (no flaky failure by chance).
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from mtdlearn import FourierBesselBasis
from mtdlearn.data.simulate import make_target
from mtdlearn.metrics import align_rotation
from mtdlearn.resolution import FRC, fourier_ring_correlation, resolution, resolution_ring

seeds = st.integers(0, 2 ** 32 - 1)


def image_pair(L, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((L, L)), rng.standard_normal((L, L))


def brute_force_frc(a, b):
    """The definition, one ring at a time over the shifted FFT."""
    L = a.shape[0]
    f1, f2 = np.fft.fftshift(np.fft.fft2(a)), np.fft.fftshift(np.fft.fft2(b))
    k = np.arange(L) - L // 2
    radius = np.hypot(k[:, None], k[None, :])
    out = []
    for r in range(L // 2 + 1):
        ring = np.abs(radius - r) < 0.5
        out.append(np.sum(f1[ring] * f2[ring].conj()).real
                   / np.sqrt(np.sum(np.abs(f1[ring]) ** 2) * np.sum(np.abs(f2[ring]) ** 2)))
    return np.array(out)


# --- fourier_ring_correlation ------------------------------------------------

@pytest.mark.parametrize("L", [2, 3, 4, 7, 8, 16, 17])
def test_matches_definition_and_layout(L):
    a, b = image_pair(L, L)
    frc = fourier_ring_correlation(a, b, pixel_size=1.5)
    assert_allclose(frc.correlation, brute_force_frc(a, b), rtol=0, atol=1e-12)
    assert_allclose(frc.frequencies, np.arange(L // 2 + 1) / (L * 1.5), rtol=1e-15)
    assert frc.pixel_size == 1.5
    assert frc.n_pixels.dtype.kind == "i"
    assert frc.n_pixels[0] == 1
    # every frequency of the full grid inside the Nyquist circle (rounded) is counted once
    k = np.fft.fftfreq(L) * L
    assert frc.n_pixels.sum() == np.sum(np.rint(np.hypot(k[:, None], k[None, :])) <= L // 2)


def test_ring_counts_small():
    frc = fourier_ring_correlation(np.eye(4), np.eye(4))
    # L = 4: ring 1 holds the 8 neighbours of 0, ring 2 the 4 on the axes at 2
    # and (2, +-1), (+-1, 2): -2 is 2 on this grid, so 2 + 4 = 6
    assert_array_equal(frc.n_pixels, [1, 8, 6])


@settings(max_examples=40, deadline=None)
@given(L=st.integers(5, 33), seed=seeds, float32=st.booleans())
def test_identical_images_correlate_perfectly(L, seed, float32):
    image = image_pair(L, seed)[0]
    if float32:
        image = image.astype(np.float32)
    frc = fourier_ring_correlation(image, image)
    assert frc.correlation.dtype == np.float64
    assert_allclose(frc.correlation, 1.0, rtol=0, atol=1e-12)
    assert len(frc.correlation) == L // 2 + 1


@settings(max_examples=40, deadline=None)
@given(L=st.integers(2, 33), seed=seeds,
       scale=st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False))
def test_scale_invariance_and_sign(L, seed, scale):
    a, b = image_pair(L, seed)
    b = a + b  # correlated, so the values are not all near 0
    frc = fourier_ring_correlation(a, b).correlation
    assert_allclose(fourier_ring_correlation(scale * a, b).correlation, frc, atol=1e-12)
    assert_allclose(fourier_ring_correlation(a, scale * b).correlation, frc, atol=1e-12)
    assert_allclose(fourier_ring_correlation(-a, b).correlation, -frc, atol=1e-12)
    assert_allclose(fourier_ring_correlation(a, -b).correlation, -frc, atol=1e-12)
    assert_allclose(fourier_ring_correlation(b, a).correlation, frc, atol=1e-12)  # symmetric


@settings(max_examples=25, deadline=None, derandomize=True)
@given(L=st.integers(64, 128), seed=seeds)
def test_independent_noise_within_standard_error(L, seed):
    a, b = image_pair(L, seed)
    frc = fourier_ring_correlation(a, b)
    # ring 0 is +-1 whatever the noise: leave it out
    z = frc.correlation[1:] / frc.standard_error[1:]
    m = z.size  # 32 to 64 rings
    # The rings use disjoint frequencies, independent for white noise, so the
    # z are independent; each is sqrt(n) cos(angle between two independent
    # isotropic vectors of R^n): mean 0, variance exactly 1 (see
    # FRC.standard_error).  The mean of m of them has standard deviation
    # 1/sqrt(m): 4 of them fail with probability 6e-5.
    assert abs(z.mean()) < 4 / np.sqrt(m)
    # The sample variance s**2 of m values of variance 1 has standard
    # deviation sqrt((kurtosis - 1)/m) <= sqrt(2/m): sqrt(n) cos has kurtosis
    # 3n/(n + 2) < 3 (lighter tails than Gaussian; chi-type).  So s has
    # standard deviation <= 1/sqrt(2m) (delta method), about 0.09 to 0.125:
    # allow 5 of them.
    assert abs(z.std() - 1) < 5 / np.sqrt(2 * m)
    # each |z| is bounded by the tails of a Gaussian or lighter: P(|z| >= 5)
    # <= 6e-7 per ring
    assert np.all(np.abs(z) < 5)


def test_standard_error_is_one_over_sqrt_n():
    frc = FRC(np.arange(3) / 8.0, np.zeros(3), np.array([1, 8, 12]), 1.0)
    assert_allclose(frc.standard_error, 1 / np.sqrt([1, 8, 12]), rtol=1e-15)


def test_zero_power_ring_is_nan():
    # a constant image has power at the zero frequency only
    frc = fourier_ring_correlation(np.ones((6, 6)), np.random.default_rng(0).random((6, 6)))
    assert frc.correlation[0] == 1.0
    assert np.all(np.isnan(frc.correlation[1:]))
    zero = fourier_ring_correlation(np.zeros((5, 5)), np.zeros((5, 5)))
    assert np.all(np.isnan(zero.correlation))


@settings(max_examples=10, deadline=None)
@given(L=st.sampled_from([11, 21]), seed=seeds,
       angle=st.floats(0.3, 2 * np.pi - 0.3, allow_nan=False))
def test_rotation_invariance_after_alignment(L, seed, angle):
    basis = FourierBesselBasis(L)
    coef = make_target(basis, random_state=seed)
    rotated = basis.rotate(coef, angle)
    phi, _ = align_rotation(coef, rotated, basis)
    image = basis.evaluate(coef)
    frc = fourier_ring_correlation(image, basis.evaluate(basis.rotate(rotated, phi)))
    # A band-limited image may have no power in a ring (NaN there), or so
    # little that its correlation is one of rounding errors (left unchecked);
    # elsewhere 1 to within 1e-8.  (make_target's images have >= 1% of their
    # power in every ring at these sizes, so all rings are checked in practice.)
    spectrum = np.abs(np.fft.fft2(image)) ** 2
    k = np.fft.fftfreq(L) * L
    ring = np.rint(np.hypot(k[:, None], k[None, :])).astype(int)
    power = np.bincount(ring.ravel(), spectrum.ravel())[:L // 2 + 1] / spectrum.sum()
    significant = power > 1e-20
    assert significant[1:].any()
    assert_allclose(frc.correlation[significant], 1.0, rtol=0, atol=1e-8)
    assert np.all(np.isnan(frc.correlation[power == 0]))
    # without the alignment the rotated image differs: the test can fail
    unaligned = fourier_ring_correlation(image, basis.evaluate(rotated)).correlation
    assert np.nanmin(unaligned[significant]) < 0.99


# --- resolution ---------------------------------------------------------------

def linear_frc(L=64, pixel_size=1.0, slope=0.04):
    """A curve falling linearly from 1 at ring 0, ``1 - slope * r`` (to -0.28 at ring 32)."""
    r = np.arange(L // 2 + 1)
    return FRC(r / (L * pixel_size), 1 - slope * r, np.full(r.size, 8), pixel_size)


@pytest.mark.parametrize("threshold", [0.143, 0.5, 0.7, 0.33])
def test_linear_curve_gives_analytic_crossing(threshold):
    frc = linear_frc()
    ring = (1 - threshold) / 0.04  # 1 - 0.04 r = threshold
    assert resolution_ring(frc, threshold) == pytest.approx(ring, abs=1e-12)
    assert resolution(frc, threshold) == pytest.approx(64 / ring, rel=1e-12)


def test_crossing_at_a_ring_and_between_rings():
    frc = FRC(np.arange(5) / 10.0, np.array([1.0, 0.9, 0.5, 0.1, 0.0]), np.ones(5, int), 1.0)
    assert resolution_ring(frc, 0.5) == 2.0  # ring 2 is at 0.5, not below: fraction 0
    assert resolution_ring(frc, 0.3) == pytest.approx(2.5)
    assert resolution(frc, 0.3) == pytest.approx(1 / 0.25)


def test_crossing_exactly_at_threshold():
    # ring 2 equals the threshold: not below, so the crossing is after it
    frc = FRC(np.arange(4) / 8.0, np.array([1.0, 0.8, 0.5, 0.2]), np.ones(4, int), 1.0)
    assert resolution_ring(frc, 0.5) == pytest.approx(2.0)
    assert resolution_ring(frc, 0.4) == pytest.approx(2 + 0.1 / 0.3)


def test_never_crossing_returns_last_ring():
    for L in (32, 33):
        frc = fourier_ring_correlation(*[image_pair(L, 0)[0]] * 2, pixel_size=1.3)
        assert resolution_ring(frc) == L // 2
        expected = 2 * 1.3 if L % 2 == 0 else 2 * L / (L - 1) * 1.3
        assert resolution(frc) == pytest.approx(expected, rel=1e-14)


def test_below_at_ring_one():
    frc = FRC(np.arange(4) / 8.0, np.array([1.0, 0.1, 0.9, 0.9]), np.ones(4, int), 1.0)
    assert resolution_ring(frc) == 1.0
    assert resolution(frc) == pytest.approx(8.0)


def test_nan_ring_counts_as_below():
    frc = FRC(np.arange(5) / 10.0, np.array([1.0, 0.9, 0.8, np.nan, 0.9]),
              np.ones(5, int), 1.0)
    assert resolution_ring(frc) == 2.0
    assert resolution(frc) == pytest.approx(5.0)
    frc = FRC(np.arange(3) / 10.0, np.array([1.0, np.nan, 0.9]), np.ones(3, int), 1.0)
    assert resolution_ring(frc) == 1.0


@settings(max_examples=30, deadline=None)
@given(pixel_size=st.floats(0.1, 10.0), seed=seeds, L=st.integers(8, 40))
def test_resolution_scales_with_pixel_size(pixel_size, seed, L):
    a, b = image_pair(L, seed)
    # a smooth common part: the curve falls from ~1 at low frequency
    y, x = np.mgrid[:L, :L] - L / 2
    smooth = 5 * np.exp(-(x ** 2 + y ** 2) / L)
    frc1 = fourier_ring_correlation(smooth + 0.3 * a, smooth + 0.3 * b)
    frcp = fourier_ring_correlation(smooth + 0.3 * a, smooth + 0.3 * b, pixel_size=pixel_size)
    assert resolution_ring(frcp) == resolution_ring(frc1)
    assert resolution(frcp) == pytest.approx(pixel_size * resolution(frc1), rel=1e-12)
    assert 2 * pixel_size <= resolution(frcp) * (1 + 1e-12) <= L * pixel_size * (1 + 1e-12)


@pytest.mark.parametrize("threshold, error", [(0.0, ValueError), (1.0, ValueError),
                                              (-0.1, ValueError), (1.5, ValueError),
                                              (np.nan, ValueError), ("0.1", TypeError),
                                              (True, TypeError)])
def test_threshold_validation(threshold, error):
    frc = linear_frc()
    for function in (resolution, resolution_ring):
        with pytest.raises(error, match="threshold"):
            function(frc, threshold)


def test_frc_validation():
    with pytest.raises(TypeError, match="frc must be an FRC"):
        resolution((np.arange(3), np.ones(3), np.ones(3), 1.0))
    with pytest.raises(ValueError, match="at least 2 rings"):
        resolution(FRC(np.zeros(1), np.ones(1), np.ones(1), 1.0))
    with pytest.raises(ValueError, match="frc.frequencies must be >= 0 and strictly"):
        resolution(FRC(np.array([0.0, 0.2, 0.1]), np.ones(3), np.ones(3), 1.0))
    with pytest.raises(ValueError, match="frc.correlation must have the shape"):
        resolution(FRC(np.arange(3.0), np.ones(2), np.ones(3), 1.0))
    with pytest.raises(ValueError, match="frc.correlation must be finite or NaN"):
        resolution(FRC(np.arange(3.0), np.array([1, np.inf, 0]), np.ones(3), 1.0))


# --- bad inputs ---------------------------------------------------------------

@pytest.mark.parametrize("image1, image2, error, match", [
    (np.ones((5, 5)), np.ones((6, 6)), ValueError, "image2 must have image1's shape"),
    (np.ones((5, 5)), np.ones((5, 4)), ValueError, "image2 must have image1's shape"),
    (np.ones((5, 4)), np.ones((5, 4)), ValueError, "image1 must be square"),
    (np.ones(5), np.ones(5), ValueError, "image1 must be 2-dimensional"),
    (np.ones((2, 5, 5)), np.ones((2, 5, 5)), ValueError, "image1 must be 2-dimensional"),
    (np.ones((5, 5)), np.ones(25), ValueError, "image2 must be 2-dimensional"),
    (np.ones((1, 1)), np.ones((1, 1)), ValueError, "side L of image1 must be >= 2"),
    (np.ones((0, 0)), np.ones((0, 0)), ValueError, "side L of image1 must be >= 2"),
    (np.full((5, 5), np.nan), np.ones((5, 5)), ValueError, "image1 must contain only finite"),
    (np.ones((5, 5)), np.full((5, 5), np.inf), ValueError, "image2 must contain only finite"),
    (np.ones((5, 5), complex), np.ones((5, 5)), TypeError, "image1 must be real-valued"),
    (np.ones((5, 5)), np.full((5, 5), "a"), TypeError, "image2 must be an array of real"),
])
def test_bad_images(image1, image2, error, match):
    with pytest.raises(error, match=match):
        fourier_ring_correlation(image1, image2)


@pytest.mark.parametrize("pixel_size, error", [(0.0, ValueError), (-1.0, ValueError),
                                               (np.inf, ValueError), ("1", TypeError)])
def test_bad_pixel_size(pixel_size, error):
    with pytest.raises(error, match="pixel_size"):
        fourier_ring_correlation(np.ones((4, 4)), np.ones((4, 4)), pixel_size=pixel_size)


def test_pixel_size_is_keyword_only():
    with pytest.raises(TypeError):
        fourier_ring_correlation(np.ones((4, 4)), np.ones((4, 4)), 1.0)
