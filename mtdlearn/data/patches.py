"""Patch sources and chunk sizing.

:class:`PatchData` serves the ``L x L`` patches of a list of measurements
(validated by :func:`~mtdlearn.data.measurements.check_measurements` and
tiled by :func:`~mtdlearn.data.measurements.tile`) chunk by chunk, arrays
and memory-mapped files alike, so the ``N_d x L**2`` array of all patches
is never built; :func:`as_patch_source` makes one from measurements in any
accepted form, and :func:`chunk_rows` sizes the chunks.

``working_memory`` has one meaning everywhere in mtdlearn: the budget, in
MiB, of the temporary buffers of one worker (scikit-learn's convention);
``None`` takes ``sklearn.get_config()["working_memory"]`` (1024 MiB unless
configured).  Chunks are in any case capped at a cache-friendly size, so
the default budget rarely binds; results do not depend on it beyond
rounding.
"""

import numpy as np
from sklearn import get_config

from .._validation import check_real
from .measurements import check_measurements, patch_grid_shape, tile

__all__ = ["PatchData", "as_patch_source", "chunk_rows", "resolve_working_memory"]


def resolve_working_memory(working_memory, name="working_memory"):
    """The budget in MiB: ``working_memory``, or scikit-learn's configured one if ``None``.

    Parameters
    ----------
    working_memory : float or None
        A budget in MiB (``> 0``), or ``None``.
    name : str, default="working_memory"
        Name used in error messages.

    Returns
    -------
    working_memory : float
        The budget in MiB.

    Examples
    --------
    >>> from mtdlearn.data.patches import resolve_working_memory
    >>> resolve_working_memory(64)
    64.0
    """
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    return check_real(working_memory, name, minimum=0.0, strict=True)


def chunk_rows(row_bytes, max_rows, working_memory=None, unit=None):
    """Number of rows of ``row_bytes`` bytes that fit a memory budget.

    ``min(max_rows, budget // row_bytes)``, as scikit-learn's own chunked
    computations size their chunks (its ``get_chunk_n_rows``, which is
    private API).  When not even one row fits, this raises if ``unit`` names
    what a row is, and returns 1 otherwise.

    Parameters
    ----------
    row_bytes : int
        Bytes of temporary buffers per row.
    max_rows : int
        Cap on the rows (a cache-friendly chunk), ``>= 1``.
    working_memory : float, default=None
        Budget in MiB; ``None`` takes scikit-learn's configured one.
    unit : str, default=None
        What a row is (e.g. ``"patch"``), for the error message.

    Returns
    -------
    rows : int
        Rows per chunk, ``>= 1``.

    Raises
    ------
    ValueError
        If ``unit`` is given and the budget cannot hold one row.

    Examples
    --------
    >>> from mtdlearn.data.patches import chunk_rows
    >>> chunk_rows(2**20, 100, working_memory=8)
    8
    """
    wm = resolve_working_memory(working_memory)
    if wm * 2**20 < row_bytes:
        if unit is not None:
            raise ValueError(f"working_memory={wm} MiB is too small for one {unit} "
                             f"({row_bytes} bytes needed per {unit})")
        return 1
    return max(1, min(int(max_rows), int(wm * 2**20 // row_bytes)))


class PatchData:
    """Read-only, chunked access to the patches of a list of measurements.

    Patches are numbered row-major within each measurement, measurements in
    order.  ``get(start, stop)`` copies only the requested patches, so the
    full ``N_d x L**2`` array is never built.  Quantities that depend only
    on the data (moments, noise estimates) are computed once per fit
    through :meth:`memoize` and shared by every start.

    Parameters
    ----------
    measurements : list of ndarray of shape (N1, N2)
        Validated 2-D measurements (memory-mapped arrays are fine); kept by
        reference, never modified.
    image_size : int
        Patch side ``L``.

    Attributes
    ----------
    measurements : list of ndarray of shape (N1, N2)
        The measurements, as given.
    image_size : int
        Patch side ``L``.
    grid_shapes : list of (int, int)
        Patch rows and columns of each measurement.
    offsets : ndarray of shape (n_measurements + 1,)
        Index of the first patch of each measurement, then ``n_patches``.
    n_patches : int
        Total number of patches ``N_d``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.data.patches import PatchData
    >>> data = PatchData([np.arange(36.0).reshape(6, 6)], 3)
    >>> data.n_patches
    4
    >>> data.get(1, 2)
    array([[ 3.,  4.,  5.,  9., 10., 11., 15., 16., 17.]])
    """

    #: Whether the measurements live elsewhere (on a Dask cluster): the
    #: E-step and the per-data quantities then run block by block through
    #: ``map_blocks`` (:mod:`mtdlearn.data._dask`).
    distributed = False

    def __init__(self, measurements, image_size):
        self.measurements = measurements
        self.image_size = L = image_size
        grids = [patch_grid_shape(M.shape, L) for M in measurements]
        self.grid_shapes = grids
        counts = np.array([r * c for r, c in grids], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.n_patches = int(self.offsets[-1])
        self._memo = {}

    def with_image_size(self, image_size):
        """The same measurements seen with another patch side (sharing the memo).

        Parameters
        ----------
        image_size : int
            The new patch side.

        Returns
        -------
        data : PatchData
            ``self`` if the side is unchanged, else a new view.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.data.patches import PatchData
        >>> PatchData([np.zeros((12, 12))], 3).with_image_size(5).n_patches
        4
        """
        if image_size == self.image_size:
            return self
        view = PatchData(self.measurements, image_size)
        view._memo = self._memo
        return view

    def memoize(self, func, *args, n_jobs=None, **kwargs):
        """Compute ``func(self.measurements, *args, **kwargs)`` once per data set.

        Later calls with the same function and arguments return the stored
        result.  Use it only for deterministic functions of the data.

        Parameters
        ----------
        func : callable
            Called as ``func(measurements, *args, **kwargs)``.
        *args : tuple
            Hashable arguments; part of the key.
        n_jobs : int, default=None
            Passed on to ``func`` when given, but not part of the key: the
            functions of mtdlearn give the same result for any ``n_jobs``.
        **kwargs : dict
            Hashable keyword arguments; part of the key.

        Returns
        -------
        value : object
            The (stored) result.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.data.patches import PatchData
        >>> data = PatchData([np.ones((6, 6))], 3)
        >>> calls = []
        >>> def total(measurements):
        ...     calls.append(1)
        ...     return sum(float(M.sum()) for M in measurements)
        >>> data.memoize(total), data.memoize(total), len(calls)
        (36.0, 36.0, 1)
        """
        key = (func, args, tuple(sorted(kwargs.items())))
        if key not in self._memo:
            extra = {} if n_jobs is None else {"n_jobs": n_jobs}
            self._memo[key] = func(self.measurements, *args, **kwargs, **extra)
        return self._memo[key]

    def get(self, start, stop, dtype=np.float64, out=None):
        """Copy patches ``start..stop-1`` into a ``(stop - start, L*L)`` array.

        Parameters
        ----------
        start : int
            Index of the first patch.
        stop : int
            One past the index of the last patch.
        dtype : dtype, default=numpy.float64
            Type of the new array; ignored when ``out`` is given.
        out : ndarray of shape (>= stop - start, L*L), default=None
            Buffer to write into instead of a new array.

        Returns
        -------
        patches : ndarray of shape (stop - start, L*L)
            The flattened patches (row-major pixels), ``out`` if given.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.data.patches import PatchData
        >>> data = PatchData([np.zeros((10, 10)), np.ones((5, 5))], 5)
        >>> data.get(3, 5).sum(axis=1)
        array([ 0., 25.])
        """
        L = self.image_size
        if out is None:
            out = np.empty((stop - start, L * L), dtype=dtype)
        pos = start
        while pos < stop:
            i = int(np.searchsorted(self.offsets, pos, side="right") - 1)
            nr, nc = self.grid_shapes[i]
            local0 = pos - self.offsets[i]
            local1 = min(stop, self.offsets[i + 1]) - self.offsets[i]
            r0, r1 = local0 // nc, -(-local1 // nc)
            block = np.asarray(self.measurements[i][r0 * L:r1 * L, :nc * L])
            tiles = tile(block, L).reshape(-1, L * L)
            n = local1 - local0
            out[pos - start:pos - start + n] = tiles[local0 - r0 * nc:local1 - r0 * nc]
            pos += n
        return out

    def locate(self, index):
        """Locate patches: their measurement and top-left pixel.

        Parameters
        ----------
        index : int or array-like of int
            Global patch indices in ``[0, n_patches)``.

        Returns
        -------
        measurement : ndarray of int
            Index of the measurement holding each patch.
        row : ndarray of int
            Row of each patch's top-left pixel in its measurement.
        col : ndarray of int
            Column of each patch's top-left pixel in its measurement.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.data.patches import PatchData
        >>> data = PatchData([np.zeros((6, 6))], 3)
        >>> data.locate([1, 3])
        (array([0, 0]), array([0, 3]), array([3, 3]))
        """
        index = np.asarray(index, dtype=np.int64)
        meas = np.searchsorted(self.offsets, index, side="right") - 1
        local = index - self.offsets[meas]
        nc = np.array([c for _, c in self.grid_shapes], dtype=np.int64)[meas]
        L = self.image_size
        return meas, (local // nc) * L, (local % nc) * L


def as_patch_source(X, image_size, name="X"):
    """Validate measurements into a :class:`PatchData` (a given one is reused).

    Parameters
    ----------
    X : PatchData, array-like or sequence
        A patch source, or measurements in any form that
        :meth:`mtdlearn.BaseMTDEstimator.fit` accepts.
    image_size : int
        Patch side ``L``.
    name : str, default="X"
        Name used in error messages.

    Returns
    -------
    data : PatchData
        The patches of ``X`` with side ``image_size``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.data.patches import as_patch_source
    >>> as_patch_source(np.random.default_rng(0).normal(size=(2, 10, 10)), 5).n_patches
    8
    """
    if isinstance(X, PatchData):
        for i, M in enumerate(X.measurements):
            if min(M.shape) < image_size:
                raise ValueError(f"{name}[{i}] of shape {M.shape} is smaller than one "
                                 f"{image_size}x{image_size} patch")
        return X.with_image_size(image_size)
    return PatchData(check_measurements(X, image_size, name=name), image_size)
