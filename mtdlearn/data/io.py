"""Reading measurements from files (read-only: input files are never modified).

``.npy`` and MRC files are memory-mapped read-only (:func:`read_measurement`)
or opened as lazy Dask arrays (:func:`read_micrographs`); the picks are
written by :mod:`mtdlearn.data.star`.
"""

import warnings
from pathlib import Path

import numpy as np

from .._validation import _all_finite

__all__ = ["read_measurement", "read_micrographs", "micrograph_names"]

_NPY_MAGIC = b"\x93NUMPY"
_MRC_SUFFIXES = (".mrc", ".mrcs", ".map")
_EXPECTED = "a 2-D measurement or a 3-D stack of real numbers"


def _check_array(arr, path, what):
    """The checks that need only the header: dtype, dimensions, size."""
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{path} holds an array of dtype {arr.dtype}; expected {_EXPECTED} "
                         f"({what})")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{path} holds an array of shape {arr.shape}; expected {_EXPECTED} "
                         f"({what})")
    if arr.size == 0:
        raise ValueError(f"{path} holds an empty array of shape {arr.shape}; expected "
                         f"{_EXPECTED} ({what})")
    return arr


def _open_npy(path):
    with open(path, "rb") as fh:
        magic = fh.read(len(_NPY_MAGIC))
    if magic != _NPY_MAGIC:
        what = "the file is empty" if not magic else "no NumPy header"
        raise ValueError(f"cannot read {path} as a .npy array ({what}); expected a file "
                         f"written by numpy.save holding {_EXPECTED}")
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            dtype = read_header(fh)[2]
    except (ValueError, OSError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"cannot read {path} as a .npy array ({reason}); expected a "
                         f"complete file written by numpy.save holding {_EXPECTED}") from None
    if dtype.hasobject:
        raise ValueError(f"{path} holds pickled Python objects (dtype {dtype}), which are "
                         f"never loaded; expected {_EXPECTED} (.npy file)")
    try:
        # never allow_pickle: unpickling can run arbitrary code
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"cannot read {path} as a .npy array ({reason}); expected a "
                         f"complete file written by numpy.save holding {_EXPECTED}") from None
    if not isinstance(arr, np.ndarray):  # pragma: no cover - np.load of .npy gives arrays
        raise ValueError(f"cannot read {path} as a .npy array; expected {_EXPECTED}")
    return _check_array(arr, path, ".npy file")


def _open_mrc(path):
    try:
        import mrcfile
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading .mrc files needs the 'mrcfile' package: pip install mrcfile"
        ) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # Read-only memory map: mrcfile opens the file "rb" and maps it
            # with numpy.memmap(mode="r"); nothing can be written.  The
            # mapping holds its own reference to the file, so the array stays
            # valid after the MrcFile is closed (tests/test_io.py checks it).
            with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
                data = mrc.data
        except (ValueError, OSError, EOFError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"cannot read {path} as an MRC file ({reason}); expected "
                             f"{_EXPECTED}") from None
    problems = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    if data is None:
        raise ValueError(f"cannot read {path} as an MRC file ({problems or 'no data block'}); "
                         f"expected {_EXPECTED}")
    if np.issubdtype(data.dtype, np.complexfloating):
        raise ValueError(f"{path} holds complex MRC data (dtype {data.dtype}); expected "
                         f"{_EXPECTED} (MRC file)")
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    data = _check_array(data, path, "MRC file" + (f": {problems}" if problems else ""))
    if problems:
        # permissive: a non-conforming header whose data block is readable
        warnings.warn(f"{path}: MRC header problems, data read anyway: {problems}",
                      RuntimeWarning, stacklevel=3)
    return data


def _open_measurement(path):
    """Open ``path`` read-only and check its header (type, dtype, shape), not
    its values.  Returns the memory-mapped array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"measurement file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _open_npy(path)
    if suffix in _MRC_SUFFIXES:
        return _open_mrc(path)
    raise ValueError(f"unsupported measurement file type {suffix!r} for {path}: "
                     "expected .npy or .mrc")


def read_measurement(path):
    """Read one measurement from a ``.npy`` or ``.mrc`` file, read-only.

    Both kinds of file are memory-mapped read-only and returned in the
    file's own dtype: nothing is read until it is used, and the estimators
    convert the data to float64 chunk by chunk.  ``.mrc`` files (cryo-EM
    micrographs) need the optional ``mrcfile`` package and are opened with
    ``mrcfile.mmap(path, mode="r", permissive=True)``; a 3-D MRC file with
    one section is squeezed to 2-D.  Nothing ever writes to the file.  The
    file is scanned once, block by block, for NaN and infinite values.

    Parameters
    ----------
    path : str or Path
        A ``.npy`` file, or a ``.mrc`` / ``.mrcs`` / ``.map`` file.

    Returns
    -------
    measurement : numpy.memmap of shape (N1, N2) or (n, N1, N2)
        A read-only memory map of a 2-D measurement or a 3-D stack, of an
        integer or floating dtype.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    ValueError
        If the file has another suffix, or cannot be read as what is
        expected: an empty, truncated or corrupt file, pickled (object)
        data (never unpickled), a dtype that is not real numbers, an array
        that is not 2-D or 3-D, an empty array, or NaN or infinite values.
        The message names the path and what was expected.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> from mtdlearn.data.io import read_measurement
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "measurement.npy")
    ...     np.save(path, np.zeros((40, 40), dtype=np.float32))
    ...     M = read_measurement(path)
    ...     print(M.shape, M.dtype, M.flags.writeable)
    ...     del M
    (40, 40) float32 False
    """
    arr = _open_measurement(path)
    blocks = arr if arr.ndim == 3 else [arr]
    if not all(_all_finite(block) for block in blocks):
        raise ValueError(f"{Path(path)} holds NaN or infinite values; expected "
                         f"{_EXPECTED} with only finite values")
    return arr


def _expand_paths(paths_or_glob):
    """A sorted glob pattern, one path, or a list of paths, as a list of paths."""
    import glob

    if isinstance(paths_or_glob, (str, Path)):
        text = str(paths_or_glob)
        if glob.has_magic(text):
            paths = sorted(glob.glob(text))
            if not paths:
                raise FileNotFoundError(f"no file matches {text!r}")
            return [Path(p) for p in paths]
        return [Path(text)]
    paths = [Path(p) for p in paths_or_glob]
    if not paths:
        raise ValueError("paths_or_glob holds no path")
    return paths


def _read_section(path, index):
    """A task's read of one micrograph: a copy of section ``index`` (``None``: 2-D file)."""
    arr = _open_measurement(path)
    return np.array(arr if index is None else arr[index])


class MicrographList(list):
    """A list of lazy micrographs that knows their names (:func:`read_micrographs`)."""

    names = None


def read_micrographs(paths_or_glob):
    """Open micrographs as lazy dask arrays, read by the tasks that use them.

    Only the headers are read here (shape and dtype); each array is one
    task that opens the file (``.npy`` memory-mapped, ``.mrc`` with
    ``mrcfile.mmap``, read-only) and copies its micrograph, wherever that
    task runs.  A Dask worker that is lost with its blocks reads them again
    from the files.  Needs the optional ``mtdlearn[dask]`` extra.

    Parameters
    ----------
    paths_or_glob : str, Path or sequence of them
        A glob pattern (matches sorted by name), a path, or a list of
        paths of ``.npy`` / ``.mrc`` files.  A 3-D file gives one
        micrograph per section.

    Returns
    -------
    micrographs : list of dask.array.Array of shape (N1, N2)
        One single-chunk array per micrograph, in the file's dtype; the
        list's ``names`` attribute holds one name per micrograph (the file
        name, with ``@section`` for stacks).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from mtdlearn.data.io import read_micrographs
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for i in range(2):
    ...         np.save(os.path.join(tmp, f"mic{i}.npy"), np.full((30, 40), i, np.float32))
    ...     mics = read_micrographs(os.path.join(tmp, "mic*.npy"))
    ...     print(len(mics), mics[1].shape, mics.names)
    ...     print(float(mics[1].sum().compute(scheduler="synchronous")))
    2 (30, 40) ['mic0.npy', 'mic1.npy']
    1200.0
    """
    import dask
    import dask.array as da

    out, names = MicrographList(), []
    for path in _expand_paths(paths_or_glob):
        arr = _open_measurement(path)  # header only: shape and dtype
        shape, dtype = arr.shape, arr.dtype
        del arr
        sections = [None] if len(shape) == 2 else range(shape[0])
        for j, name in zip(sections, _section_names(path, shape)):
            key = f"read-micrograph-{dask.base.tokenize(str(path.resolve()), j)}"
            block = dask.delayed(_read_section, pure=True)(str(path), j, dask_key_name=key)
            out.append(da.from_delayed(block, shape=shape[-2:], dtype=dtype))
            names.append(name)
    out.names = names
    return out


def _section_names(path, shape):
    """The names of a file's micrographs: its name, or ``name@j`` for a stack's sections."""
    name = Path(path).name
    return [name] if len(shape) == 2 else [f"{name}@{j}" for j in range(shape[0])]


def micrograph_names(paths_or_glob):
    """One name per micrograph of files, as :func:`read_micrographs` names them.

    The file name, with ``@section`` for each section of a 3-D file (a
    stack), in the order in which the estimators read the files' micrographs.
    Only the headers are read.

    Parameters
    ----------
    paths_or_glob : str, Path or sequence of them
        A glob pattern (matches sorted by name), a path, or a list of
        paths of ``.npy`` / ``.mrc`` files.

    Returns
    -------
    names : list of str
        One per micrograph, in order (``read_micrographs(...).names``).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from mtdlearn.data.io import micrograph_names
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     np.save(os.path.join(tmp, "a.npy"), np.zeros((30, 40)))
    ...     np.save(os.path.join(tmp, "b.npy"), np.zeros((2, 30, 40)))
    ...     micrograph_names(os.path.join(tmp, "*.npy"))
    ['a.npy', 'b.npy@0', 'b.npy@1']
    """
    names = []
    for path in _expand_paths(paths_or_glob):
        names.extend(_section_names(path, _open_measurement(path).shape))
    return names
