"""Fourier ring correlation (FRC) of two images and the resolution it gives.

:func:`fourier_ring_correlation` compares two ``L x L`` images ring by ring
in Fourier space; :func:`resolution` and :func:`resolution_ring` read off
where the curve falls below a threshold (``0.143`` by default, the
criterion of Rosenthal & Henderson 2003 for half-set comparisons).

Conventions.  Frequencies are in cycles/pixel on the grid of the full 2-D
FFT: ``np.fft.fftfreq(L)`` along rows and along columns, zero frequency at
``[0, 0]`` (unshifted).  Ring ``r`` holds the frequencies ``k`` with
``round(L |k|) = r``, that is ``r - 1/2 <= L |k| < r + 1/2``; only the rings
``r = 0, ..., L // 2`` are kept, those inside the Nyquist circle ``|k| <=
1/2`` (the corners of the frequency square are left out).  Ring ``r`` is
reported at its centre, ``r / L`` cycles/pixel, which is ``r / (L *
pixel_size)`` in 1/Angstrom; a resolution is ``1 / frequency`` Angstrom.
Ring 0 is the zero frequency alone (the images' means).
"""

from typing import NamedTuple

import numpy as np

from ._validation import check_array_float, check_int, check_real

__all__ = ["FRC", "fourier_ring_correlation", "resolution", "resolution_ring"]

#: The default threshold: FSC 0.143 (Rosenthal & Henderson 2003).
DEFAULT_THRESHOLD = 0.143


class FRC(NamedTuple):
    """A Fourier ring correlation curve, as :func:`fourier_ring_correlation` returns.

    One entry per ring ``r = 0, ..., L // 2``.  A tuple: it unpacks into
    its four fields, and can be built directly (any curve, for instance a
    model), as long as ``frequencies`` increase and ``correlation`` has
    their length.

    Parameters
    ----------
    frequencies : ndarray of shape (n_rings,)
        Ring centres in 1/Angstrom: ``r / (L * pixel_size)``.
    correlation : ndarray of shape (n_rings,)
        The FRC of each ring, in ``[-1, 1]``; NaN where either image has no
        power in the ring.
    n_pixels : ndarray of int, shape (n_rings,)
        How many frequencies of the full ``L x L`` FFT grid each ring holds
        (both members of every pair ``k, -k``).
    pixel_size : float
        Angstrom per pixel.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.resolution import FRC
    >>> frc = FRC(np.array([0.0, 0.125, 0.25]), np.array([1.0, 0.5, 0.1]),
    ...           np.array([1, 8, 12]), 1.0)
    >>> frequencies, correlation, n_pixels, pixel_size = frc
    >>> np.round(frc.standard_error, 4).tolist()
    [1.0, 0.3536, 0.2887]
    """

    frequencies: np.ndarray
    correlation: np.ndarray
    n_pixels: np.ndarray
    pixel_size: float

    @property
    def standard_error(self):
        """The standard deviation of each ring's FRC for independent white noise.

        ``1 / sqrt(n_pixels)``.  A ring of ``n`` frequencies of the full FFT
        of a real image holds ``n`` independent real numbers: Hermitian
        symmetry pairs ``k`` with ``-k``, and each pair carries a real and an
        imaginary part; a self-conjugate frequency (``k = -k`` on the grid:
        the zero frequency, and ``(L/2, 0)``, ``(0, L/2)`` for an even
        ``L``) is real and carries one.  For white Gaussian noise these
        ``n`` numbers, weighted as the FRC weighs them, are i.i.d.
        Gaussian (a self-conjugate value has twice the variance of a real
        or imaginary part and is counted once, a pair's parts twice), so
        the FRC of two independent noise images is the cosine of the angle
        between two independent isotropic vectors of ``R^n``: mean 0,
        variance exactly ``1 / n``, in every ring.  The "3-sigma" curve
        ``3 / sqrt(n / 2)`` (van Heel & Schatz 2005) counts one degree of
        freedom per Friedel pair; it is ``sqrt(2)`` times ``3 *
        standard_error``, a 4.2-sigma curve by this measure.

        Returns
        -------
        standard_error : ndarray of shape (n_rings,)
            ``1 / sqrt(n_pixels)``; ``inf`` for an empty ring.
        """
        n = np.asarray(self.n_pixels, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return 1.0 / np.sqrt(n)


def _check_image(image, name):
    image = check_array_float(image, name, ndim=2)
    if image.shape[0] != image.shape[1]:
        raise ValueError(f"{name} must be square, of shape (L, L), got shape {image.shape}")
    check_int(image.shape[0], f"the side L of {name}", minimum=2)
    return image


def fourier_ring_correlation(image1, image2, *, pixel_size=1.0):
    """Compute the Fourier ring correlation of two square images.

    ``FRC(r) = Re sum F1(k) conj(F2(k)) / sqrt(sum |F1(k)|**2 sum |F2(k)|**2)``,
    the sums over the frequencies ``k`` of ring ``r`` of the full 2-D FFTs
    ``F1``, ``F2`` of the images (see the module's conventions: ring ``r``
    holds ``round(L |k|) = r``, rings ``0, ..., L // 2``).  It is the
    correlation coefficient of the two images' Fourier coefficients ring by
    ring: 1 for identical images, unchanged when either image is scaled by
    a positive number, of the opposite sign when one is negated.  Computed
    in float64 whatever the input's dtype.

    Parameters
    ----------
    image1 : array-like of shape (L, L)
        The first image, real and finite; ``L >= 2``, odd or even.
    image2 : array-like of shape (L, L)
        The second image, of ``image1``'s shape.
    pixel_size : float, default=1.0
        Angstrom per pixel (> 0): frequencies come in 1/Angstrom.

    Returns
    -------
    frc : FRC
        ``frequencies`` (``r / (L * pixel_size)``), ``correlation``,
        ``n_pixels`` and ``pixel_size``, one entry per ring; the
        ``correlation`` of a ring where either image has zero power is NaN
        (no information).  :attr:`FRC.standard_error` gives the curve of
        independent noise.

    Raises
    ------
    TypeError
        If an image is not an array of real numbers, or ``pixel_size`` is
        not a real number.
    ValueError
        If an image is not 2-D and square of side at least 2, holds NaN or
        infinity, the two shapes differ, or ``pixel_size <= 0``.

    See Also
    --------
    resolution : Where the curve falls below a threshold, in Angstrom.

    Examples
    --------
    An image against itself: 1 at every ring.  Ring 1 holds the 8
    neighbours of the zero frequency, ring 2 the next 12:

    >>> import numpy as np
    >>> from mtdlearn.resolution import fourier_ring_correlation
    >>> rng = np.random.default_rng(0)
    >>> image = rng.standard_normal((32, 32))
    >>> frc = fourier_ring_correlation(image, image, pixel_size=2.0)
    >>> frc.frequencies[:3].tolist(), frc.n_pixels[:3].tolist()
    ([0.0, 0.015625, 0.03125], [1, 8, 12])
    >>> bool(np.allclose(frc.correlation, 1.0)), len(frc.correlation)
    (True, 17)

    Two noisy copies of a smooth image agree at low frequencies only:

    >>> y, x = np.mgrid[-16:16, -16:16]
    >>> smooth = np.exp(-(x ** 2 + (y - 3) ** 2) / 20.0) + np.exp(-(x + 5) ** 2 / 8.0)
    >>> frc = fourier_ring_correlation(smooth + 0.02 * rng.standard_normal((32, 32)),
    ...                                smooth + 0.02 * rng.standard_normal((32, 32)))
    >>> bool(frc.correlation[1] > 0.99), bool(abs(frc.correlation[-1]) < 0.5)
    (True, True)
    """
    image1 = _check_image(image1, "image1")
    image2 = check_array_float(image2, "image2", ndim=2)
    if image2.shape != image1.shape:
        raise ValueError(f"image2 must have image1's shape {image1.shape}, got shape "
                         f"{image2.shape}")
    pixel_size = check_real(pixel_size, "pixel_size", minimum=0.0, strict=True)
    L = image1.shape[0]
    n_rings = L // 2 + 1
    index = np.fft.fftfreq(L) * L  # integer frequencies, exact
    # |k| L is never half an integer (r**2 + r + 1/4 is no sum of squares),
    # so np.rint's ties do not arise
    ring = np.rint(np.hypot(index[:, None], index[None, :])).astype(np.intp).ravel()
    inside = ring < n_rings
    ring = ring[inside]
    f1 = np.fft.fft2(image1).ravel()[inside]
    f2 = np.fft.fft2(image2).ravel()[inside]
    cross = np.bincount(ring, (f1 * f2.conj()).real, minlength=n_rings)
    power1 = np.bincount(ring, f1.real ** 2 + f1.imag ** 2, minlength=n_rings)
    power2 = np.bincount(ring, f2.real ** 2 + f2.imag ** 2, minlength=n_rings)
    denominator = np.sqrt(power1) * np.sqrt(power2)  # no overflow of the product
    correlation = np.full(n_rings, np.nan)
    has_power = denominator > 0
    correlation[has_power] = cross[has_power] / denominator[has_power]
    # rounding may carry a perfect correlation just past 1
    np.clip(correlation, -1.0, 1.0, out=correlation)
    n_pixels = np.bincount(ring, minlength=n_rings)
    frequencies = np.arange(n_rings) / (L * pixel_size)
    return FRC(frequencies, correlation, n_pixels, pixel_size)


def _check_frc(frc):
    if not isinstance(frc, FRC):
        raise TypeError(f"frc must be an FRC (as fourier_ring_correlation returns), got "
                        f"{type(frc).__name__}")
    frequencies = check_array_float(frc.frequencies, "frc.frequencies", ndim=1)
    if frequencies.size < 2:
        raise ValueError(f"frc must have at least 2 rings (ring 0 and ring 1), got "
                         f"{frequencies.size}")
    if frequencies[0] < 0 or np.any(np.diff(frequencies) <= 0):
        raise ValueError(f"frc.frequencies must be >= 0 and strictly increasing, got "
                         f"{frequencies}")
    try:
        correlation = np.asarray(frc.correlation, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"frc.correlation must be an array of real numbers, got "
                        f"{type(frc.correlation).__name__}") from None
    if correlation.shape != frequencies.shape:
        raise ValueError(f"frc.correlation must have the shape of frc.frequencies "
                         f"{frequencies.shape}, got {correlation.shape}")
    if np.any(np.isinf(correlation)):
        raise ValueError("frc.correlation must be finite or NaN (found inf)")
    return frequencies, correlation


def _crossing(frc, threshold):
    """Where the curve first falls below ``threshold`` from ring 1 on:
    ``(frequencies, i, fraction)``, the crossing at ``i + fraction`` rings,
    ``0 <= fraction < 1``."""
    frequencies, correlation = _check_frc(frc)
    threshold = check_real(threshold, "threshold", minimum=0.0, maximum=1.0, strict=True,
                           strict_max=True)
    below = np.flatnonzero(~(correlation[1:] >= threshold)) + 1  # NaN counts as below
    if below.size == 0:
        return frequencies, len(frequencies) - 1, 0.0
    j = int(below[0])
    if j == 1 or np.isnan(correlation[j]):
        return frequencies, (1 if j == 1 else j - 1), 0.0
    before, after = correlation[j - 1], correlation[j]
    return frequencies, j - 1, float((before - threshold) / (before - after))


def resolution_ring(frc, threshold=DEFAULT_THRESHOLD):
    """Find the (fractional) ring where an FRC curve first falls below a threshold.

    The same crossing as :func:`resolution`, in units of rings (array
    indices of ``frc``) rather than Angstrom: with ``j`` the first ring
    from ring 1 on whose correlation is below ``threshold`` (or NaN), it
    is ``j - 1 + (c[j-1] - threshold) / (c[j-1] - c[j])``, linear
    interpolation between ring ``j - 1`` (at or above the threshold) and
    ring ``j``.  Special cases: ``1.0`` if ring 1 is already below; ``j -
    1`` if ring ``j`` is NaN (no information beyond ring ``j - 1``); the
    last ring, ``len(frc.correlation) - 1``, if the curve never falls below
    (the crossing is at least there).  Two resolutions within one Fourier
    ring of each other differ by less than 1 here.

    Parameters
    ----------
    frc : FRC
        The curve, from :func:`fourier_ring_correlation` or built directly.
    threshold : float, default=0.143
        In ``(0, 1)``.

    Returns
    -------
    ring : float
        The crossing, in rings: ``>= 1``, ``<= len(frc.correlation) - 1``.

    Raises
    ------
    TypeError
        If ``frc`` is not an :class:`FRC` or ``threshold`` not a real number.
    ValueError
        If ``threshold`` is not in ``(0, 1)``, or ``frc`` has fewer than
        2 rings, frequencies that do not increase, or a correlation of
        another length or with an infinity.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.resolution import FRC, resolution_ring
    >>> frc = FRC(np.arange(5) / 10.0, np.array([1.0, 0.9, 0.5, 0.1, 0.0]),
    ...           np.array([1, 8, 12, 16, 32]), 1.0)
    >>> round(resolution_ring(frc), 6)  # 2 + (0.5 - 0.143) / (0.5 - 0.1)
    2.8925
    >>> resolution_ring(frc, threshold=0.95), resolution_ring(frc, threshold=0.05)
    (1.0, 3.5)
    """
    _, i, fraction = _crossing(frc, threshold)
    return float(i + fraction)


def resolution(frc, threshold=DEFAULT_THRESHOLD):
    """Find the resolution in Angstrom where an FRC curve first falls below a threshold.

    The first crossing from ring 1 on (as RELION reports; ring 0 is the
    images' means): with ``j`` the first ring whose correlation is below
    ``threshold`` (NaN counts as below: no information), the crossing
    frequency is interpolated linearly in frequency between ring ``j - 1``
    (at or above the threshold) and ring ``j``, and the resolution is
    ``1 / frequency``.  Special cases:

    * ring 1 already below: ``1 / frequencies[1]`` (``L * pixel_size``);
    * ring ``j`` NaN: ``1 / frequencies[j - 1]``;
    * never below: ``1 / frequencies[-1]``, the resolution of the highest
      ring, to be read as "this or better".  For a curve of
      :func:`fourier_ring_correlation` that ring is ``L // 2``: Nyquist,
      ``2 * pixel_size``, for an even ``L``; ``2 L / (L - 1) * pixel_size``
      for an odd one.

    Parameters
    ----------
    frc : FRC
        The curve, from :func:`fourier_ring_correlation` or built directly.
    threshold : float, default=0.143
        In ``(0, 1)``.

    Returns
    -------
    resolution : float
        In Angstrom (in pixels for ``pixel_size=1``).

    Raises
    ------
    TypeError
        If ``frc`` is not an :class:`FRC` or ``threshold`` not a real number.
    ValueError
        If ``threshold`` is not in ``(0, 1)``, or ``frc`` is malformed (see
        :func:`resolution_ring`).

    See Also
    --------
    resolution_ring : The same crossing, in rings.

    Examples
    --------
    A linear curve from 0.9 at 0.1/Angstrom to 0.1 at 0.3/Angstrom crosses
    0.143 at ``0.3 - 0.2 * 0.043 / 0.8 = 0.28925``/Angstrom:

    >>> import numpy as np
    >>> from mtdlearn.resolution import FRC, resolution
    >>> frc = FRC(np.arange(5) / 10.0, np.array([1.0, 0.9, 0.5, 0.1, 0.0]),
    ...           np.array([1, 8, 12, 16, 32]), 1.0)
    >>> round(resolution(frc), 4)  # 1 / 0.28925
    3.4572
    >>> round(resolution(frc, threshold=0.05), 4)  # 1 / 0.35
    2.8571

    A curve that never falls below the threshold gives the last ring's
    resolution, ``1 / 0.4``:

    >>> resolution(FRC(frc.frequencies, np.ones(5), frc.n_pixels, 1.0))
    2.5
    """
    frequencies, i, fraction = _crossing(frc, threshold)
    frequency = frequencies[i]  # > 0: i >= 1 and the frequencies increase from >= 0
    if fraction:
        frequency += fraction * (frequencies[i + 1] - frequencies[i])
    return float(1.0 / frequency)
