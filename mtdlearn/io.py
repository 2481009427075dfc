"""Reading measurements from files (read-only: input files are never modified)."""

from pathlib import Path

import numpy as np

__all__ = ["read_measurement"]


def read_measurement(path):
    """Read one measurement from a ``.npy`` or ``.mrc`` file, read-only.

    ``.npy`` files are memory-mapped read-only; ``.mrc`` files (cryo-EM
    micrographs) need the optional ``mrcfile`` package and are opened in
    read-only mode.  A 3-D MRC file with one section is squeezed to 2-D.

    Parameters
    ----------
    path : str or Path
        A ``.npy`` file, or a ``.mrc`` / ``.mrcs`` / ``.map`` file.

    Returns
    -------
    measurement : ndarray of shape (N1, N2) (or a stack for 3-D ``.npy``)
        A read-only ``numpy.memmap`` for ``.npy``; a float64 array for MRC.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    ValueError
        If the file cannot be read or has another suffix.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> from mtdlearn.io import read_measurement
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "measurement.npy")
    ...     np.save(path, np.zeros((40, 40)))
    ...     M = read_measurement(path)
    ...     print(M.shape, M.flags.writeable)
    ...     del M
    (40, 40) False
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"measurement file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"cannot read {path} as a .npy array: {exc}") from None
    if suffix in (".mrc", ".mrcs", ".map"):
        try:
            import mrcfile
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError(
                "reading .mrc files needs the 'mrcfile' package: pip install mrcfile"
            ) from None
        try:
            with mrcfile.open(path, mode="r", permissive=True) as mrc:
                data = np.array(mrc.data, dtype=np.float64)
        except (ValueError, OSError) as exc:
            raise ValueError(f"cannot read {path} as an MRC file: {exc}") from None
        if data.ndim == 3 and data.shape[0] == 1:
            data = data[0]
        return data
    raise ValueError(f"unsupported measurement file type {suffix!r} for {path}: "
                     "expected .npy or .mrc")
