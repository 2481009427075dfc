"""Autocorrelations of measurements, and the shifts of the third moment.

Autocorrelation analysis (the baseline of the paper, and the initializer of
the EM; :class:`~mtdlearn.AutocorrelationEstimator`) matches the first
three autocorrelations of the measurement, computed here, with those
predicted by the model (:mod:`mtdlearn.autocorrelation.model_moments`),
averaged over the unknown rotations and positions.

.. rubric:: Notes

Shifts are *forward* shifts ``s = (s_row, s_col)`` in ``[0, L)**2``;
:func:`third_order_shifts` gives those whose pairs the third moment keeps
(all of them by default), for the measurement and the model alike.

Measurement (:func:`measurement_autocorrelations`)::

    a1          = (1/P) sum_x M[x]
    a2[s]       = (1/P) sum_x M[x] M[x+s]
    a3[s1, s2]  = (1/P) sum_x M[x] M[x+s1] M[x+s2]

where the sums run over the ``x`` for which every pixel of the product lies
in the measurement, and ``P`` is the total number of pixels (the sums and
``P`` are both summed over a stack of measurements).  ``a2`` has shape
``(L, L)`` and ``a3`` has shape ``(L, L, L, L)``, indexed
``a3[s1_row, s1_col, s2_row, s2_col]``.

The least-squares cost, its analytic gradient and an L-BFGS-B fit are in
:mod:`mtdlearn.autocorrelation.fit`.
"""

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._parallel import blas_single_thread, check_n_jobs, ordered_map, tree_reduce
from .._validation import check_array_float, check_int, check_real
from ..data.measurements import check_measurements
from ..data.patches import chunk_rows, resolve_working_memory
from ..likelihood.formed import distinct_formations

__all__ = ["measurement_autocorrelations", "formed_autocorrelations", "third_order_shifts"]

# Bytes of the per-tile buffers of the measurement pass: two (L*L, tile)
# float64 buffers, 2 * 25 * 8 * 4096 B = 1.6 MB for L = 5 (4096-pixel
# tiles), about a core's share of L2 + L3 on the two-core test machine.  Much
# larger tiles were measured to be slower (memory bound), smaller ones pay
# more Python overhead per pixel.
_TILE_BYTES = (2 * 25 + 1) * 8 * 4096


# ---------------------------------------------------------------------------
# the shifts of the third moment (the measurement's and the model's)
# ---------------------------------------------------------------------------
#: ``shift_radius="auto"`` keeps the full third moment up to this image size.
_AUTO_FULL_MAX_SIZE = 11


def _auto_shift_radius(L):
    """The radius ``"auto"`` selects: ``None`` (all shifts) up to L = 11, else L / 2."""
    return None if L <= _AUTO_FULL_MAX_SIZE else L / 2


def _check_shift_radius(shift_radius, L):
    """``None`` (all shifts), ``"auto"`` (resolved) or a real radius ``>= 0``."""
    if shift_radius is None:
        return None
    if isinstance(shift_radius, str):
        if shift_radius != "auto":
            raise ValueError(f"shift_radius must be None, 'auto' or a real number >= 0, "
                             f"got {shift_radius!r}")
        return _auto_shift_radius(L)
    return check_real(shift_radius, "shift_radius", minimum=0.0)


@functools.lru_cache(maxsize=16)
def _window_index(L):
    """Index ``idx[x, s]`` (``L*L x L*L``) of pixel ``x + s`` in an ``L x L``
    image flattened row-major, or ``L*L`` (a zero slot) when ``x + s`` leaves
    the image."""
    xr, xc = np.divmod(np.arange(L * L), L)
    sr, sc = np.divmod(np.arange(L * L), L)
    rr = xr[:, None] + sr[None, :]
    cc = xc[:, None] + sc[None, :]
    inside = (rr < L) & (cc < L)
    idx = np.where(inside, rr * L + cc, L * L).astype(np.intp)
    idx.setflags(write=False)
    return idx


@functools.lru_cache(maxsize=32)
def _shift_subset(L, shift_radius):
    """The kept shifts: ``(idx, starts, window)``, or ``None`` for all shifts.

    ``idx`` are their flat indices (row-major in ``[0, L)**2``), ``starts``
    the start of each row shift's run of them, and ``window`` the columns
    ``idx`` of :func:`_window_index` (the gather of their windows)."""
    if shift_radius is None:
        return None
    rows, cols = np.divmod(np.arange(L * L), L)
    idx = np.flatnonzero(rows * rows + cols * cols <= shift_radius * shift_radius)
    starts = np.searchsorted(rows[idx], np.arange(rows[idx[-1]] + 2))
    window = np.ascontiguousarray(_window_index(L)[:, idx])
    for a in (idx, window):
        a.setflags(write=False)
    return idx, tuple(int(i) for i in starts), window


def third_order_shifts(image_size, shift_radius=None):
    """Forward shifts whose pairs the third moment keeps.

    The full third moment ``a3[s1, s2]`` runs over every pair of forward
    shifts in ``[0, L)**2`` (``L**4`` numbers, ``L**6`` flops per pixel of
    the model and ``L**4 / 2`` multiply-adds per pixel of the measurement).
    With a radius ``r``, only the shifts ``s`` with
    ``s_row**2 + s_col**2 <= r**2`` are kept, and ``a3`` holds every pair of
    them: a quarter disk of about ``pi r**2 / 4`` shifts, so the cost falls
    as the square of their number (:doc:`/design`, "Autocorrelation analysis").
    Shift ``(0, 0)`` is always kept.

    Parameters
    ----------
    image_size : int
        ``L``.
    shift_radius : float, "auto" or None, default=None
        ``None`` keeps all ``L**2`` shifts; a real ``r >= 0`` the quarter
        disk of radius ``r``; ``"auto"`` is ``None`` for ``L <= 11`` and
        ``L / 2`` beyond.

    Returns
    -------
    shifts : ndarray of shape (n_shifts, 2)
        The kept shifts ``(s_row, s_col)``, row-major; the rows and columns
        of a subset ``a3`` follow this order.

    Examples
    --------
    >>> from mtdlearn.autocorrelation.moments import third_order_shifts
    >>> third_order_shifts(5, shift_radius=1.5).tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1]]
    >>> len(third_order_shifts(5)), len(third_order_shifts(21, shift_radius="auto"))
    (25, 98)
    """
    L = check_int(image_size, "image_size", minimum=1)
    sub = _shift_subset(L, _check_shift_radius(shift_radius, L))
    flat = np.arange(L * L) if sub is None else sub[0]
    return np.stack(np.divmod(flat, L), axis=1)


def _check_measured(measured, L, sub=None, name="measured"):
    """``measured = (a1, a2, a3)`` with shapes (), (L, L), (L, L, L, L) (or
    ``(n, n)`` for a subset of ``n`` shifts)."""
    if not isinstance(measured, (tuple, list)) or len(measured) != 3:
        raise TypeError(
            f"{name} must be a tuple (a1, a2, a3) as returned by "
            f"measurement_autocorrelations, got {type(measured).__name__}"
        )
    a1 = check_array_float(measured[0], f"{name}[0] (a1)", ndim=0)
    a2 = check_array_float(measured[1], f"{name}[1] (a2)")
    a3 = check_array_float(measured[2], f"{name}[2] (a3)")
    if a2.shape != (L, L):
        raise ValueError(f"{name}[1] (a2) must have shape {(L, L)}, got {a2.shape}")
    shape = (L, L, L, L) if sub is None else (len(sub[0]),) * 2
    if a3.shape != shape:
        raise ValueError(f"{name}[2] (a3) must have shape {shape}, got {a3.shape}"
                         + ("" if sub is None else " (the third_order_shifts of shift_radius)"))
    return float(a1), a2, a3


# ---------------------------------------------------------------------------
# autocorrelations of a measurement
# ---------------------------------------------------------------------------
def _band_sums(M, r_start, r_stop, L, tile_rows, tile_cols, sub=None):
    """Raw sums over the output pixels ``x`` with rows in ``[r_start, r_stop)``.

    Works tile by tile.  A tile of ``h x w`` output pixels reads the
    ``(h + L - 1) x (w + L - 1)`` block below-right of it into a buffer that
    is zero beyond the measurement (zero padding on the bottom/right), forms
    the window matrix ``W`` (``L*L x h*w``: column ``x`` holds ``M[x + s]``
    for the ``L*L`` shifts ``s``, row-major in ``s``), and accumulates
    ``W m`` and ``(W * m) W^T`` with ``m = M[x]``.  Out-of-bounds pixels are
    zero, so a product touching them contributes nothing: the sums run
    exactly over the valid ``x``.

    ``(W * m) W^T`` is symmetric; only its upper block triangle (blocks
    ``(d1, d2)`` of row shifts with ``d1 <= d2``) is computed, with one GEMM
    per row shift ``d1`` (``L*(L+1)/2`` of the ``L**2`` blocks).  The caller
    fills the lower triangle.

    With a subset of shifts ``sub = (idx, starts)`` (:func:`_shift_subset`),
    the kept rows of ``W`` are copied into ``Ws`` (a run of columns per row
    shift) and the third sums are the upper block triangle of
    ``(Ws * m) Ws^T``, one GEMM per row shift: ``n**2 / 2`` multiply-adds per
    pixel for ``n`` kept shifts instead of ``L**4 / 2``.
    """
    N1, N2 = M.shape
    LL = L * L
    n3 = LL if sub is None else len(sub[0])
    n_max = tile_rows * tile_cols
    Z = np.empty((tile_rows + L - 1, tile_cols + L - 1), dtype=np.float64)
    Wbuf = np.empty((LL, n_max), dtype=np.float64)
    Ybuf = np.empty((n3, n_max), dtype=np.float64)
    if sub is not None:
        Wsbuf = np.empty((n3, n_max), dtype=np.float64)
        starts = sub[1]
        runs = [(starts[d], starts[d + 1], d * L) for d in range(len(starts) - 1)]
    s1 = 0.0
    s2 = np.zeros(LL, dtype=np.float64)
    s3 = np.zeros((n3, n3), dtype=np.float64)
    for r0 in range(r_start, r_stop, tile_rows):
        r1 = min(r0 + tile_rows, r_stop)
        h = r1 - r0
        rh = min(r1 + L - 1, N1)  # last row read (exclusive)
        for c0 in range(0, N2, tile_cols):
            c1 = min(c0 + tile_cols, N2)
            w = c1 - c0
            ch = min(c1 + L - 1, N2)
            Zt = Z[: h + L - 1, : w + L - 1]
            Zt[: rh - r0, : ch - c0] = M[r0:rh, c0:ch]
            Zt[rh - r0 :, :] = 0.0
            Zt[:, ch - c0 :] = 0.0
            n = h * w
            W = Wbuf[:, :n]
            Y = Ybuf[:, :n]
            # W[(di, dj), (i, j)] = Zt[di + i, dj + j]: one strided copy
            W.reshape(L, L, h, w)[...] = sliding_window_view(Zt, (h, w))
            m = W[0]  # shift (0, 0): M[x] itself
            if sub is None:
                np.multiply(W, m, out=Y)
                for d in range(L):  # upper block triangle, one GEMM per row shift
                    s3[d * L : (d + 1) * L, d * L :] += Y[d * L : (d + 1) * L] @ W[d * L :].T
            else:
                Ws = Wsbuf[:, :n]
                for a, b, f in runs:  # row shift d keeps the columns [0, b - a)
                    Ws[a:b] = W[f : f + b - a]
                np.multiply(Ws, m, out=Y)
                for a, b, _ in runs:
                    s3[a:b, a:] += Y[a:b] @ Ws[a:].T
            s2 += W @ m
            s1 += float(m.sum())
    return s1, s2, s3


def _symmetrize_blocks(U, L, sub=None):
    """Full symmetric matrix from its upper block triangle (see _band_sums)."""
    starts = range(0, L * L + 1, L) if sub is None else sub[1]
    block = np.repeat(np.arange(len(starts) - 1), np.diff(starts))  # row shift of each
    upper = block[:, None] < block[None, :]
    out = np.where(upper, U, 0.0)
    out = out + out.T
    for a, b in zip(starts[:-1], starts[1:]):  # diagonal blocks: symmetric up to rounding
        B = U[a:b, a:b]
        out[a:b, a:b] = 0.5 * (B + B.T)
    return out


def measurement_autocorrelations(X, image_size, working_memory=None, n_jobs=None, *,
                                 shift_radius=None):
    """First three autocorrelations of a measurement, in one chunked pass.

    ``a1 = mean(M)``, ``a2[s] = (1/P) sum_x M[x] M[x+s]`` and
    ``a3[s1, s2] = (1/P) sum_x M[x] M[x+s1] M[x+s2]`` for forward shifts
    ``s, s1, s2`` in ``[0, L)**2``.  The sums run over the ``x`` for which
    every pixel of the product lies inside the measurement; ``P`` is the
    total number of pixels.  For a stack or a sequence of measurements the
    sums and the pixel counts are added over the measurements.

    The measurement is read once, tile by tile (row blocks, split along the
    columns when a row is long).  For every tile the ``L*L`` shifted copies
    form a window matrix ``W`` and the sums are a GEMV, ``W m``, and the
    symmetric ``(W * m) W^T``, of which the upper block triangle is formed
    with ``L`` GEMMs (one per row shift); there is no Python loop over shifts
    or shift pairs.  Tiles are zero-padded by ``L - 1`` on the bottom and right, so
    products that leave the measurement contribute nothing.  Tiles are
    processed by ``n_jobs`` threads (bands of rows fixed by the tile size, BLAS
    single-threaded meanwhile) and the partial sums are added in a fixed
    order, so the result depends neither on timing nor on ``n_jobs``.

    Parameters
    ----------
    X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence of 2-D arrays
        One measurement, a stack, or a sequence (sizes may differ; ``.npy``
        paths are opened memory-mapped).  Any real dtype; the computation is
        float64.  The input is never copied as a whole.
    image_size : int
        ``L``; the shifts run over ``[0, L)**2``.
    working_memory : float, default=None
        Upper bound, in MiB, on the temporary buffers of each thread
        (the scikit-learn convention); ``None`` uses
        ``sklearn.get_config()["working_memory"]``.  Tiles are in any case
        capped at a cache-friendly size (about 1.6 MB of buffers per
        thread, 4096 pixels for ``L = 5``), so the default pass uses a few
        MB beyond the measurement.  Smaller values give smaller tiles; the
        result does not depend on the tile size (up to rounding).
    n_jobs : int, default=None
        Number of threads (``None`` is 1, ``-1`` all CPUs).  The result is
        the same, to the last bit, for any number of threads: the bands of
        rows and the order in which their sums are added depend only on the
        tile size.
    shift_radius : float, "auto" or None, default=None
        Compute ``a3`` on the pairs of the shifts of
        :func:`third_order_shifts` only (those within the radius); ``None``
        computes all of them.  Its entries equal those of the full ``a3``
        (up to rounding); the pass costs about ``(n_shifts / L**2)**2`` of
        the full one.

    Returns
    -------
    a1 : float
        Mean of the measurement.
    a2 : ndarray of shape (L, L)
        ``a2[s_row, s_col]``.
    a3 : ndarray of shape (L, L, L, L) or (n_shifts, n_shifts)
        ``a3[s1_row, s1_col, s2_row, s2_col]``; symmetric under
        ``s1 <-> s2``.  With a ``shift_radius``, ``a3[i, j]`` at the shifts
        ``third_order_shifts(L, shift_radius)[i]`` and ``[j]``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.autocorrelation.moments import measurement_autocorrelations
    >>> M = np.zeros((20, 20))
    >>> M[3, 4], M[3, 5] = 1.0, 2.0
    >>> a1, a2, a3 = measurement_autocorrelations(M, 3)
    >>> float(a1 * M.size), float(a2[0, 1] * M.size), float(a3[0, 0, 0, 1] * M.size)
    (3.0, 2.0, 2.0)
    """
    L = check_int(image_size, "image_size", minimum=1)
    working_memory = resolve_working_memory(working_memory)
    check_n_jobs(n_jobs)
    sub = _shift_subset(L, _check_shift_radius(shift_radius, L))
    measurements = check_measurements(X, L)
    tasks, total_pixels, per_measurement = _autocorrelation_tasks(measurements, L,
                                                                  working_memory, sub)
    # The GEMMs are small (L*L x tile x L*L): BLAS threads only add overhead
    # (and degrade badly on a busy machine); parallelism is over bands.
    sums = list(ordered_map(_band_sums, tasks, n_jobs))
    # each measurement's bands in order, then the measurements along the
    # fixed tree (as on a Dask cluster, where a worker sums one micrograph)
    edges = np.concatenate([[0], np.cumsum(per_measurement)])
    totals = [_add_bands(sums[a:b], L, sub) for a, b in zip(edges[:-1], edges[1:])]
    return _finish_band_sums(tree_reduce(totals, _add_sums), total_pixels, L, sub)


def _autocorrelation_tasks(measurements, L, working_memory, sub=None):
    """The bands of rows of every measurement (fixed by the tile size), the pixel
    count and the number of bands of each measurement."""
    LL = L * L
    # pixels per tile: 2 (L*L)-row buffers plus the padded input block (with a
    # subset of n shifts: the L*L-row window and two n-row buffers)
    bytes_per_pixel = (2 * LL + 1) * 8 if sub is None else (LL + 2 * len(sub[0]) + 1) * 8
    tile_pixels = chunk_rows(bytes_per_pixel, _TILE_BYTES // bytes_per_pixel, working_memory)

    tasks = []
    per_measurement = []   # number of tasks (bands) of each measurement
    total_pixels = 0
    for M in measurements:
        N1, N2 = M.shape
        total_pixels += N1 * N2
        # Tiles span whole rows when at least 8 rows fit, else 8 rows (fewer
        # for tiny budgets) by part of the width: the padded block read for a
        # tile then has few more rows than the tile itself.
        if tile_pixels >= 8 * N2:
            tile_rows, tile_cols = tile_pixels // N2, N2
        else:
            tile_rows = max(1, min(8, tile_pixels // 512))
            tile_cols = max(1, min(N2, tile_pixels // tile_rows))
        # contiguous bands of rows, fixed by the tile size and never by
        # n_jobs, so that the summation order (and so every bit of the
        # result) is the same for any number of threads
        band = max(tile_rows, -(-N1 // 64 // tile_rows) * tile_rows)
        for r0 in range(0, N1, band):
            tasks.append((M, r0, min(N1, r0 + band), L, tile_rows, tile_cols, sub))
        per_measurement.append(len(tasks) - sum(per_measurement))
    return tasks, total_pixels, per_measurement


def _add_bands(band_sums, L, sub=None):
    """Add bands' raw sums ``(s1, s2, s3)`` in the given (fixed) order."""
    LL = L * L
    n3 = LL if sub is None else len(sub[0])
    s1 = 0.0
    s2 = np.zeros(LL, dtype=np.float64)
    s3 = np.zeros((n3, n3), dtype=np.float64)
    for r1, r2, r3 in band_sums:  # fixed order: deterministic
        s1 += r1
        s2 += r2
        s3 += r3
    return s1, s2, s3


def _add_sums(a, b):
    """Two measurements' raw sums added (a node of the reduction tree)."""
    return tuple(x + y for x, y in zip(a, b))


def _finish_band_sums(sums, total_pixels, L, sub=None):
    """The autocorrelations from the data's raw sums: symmetrize, divide by the pixels."""
    s1, s2, s3 = sums
    s3 = _symmetrize_blocks(s3, L, sub)
    P = float(total_pixels)
    a3 = s3 / P
    return s1 / P, (s2 / P).reshape(L, L), (a3.reshape(L, L, L, L) if sub is None else a3)


def _block_band_sums(block, image_size, working_memory=None, n_jobs=None, shift_radius=None):
    """One micrograph's raw sums (its bands in order) and pixel count (a Dask task)."""
    sub = _shift_subset(image_size, _check_shift_radius(shift_radius, image_size))
    tasks, pixels, _ = _autocorrelation_tasks([block], image_size,
                                              resolve_working_memory(working_memory), sub)
    with blas_single_thread():
        return _add_bands([_band_sums(*t) for t in tasks], image_size, sub), pixels


def _pair_block_sums(a, b):
    """Two micrographs' ``(raw sums, pixels)`` added (on the workers)."""
    return _add_sums(a[0], b[0]), a[1] + b[1]


def _combine_blocks(parts, image_size, working_memory=None, n_jobs=None, shift_radius=None):
    """The micrographs' ``(raw sums, pixels)`` reduced along the fixed tree:
    the in-memory result, bit for bit."""
    sub = _shift_subset(image_size, _check_shift_radius(shift_radius, image_size))
    sums, pixels = tree_reduce(parts, _pair_block_sums)
    return _finish_band_sums(sums, pixels, image_size, sub)


#: How a distributed patch source computes it: per micrograph, then paired
#: along the fixed tree on the workers (:meth:`mtdlearn.data._dask.DaskPatchData.memoize`).
measurement_autocorrelations.blockwise = (_block_band_sums, _combine_blocks, _pair_block_sums)


def formed_autocorrelations(X, image_size, formations, working_memory=None, n_jobs=None, *,
                            shift_radius=None):
    """The autocorrelations of measurements each seen through its own image formation.

    Each measurement is whitened by its formation's noise spectrum
    (:meth:`~mtdlearn.imaging.formation.MicroscopeFormation.whiten`; as it
    is when its noise is white).  The measurements of one formation (a
    defocus group: equal CTF and spectrum) are pooled
    (:func:`measurement_autocorrelations`), and the mean over the distinct
    formations, in the order of their first measurement, is returned: each
    formation weighs the same whatever its measurements' number and size,
    as in the model moments of the sequence of distinct formations
    (:func:`~mtdlearn.autocorrelation.model_moments.model_autocorrelations`),
    whose cost grows with their number.

    Parameters
    ----------
    X : ndarray of shape (N1, N2) or sequence of them
        The measurements (never modified: whitening makes new arrays).
    image_size : int
        ``L``.
    formations : sequence of MicroscopeFormation
        One per measurement, in order
        (:func:`~mtdlearn.likelihood.formed.measurement_formations`).
    working_memory : float, default=None
        Budget in MiB of each measurement's pass.
    n_jobs : int, default=None
        Threads of each measurement's pass; results do not depend on it.
    shift_radius : float or None, default=None
        The third moment's shifts
        (:func:`measurement_autocorrelations`'s).

    Returns
    -------
    a1 : float
        The mean over the distinct formations of their measurements' pooled
        mean.
    a2 : ndarray of shape (L, L)
        The same mean of their second autocorrelations.
    a3 : ndarray
        The same mean of their third autocorrelations, shaped as
        :func:`measurement_autocorrelations`'s.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.autocorrelation.moments import formed_autocorrelations
    >>> from mtdlearn.imaging.formation import MicroscopeFormation
    >>> rng = np.random.default_rng(0)
    >>> X = [1.0 + rng.standard_normal((8, 8)), rng.standard_normal((4, 4))]
    >>> a1, a2, a3 = formed_autocorrelations(X, 3, [MicroscopeFormation()] * 2)
    >>> bool(np.isclose(a1, np.concatenate([x.ravel() for x in X]).mean()))   # one formation
    True
    """
    L = check_int(image_size, "image_size", minimum=1)
    measurements = check_measurements(X, L)
    formations = list(formations)
    if len(formations) != len(measurements):
        raise ValueError(f"formations must have one entry per measurement "
                         f"({len(measurements)}); got {len(formations)}")
    distinct = distinct_formations(formations)
    per = [measurement_autocorrelations([formations[i].whiten(measurements[i]) for i in group],
                                        L, working_memory, n_jobs, shift_radius=shift_radius)
           for group in distinct.values()]
    return (float(np.mean([p[0] for p in per])),
            np.mean([p[1] for p in per], axis=0), np.mean([p[2] for p in per], axis=0))

