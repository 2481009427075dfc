"""The CTF in RELION's convention (:mod:`mtdlearn.imaging.ctf`).

The reference below is the formula of RELION's ``src/ctf.h`` written
directly (with ``atan2`` for the direction and positive underfocus), so
the module's angle-free algebra is checked against an independent
transcription.  Tolerances: both compute in float64; the phase ``chi``
reaches a few hundred radians at Nyquist for microns of defocus, so two
float64 evaluations of it agree to ~1e-13 rad, and a difference of 1e-9
in the CTF would be a real error, not rounding.
"""

import copy
import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone

from mtdlearn.imaging.ctf import CTF, electron_wavelength

ATOL = 1e-9  # see the module's docstring: float64 rounding of chi is ~1e-13


def reference_wavelength(kv):
    v = kv * 1e3
    return 12.2643247 / math.sqrt(v * (1.0 + 0.978466e-6 * v))


def reference_ctf(ctf, k_row, k_col):
    """RELION's ``getCTF`` with its signs undone: ``-sin(-chi) = sin(chi)``."""
    k_row, k_col = np.broadcast_arrays(np.asarray(k_row, float), np.asarray(k_col, float))
    lam = reference_wavelength(ctf.voltage)
    theta = np.arctan2(k_row, k_col)
    df = (0.5 * (ctf.defocus_u + ctf.defocus_v) + 0.5 * (ctf.defocus_u - ctf.defocus_v)
          * np.cos(2.0 * (theta - np.radians(ctf.defocus_angle))))
    k2 = k_row ** 2 + k_col ** 2
    a = ctf.amplitude_contrast
    chi = (np.pi * lam * df * k2 - 0.5 * np.pi * ctf.spherical_aberration * 1e7 * lam ** 3
           * k2 ** 2 + np.radians(ctf.phase_shift) + np.arctan(a / np.sqrt(1.0 - a * a)))
    return np.sin(chi) * np.exp(-ctf.b_factor * k2 / 4.0)


def hand_first_zero(defocus, voltage=300.0, cs=2.7, amplitude=0.1):
    """Smallest k with pi lam df k^2 - pi/2 Cs lam^3 k^4 + asin(A) = pi (no phase shift)."""
    lam = reference_wavelength(voltage)
    a = np.pi * lam * defocus
    b = 0.5 * np.pi * cs * 1e7 * lam ** 3
    d = np.pi - math.asin(amplitude)
    if b == 0.0:
        return math.sqrt(d / a)
    return math.sqrt((a - math.sqrt(a * a - 4.0 * b * d)) / (2.0 * b))


def at(angle_deg, k):
    """(k_row, k_col) of frequency k in direction angle (degrees from the column axis)."""
    t = math.radians(angle_deg)
    return k * math.sin(t), k * math.cos(t)


# ---------------------------------------------------------------------------
# the formula
def test_wavelength():
    # RELION's constants give 0.0196876 and 0.0250795 A; the brief's values are
    # these truncated to 6 digits, hence the 1e-6 tolerance.
    assert electron_wavelength(300.0) == pytest.approx(0.019687, abs=1e-6)
    assert electron_wavelength(200.0) == pytest.approx(0.025079, abs=1e-6)
    assert CTF(1e4).wavelength == electron_wavelength(300.0)
    # against the relativistic wavelength from CODATA 2018 constants: RELION's
    # rounded constants differ from it by ~6e-6 relatively
    h, m, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    for kv in (100.0, 200.0, 300.0):
        v = kv * 1e3
        exact = h / math.sqrt(2 * m * e * v * (1 + e * v / (2 * m * c * c))) * 1e10
        assert electron_wavelength(kv) == pytest.approx(exact, rel=1e-5)


def test_matches_reference_formula():
    rng = np.random.default_rng(0)
    k_row, k_col = rng.uniform(-0.4, 0.4, size=(2, 500))
    for ctf in [CTF(15000.0), CTF(21000.0, 17500.0, 37.0, voltage=200.0, phase_shift=25.0,
                                  amplitude_contrast=0.07, b_factor=80.0),
                CTF(8000.0, 12000.0, -110.0, spherical_aberration=0.0)]:
        assert_allclose(ctf.evaluate_frequencies(k_row, k_col), reference_ctf(ctf, k_row, k_col),
                        rtol=0, atol=ATOL)


def test_zero_frequency_and_first_lobe():
    ctf = CTF(15000.0, amplitude_contrast=0.1)
    # sin(asin(A)) = A up to one rounding
    assert ctf.evaluate_frequencies(0.0, 0.0) == pytest.approx(0.1, abs=1e-15)
    assert ctf.evaluate((16, 16))[0, 0] == pytest.approx(0.1, abs=1e-15)
    # underfocus: the first lobe rises from A towards 1 and stays positive until the zero
    k0 = ctf.first_zero()
    k = np.linspace(0.0, k0, 401)[1:-1]
    values = ctf.evaluate_frequencies(0.0, k)
    assert np.all(values > 0)
    assert values[0] > 0.1 and values[1] > values[0]
    assert values.max() > 0.999  # chi passes pi/2; 400 samples land within 1e-3 of the peak
    assert values[-1] < 0.1  # and falls back towards the zero


def test_first_zero_by_hand_and_sign_change():
    for defocus, kv, amplitude in [(15000.0, 300.0, 0.1), (8000.0, 200.0, 0.07),
                                   (30000.0, 300.0, 0.0)]:
        ctf = CTF(defocus, voltage=kv, amplitude_contrast=amplitude)
        k0 = hand_first_zero(defocus, kv, amplitude=amplitude)
        # two closed forms of one root: they agree to rounding (relative ~1e-14)
        assert ctf.first_zero() == pytest.approx(k0, rel=1e-10)
        assert abs(ctf.evaluate_frequencies(0.0, k0)) < ATOL
        before, after = ctf.evaluate_frequencies(0.0, [k0 * (1 - 1e-6), k0 * (1 + 1e-6)])
        assert before > 0 > after


def test_first_zero_other_cases():
    # no spherical aberration: chi is linear in k^2
    ctf = CTF(15000.0, spherical_aberration=0.0)
    assert ctf.first_zero() == pytest.approx(hand_first_zero(15000.0, cs=0.0), rel=1e-12)
    # a phase plate: chi starts at 90 + asin(A) degrees and the zero is still chi = pi
    ctf = CTF(5000.0, phase_shift=90.0, amplitude_contrast=0.1)
    k0 = ctf.first_zero()
    assert abs(ctf.evaluate_frequencies(k0, 0.0)) < ATOL
    assert np.all(ctf.evaluate_frequencies(0.0, np.linspace(0, k0, 200)[:-1]) > 0)
    # no defocus: Cs alone bends chi down to 0 (A = 0 there: chi0 = 0 is a multiple of pi)
    ctf = CTF(0.0, amplitude_contrast=0.0)
    k0 = ctf.first_zero()
    assert k0 > 0 and abs(ctf.evaluate_frequencies(k0, 0.0)) < ATOL
    before, after = ctf.evaluate_frequencies(0.0, [k0 * (1 - 1e-6), k0 * (1 + 1e-6)])
    assert before < 0 < after
    with pytest.raises(ValueError, match="no zero"):
        CTF(0.0, spherical_aberration=0.0).first_zero()


@settings(max_examples=30)
@given(defocus=st.one_of(st.just(0.0), st.floats(100.0, 50000.0)),
       cs=st.one_of(st.just(0.0), st.floats(0.01, 5.0)), amplitude=st.floats(0.0, 0.5),
       phase=st.floats(-360.0, 360.0), kv=st.sampled_from([100.0, 200.0, 300.0]))
def test_first_zero_is_the_first_zero(defocus, cs, amplitude, phase, kv):
    ctf = CTF(defocus, voltage=kv, spherical_aberration=cs, amplitude_contrast=amplitude,
              phase_shift=phase)
    if defocus == 0.0 and cs == 0.0:  # chi is constant
        with pytest.raises(ValueError, match="no zero"):
            ctf.first_zero()
        return
    k0 = ctf.first_zero()
    assert k0 > 0 and abs(ctf.evaluate_frequencies(0.0, k0)) < ATOL
    # no zero before it: one sign on (0, k0)
    values = ctf.evaluate_frequencies(0.0, np.linspace(0.0, k0, 257)[1:-1])
    assert np.all(values > 0) or np.all(values < 0)


@settings(max_examples=25)
@given(u=st.floats(5000.0, 40000.0), v=st.floats(5000.0, 40000.0),
       angle=st.floats(-180.0, 180.0))
def test_astigmatism_axes(u, v, angle):
    ctf = CTF(u, v, defocus_angle=angle)
    assert ctf.defocus_at(angle) == pytest.approx(u, rel=1e-12)
    assert ctf.defocus_at(angle + 90.0) == pytest.approx(v, rel=1e-12)
    # the first zero of a CTF with defocus U (V) lies along angle (angle + 90)
    k_u, k_v = hand_first_zero(u), hand_first_zero(v)
    assert abs(ctf.evaluate_frequencies(*at(angle, k_u))) < ATOL
    assert abs(ctf.evaluate_frequencies(*at(angle + 90.0, k_v))) < ATOL
    assert abs(ctf.evaluate_frequencies(*at(angle + 180.0, k_u))) < ATOL  # CTF(-k) = CTF(k)
    assert ctf.first_zero(angle) == pytest.approx(k_u, rel=1e-10)
    assert ctf.first_zero(angle + 90.0) == pytest.approx(k_v, rel=1e-10)
    assert ctf.first_zero() == pytest.approx(hand_first_zero((u + v) / 2), rel=1e-10)


def test_angle_convention_rows_are_y():
    # U along +45 degrees (from the column axis towards the row axis)
    ctf = CTF(20000.0, 10000.0, defocus_angle=45.0)
    k_u = hand_first_zero(20000.0)
    assert abs(ctf.evaluate_frequencies(k_u / math.sqrt(2), k_u / math.sqrt(2))) < ATOL
    assert abs(ctf.evaluate_frequencies(-k_u / math.sqrt(2), k_u / math.sqrt(2))) > 0.1
    # on the grid: U along the columns (angle 0) makes the zeros along axis 1 come first
    grid = CTF(20000.0, 10000.0, defocus_angle=0.0, pixel_size=2.0).evaluate((64, 64))
    assert np.argmax(grid[0, 1:33] < 0) < np.argmax(grid[1:33, 0] < 0)


@pytest.mark.parametrize("shape", [(7, 9), (8, 10), (7, 10), (8, 9), (1, 1), (2, 2)])
def test_grid_layouts_and_symmetry(shape):
    n0, n1 = shape
    for ctf in [CTF(15000.0, pixel_size=1.5), CTF(20000.0, 12000.0, 33.0, pixel_size=1.2)]:
        full = ctf.evaluate(shape)
        half = ctf.evaluate(shape, rfft=True)
        assert full.shape == shape and full.dtype == np.float64
        assert half.shape == (n0, n1 // 2 + 1)
        # the same arithmetic on the same numbers; allow one rounding of sin
        assert_allclose(half, full[:, :n1 // 2 + 1], rtol=0, atol=1e-15)
        # real-symmetric: CTF[-i, -j] = CTF[i, j], Nyquist lines included
        flipped = full[(-np.arange(n0)) % n0][:, (-np.arange(n1)) % n1]
        assert_allclose(full, flipped, rtol=0, atol=1e-15)
        # away from the Nyquist lines the grid is the formula at fftfreq / pixel_size
        k_row = np.fft.fftfreq(n0)[:, None] / ctf.pixel_size
        k_col = np.fft.fftfreq(n1)[None, :] / ctf.pixel_size
        keep = np.ones(shape, dtype=bool)
        if n0 % 2 == 0:
            keep[n0 // 2] = False
        if n1 % 2 == 0:
            keep[:, n1 // 2] = False
        assert_allclose(full[keep], reference_ctf(ctf, k_row, k_col)[keep], rtol=0, atol=ATOL)


def test_grid_of_real_filter_gives_same_image_both_ways():
    rng = np.random.default_rng(1)
    image = rng.standard_normal((16, 18))
    ctf = CTF(20000.0, 12000.0, 33.0, pixel_size=1.2)
    through_rfft = np.fft.irfft2(np.fft.rfft2(image) * ctf.evaluate(image.shape, rfft=True),
                                 s=image.shape)
    through_fft = np.fft.ifft2(np.fft.fft2(image) * ctf.evaluate(image.shape))
    # FFT round trips of 288 unit-variance pixels: errors ~1e-15
    assert np.abs(through_fft.imag).max() < 1e-12
    assert_allclose(through_fft.real, through_rfft, rtol=0, atol=1e-12)


def test_phase_shift_and_b_factor():
    # phase plate at 90 degrees with no amplitude contrast: CTF(0) = sin(pi/2) = 1
    assert CTF(10000.0, phase_shift=90.0, amplitude_contrast=0.0).evaluate(
        (4, 4))[0, 0] == pytest.approx(1.0, abs=1e-15)
    # the envelope multiplies by exp(-B k^2 / 4): B = 100, k = 0.2 gives exp(-1)
    sharp, blurred = CTF(10000.0), CTF(10000.0, b_factor=100.0)
    k = 0.2
    ratio = blurred.evaluate_frequencies(0.0, k) / sharp.evaluate_frequencies(0.0, k)
    assert ratio == pytest.approx(math.exp(-1.0), rel=1e-12)  # one rounding of exp


def test_phase_flip_filter():
    ctf = CTF(20000.0, 15000.0, 10.0, pixel_size=1.5)
    flip = ctf.phase_flip_filter((32, 30))
    values = ctf.evaluate((32, 30))
    assert_array_equal(flip, np.where(values < 0, -1.0, 1.0))
    assert flip[0, 0] == 1.0 and set(np.unique(flip)) == {-1.0, 1.0}
    assert_array_equal(ctf.phase_flip_filter((32, 30), rfft=True), flip[:, :16])
    # zeros count as +1
    assert CTF(10000.0, amplitude_contrast=0.0).phase_flip_filter((4, 4))[0, 0] == 1.0


def test_delocalization_and_pixel_size():
    ctf = CTF(20000.0, 15000.0, pixel_size=1.5)
    lam = reference_wavelength(300.0)
    assert ctf.delocalization() == pytest.approx(lam * 20000.0 * (1 / 3.0) / 1.5, rel=1e-14)
    assert ctf.delocalization(0.1) == pytest.approx(lam * 20000.0 * 0.1 / 1.5, rel=1e-14)
    with pytest.raises(ValueError, match="k_max must be > 0"):
        ctf.delocalization(0.0)
    binned = ctf.with_pixel_size(3.0)
    assert binned.pixel_size == 3.0 and ctf.pixel_size == 1.5
    assert dataclasses.replace(binned, pixel_size=1.5) == ctf
    # the same physical frequency gives the same value on either grid
    assert binned.evaluate((8, 8))[0, 1] == pytest.approx(ctf.evaluate((16, 16))[0, 1])
    with pytest.raises(ValueError, match="pixel_size must be > 0"):
        ctf.with_pixel_size(0.0)


# ---------------------------------------------------------------------------
# a value: immutable, comparable, copyable
def test_value_semantics():
    ctf = CTF(15000, 14000, 30)
    assert ctf == CTF(15000.0, 14000.0, 30.0) and hash(ctf) == hash(CTF(15000.0, 14000.0, 30.0))
    assert isinstance(ctf.defocus_u, float) and type(ctf.voltage) is float
    assert CTF(15000.0).defocus_v == 15000.0
    assert CTF(15000.0) == CTF(15000.0, 15000.0) != CTF(15000.0, 14999.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctf.defocus_u = 1.0
    assert copy.deepcopy(ctf) == ctf and copy.copy(ctf) == ctf
    assert clone(ctf, safe=False) == ctf
    assert eval(repr(ctf), {"CTF": CTF}) == ctf
    assert len({ctf, copy.deepcopy(ctf), CTF(15000.0)}) == 2
    assert CTF(np.float32(15000.0)) == CTF(15000.0)  # numpy scalars are accepted


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(voltage=-300.0), ValueError, "voltage must be > 0"),
    (dict(voltage=0), ValueError, "voltage must be > 0"),
    (dict(amplitude_contrast=1.0), ValueError, "amplitude_contrast must be < 1"),
    (dict(amplitude_contrast=-0.1), ValueError, "amplitude_contrast must be >= 0"),
    (dict(pixel_size=0.0), ValueError, "pixel_size must be > 0"),
    (dict(defocus_u=-1.0), ValueError, "defocus_u must be >= 0"),
    (dict(defocus_v=-1.0), ValueError, "defocus_v must be >= 0"),
    (dict(spherical_aberration=-2.7), ValueError, "spherical_aberration must be >= 0"),
    (dict(b_factor=-10.0), ValueError, "b_factor must be >= 0"),
    (dict(defocus_angle=float("nan")), ValueError, "defocus_angle must be finite"),
    (dict(defocus_u="15000"), TypeError, "defocus_u must be a real number, got str"),
    (dict(phase_shift=None), TypeError, "phase_shift must be a real number"),
    (dict(voltage=True), TypeError, "voltage must be a real number, got bool"),
    (dict(pixel_size=[1.0]), TypeError, "pixel_size must be a real number, got list"),
])
def test_bad_parameters(kwargs, error, message):
    params = dict(defocus_u=15000.0)
    params.update(kwargs)
    with pytest.raises(error, match=message):
        CTF(**params)


def test_bad_arguments():
    ctf = CTF(15000.0)
    with pytest.raises(ValueError, match=r"shape must be a pair"):
        ctf.evaluate((4, 4, 4))
    with pytest.raises(ValueError, match=r"shape must be a pair"):
        ctf.evaluate(16)
    with pytest.raises(ValueError, match=r"shape\[1\] must be >= 1"):
        ctf.evaluate((4, 0))
    with pytest.raises(TypeError, match=r"shape\[0\] must be an integer"):
        ctf.evaluate((4.0, 4))
    with pytest.raises(TypeError, match="k_row must be an array of real numbers"):
        ctf.evaluate_frequencies("a", 0.0)
    with pytest.raises(ValueError, match="k_col must contain only finite"):
        ctf.evaluate_frequencies(0.0, np.inf)
    with pytest.raises(ValueError, match="k_row and k_col must broadcast"):
        ctf.evaluate_frequencies(np.zeros(3), np.zeros(4))
    with pytest.raises(TypeError, match="angle must be a real number"):
        ctf.first_zero("x")
