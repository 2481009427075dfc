"""Colored noise of a micrograph: its power spectrum, whitening and simulation.

Estimate a micrograph's radially averaged noise power spectrum (PSD) from
the micrograph itself (:func:`estimate_noise_psd`), decide whether it is
white (:func:`is_white`: ``noise="auto"``), whiten data and templates alike
(:func:`whiten`, :func:`whitening_filter`; ASPIRE divides by ``sqrt(PSD)``
too) and draw colored noise (:func:`draw_colored_noise`, :func:`make_noise_psd`).

Frequencies are in cycles/pixel.  The FFT grid of an ``(n0, n1)`` array is
``np.fft.fftfreq(n0)`` (rows) by ``np.fft.fftfreq(n1)`` (columns); the
``rfft`` layout is ``(n0, n1 // 2 + 1)``, columns ``np.fft.rfftfreq(n1)``.
The radial frequency ``k = hypot(k_row, k_col)`` is in ``[0, sqrt(2) / 2]``.

Normalization: stationary noise ``n`` on ``N`` pixels has the PSD ``S``
with ``E |fft2(n)[k]|**2 = N S(k)``: white noise of variance ``sigma**2``
has ``S = sigma**2``, and the mean of ``S`` over the full FFT grid, the
*mean power*, is the variance per pixel (Parseval).  The paper's SNR keeps
its meaning with ``sigma**2`` the mean power, and whitening keeps it.
"""

import dataclasses
import functools

import numpy as np
import scipy.fft
from scipy import stats

from .._validation import check_array_float, check_int, check_random_generator, check_real

__all__ = ["RadialPSD", "make_noise_psd", "estimate_noise_psd", "is_white",
           "whitening_filter", "whiten", "draw_colored_noise"]

K_MAX = float(np.sqrt(0.5))  # the largest radial frequency, the corner (1/2, 1/2)
_BATCH_PIXELS = 2 ** 21  # pixels per batch of tiles (memory, not results)
_SMALL_BIN = 40  # bins of fewer frequencies take their law from draws (_tile_bins)


def _radial_grid(shape, rfft):
    """Radial frequency ``hypot(k_row, k_col)`` on the (r)FFT grid of ``shape``."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 2:
        raise ValueError(f"shape must be a pair (n0, n1) of positive integers, got {shape!r}")
    n0, n1 = (check_int(n, f"shape[{i}]", minimum=1) for i, n in enumerate(shape))
    k_col = np.fft.rfftfreq(n1) if rfft else np.fft.fftfreq(n1)
    return np.hypot(np.fft.fftfreq(n0)[:, None], k_col[None, :])


def _column_multiplicity(n1):
    """How many columns of the full grid each ``rfft`` column stands for (1 or 2)."""
    j = np.arange(n1 // 2 + 1)
    return np.where((j == 0) | (2 * j == n1), 1.0, 2.0)


def _psd_on_grid(psd, shape, rfft):
    """``S`` on the (r)FFT grid of ``shape``, and its mean over the full grid;
    ``psd`` a :class:`RadialPSD` or a callable of the radial frequency."""
    k = _radial_grid(shape, rfft=True)
    n0, n1 = k.shape[0], int(shape[1])
    if isinstance(psd, RadialPSD):
        values = np.interp(k, psd.frequencies, psd.values)
    elif callable(psd):
        values = check_array_float(psd(k), "psd(k)")
        if values.shape != k.shape or not np.all(values > 0):
            raise ValueError(f"psd(k) must return values > 0 of k's shape {k.shape}, got "
                             f"shape {values.shape}")
    else:
        raise TypeError(f"psd must be a RadialPSD or a callable of the radial frequency, "
                        f"got {type(psd).__name__}")
    mean = float(values.sum(axis=0) @ _column_multiplicity(n1)) / (n0 * n1)
    if not rfft:  # column -j of the full grid is column j of the rfft one
        values = values[:, np.abs(np.fft.fftfreq(n1) * n1).round().astype(int)]
    return values, mean


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class RadialPSD:
    """A radially averaged noise power spectrum (PSD), with its standard errors.

    Immutable (read-only float64 copies of the arrays), ``==`` by exact
    arrays, not hashable.  Linear in the radial frequency ``k`` between the
    bins, constant beyond the ends.  Normalization: ``E |fft2(n)|**2 = N S``.

    Parameters
    ----------
    frequencies : array_like of shape (n_bins,)
        Bin frequencies, cycles/pixel: >= 0, strictly increasing.
    values : array_like of shape (n_bins,)
        The PSD at those frequencies (> 0).
    errors : array_like of shape (n_bins,), default=None
        Standard errors of ``values`` (>= 0); ``None``: exact (a model).

    Examples
    --------
    >>> from mtdlearn.imaging.noise import RadialPSD
    >>> psd = RadialPSD(frequencies=[0.0, 0.5], values=[4.0, 1.0])
    >>> psd([0.0, 0.25, 0.7]).tolist()
    [4.0, 2.5, 1.0]
    >>> psd.evaluate((8, 8)).shape, psd.evaluate((8, 8), rfft=True).shape
    ((8, 8), (8, 5))
    >>> round(psd.scaled(2.0, (64, 64)).mean_power((64, 64)), 12)
    2.0
    """

    frequencies: np.ndarray
    values: np.ndarray
    errors: np.ndarray = None

    def __post_init__(self):
        arrays = {"frequencies": check_array_float(self.frequencies, "frequencies", ndim=1),
                  "values": check_array_float(self.values, "values", ndim=1)}
        if self.errors is not None:
            arrays["errors"] = check_array_float(self.errors, "errors", ndim=1)
        freq = arrays["frequencies"]
        if freq.size == 0 or freq[0] < 0 or np.any(np.diff(freq) <= 0):
            raise ValueError(f"frequencies must be non-empty, >= 0 and strictly increasing, "
                             f"got {freq}")
        for name, arr in arrays.items():
            if arr.shape != freq.shape:
                raise ValueError(f"{name} must have the shape of frequencies {freq.shape}, "
                                 f"got {arr.shape}")
            bound = "> 0" if name == "values" else ">= 0"
            if np.any(arr <= 0 if name == "values" else arr < 0):
                raise ValueError(f"{name} must be {bound}, got minimum {arr.min()}")
            arr = np.array(arr, dtype=np.float64)  # our own read-only copy
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    __hash__ = None

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(np.array_equal(getattr(self, name), getattr(other, name))  # None == None
                   for name in ("frequencies", "values", "errors"))

    def __repr__(self):
        return (f"RadialPSD({self.frequencies.size} bins, k {self.frequencies[0]:.4g} to "
                f"{self.frequencies[-1]:.4g}, values {self.values.min():.4g} to "
                f"{self.values.max():.4g}, errors={'None' if self.errors is None else '[...]'})")

    def __call__(self, k):
        """The PSD at radial frequencies ``k``.

        Parameters
        ----------
        k : array_like
            Radial frequencies, cycles/pixel (>= 0).

        Returns
        -------
        psd : ndarray of float64
            Linear between the bins, constant beyond the ends; ``k``'s shape.
        """
        k = check_array_float(k, "k")
        if np.any(k < 0):
            raise ValueError(f"k must be >= 0 (a radial frequency), got minimum {k.min()}")
        return np.interp(k, self.frequencies, self.values)

    def evaluate(self, shape, *, rfft=False):
        """The PSD on the FFT grid of an array of ``shape`` pixels.

        Parameters
        ----------
        shape : tuple of int
            ``(n0, n1)``.
        rfft : bool, default=False
            Return only the columns of ``np.fft.rfft2``'s layout.

        Returns
        -------
        psd : ndarray of shape (n0, n1) or (n0, n1 // 2 + 1)
            ``S(hypot(k_row, k_col))`` at ``np.fft.fftfreq(n0)`` (rows) and
            ``np.fft.fftfreq(n1)`` (columns; ``np.fft.rfftfreq(n1)`` with
            ``rfft=True``): zero frequency at ``[0, 0]``.
        """
        return np.interp(_radial_grid(shape, bool(rfft)), self.frequencies, self.values)

    def mean_power(self, shape):
        """The mean of the PSD over the full FFT grid of ``shape``.

        Parameters
        ----------
        shape : tuple of int
            ``(n0, n1)``.

        Returns
        -------
        mean_power : float
            The noise variance per pixel this PSD implies on that grid.
        """
        return _psd_on_grid(self, shape, rfft=True)[1]

    def scaled(self, noise_variance, shape):
        """A copy scaled to a given mean power on the grid of ``shape``.

        Parameters
        ----------
        noise_variance : float
            The mean power (noise variance per pixel) wanted, > 0.
        shape : tuple of int
            ``(n0, n1)``: the grid of :meth:`mean_power`.

        Returns
        -------
        psd : RadialPSD
            ``values`` and ``errors`` times ``noise_variance / mean_power(shape)``.
        """
        noise_variance = check_real(noise_variance, "noise_variance", minimum=0.0, strict=True)
        factor = noise_variance / self.mean_power(shape)
        errors = None if self.errors is None else self.errors * factor
        return RadialPSD(self.frequencies, self.values * factor, errors)


def make_noise_psd(ratio=4.0, width=0.1, n_bins=64):
    """A smooth falling noise spectrum for simulations, of mean power 1.

    ``S(k) = c (1 + (ratio - 1) exp(-(k / width)**2))``: low frequencies at
    ``ratio`` times the power of high ones.

    Parameters
    ----------
    ratio : float, default=4.0
        ``S(0) / S(1/2)``, > 0 (1: white; below 1 the spectrum rises).
    width : float, default=0.1
        Frequency scale of the fall, cycles/pixel, > 0.
    n_bins : int, default=64
        Bins equally spaced from 0 to ``sqrt(2) / 2`` (>= 2).

    Returns
    -------
    psd : RadialPSD
        Without errors; ``c`` makes the mean power 1 over the frequency
        square ``[-1/2, 1/2)**2``, the limit of :meth:`RadialPSD.mean_power`
        on large grids (within 1e-4 from 32 x 32 on, for the defaults).
        :meth:`RadialPSD.scaled` sets it exactly on a given grid.

    Examples
    --------
    >>> from mtdlearn.imaging.noise import make_noise_psd
    >>> psd = make_noise_psd(ratio=4.0)
    >>> round(float(psd(0.0) / psd(0.5)), 6), abs(psd.mean_power((512, 512)) - 1) < 1e-4
    (4.0, True)
    """
    ratio = check_real(ratio, "ratio", minimum=0.0, strict=True)
    width = check_real(width, "width", minimum=0.0, strict=True)
    k = np.linspace(0.0, K_MAX, check_int(n_bins, "n_bins", minimum=2))
    values = 1.0 + (ratio - 1.0) * np.exp(-(k / width) ** 2)
    # the mean over the square by the density of |k|: 2 pi r, less the corners beyond 1/2
    r = np.linspace(0.0, K_MAX, 2 ** 15 + 1)
    density = 2.0 * np.pi * r
    density[r > 0.5] -= 8.0 * r[r > 0.5] * np.arccos(0.5 / r[r > 0.5])
    return RadialPSD(k, values / np.trapezoid(np.interp(r, k, values) * density, r))


def _hann(n):
    """The periodic Hann window ``sin(pi t / n)**2``: three Fourier taps."""
    return np.sin(np.pi * np.arange(n) / n) ** 2


@functools.lru_cache(maxsize=16)
def _tile_bins(T, n_bins):
    """How a ``T x T`` tile's ``rfft`` periodogram is binned, and each bin's law.

    Bin ``b``: ``(b - 1/2) d <= k < (b + 1/2) d``, ``d = K_MAX / (n_bins -
    1/2)``, without ``k = 0``; empty bins are left out.  Returns ``order``,
    ``starts`` (the coefficients sorted by bin, for ``np.add.reduceat``),
    their weights (multiplicity on the full grid over the bin's count), the
    bins' mean frequencies and ``(q1, median, q3, density at the median)``
    of a bin's value over its mean for Gaussian noise: a weighted sum of
    chi-squares, the weights the eigenvalues of ``G = [c(k - k')] / count``
    over the bin (``c`` the DFT of ``window**2``, ``c(0) = 1``), the
    cumulants ``2^(r-1) (r-1)! tr(G^r)``.  Pearson's three-moment
    approximation (shifted Gamma; Imhof 1961) is within 0.1 % for bins of
    40 frequencies or more; smaller bins use 2**17 draws (fixed seed).
    """
    delta = K_MAX / (n_bins - 0.5)
    k_full = _radial_grid((T, T), rfft=False)
    full = np.minimum(np.floor(k_full / delta + 0.5).astype(np.int64), n_bins - 1)
    full[0, 0] = -1  # the zero frequency
    half, k_half = full[:, :T // 2 + 1].ravel(), k_full[:, :T // 2 + 1].ravel()
    mult = np.tile(_column_multiplicity(T), T) * (half >= 0)
    counts = np.bincount(np.maximum(half, 0), mult, minlength=n_bins)
    c1 = np.fft.fft(_hann(T) ** 2).real
    c1 /= c1[0]
    taps = [(i, j) for i in range(-2, 3) for j in range(-2, 3)]
    same = {(i, j): (np.roll(full, (-i, -j), axis=(0, 1)) == full) & (full >= 0)
            for i, j in taps}
    tr2, tr3 = np.zeros(n_bins), np.zeros(n_bins)
    for i, j in taps:  # tr(G^r): paths k -> k + (i, j) [-> k + (i + u, j + v)] -> k
        cij = c1[i] * c1[j]
        tr2 += cij ** 2 * np.bincount(full[same[i, j]], minlength=n_bins)
        for u, v in taps:
            if (i + u, j + v) in same:
                both = same[i, j] & same[i + u, j + v]
                tr3 += (cij * c1[u] * c1[v] * c1[i + u] * c1[j + v]
                        * np.bincount(full[both], minlength=n_bins))
    keep = np.flatnonzero(counts > 0)
    n = counts[keep]
    kappa2, kappa3 = 2.0 * tr2[keep] / n ** 2, 8.0 * tr3[keep] / n ** 3
    shape, scale = 4.0 * kappa2 ** 3 / kappa3 ** 2, kappa3 / (2.0 * kappa2)
    z = stats.gamma.ppf(np.array([[0.25], [0.5], [0.75]]), shape)
    law = np.vstack([1.0 - shape * scale + scale * z, stats.gamma.pdf(z[1], shape) / scale])
    rng = np.random.default_rng(20240531)
    for b in np.flatnonzero(n < _SMALL_BIN):
        points = np.argwhere(full == keep[b])
        diff = (points[:, None, :] - points[None, :, :]) % T
        eig = np.linalg.eigvalsh(c1[diff[..., 0]] * c1[diff[..., 1]]) / n[b]
        draws = np.concatenate([rng.standard_normal((2 ** 14, eig.size)) ** 2 @ eig
                                for _ in range(8)])
        law[:3, b] = np.quantile(draws, [0.25, 0.5, 0.75])
    mean_k = np.bincount(np.maximum(half, 0), mult * k_half, minlength=n_bins)[keep] / n
    order = np.argsort(half, kind="stable")
    order = order[half[order] >= 0]
    starts = np.flatnonzero(np.r_[True, np.diff(half[order]) > 0])
    return order, starts, mult[order] / counts[half[order]], mean_k, law


def _tile_values(micrograph, T, order, starts, weights):
    """Ring means of each tile's periodogram, ``(n_tiles, n_bins)``: tiles from the
    top-left corner (partial ones left out), mean subtracted, Hann window."""
    n0, n1 = micrograph.shape
    t0, t1 = n0 // T, n1 // T
    mean = float(np.mean(micrograph, dtype=np.float64))
    window = np.outer(_hann(T), _hann(T))
    bands = max(1, _BATCH_PIXELS // (t1 * T * T))
    out = []
    for b0 in range(0, t0, bands):
        b1 = min(t0, b0 + bands)
        block = np.asarray(micrograph[b0 * T:b1 * T, :t1 * T], dtype=np.float64) - mean
        tiles = block.reshape(b1 - b0, T, t1, T).transpose(0, 2, 1, 3) * window
        spec = scipy.fft.rfft2(tiles, overwrite_x=True).reshape(-1, T * (T // 2 + 1))
        power = spec.real ** 2 + spec.imag ** 2
        out.append(np.add.reduceat(power[:, order] * weights, starts, axis=1))
    return np.concatenate(out) / np.sum(window ** 2)


def estimate_noise_psd(micrograph, *, tile_size=64, n_bins=None):
    """Estimate a micrograph's radially averaged noise power spectrum.

    Welch's method made robust to the copies: the micrograph's mean is
    subtracted; the periodogram of each non-overlapping ``tile_size`` tile
    (Hann window, divided by the window's power ``sum(w**2)``) is averaged
    over rings of radial frequency; each ring's values are combined over the
    tiles by their median, divided by the median's bias.

    Parameters
    ----------
    micrograph : array_like of shape (N1, N2)
        Real numbers, never modified (a memory map is read in bands); at
        least ``tile_size`` pixels each way.
    tile_size : int, default=64
        Side ``T`` of the tiles (>= 8): the spectral resolution is ``1/T``.
    n_bins : int, default=None
        Rings from ``k = 0`` to ``sqrt(2) / 2``, 2 to the default:
        ``floor(T / sqrt(2) + 1/2)``, rings one Fourier pixel wide.

    Returns
    -------
    psd : RadialPSD
        The PSD at the rings' mean frequencies, with standard errors.  The
        zero frequency and empty rings are left out: below the first ring
        the PSD is that ring's value (constant extrapolation).

    Notes
    -----
    The zero frequency (a tile's mean: one degree of freedom, more about
    the copies than the noise) is left out.  For Gaussian noise a ring's
    value in a tile is ``S Y``, ``Y`` a weighted sum of chi-squares of mean
    1 whose law follows from the ring and the window (about
    ``Gamma(a, 1/a)``, ``a`` ~2 in the first ring, 10-15 beyond the tenth
    for ``T = 64``); the median over tiles, ``S median(Y)`` (0.81 ``S`` in
    the first ring), is divided by ``median(Y)``.  Its standard error is
    the asymptotic ``s / (2 sqrt(n_tiles) f(median(Y)) median(Y))``, ``f``
    the density of ``Y``, ``s`` the larger of the estimate and the scale
    the tiles' interquartile range implies.  On white noise
    ``(estimate - S) / error`` has a standard deviation of 1.00 (1024 x
    1024, 20 seeds); with fewer than ~20 tiles the errors are rough.

    Robustness: the median ignores copies in a minority of the tiles (8
    copies of amplitude ``10 sigma`` in 1024 x 1024: bias below 1 standard
    error, the tiles' mean ~25).  Copies in most tiles add their own power
    below ~1/(their size), which no average over tiles removes (blobs of
    amplitude ``sigma`` on 5 % of the area: lowest rings +30 %; ``3 sigma``:
    +200 %; the tiles' mean +35 %, +300 %): estimate from residuals (RELION
    re-estimates its spectrum each iteration) or mask the copies.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.noise import estimate_noise_psd
    >>> psd = estimate_noise_psd(2.0 * np.random.default_rng(0).standard_normal((512, 512)))
    >>> bool(np.all(np.abs(psd.values - 4.0) < 5 * psd.errors))
    True
    """
    M = check_array_float(micrograph, "micrograph", ndim=2, dtype=None)
    T = check_int(tile_size, "tile_size", minimum=8)
    if min(M.shape) < T:
        raise ValueError(f"micrograph of shape {M.shape} is smaller than one tile of "
                         f"tile_size={T} pixels; pass a smaller tile_size (8 to "
                         f"{min(M.shape)})")
    most = int(np.floor(K_MAX * T + 0.5))
    n_bins = most if n_bins is None else check_int(n_bins, "n_bins", minimum=2, maximum=most)
    order, starts, weights, k, (q1, med, q3, f_med) = _tile_bins(T, n_bins)
    V = _tile_values(M, T, order, starts, weights)
    v1, v2, v3 = np.percentile(V, [25.0, 50.0, 75.0], axis=0)
    if not np.all(v2 > 0):
        raise ValueError("micrograph has no power in some frequency rings (a constant "
                         "array?): no noise spectrum can be estimated")
    values = v2 / med
    scale = np.maximum(values, (v3 - v1) / (q3 - q1))
    return RadialPSD(k, values, scale / (2.0 * np.sqrt(V.shape[0]) * f_med * med))


def is_white(psd, *, significance=1e-6, tolerance=0.1):
    """Whether a noise spectrum is white: the rule of ``noise="auto"``.

    Parameters
    ----------
    psd : RadialPSD
        Usually from :func:`estimate_noise_psd`.
    significance : float, default=1e-6
        Level of the chi-square test, in (0, 1): strict, so that white
        noise is almost never called colored.
    tolerance : float, default=0.1
        Largest ``max / min - 1`` of the smoothed spectrum still white.

    Returns
    -------
    white : bool
        ``False`` when (1) the bins depart from their weighted mean beyond
        their errors (chi-square, ``n_bins - 1`` degrees of freedom, p below
        ``significance``) and (2) the spectrum smoothed over 5 bins (weights
        ``1 / errors**2``) has ``max / min > 1 + tolerance``.  Without
        errors (a model) only (2) applies, unsmoothed.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.noise import estimate_noise_psd, is_white, make_noise_psd
    >>> is_white(estimate_noise_psd(np.random.default_rng(0).standard_normal((512, 512))))
    True
    >>> is_white(make_noise_psd(ratio=4.0))  # a model: no error bars
    False
    """
    if not isinstance(psd, RadialPSD):
        raise TypeError(f"psd must be a RadialPSD, got {type(psd).__name__}")
    significance = check_real(significance, "significance", minimum=0.0, maximum=1.0,
                              strict=True, strict_max=True)
    tolerance = check_real(tolerance, "tolerance", minimum=0.0)
    values, errors = psd.values, psd.errors
    if errors is not None:
        values, errors = values[errors > 0], errors[errors > 0]
    if errors is None or values.size < 2:
        return bool(values.max() / values.min() - 1.0 <= tolerance)
    weights = errors ** -2.0
    chi2 = float(np.sum(weights * (values - np.sum(weights * values) / np.sum(weights)) ** 2))
    if not stats.chi2.sf(chi2, values.size - 1) < significance:
        return True
    box = np.ones(min(5, values.size))
    smooth = np.convolve(weights * values, box, "same") / np.convolve(weights, box, "same")
    return bool(smooth.max() / smooth.min() - 1.0 <= tolerance)


def whitening_filter(psd, shape, rfft=True):
    """The whitening filter ``W = sqrt(mean S / S)`` on the FFT grid of ``shape``.

    ``rfft2(x) * W`` turns noise of spectrum ``S`` white, of the same mean
    power.  Apply it to the model's templates too.

    Parameters
    ----------
    psd : RadialPSD or callable
        The noise spectrum ``S``, or a function of the radial frequency
        ``k`` (an array) returning ``S(k)`` (> 0) of ``k``'s shape.
    shape : tuple of int
        ``(n0, n1)`` of the array.
    rfft : bool, default=True
        ``rfft2``'s layout ``(n0, n1 // 2 + 1)``; ``False``: ``fft2``'s.

    Returns
    -------
    filter : ndarray of float64
        ``sqrt(mean S / S(k))``, ``mean S`` over the full grid of ``shape``.

    Examples
    --------
    >>> from mtdlearn.imaging.noise import make_noise_psd, whitening_filter
    >>> W = whitening_filter(make_noise_psd(ratio=4.0), (64, 64))
    >>> W.shape, bool(W[0, 0] < 1 < W[0, 32])  # damps low frequencies, lifts high ones
    ((64, 33), True)
    """
    values, mean = _psd_on_grid(psd, shape, bool(rfft))
    return np.sqrt(mean / values)


def _check_out(out, shape):
    """``out`` as a writable 2-D float32/float64 ndarray (of ``shape`` if given)."""
    if not isinstance(out, np.ndarray) or out.dtype not in (np.float32, np.float64):
        raise TypeError(f"out must be a float32 or float64 numpy array, got "
                        f"{type(out).__name__} of dtype {getattr(out, 'dtype', None)}")
    if out.ndim != 2 or (shape is not None and out.shape != shape):
        want = "2-D" if shape is None else f"of shape {shape}"
        raise ValueError(f"out must be {want}, got shape {out.shape}")
    if not out.flags.writeable:
        raise ValueError("out must be writable, got a read-only array")
    return out


def whiten(micrograph, psd, *, out=None):
    """Whiten a micrograph: filter it by ``W = sqrt(mean S / S)`` in Fourier space.

    Noise of spectrum ``S`` comes out white with the same variance per pixel
    (``mean S`` over the grid): ``sigma**2`` and the paper's SNR keep their meaning.

    Parameters
    ----------
    micrograph : array_like of shape (N1, N2)
        The data; never modified (unless it is ``out``).
    psd : RadialPSD or callable
        The noise spectrum (see :func:`whitening_filter`).
    out : ndarray of shape (N1, N2), default=None
        Where to write the result (float32/64); ``None``: a new float64 array.

    Returns
    -------
    whitened : ndarray of shape (N1, N2)
        ``irfft2(rfft2(micrograph) * W)``.

    Notes
    -----
    The filter is circular (the FFT of the whole array), but the impulse
    response of a smooth spectrum's filter is short (:func:`make_noise_psd`'s
    taps beyond 8 pixels are below 1e-4 of the centre's): only a thin border
    mixes with the opposite edge.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.noise import draw_colored_noise, make_noise_psd, whiten
    >>> psd = make_noise_psd(ratio=4.0)
    >>> noise = draw_colored_noise(np.empty((256, 256)), psd, 2.0, np.random.default_rng(0))
    >>> white = whiten(noise, psd)
    >>> lag1 = lambda x: float(np.mean(x[:, 1:] * x[:, :-1]) / x.var())
    >>> lag1(noise) > 0.05, abs(lag1(white)) < 0.02, bool(abs(white.var() - 2) < 0.1)
    (True, True, True)
    """
    M = check_array_float(micrograph, "micrograph", ndim=2, dtype=None)
    if out is not None:
        _check_out(out, M.shape)
    spec = scipy.fft.rfft2(np.asarray(M, dtype=np.float64))
    spec *= whitening_filter(psd, M.shape, rfft=True)
    result = scipy.fft.irfft2(spec, s=M.shape, overwrite_x=True)
    if out is None:
        return result
    out[...] = result
    return out


def draw_colored_noise(out, psd, noise_variance, rng):
    """Fill ``out`` with stationary Gaussian noise of a given spectrum's shape.

    White Gaussian noise times ``sqrt(noise_variance S / mean S)`` in Fourier
    space (``mean S`` over the full grid of ``out``'s shape): its PSD is ``S``
    scaled to the mean power ``noise_variance``, its expected variance per
    pixel exactly ``noise_variance``.

    Parameters
    ----------
    out : ndarray of shape (N1, N2)
        Buffer, float32 or float64, overwritten.
    psd : RadialPSD or callable
        The spectrum's shape ``S`` (scale ignored; see :func:`whitening_filter`).
    noise_variance : float
        ``sigma**2``: the mean power per pixel (>= 0).
    rng : numpy.random.Generator
        The generator (or a seed for one).

    Returns
    -------
    out : ndarray of shape (N1, N2)
        The same buffer.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.noise import draw_colored_noise, make_noise_psd
    >>> noise = draw_colored_noise(np.empty((512, 512)), make_noise_psd(), 4.0, 0)
    >>> bool(abs(noise.var() - 4.0) < 0.2)
    True
    """
    out = _check_out(out, None)
    noise_variance = check_real(noise_variance, "noise_variance", minimum=0.0)
    rng = check_random_generator(rng)
    values, mean = _psd_on_grid(psd, out.shape, rfft=True)
    spec = scipy.fft.rfft2(rng.standard_normal(out.shape))
    spec *= np.sqrt(values * (noise_variance / mean))
    out[...] = scipy.fft.irfft2(spec, s=out.shape, overwrite_x=True)
    return out
