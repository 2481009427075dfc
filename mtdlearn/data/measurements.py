"""Measurements: validation and tiling into patches.

:func:`check_measurements` validates measurements (arrays, stacks,
sequences, ``.npy``/``.mrc`` paths) in one blockwise pass over their
values, without copying them.  A measurement is cropped to ``floor(N/L) * L``
along each axis and tiled row-major into non-overlapping ``L x L`` patches
(see :doc:`/design`): :func:`tile` is the one implementation of that tiling,
:func:`patch_grid_shape` counts its patches and :func:`extract_patches`
returns them.  The patch sources that serve the patches chunk by chunk are
in :mod:`mtdlearn.data.patches`.
"""

from pathlib import Path

import numpy as np
import scipy.sparse

from .._validation import ComplexDataError, _row_blocks, check_array_float, check_int
from .io import _open_measurement

__all__ = ["check_measurements", "patch_grid_shape", "tile", "extract_patches"]


def _scan_values(arr, block_bytes=2**24):
    """One blockwise pass over a 2-D array: ``(all_finite, constant)``.

    ``constant`` is the value of every entry when all are equal (``None``
    otherwise); the comparison stops at the first block that holds another
    value, so for real data it costs one comparison of the first block.  No
    temporary larger than a block (a memory-mapped 10000 x 10000
    measurement is read once, 16 MB at a time).
    """
    if arr.size == 0:
        return True, None
    inexact = np.issubdtype(arr.dtype, np.inexact)
    first = arr[0, 0]
    constant = True
    for block in _row_blocks(arr, block_bytes):
        if inexact and not np.isfinite(block).all():
            return False, None
        if constant and (block != first).any():
            constant = False
            if not inexact:
                break
    return True, (first.item() if constant else None)


def _numeric(arr, label):
    """``arr`` as a real numeric array; an object array of numbers becomes float64.

    Messages follow scikit-learn's (its estimator checks look for them):
    "Complex data not supported", and numpy's "argument must be a string or
    a real number" for an object array holding something else.
    """
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{label} must be numeric, got dtype object holding a "
                            f"non-number: {exc}") from None
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ComplexDataError(f"{label} must be real-valued, got dtype {arr.dtype} "
                               "(Complex data not supported)")
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{label} must be numeric, got dtype {arr.dtype}")
    return arr


def _too_small_message(label, shape, image_size):
    """Name the short axis in scikit-learn's words too (rows are its samples,
    columns its features), so that its estimator checks recognize the error."""
    L = image_size
    if shape[0] < L:
        axis = f"{shape[0]} rows, i.e. {shape[0]} sample(s)"
    else:
        axis = f"{shape[1]} columns, i.e. {shape[1]} feature(s)"
    return (f"{label} of shape {shape} is smaller than one {L}x{L} patch: {axis} "
            f"(shape={shape}) while a minimum of {L} is required.")


def _non_finite_kind(arr):
    """scikit-learn's wording of what is not finite (called only on failure)."""
    return "Input contains NaN" if np.isnan(arr).any() else "Input contains infinity"


def check_measurements(X, image_size, name="X"):
    """Validate measurements and return a list of 2-D arrays.

    Every measurement must hold at least one ``image_size x image_size``
    patch and only finite values, not all equal (a constant measurement,
    e.g. all zeros, holds neither signal nor noise).  The values are checked
    in one blockwise pass, without a full-size temporary, and never copied
    or modified.  Errors about a file name it.

    Parameters
    ----------
    X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
        One measurement, a stack, or a sequence of 2-D arrays (sizes may
        differ) or paths to ``.npy``/``.mrc`` files (opened read-only, see
        :func:`mtdlearn.data.io.read_measurement`).
    image_size : int
        Patch side ``L``.
    name : str, default="X"
        Name used in error messages.

    Returns
    -------
    measurements : list of ndarray of shape (N1, N2)
        The measurements (views or memory maps where possible).

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.data.measurements import check_measurements
    >>> [M.shape for M in check_measurements(np.eye(12)[None, :10].repeat(2, 0), 5)]
    [(10, 12), (10, 12)]
    """
    if scipy.sparse.issparse(X):
        raise TypeError(f"{name} must be a dense array: sparse input is not supported")
    _check_not_masked(X, name)
    if _is_lazy(X) or (isinstance(X, (list, tuple)) and any(_is_lazy(x) for x in X)):
        # never np.asarray a dask array here: that would gather it into this process
        raise TypeError(f"{name} holds dask arrays, which are validated where they live: "
                        "pass them to an estimator's fit, score or predict")
    if isinstance(X, (str, Path)):
        items = [X]
    elif isinstance(X, np.ndarray) or hasattr(X, "__array__"):
        arr = np.asarray(X)
        if arr.ndim == 2:
            items = [arr]
        elif arr.ndim == 3:
            items = list(arr)
        else:
            raise ValueError(
                f"{name} must be one measurement (N1, N2), a stack (n, N1, N2) or a "
                f"sequence of 2-D arrays; got an array of shape {arr.shape}. "
                "Reshape your data to (N1, N2) or (n, N1, N2)."
            )
    elif isinstance(X, (list, tuple)):
        items = list(X)
    else:
        raise TypeError(
            f"{name} must be an array, a sequence of arrays, or a .npy path; "
            f"got {type(X).__name__}"
        )
    if not items:
        raise ValueError(f"{name} holds no measurement")
    out = []
    for i, item in enumerate(items):
        label = name if len(items) == 1 else f"{name}[{i}]"
        if isinstance(item, (str, Path)):
            # header checks only; the values are scanned once, below
            arr = _open_measurement(item)
            if arr.ndim == 3:  # a stack stored in one file
                out.extend(_check_measurement(a, f"{label} ({item}, measurement {j})",
                                              image_size) for j, a in enumerate(arr))
            else:
                out.append(_check_measurement(arr, f"{label} ({item})", image_size))
            continue
        out.append(_check_measurement(item, label, image_size))
    return out


def _is_lazy(x):
    """A dask collection (its ``__array__`` would compute it in this process)."""
    return hasattr(x, "__dask_graph__")


def _check_not_masked(X, name):
    if isinstance(X, np.ma.MaskedArray):
        raise TypeError(f"{name} must not be a masked array: its masked entries would be "
                        "read as data; fill them (X.filled(value)) or crop them away")


def _check_measurement(item, label, image_size):
    """One 2-D measurement: dtype, shape, size, values (one blockwise pass)."""
    _check_not_masked(item, label)
    arr = _numeric(np.asarray(item), label)
    if arr.ndim != 2:
        raise ValueError(f"{label} must be a 2-D measurement, got shape {arr.shape}")
    if min(arr.shape) < image_size:
        raise ValueError(_too_small_message(label, arr.shape, image_size))
    finite, constant = _scan_values(arr)
    if not finite:
        raise ValueError(f"{label} must contain only finite values "
                         f"({_non_finite_kind(arr)})")
    if constant is not None:
        raise ValueError(f"{label} is constant (all values equal {constant!r}): it holds no "
                         "signal or noise to fit")
    return arr


def _max_abs(measurements, image_size=None, block_bytes=2**24):
    """Largest absolute value of the measurements (of their patch grids, given
    ``image_size``), read in blocks of rows."""
    top = 0.0
    for M in measurements:
        if image_size is not None:
            nr, nc = patch_grid_shape(M.shape, image_size)
            M = M[:nr * image_size, :nc * image_size]
        rows = max(1, block_bytes // max(1, M.shape[1] * M.itemsize))
        for r0 in range(0, M.shape[0], rows):
            block = M[r0:r0 + rows]
            top = max(top, abs(float(block.max())), abs(float(block.min())))
    return top


#: On a distributed patch source: per micrograph, then the largest.
_max_abs.blockwise = (lambda block, *args, **kwargs: _max_abs([block], *args, **kwargs),
                      lambda parts, *args, **kwargs: max(parts))


def patch_grid_shape(shape, image_size):
    """Count the patch rows and columns of a measurement.

    The measurement is cropped to ``floor(N/L) * L`` along each axis, so
    partial patches at the bottom and right are dropped.

    Parameters
    ----------
    shape : tuple of int
        Shape of the measurement; its last two entries ``(N1, N2)`` are used.
    image_size : int
        Patch side ``L``.

    Returns
    -------
    n_rows : int
        ``N1 // L``.
    n_cols : int
        ``N2 // L``; the number of patches is ``N_d = n_rows * n_cols``.

    Examples
    --------
    >>> from mtdlearn.data.measurements import patch_grid_shape
    >>> patch_grid_shape((11, 17), 5)
    (2, 3)
    """
    return shape[-2] // image_size, shape[-1] // image_size


def tile(block, image_size):
    """View the patches of a block as ``(..., n_rows, n_cols, L, L)``.

    The block is cropped to multiples of ``L``; no data is copied.

    Parameters
    ----------
    block : ndarray of shape (..., N1, N2)
        A measurement, a stack, or a band of rows starting on a patch row.
    image_size : int
        Patch side ``L``.

    Returns
    -------
    tiles : ndarray of shape (..., N1 // L, N2 // L, L, L)
        ``tiles[..., a, b]`` is the patch at rows ``a*L + [0, L)`` and
        columns ``b*L + [0, L)``; a view of ``block``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.data.measurements import tile
    >>> tile(np.arange(36.0).reshape(6, 6), 3)[0, 1]
    array([[ 3.,  4.,  5.],
           [ 9., 10., 11.],
           [15., 16., 17.]])
    """
    L = image_size
    nr, nc = patch_grid_shape(block.shape, L)
    lead = block.shape[:-2]
    tiles = block[..., :nr * L, :nc * L].reshape(lead + (nr, L, nc, L))
    return np.swapaxes(tiles, -3, -2)


def extract_patches(measurement, image_size):
    """Non-overlapping ``L x L`` patches of a measurement, row-major.

    Parameters
    ----------
    measurement : array-like of shape (..., N1, N2)
        One measurement or a stack; it is cropped to multiples of ``L``.
    image_size : int
        Patch side ``L``.

    Returns
    -------
    patches : ndarray of shape (..., N_d, L, L)
        ``N_d = (N1 // L) * (N2 // L)``; patch ``m`` covers rows
        ``(m // (N2 // L)) * L + [0, L)`` and columns ``(m % (N2 // L)) * L + [0, L)``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.data.measurements import extract_patches
    >>> extract_patches(np.arange(36.).reshape(6, 6), 3)[1]
    array([[ 3.,  4.,  5.],
           [ 9., 10., 11.],
           [15., 16., 17.]])
    """
    L = check_int(image_size, "image_size", minimum=1)
    M = check_array_float(measurement, "measurement", min_ndim=2, dtype=None)
    nr, nc = patch_grid_shape(M.shape, L)
    if nr == 0 or nc == 0:
        raise ValueError(
            f"measurement of shape {M.shape} is smaller than one {L}x{L} patch"
        )
    return tile(M, L).reshape(M.shape[:-2] + (nr * nc, L, L))
