"""Fingerprints of fits: SHA-256 digests of measurements and of settings.

The digests a checkpoint (:mod:`mtdlearn.checkpoint`, which re-exports
:func:`hash_measurements` and :func:`hash_params`) compares to refuse a file
written for other data or settings: of the measurements (their shapes,
dtypes and every byte, read in blocks of rows; each measurement on its own,
on the worker that holds it when the input is a Dask array), and of the
estimator's class and parameters, except ``n_jobs`` and ``verbose`` which do
not change results.  Only numpy and the standard library: the measurements'
layer.
"""

import hashlib
import json
from numbers import Integral, Real

import numpy as np

__all__ = ["hash_measurements", "hash_params"]

#: Parameters that change the running time or the output, never the result.
IGNORED_PARAMS = ("n_jobs", "verbose")


def hash_measurements(measurements, block_bytes=2**24):
    """SHA-256 of measurements: their number, shapes, dtypes and every byte.

    Each measurement is hashed on its own (its shape, dtype and bytes, read
    in blocks of rows: memory-mapped files are streamed, not loaded), and the
    digest is the SHA-256 of their number and their digests in order.  Two
    inputs get the same digest only if they are equal element by element,
    with the same dtypes and shapes.  On a Dask source
    (:meth:`mtdlearn.data._dask.DaskPatchData.memoize`) each micrograph is hashed
    by a task on the worker that holds it (``hash_measurements.blockwise``)
    and only the digests (64 characters each) come to the client, which
    combines them as here: the same digest as in memory when the blocks have
    the dtype of the in-memory arrays.

    Parameters
    ----------
    measurements : list of ndarray of shape (N1, N2)
        Validated 2-D measurements (see
        :func:`mtdlearn.data.measurements.check_measurements`).
    block_bytes : int, default=2**24
        Bytes hashed at a time.

    Returns
    -------
    digest : str
        The hexadecimal SHA-256 digest.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.checkpoint import hash_measurements
    >>> M = np.zeros((6, 6))
    >>> hash_measurements([M]) == hash_measurements([M.copy()])
    True
    >>> hash_measurements([M]) == hash_measurements([M.astype(np.float32)])
    False
    """
    return _combine_digests([_measurement_digest(M, block_bytes) for M in measurements])


def _measurement_digest(M, block_bytes=2**24):
    """SHA-256 of one measurement: shape, dtype, bytes (a task's part on a Dask block)."""
    h = hashlib.sha256()
    shape = tuple(int(n) for n in M.shape)
    h.update(f"{shape} {np.dtype(M.dtype).str};".encode())
    rows = max(1, block_bytes // max(1, shape[1] * np.dtype(M.dtype).itemsize))
    for r0 in range(0, shape[0], rows):
        h.update(np.ascontiguousarray(M[r0:r0 + rows]).data)
    return h.hexdigest()


def _combine_digests(digests, block_bytes=None):
    """SHA-256 of the number of measurements and their digests, in order."""
    h = hashlib.sha256()
    h.update(f"{len(digests)} measurements;".encode())
    for digest in digests:
        h.update(digest.encode())
    return h.hexdigest()


#: How a distributed patch source computes it: per micrograph, then combined
#: in order on the client (see :meth:`mtdlearn.data._dask.DaskPatchData.memoize`).
hash_measurements.blockwise = (_measurement_digest, _combine_digests)


def _canonical(value):
    """A JSON-able description of a parameter value that is equal for equal settings."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return repr(float(value))  # exact: repr round-trips
    if isinstance(value, type):
        return f"type:{value.__module__}.{value.__qualname__}"
    if isinstance(value, np.dtype):
        return f"dtype:{value.str}"
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        return {"array": hashlib.sha256(arr.data if arr.dtype != object
                                        else repr(arr.tolist()).encode()).hexdigest(),
                "dtype": arr.dtype.str, "shape": list(arr.shape)}
    if isinstance(value, np.random.Generator):
        return {"Generator": json.dumps(value.bit_generator.state, sort_keys=True,
                                        default=str)}
    if isinstance(value, np.random.RandomState):
        return {"RandomState": _canonical(np.asarray(value.get_state()[1]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if hasattr(value, "get_params"):
        # a nested object's n_jobs (AutocorrelationInitializer's) changes no result either
        params = {k: v for k, v in value.get_params(deep=False).items()
                  if k not in IGNORED_PARAMS}
        return {"class": f"{type(value).__module__}.{type(value).__qualname__}",
                "params": _canonical(params)}
    return {"repr": repr(value)}


def hash_params(estimator, extra=None):
    """SHA-256 of an estimator's class and parameters (those that change results).

    Nested objects (basis, rotation grid, initializer) are described by
    their class and parameters, arrays by a digest of their bytes, random
    generators by their state; ``n_jobs`` and ``verbose`` are left out, of
    the nested objects too.

    Parameters
    ----------
    estimator : estimator object
        Anything with ``get_params``.
    extra : object, default=None
        More JSON-able content to fold in (e.g. the state a warm start
        continues from).

    Returns
    -------
    digest : str
        The hexadecimal SHA-256 digest.

    Examples
    --------
    >>> from mtdlearn import ApproxEMEstimator
    >>> from mtdlearn.checkpoint import hash_params
    >>> hash_params(ApproxEMEstimator(5, n_jobs=2)) == hash_params(ApproxEMEstimator(5))
    True
    >>> hash_params(ApproxEMEstimator(5, tol=1e-3)) == hash_params(ApproxEMEstimator(5))
    False
    """
    params = {k: v for k, v in estimator.get_params(deep=False).items()
              if k not in IGNORED_PARAMS}
    content = {"class": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
               "params": _canonical(params), "extra": _canonical(extra)}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
