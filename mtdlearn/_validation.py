"""Small argument validators: every error names the argument, what was expected
and what was received.  Nothing is clipped or coerced silently."""

from numbers import Integral, Real

import numpy as np

__all__ = ["check_int", "check_real", "check_array_float", "check_random_generator",
           "check_measurements"]


def check_int(value, name, minimum=None, maximum=None):
    """Return ``value`` as a Python int, or raise ``TypeError``/``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_real(value, name, minimum=None, maximum=None, strict=False, strict_max=False):
    """Return ``value`` as a finite float in the given range.

    ``strict`` makes the lower bound exclusive, ``strict_max`` the upper one.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None:
        if strict and value <= minimum:
            raise ValueError(f"{name} must be > {minimum}, got {value}")
        if not strict and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None:
        if strict_max and value >= maximum:
            raise ValueError(f"{name} must be < {maximum}, got {value}")
        if not strict_max and value > maximum:
            raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_array_float(value, name, min_ndim=0, ndim=None, dtype=np.float64):
    """Return ``value`` as a finite floating array (no copy when possible)."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be array-like of numbers: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real-valued, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}"
        )
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (found NaN or inf)")
    return arr


def check_random_generator(random_state):
    """A ``numpy.random.Generator`` from None, an int, a Generator or a RandomState.

    A ``RandomState`` is consumed for one 32-bit seed (as scikit-learn would).
    """
    if random_state is None or isinstance(random_state, (Integral, np.random.SeedSequence)):
        if isinstance(random_state, Integral) and random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    raise TypeError(
        "random_state must be None, an int, a numpy Generator or RandomState, "
        f"got {type(random_state).__name__}"
    )


def _row_blocks(arr, block_bytes):
    """Row blocks of a 2-D array of at most ``block_bytes`` (one row at least)."""
    rows = max(1, block_bytes // max(1, arr.shape[1] * arr.itemsize))
    return (arr[r:r + rows] for r in range(0, arr.shape[0], rows))


def _all_finite(arr, block_bytes=2**24):
    """``np.isfinite(arr).all()`` in row blocks: no full-size boolean temporary
    (100 MB for a 10000 x 10000 measurement)."""
    if not np.issubdtype(arr.dtype, np.inexact):
        return True
    return all(np.isfinite(block).all() for block in _row_blocks(arr, block_bytes))


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


def check_measurements(X, image_size, name="X"):
    """Validate measurements and return a list of 2-D float arrays.

    ``X`` is one measurement ``(N1, N2)``, a stack ``(n, N1, N2)``, or a
    sequence of 2-D arrays (sizes may differ) or paths to ``.npy``/``.mrc``
    files (opened read-only, memory-mapped; a file may hold a stack).  Every
    measurement must hold at least one ``image_size x image_size`` patch and
    only finite values, not all equal (a constant measurement, e.g. all
    zeros, holds neither signal nor noise: the EM would fail on it).  The
    values are checked in one blockwise pass.  Errors about a file name it.
    """
    from pathlib import Path

    import scipy.sparse

    if scipy.sparse.issparse(X):
        raise TypeError(f"{name} must be a dense array: sparse input is not supported")
    _check_not_masked(X, name)
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
                f"sequence of 2-D arrays; got an array of shape {arr.shape}"
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
            from .io import _open_measurement

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


def _check_not_masked(X, name):
    if isinstance(X, np.ma.MaskedArray):
        raise TypeError(f"{name} must not be a masked array: its masked entries would be "
                        "read as data; fill them (X.filled(value)) or crop them away")


def _check_measurement(item, label, image_size):
    """One 2-D measurement: dtype, shape, size, values (one blockwise pass)."""
    _check_not_masked(item, label)
    arr = np.asarray(item)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{label} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{label} must be real-valued, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{label} must be a 2-D measurement, got shape {arr.shape}")
    if min(arr.shape) < image_size:
        raise ValueError(
            f"{label} of shape {arr.shape} is smaller than one "
            f"{image_size}x{image_size} patch"
        )
    finite, constant = _scan_values(arr)
    if not finite:
        raise ValueError(f"{label} must contain only finite values (found NaN or inf)")
    if constant is not None:
        raise ValueError(f"{label} is constant (all values equal {constant!r}): it holds no "
                         "signal or noise to fit")
    return arr
