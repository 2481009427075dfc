"""Initializers: where an estimator's iterations start.

.. rubric:: Protocol

An initializer is an object with a method::

    initialize(measurements, basis, noise_variance, random_state) -> InitialState

``measurements`` is the estimator's patch source, a
:class:`~mtdlearn.data.patches.PatchData` (its ``measurements`` attribute is the
list of validated 2-D arrays; quantities derived from the data are computed
once per fit and shared by all starts through its ``memoize`` method), or,
when an initializer is called directly, a list of validated 2-D arrays.
``basis`` is the estimator's basis (see :func:`mtdlearn.basis.protocol.check_basis`),
``noise_variance`` the fixed ``sigma**2`` or ``None`` when the estimator
estimates it, and ``random_state`` a ``numpy.random.Generator`` (every random
draw must come from it).  It returns an :class:`InitialState` holding
``coef`` (p,), ``shift_probabilities`` (2L x 2L, on the simplex) and
``noise_variance`` (> 0).  Initializers also implement
``get_params``/``set_params`` so that scikit-learn can clone and tune them.
They never modify the measurements.

:class:`~mtdlearn.AutocorrelationInitializer`, which runs autocorrelation
analysis, lives beside its estimator in :mod:`mtdlearn.autocorrelation.estimator`.
"""

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ._validation import check_array_float, check_real
from .basis.protocol import check_basis
from .imaging.shifts import check_shift_probabilities, density_to_shift_probabilities, max_density
from .data.measurements import patch_grid_shape, tile
from .data.patches import PatchData, as_patch_source

__all__ = ["InitialState", "RandomInitializer", "EnergyStart", "FixedInitializer",
           "data_statistics"]

#: The paper's initial density (§3).
DEFAULT_DENSITY = 0.03


@dataclass
class InitialState:
    """Starting parameters of one run, as returned by an initializer.

    Parameters
    ----------
    coef : ndarray of shape (p,)
        Initial coefficients ``alpha_0``.
    shift_probabilities : ndarray of shape (2L, 2L)
        Initial shift distribution ``rho_0`` (on the simplex).
    noise_variance : float
        Initial ``sigma**2``, ``> 0`` (the fixed value when the estimator
        does not estimate it).
    weights : ndarray of shape (n_components,), default=None
        Initial abundances of a mixture's components (``coef`` then has one
        row per component); ``None``: equal abundances, or one image.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.initializers import InitialState
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> state = InitialState(np.ones(10), density_to_shift_probabilities(0.03, 5), 1.0)
    >>> state.shift_probabilities.shape
    (10, 10)
    """

    coef: np.ndarray
    shift_probabilities: np.ndarray
    noise_variance: float
    weights: np.ndarray = None


#: The kinds of a split image differ from it by this fraction of its norm,
#: each in its own random direction (split-and-merge EM's split, Ueda et
#: al. 2000): far enough for the E-step to tell them apart, near enough
#: that each stays in the image's basin.
SPLIT_SCALE = 0.3


def split_image(coef, n_components, rng):
    """``n_components`` images around one: each ``coef`` plus :data:`SPLIT_SCALE`
    of its norm (of 1 for a zero image) in an independent random direction
    drawn from ``rng``; shape ``(n_components, p)``."""
    coef = np.asarray(coef, dtype=np.float64)
    directions = rng.standard_normal((n_components, coef.size))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    scale = SPLIT_SCALE * float(np.linalg.norm(coef))
    if not scale > 0:
        scale = SPLIT_SCALE
    return coef[None, :] + scale * directions


class _ParamsMixin:
    _param_names = ()

    def get_params(self, deep=True):
        """Get the parameters of this initializer (scikit-learn convention).

        Parameters
        ----------
        deep : bool, default=True
            Ignored (initializers hold no nested estimators); present for
            scikit-learn compatibility.

        Returns
        -------
        params : dict
            Constructor parameter names mapped to their values.

        Examples
        --------
        >>> from mtdlearn.initializers import RandomInitializer
        >>> RandomInitializer(density=0.03).get_params()
        {'density': 0.03}
        """
        return {k: getattr(self, k) for k in self._param_names}

    def set_params(self, **params):
        """Set the parameters of this initializer (scikit-learn convention).

        This is what lets ``GridSearchCV`` tune ``initializer__<name>`` of an
        estimator.

        Parameters
        ----------
        **params : dict
            New values of constructor parameters; an unknown name raises
            ``ValueError``.

        Returns
        -------
        self : object
            This initializer.

        Examples
        --------
        >>> from mtdlearn.initializers import RandomInitializer
        >>> RandomInitializer().set_params(density=0.02)
        RandomInitializer(density=0.02)
        """
        for key, value in params.items():
            if key not in self._param_names:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; "
                                 f"valid parameters are {list(self._param_names)}")
            setattr(self, key, value)
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


#: Bits of the float64 bit pattern resolved per pass of :func:`_order_statistics`.
_RADIX_BITS = 17


def _radix_digits(keys, used, prefix):
    """The next digit of the keys (uint64) whose first ``used`` bits are ``prefix``."""
    if used:
        keys = keys[(keys >> np.uint64(64 - used)) == np.uint64(prefix)]
    width = min(_RADIX_BITS, 64 - used)
    return (keys >> np.uint64(64 - used - width)) & np.uint64((1 << width) - 1), width


# The passes over the patch energies of the radix selection below, each a
# reduction ``scan(per_values, pair, *args)``: ``per_values(values, *args)``
# of every block of energies, reduced by ``pair``.  These reductions are
# exact (integer counts, extremes, a set of values sorted afterwards), so any
# order of the blocks gives the same result: in memory a fold over the
# blocks, on a Dask cluster a fold per micrograph and a tree over them.
def _values_digit_counts(values, used, prefix):
    digits, width = _radix_digits(values.view(np.uint64), used, prefix)
    return np.bincount(digits.astype(np.intp), minlength=1 << width)


def _values_extremes(values, used, low_prefix, high_prefix):
    keys = values.view(np.uint64) >> np.uint64(64 - used)
    return (values[keys == np.uint64(low_prefix)].max(initial=-np.inf),
            values[keys == np.uint64(high_prefix)].min(initial=np.inf))


def _values_with_prefix(values, used, prefix):
    return values[(values.view(np.uint64) >> np.uint64(64 - used)) == np.uint64(prefix)]


def _pair_extremes(a, b):
    return max(a[0], b[0]), min(a[1], b[1])


def _pair_arrays(a, b):
    return np.concatenate([a, b])


def _order_statistics(scan, n, rank, first_counts, max_collect=2**16):
    """The values of ranks ``rank`` and ``rank + 1`` (0-based, the second capped
    at ``n - 1``) among the ``n`` values ``>= +0.0`` that ``scan`` passes over.

    Exact, with bounded memory: a radix selection on the float64 bit patterns
    (which sort as the values do, for values ``>= +0.0``), one pass over the
    data per 17 bits until the values left fit ``max_collect``; usually the
    pass that computed ``first_counts`` (the counts of the first digit) and
    one more.  ``scan(per_values, pair, *args)`` reduces ``per_values(values,
    *args)`` of every block of values with ``pair`` (see above).
    """
    ranks = (rank, min(rank + 1, n - 1))
    used, prefix, below, counts = 0, 0, 0, first_counts
    while True:
        width = min(_RADIX_BITS, 64 - used)
        cum = np.cumsum(counts)
        bins = [int(np.searchsorted(cum, r - below, side="right")) for r in ranks]
        lows = [below + (int(cum[b - 1]) if b else 0) for b in bins]
        prefixes = [(prefix << width) | b for b in bins]
        used += width
        if bins[0] != bins[1]:  # rank is the largest of its bin, rank + 1 the smallest
            top, bottom = scan(_values_extremes, _pair_extremes, used, *prefixes)
            return float(top), float(bottom)
        prefix, below = prefixes[0], lows[0]
        if used == 64:  # one bit pattern: one value
            value = float(np.array([prefix], dtype=np.uint64).view(np.float64)[0])
            return value, value
        if counts[bins[0]] <= max_collect:
            kept = np.sort(scan(_values_with_prefix, _pair_arrays, used, prefix))
            return float(kept[ranks[0] - below]), float(kept[ranks[1] - below])
        counts = scan(_values_digit_counts, np.add, used, prefix)


def _block_rows(M, image_size, chunk_rows, block_bytes):
    """Rows per block: a multiple of ``L`` within both budgets (at least ``L``)."""
    L = image_size
    rows = min(chunk_rows, block_bytes // max(1, M.shape[1] * 8))
    return max(1, rows // L) * L


def _energy_blocks(M, image_size, chunk_rows, block_bytes, moments=None):
    """Yield the patch energies (mean square per pixel, ``>= +0.0``) of one
    measurement's blocks of rows; append each block's ``(sum, sum of squares,
    pixels)`` to ``moments`` when given."""
    L = image_size
    d = L * L
    nr, nc = patch_grid_shape(M.shape, L)
    rows = _block_rows(M, L, chunk_rows, block_bytes)  # blocks start on patch rows
    for r0 in range(0, M.shape[0], rows):
        block = np.asarray(M[r0:r0 + rows], dtype=np.float64)
        n_patch_rows = max(0, min(nr * L, r0 + rows) - r0) // L
        # patch energies without a block-sized temporary
        tiles = tile(block[:n_patch_rows * L], L)
        sq = np.einsum("abij,abij->ab", tiles, tiles)
        if moments is not None:
            # the mean square adds the pixels outside the patch grid
            right, bottom = block[:, nc * L:], block[n_patch_rows * L:, :nc * L]
            moments.append((block.sum(), sq.sum() + np.einsum("ij,ij->", right, right)
                            + np.einsum("ij,ij->", bottom, bottom), block.size))
        yield sq.ravel() / d + 0.0  # + 0.0: no -0.0, whose bits sort last


def _fold(values_blocks, per_values, pair, args):
    """``per_values`` of each block of values, reduced in order by ``pair``."""
    total = None
    for values in values_blocks:
        part = per_values(values, *args)
        total = part if total is None else pair(total, part)
    return total


def _finish_statistics(moments, n, first_counts, scan, image_size):
    """:func:`data_statistics`'s result from its first pass (``moments``: the
    blocks' sums in order) and the radix selection of the lower quartile."""
    d = image_size * image_size
    q = 0.25  # the lower quartile exactly as numpy.quantile's default ('linear') method
    h = (n - 1) * q
    lo = int(np.floor(h))
    gamma = h - lo
    a, b = _order_statistics(scan, n, lo, first_counts)
    diff = b - a
    quartile = b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
    sigma2 = float(quartile / (stats.chi2.ppf(q, d) / d))
    total = total_sq = 0.0
    count = 0
    for block_sum, block_sq, size in moments:  # in order: the in-memory sums
        total += block_sum
        total_sq += block_sq
        count += size
    return total / count, total_sq / count, sigma2


def data_statistics(measurements, image_size, chunk_rows=1024, block_bytes=2**22):
    """Compute the moments of the data used to scale initial guesses.

    The measurements are read in blocks of rows, never copied whole, and
    the memory used does not grow with their size: the lower quartile of
    the patch energies is found by an exact radix selection (a second pass
    over the data keeps only the energies near it), not by sorting them all.

    Parameters
    ----------
    measurements : list of ndarray of shape (N1, N2)
        Validated 2-D measurements.
    image_size : int
        ``L``, the side of the patches.
    chunk_rows : int, default=1024
        Rows read at once, at most.
    block_bytes : int, default=2**22
        Bytes of a block of rows (as float64), at most; a block holds at
        least one row of patches.

    Returns
    -------
    mean : float
        Mean pixel value ``a1``.
    mean_square : float
        Mean squared pixel value.
    noise_variance : float
        A robust estimate of ``sigma**2``: the lower quartile of per-patch
        mean energies (as :func:`numpy.quantile` computes it) divided by the
        lower quartile of ``chi2(L**2) / L**2`` (most patches hold no copy at
        low density).

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis, make_measurement, make_target
    >>> from mtdlearn.initializers import data_statistics
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    >>> mean, mean_square, noise_variance = data_statistics([X], 5)
    >>> round(noise_variance, 1), round(truth.noise_variance, 1)
    (0.6, 0.6)
    """
    L = image_size

    def blocks(moments=None):
        for M in measurements:
            yield from _energy_blocks(M, L, chunk_rows, block_bytes, moments)

    def scan(per_values, pair, *args):
        return _fold(blocks(), per_values, pair, args)

    # pass 1: moments, number of patches, counts of the energies' first radix digit
    moments = []
    n = 0
    first_counts = None
    for energies in blocks(moments):
        n += energies.size
        c = _values_digit_counts(energies, 0, 0)
        first_counts = c if first_counts is None else np.add(first_counts, c, out=first_counts)
    return _finish_statistics(moments, n, first_counts, scan, L)


def _block_first_pass(M, image_size, chunk_rows, block_bytes):
    """Pass 1 of :func:`data_statistics` on one micrograph (a Dask task): its
    blocks' sums, its number of patches and its first-digit counts."""
    moments = []
    counts = _fold(_energy_blocks(M, image_size, chunk_rows, block_bytes, moments),
                   _values_digit_counts, np.add, (0, 0))
    return moments, int(counts.sum()), counts


def _pair_first_passes(a, b):
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def _block_scan(M, image_size, chunk_rows, block_bytes, per_values, pair, *args):
    """One micrograph's part of a pass of the radix selection (a Dask task)."""
    return _fold(_energy_blocks(M, image_size, chunk_rows, block_bytes), per_values, pair, args)


def _data_statistics_distributed(data, image_size, chunk_rows=1024, block_bytes=2**22):
    """:func:`data_statistics` on a distributed patch source, the same result.

    Every pass runs on the workers and is reduced there
    (``data.map_reduce``): the client receives the blocks' sums (three
    numbers per block of rows) and one array of counts per pass, never the
    patch energies, so its memory does not grow with the data.
    """
    L = image_size
    moments, n, first_counts = data.map_reduce(_block_first_pass, _pair_first_passes, L,
                                               chunk_rows, block_bytes)

    def scan(per_values, pair, *args):
        return data.map_reduce(_block_scan, pair, L, chunk_rows, block_bytes, per_values,
                               pair, *args)

    return _finish_statistics(moments, n, first_counts, scan, L)


#: How a distributed patch source computes it: every pass on the workers
#: (:meth:`mtdlearn.data._dask.DaskPatchData.memoize`).
data_statistics.blockwise = _data_statistics_distributed


def _check_initialize_args(measurements, basis, noise_variance, random_state,
                           random=True):
    """Check the arguments of an ``initialize`` call (the protocol above)."""
    check_basis(basis)
    if random and not isinstance(random_state, np.random.Generator):
        raise TypeError("random_state must be a numpy.random.Generator, got "
                        f"{type(random_state).__name__}")
    if not isinstance(measurements, PatchData) and (
            isinstance(measurements, np.ndarray) or not len(measurements)):
        raise ValueError("measurements must be a PatchData or a non-empty list of 2-D arrays")
    if noise_variance is not None:
        check_real(noise_variance, "noise_variance", minimum=0.0, strict=True)


def _data_statistics(measurements, image_size):
    """:func:`data_statistics` of an initializer's ``measurements``, once per data set."""
    if not isinstance(measurements, PatchData):
        measurements = as_patch_source(measurements, image_size, name="measurements")
    return measurements.memoize(data_statistics, image_size)


def _scaled_guess(shape_coef, basis, measurements, noise_variance):
    """Scale a shape guess and pick a density to match the data's first two
    moments: ``a1 = gamma * sum(F) / L**2`` and
    ``mean_square - sigma**2 = gamma * ||F||**2 / L**2``."""
    L = basis.image_size
    a1, m2, sigma2_hat = _data_statistics(measurements, L)
    sigma2 = sigma2_hat if noise_variance is None else noise_variance
    if not sigma2 > 0:
        sigma2 = max(m2 - a1 * a1, np.finfo(float).tiny)
    F = basis.evaluate(shape_coef)
    total, energy = F.sum(), np.sum(F * F)
    excess = m2 - sigma2  # = gamma ||F||^2 / L^2 (signal energy per pixel)
    gamma_max = max_density(L)
    gamma = scale = None
    if excess > 0 and a1 * total > 0 and energy > 0:
        scale = excess * total / (a1 * energy)
        gamma = a1 * L * L / (scale * total)
    if gamma is None or not (0 < gamma < gamma_max):
        gamma = DEFAULT_DENSITY
        scale = np.sqrt(excess * L * L / (gamma * energy)) if excess > 0 and energy > 0 else 1.0
    return shape_coef * scale, gamma, float(sigma2)


class RandomInitializer(_ParamsMixin):
    """The paper's random start (§3): a random target image, scaled from the data.

    A random image with i.i.d. U[0, 1] pixels is expanded on the basis; its
    scale and the density ``gamma`` are then chosen so that the model's
    first two moments match the data's (mean, and mean square minus noise
    variance).  Nothing is taken from the truth.  When the moments cannot be
    matched (e.g. a zero-mean target), ``gamma = 0.03`` as in the paper and
    the scale matches the signal energy.  The initial shift distribution
    follows from ``gamma`` (each non-empty shift ``gamma / L**2``).  When the
    noise variance is estimated, it starts from a robust estimate (lower
    quartile of the per-patch energies).

    Parameters
    ----------
    density : float, default=None
        Fix the initial density instead of deriving it from the data.

    Examples
    --------
    >>> from mtdlearn import ApproxEMEstimator
    >>> from mtdlearn.initializers import RandomInitializer
    >>> est = ApproxEMEstimator(5, initializer=RandomInitializer())
    >>> est.initializer
    RandomInitializer(density=None)
    """

    _param_names = ("density",)

    def __init__(self, density=None):
        self.density = density

    def initialize(self, measurements, basis, noise_variance, random_state):
        """Draw a random initial state, scaled to the data (see the class docstring).

        Parameters
        ----------
        measurements : PatchData or list of ndarray of shape (N1, N2)
            The estimator's patch source, or validated 2-D measurements;
            only read.
        basis : basis object
            The estimator's basis.
        noise_variance : float or None
            The estimator's fixed ``sigma**2``, or ``None`` when it is
            estimated (then the robust data estimate is used).
        random_state : numpy.random.Generator
            Source of the random image.

        Returns
        -------
        state : InitialState
            ``coef`` (p,), ``shift_probabilities`` (2L, 2L) from the density,
            and ``noise_variance``.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis, make_measurement, make_target
        >>> from mtdlearn.initializers import RandomInitializer
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 100,
        ...                             snr=5, random_state=0)
        >>> state = RandomInitializer().initialize([X], basis, None,
        ...                                        np.random.default_rng(0))
        >>> state.coef.shape, state.shift_probabilities.shape
        ((10,), (10, 10))
        """
        _check_initialize_args(measurements, basis, noise_variance, random_state)
        rng = random_state
        L = basis.image_size
        image = rng.uniform(0.0, 1.0, size=(L, L))
        coef, gamma, sigma2 = _scaled_guess(basis.expand(image), basis, measurements,
                                            noise_variance)
        if self.density is not None:
            gamma = check_real(self.density, "density", minimum=0.0, maximum=max_density(L),
                               strict=True)
        rho = density_to_shift_probabilities(gamma, L)
        return InitialState(coef, rho, sigma2)


class EnergyStart(RandomInitializer):
    """The default start of a fit through CTFs: a random image matched to the data's energy.

    The random image of :class:`~mtdlearn.initializers.RandomInitializer`,
    at the paper's density (``density``), scaled so that the model's mean
    square matches the data's: ``gamma ||F||**2 / L**2 = mean_square -
    sigma**2``.  The data's mean is not used: a CTF passes it at minus the
    amplitude contrast (measured in ``mtdlearn.em._ctf_start``, where the
    EM's white-noise phase starts from it, as does
    :class:`~mtdlearn.AutocorrelationEstimator` through CTFs).

    Parameters
    ----------
    density : float, default=0.03
        The start's density ``gamma``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis, make_measurement, make_target
    >>> from mtdlearn.initializers import EnergyStart
    >>> from mtdlearn.imaging.shifts import shift_probabilities_to_density
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 100,
    ...                             snr=5, random_state=0)
    >>> state = EnergyStart().initialize([X], basis, None, np.random.default_rng(0))
    >>> round(float(shift_probabilities_to_density(state.shift_probabilities)), 6)
    0.03
    """

    def __init__(self, density=DEFAULT_DENSITY):
        super().__init__(density)

    def initialize(self, measurements, basis, noise_variance, random_state):
        """The random start, rescaled to the data's signal energy at ``density``.

        Parameters
        ----------
        measurements : PatchData or list of ndarray of shape (N1, N2)
            The estimator's patch source, or validated 2-D measurements; only read.
        basis : basis object
            The estimator's basis.
        noise_variance : float or None
            The estimator's fixed ``sigma**2``, or ``None`` to estimate it.
        random_state : numpy.random.Generator
            Draws the random image.

        Returns
        -------
        state : InitialState
            The image scaled so that ``density ||F||**2 / L**2`` is the data's
            mean square minus ``sigma**2`` (the unscaled start when that is
            not positive), at the shift distribution of ``density``.
        """
        state = super().initialize(measurements, basis, noise_variance, random_state)
        L = basis.image_size
        excess = float(_data_statistics(measurements, L)[1]) - state.noise_variance
        energy = float(np.sum(basis.evaluate(state.coef) ** 2))
        if not (excess > 0 and energy > 0):
            return state
        scale = np.sqrt(excess * L * L / (self.density * energy))
        return InitialState(state.coef * scale, state.shift_probabilities,
                            state.noise_variance)


class FixedInitializer(_ParamsMixin):
    """Start from given coefficients (and optionally shift probabilities).

    Parameters
    ----------
    coef : array-like of shape (n_functions,) or (n_components, n_functions)
        Initial coefficients; one row per component starts a mixture
        (``n_components > 1``) with equal abundances.
    shift_probabilities : array-like of shape (2L, 2L), default=None
        Initial ``rho``; ``None`` derives it from a density matched to the
        data's signal energy (``gamma = L**2 (mean_square - sigma**2) / ||F||**2``,
        or 0.03 when that is not in range).
    noise_variance : float, default=None
        Initial ``sigma**2`` when the estimator estimates it; ``None`` uses the
        robust data estimate.  Ignored when the estimator's noise variance is fixed.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import ApproxEMEstimator
    >>> from mtdlearn.initializers import FixedInitializer
    >>> init = FixedInitializer(np.ones(10))
    >>> est = ApproxEMEstimator(5, initializer=init)
    """

    _param_names = ("coef", "shift_probabilities", "noise_variance")

    def __init__(self, coef, shift_probabilities=None, noise_variance=None):
        self.coef = coef
        self.shift_probabilities = shift_probabilities
        self.noise_variance = noise_variance

    def initialize(self, measurements, basis, noise_variance, random_state):
        """Return the given state, completed from the data where not given.

        Parameters
        ----------
        measurements : PatchData or list of ndarray of shape (N1, N2)
            The estimator's patch source, or validated 2-D measurements;
            only read.
        basis : basis object
            The estimator's basis; ``coef`` must have ``basis.n_functions``
            entries.
        noise_variance : float or None
            The estimator's fixed ``sigma**2`` (it takes precedence), or
            ``None`` when it is estimated.
        random_state : numpy.random.Generator
            Unused (nothing is random); part of the protocol.

        Returns
        -------
        state : InitialState
            A copy of ``coef``, the given or derived ``shift_probabilities``
            and ``noise_variance``.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis, make_measurement, make_target
        >>> from mtdlearn.initializers import FixedInitializer
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> coef = make_target(basis, random_state=0)
        >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
        >>> state = FixedInitializer(coef).initialize([X], basis, 0.5, None)
        >>> np.array_equal(state.coef, coef), state.noise_variance
        (True, 0.5)
        """
        _check_initialize_args(measurements, basis, noise_variance, random_state,
                               random=False)
        L = basis.image_size
        coef = check_array_float(self.coef, "coef").copy()
        if coef.ndim not in (1, 2) or coef.shape[-1] != basis.n_functions or not len(coef):
            raise ValueError(f"coef must have shape (n_functions={basis.n_functions},) or "
                             f"(n_components, {basis.n_functions}), got {coef.shape}")
        if noise_variance is not None:
            sigma2 = noise_variance
        elif self.noise_variance is not None:
            sigma2 = check_real(self.noise_variance, "noise_variance", minimum=0.0,
                                strict=True)
        else:
            sigma2 = None
        rho = None
        if self.shift_probabilities is not None:
            rho = check_shift_probabilities(self.shift_probabilities, L)
        if sigma2 is not None and rho is not None:
            return InitialState(coef, rho, float(sigma2))  # nothing to read from the data
        a1, m2, sigma2_hat = _data_statistics(measurements, L)
        if sigma2 is None:
            sigma2 = sigma2_hat
        if rho is None:
            # a mixture's: the mean of its components' (equal abundances)
            energy = float(np.sum(basis.evaluate(coef) ** 2)) / (len(coef) if coef.ndim == 2
                                                                 else 1)
            gamma = (m2 - sigma2) * L * L / energy if energy > 0 else -1.0
            if not (0 < gamma < max_density(L)):
                gamma = DEFAULT_DENSITY
            rho = density_to_shift_probabilities(gamma, L)
        if not sigma2 > 0:
            sigma2 = max(m2 - a1 * a1, np.finfo(float).tiny)
        return InitialState(coef, rho, float(sigma2))
