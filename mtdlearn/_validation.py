"""Small argument validators: every error names the argument, what was expected
and what was received.  Nothing is clipped or coerced silently."""

from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np

__all__ = ["ComplexDataError", "check_int", "check_real", "check_array_float",
           "check_abundances", "check_random_generator", "check_per_measurement"]


class ComplexDataError(TypeError, ValueError):
    """Complex numbers where real ones are required.

    Both a ``TypeError`` (the dtype is wrong) and a ``ValueError``
    (scikit-learn's convention for complex data), as scikit-learn's
    ``NotFittedError`` is both a ``ValueError`` and an ``AttributeError``.
    """


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


def check_bool(value, name):
    """Return ``value`` as a Python bool, or raise ``TypeError`` naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


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


def check_abundances(weights, n_components, name="weights"):
    """A copy of ``weights`` as the abundances of ``n_components`` kinds: a
    finite 1-D float array of that length, non-negative, summing to 1 within
    ``1e-8`` (neither clipped nor renormalized)."""
    w = check_array_float(weights, name, ndim=1)
    if w.shape[0] != n_components:
        raise ValueError(f"{name} must have one entry per component ({n_components}), "
                         f"got {w.shape[0]}")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative, got {w!r}")
    total = float(np.sum(w))
    if abs(total - 1.0) > 1e-8:
        raise ValueError(f"{name} must sum to 1 (within 1e-8), got a sum of {total!r}")
    return w.copy()


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


def check_per_measurement(values, cls, name, n_measurements=None, allow_none=False):
    """A sequence of ``cls`` instances, one per measurement, as a list.

    ``n_measurements`` (when known) is the length it must have;
    ``allow_none`` lets an entry be ``None``.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a {cls.__name__}, a sequence of {cls.__name__} (one "
                        f"per measurement) or None; got {type(values).__name__}")
    for i, value in enumerate(values):
        if not (isinstance(value, cls) or (allow_none and value is None)):
            raise TypeError(f"{name}[{i}] must be a {cls.__name__}"
                            f"{' or None' if allow_none else ''}, got {type(value).__name__}")
    if n_measurements is not None and len(values) != n_measurements:
        raise ValueError(f"{name} has {len(values)} entries but X holds {n_measurements} "
                         "measurement(s): give one per measurement, or one for all")
    return list(values)


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
