"""Binning micrographs by Fourier cropping, with their CTFs and noise spectra.

:func:`fourier_crop` downsamples a micrograph by a real factor ``>= 1``:
it keeps the Fourier coefficients below the new Nyquist frequency, so
that the data, the CTF and the noise all stay exactly what they were at
the frequencies kept.  :func:`bin_ctf` and :func:`bin_noise_psd` give the
CTF and the noise spectrum of the binned micrograph.

Shape and factor.  An axis of ``N`` pixels becomes ``n = floor(N / factor
+ 1/2)`` pixels (:func:`binned_shape`; any parity) covering the same field
of view, so its pixels are ``N / n`` old pixels wide: exactly ``factor``
when ``N / factor`` is an integer, within a fraction ``1 / (2 n)`` of it
otherwise.  :func:`effective_factor` gives ``sqrt(N1 N2 / (n1 n2))``, the
factor to pass to :func:`bin_ctf` and :func:`bin_noise_psd` (exact when both
axes shrink by the same ratio).

The crop, axis by axis (separable).  With ``X = rfft(x) / N`` along the
axis, the new axis is ``irfft(Y, n)`` (unnormalized inverse) with ``Y[m] =
X[m]`` for ``|m| < n / 2``: the mean of the pixels is kept (a constant image
stays the same constant) and an image whose frequencies are all below the
new Nyquist frequency comes out as its exact samples on the coarse grid.
For an even ``n`` the new Nyquist coefficient is ``(X[n/2] + X[-n/2]) /
sqrt(2)``: real, and of the power of its neighbours, so that the crop
scaled by ``sqrt(N / n)`` has orthonormal rows.  White noise of variance
``s2`` comes out white, of variance exactly ``s2 n1 n2 / (N1 N2)``, and
stationary noise of spectrum ``S`` with the spectrum ``S(f / r) / r**2``
(:func:`bin_noise_psd`, ``r`` the effective factor) at every frequency of
the new grid.  (A cosine exactly at the new Nyquist frequency loses a
factor ``sqrt(2)``; its sine part cannot be sampled on the coarse grid.)
"""

import dataclasses
import math

import numpy as np
import scipy.fft

from .._validation import _all_finite, check_real
from .ctf import CTF
from .noise import K_MAX, RadialPSD

__all__ = ["binned_shape", "effective_factor", "fourier_crop", "bin_ctf", "bin_noise_psd"]


def _check_factor(factor):
    return check_real(factor, "factor", minimum=1.0)


def binned_shape(shape, factor):
    """The shape of a micrograph binned by ``factor``: :func:`fourier_crop`'s rule.

    Parameters
    ----------
    shape : tuple of int
        ``(N1, N2)``; a stack's ``(n, N1, N2)`` gives ``(n, n1, n2)``.
    factor : float
        The binning factor, >= 1.

    Returns
    -------
    shape : tuple of int
        ``floor(N / factor + 1/2)`` for ``N1`` and ``N2`` (the nearest integer).

    Examples
    --------
    >>> from mtdlearn.imaging.binning import binned_shape
    >>> binned_shape((3838, 3710), 2), binned_shape((4096, 4096), 3)
    ((1919, 1855), (1365, 1365))
    """
    factor = _check_factor(factor)
    shape = tuple(int(N) for N in shape)
    new = tuple(int(math.floor(N / factor + 0.5)) for N in shape[-2:])
    if any(n < 1 for n in new):
        raise ValueError(f"factor={factor} leaves no pixel of an axis of shape "
                         f"{shape}: at most {2 * min(shape[-2:])}")
    return shape[:-2] + new


def effective_factor(shape, factor):
    """The binning factor :func:`fourier_crop` applies to a micrograph of ``shape``.

    Parameters
    ----------
    shape : tuple of int
        ``(N1, N2)`` before binning (of a stack: its last two).
    factor : float
        The factor asked for, >= 1.

    Returns
    -------
    factor : float
        ``sqrt(N1 N2 / (n1 n2))``, ``(n1, n2) = binned_shape(shape, factor)``:
        the ratio of the pixel areas, to pass to :func:`bin_ctf` and
        :func:`bin_noise_psd`.  Each axis's own ratio ``N / n`` is within
        a fraction ``1 / (2 n)`` of ``factor``.

    Examples
    --------
    >>> from mtdlearn.imaging.binning import effective_factor
    >>> effective_factor((3838, 3710), 2), round(effective_factor((4096, 4096), 3), 6)
    (2.0, 3.000733)
    """
    new = binned_shape(shape, factor)[-2:]
    return math.sqrt(math.prod(int(N) for N in tuple(shape)[-2:]) / math.prod(new))


def _crop_axis(x, n, axis):
    """Crop one axis of a real array to ``n`` samples (the module's formula)."""
    N = x.shape[axis]
    if n == N:
        return x
    X = scipy.fft.rfft(x, axis=axis, norm="forward")
    Y = np.moveaxis(X, axis, -1)[..., :n // 2 + 1].copy()
    if n % 2 == 0:  # Nyquist: (X[n/2] + conj(X[n/2])) / sqrt(2), real
        Y[..., n // 2] = math.sqrt(2.0) * Y[..., n // 2].real
    return scipy.fft.irfft(np.moveaxis(Y, -1, axis), n, axis=axis, norm="forward")


def _out_dtype(dtype):
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


def _crop_block(block, shape):
    """Crop the last two axes of a real numpy array (a micrograph or a stack) to ``shape``."""
    dtype = _out_dtype(block.dtype)
    sections = block.reshape((-1,) + block.shape[-2:])
    out = np.empty((sections.shape[0],) + tuple(shape), dtype=dtype)
    for i, section in enumerate(sections):
        if not _all_finite(section):
            raise ValueError("micrograph holds NaN or infinite values; expected finite real "
                             "numbers")
        crop = np.asarray(section, dtype=dtype)
        for axis, n in enumerate(shape):
            crop = _crop_axis(crop, n, axis)
        out[i] = crop  # a copy even when nothing is cropped
    return out.reshape(block.shape[:-2] + tuple(shape))


def fourier_crop(micrograph, factor):
    """Bin a micrograph by ``factor`` by Fourier cropping.

    Keeps the Fourier coefficients below the new Nyquist frequency (see the
    module's notes for the exact formula and the Nyquist coefficient of an
    even size): the mean of the pixels is kept, an image band-limited below
    the new Nyquist frequency becomes its samples on the coarse grid, and
    the CTF and the noise spectrum become :func:`bin_ctf`'s and
    :func:`bin_noise_psd`'s.  The input is never modified.

    Parameters
    ----------
    micrograph : array_like of shape (N1, N2) or (n, N1, N2), or dask array
        Real numbers (a stack's sections binned one by one; a memory map is
        read one section at a time).  A dask array must hold each
        micrograph in one chunk along its last two axes (as
        :func:`mtdlearn.data.io.read_micrographs` gives them): it is binned
        lazily, one task per chunk (``map_blocks``), its values checked by
        the tasks.
    factor : float
        The binning factor, >= 1: the new shape is :func:`binned_shape`'s,
        ``floor(N / factor + 1/2)`` per axis.

    Returns
    -------
    binned : ndarray or dask array of shape binned_shape(shape, factor)
        float32 for float32 input (computed in single precision), float64
        otherwise; a new array even when the shape is unchanged
        (``factor=1``).  A dask array for a dask input.

    Raises
    ------
    TypeError
        If ``micrograph`` does not hold real numbers.
    ValueError
        If ``factor`` is below 1 or leaves no pixel, ``micrograph`` is not
        2-D or 3-D, or holds NaN or infinite values.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.binning import fourier_crop
    >>> i, j = np.mgrid[:64, :48]
    >>> fine = 3.0 + np.cos(2 * np.pi * (5 * i / 64 + 2 * j / 48))
    >>> coarse = fourier_crop(fine, 4)  # the same image on a 4x coarser grid
    >>> I, J = np.mgrid[:16, :12]
    >>> expected = 3.0 + np.cos(2 * np.pi * (5 * I / 16 + 2 * J / 12))
    >>> coarse.shape, bool(np.allclose(coarse, expected))
    ((16, 12), True)
    """
    lazy = hasattr(micrograph, "map_blocks")
    arr = micrograph if lazy else np.asarray(micrograph)
    dtype = np.dtype(arr.dtype)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(f"micrograph must hold real numbers (an integer or floating dtype), "
                        f"got dtype {dtype}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"micrograph must be 2-D (N1, N2) or a 3-D stack (n, N1, N2), got "
                         f"shape {arr.shape}")
    shape = binned_shape(arr.shape[-2:], factor)
    if not lazy:
        return _crop_block(arr, shape)
    if any(len(c) != 1 for c in arr.chunks[-2:]):
        raise ValueError(f"a dask micrograph must be one chunk along its last two axes, got "
                         f"chunks {arr.chunks}; rechunk it (darr.rechunk({{-2: -1, -1: -1}}))")
    out = _out_dtype(dtype)
    return arr.map_blocks(_crop_block, shape=shape,
                          chunks=arr.chunks[:-2] + ((shape[0],), (shape[1],)),
                          dtype=out, meta=np.empty((0,) * arr.ndim, dtype=out))


def bin_ctf(ctf, factor):
    """The CTF of a micrograph binned by ``factor``: its pixel size times ``factor``.

    The crop passes the frequencies it keeps unchanged, so the CTF
    is the same function of the spatial frequency (cycles/Angstrom), sampled
    by pixels ``factor`` times larger (on an even size's new Nyquist lines
    an astigmatic CTF is the mean of its values at ``+-1/2``, as
    :meth:`~mtdlearn.imaging.ctf.CTF.evaluate` has it on any grid).

    Parameters
    ----------
    ctf : CTF
        The micrograph's CTF, before binning.
    factor : float
        The factor, >= 1: :func:`effective_factor` of the micrograph's shape
        for :func:`fourier_crop`'s exact pixel size.

    Returns
    -------
    ctf : CTF
        A copy with ``pixel_size = ctf.pixel_size * factor``.

    Examples
    --------
    >>> from mtdlearn.imaging.binning import bin_ctf, effective_factor
    >>> from mtdlearn.imaging.ctf import CTF
    >>> bin_ctf(CTF(15000.0, pixel_size=0.885), effective_factor((3838, 3710), 2)).pixel_size
    1.77
    """
    if not isinstance(ctf, CTF):
        raise TypeError(f"ctf must be a CTF, got {type(ctf).__name__}")
    return dataclasses.replace(ctf, pixel_size=ctf.pixel_size * _check_factor(factor))


def bin_noise_psd(psd, factor):
    """The noise spectrum of a micrograph binned by ``factor``.

    ``f`` cycles per new pixel is ``f / factor`` cycles per old pixel, and
    ``E |fft2(y)|**2 = n S'`` on the ``n = n1 n2`` new pixels makes ``S'(f)
    = S(f / factor) / factor**2``: the new variance per pixel, the mean of
    ``S'`` over the new grid, is the sum of ``S`` over the frequencies kept
    divided by the old number of pixels (white noise: ``s2 / factor**2``).

    Parameters
    ----------
    psd : RadialPSD
        The noise spectrum before binning (cycles/pixel).
    factor : float
        The factor, >= 1: :func:`effective_factor` of the micrograph's shape.

    Returns
    -------
    psd : RadialPSD
        Frequencies times ``factor``, values and errors over ``factor**2``.
        The bins up to the new grid's corner ``sqrt(2) / 2`` are kept (the
        corners of the square band are on the new grid too) and, when the
        spectrum goes beyond, a bin at ``sqrt(2) / 2`` interpolated
        linearly (values and errors), so that ``S'(f) = S(f / factor) /
        factor**2`` exactly on the whole new grid.

    Examples
    --------
    >>> from mtdlearn.imaging.binning import bin_noise_psd
    >>> from mtdlearn.imaging.noise import RadialPSD
    >>> binned = bin_noise_psd(RadialPSD([0.0, 0.25, 0.5], [8.0, 4.0, 2.0]), 2.0)
    >>> binned.frequencies.round(4).tolist(), binned.values.round(4).tolist()
    ([0.0, 0.5, 0.7071], [2.0, 1.0, 0.7929])
    """
    if not isinstance(psd, RadialPSD):
        raise TypeError(f"psd must be a RadialPSD, got {type(psd).__name__}")
    factor = _check_factor(factor)
    old = psd.frequencies
    keep = old * factor < K_MAX
    frequencies = list(old[keep] * factor)
    values = list(psd.values[keep])
    errors = None if psd.errors is None else list(psd.errors[keep])
    if not np.all(keep):  # the spectrum goes beyond the corner: one bin at the corner
        frequencies.append(K_MAX)
        values.append(np.interp(K_MAX / factor, old, psd.values))
        if errors is not None:
            errors.append(np.interp(K_MAX / factor, old, psd.errors))
    scale = factor ** -2
    return RadialPSD(frequencies, np.multiply(values, scale),
                     None if errors is None else np.multiply(errors, scale))
