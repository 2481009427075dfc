"""The micrographs a RELION micrograph STAR file lists: files, CTFs, pixel size.

:func:`read_micrograph_star` reads a RELION 3.1+ micrograph STAR file
(``micrographs_ctf.star`` of a CTF estimation job; with ``ctf=False`` also
``corrected_micrographs.star`` of motion correction), finds the micrograph
files its names point to and opens them, lazily when Dask is installed.
RELION writes ``rlnMicrographName`` relative to the project directory,
while the STAR file lives in a job directory of the project (such as
``CtfFind/job003/``): the project directory is found by looking for the
first micrograph from the STAR file's directory upwards, or given.  The
STAR file and the micrographs are only read.  Needs the optional
``starfile`` package, as :mod:`mtdlearn.data.star`.
"""

import os
from pathlib import Path
from typing import NamedTuple

from .io import read_micrographs
from .star import CTF_COLUMNS, _import_starfile, _table, read_micrograph_ctfs

__all__ = ["MicrographStar", "read_micrograph_star"]

_PIXEL_COLUMNS = ("rlnMicrographPixelSize", "rlnImagePixelSize")


class MicrographStar(NamedTuple):
    """The micrographs of a STAR file, as :func:`read_micrograph_star` returns them.

    Parameters
    ----------
    paths : list of Path
        The absolute path of each micrograph's file (symbolic links not
        resolved), in the file's order.
    names : list of str
        ``rlnMicrographName`` of each, as written in the STAR file.
    ctfs : list of CTF or None
        The CTF of each (:func:`~mtdlearn.data.star.read_micrograph_ctfs`),
        or ``None`` when read with ``ctf=False``.
    pixel_size : float or None
        The micrographs' pixel size, Angstrom/pixel; ``None`` when the file
        gives none (``ctf=False`` and no pixel size in ``data_optics``).
    micrographs : list of dask.array.Array or list of Path
        The micrographs as lazy Dask arrays (``read_micrographs(paths)``),
        or ``paths`` itself, which the estimators accept and memory-map.

    Examples
    --------
    >>> from pathlib import Path
    >>> from mtdlearn.data.micrograph_star import MicrographStar
    >>> mics = MicrographStar([Path("/p/a.mrc")], ["a.mrc"], None, 1.06, [Path("/p/a.mrc")])
    >>> mics.names, mics.pixel_size
    (['a.mrc'], 1.06)
    """

    paths: list
    names: list
    ctfs: list
    pixel_size: float
    micrographs: list


def _find_project_dir(star, first):
    """The first of ``star``'s directory and its ancestors that holds the file ``first``."""
    tried = [star.parent, *star.parent.parents]
    for directory in tried:
        if (directory / first).is_file():
            return directory
    raise FileNotFoundError(
        f"cannot find the first micrograph {first!r} of {star} in the STAR file's directory "
        f"or its ancestors (tried {', '.join(str(d) for d in tried)}); pass project_dir=, "
        "the RELION project directory the micrograph names are relative to")


def _optics_pixel_sizes(optics, micrographs, path):
    """``{optics group: pixel size}`` of the groups the micrographs are in, or None."""
    column = next((c for c in _PIXEL_COLUMNS if optics is not None and c in optics.columns),
                  None)
    if column is None or "rlnOpticsGroup" not in optics.columns:
        return None
    sizes = dict(zip(optics["rlnOpticsGroup"].tolist(), optics[column].tolist()))
    if "rlnOpticsGroup" not in micrographs.columns:
        return sizes
    used = {}
    for name, group in zip(micrographs["rlnMicrographName"], micrographs["rlnOpticsGroup"]):
        if group not in sizes:
            raise ValueError(f"{path}: micrograph {name!r} is in optics group {group!r}, "
                             f"which data_optics does not define (groups: {sorted(sizes)})")
        used[group] = sizes[group]
    return used


def read_micrograph_star(path, *, project_dir=None, ctf=True, lazy=None):
    """Read the micrographs of a RELION 3.1+ micrograph STAR file, and their CTFs.

    Parameters
    ----------
    path : str or Path
        The STAR file: ``data_micrographs`` with ``rlnMicrographName`` (and
        the CTF columns with ``ctf=True``, see
        :func:`~mtdlearn.data.star.read_micrograph_ctfs`), and ``data_optics``.
    project_dir : str or Path, default=None
        The directory the micrograph names are relative to (absolute names
        are taken as they are).  ``None``: the STAR file's directory or,
        failing that, its nearest ancestor in which the first micrograph's
        name is a file (``CtfFind/job003/micrographs_ctf.star`` finds the
        project directory two levels up).
    ctf : bool, default=True
        Read the micrographs' CTFs.  ``False``: the file needs no CTF
        columns, and ``data_optics`` is only read for the pixel size.
    lazy : bool, default=None
        ``True``: open the micrographs as lazy Dask arrays
        (:func:`~mtdlearn.data.io.read_micrographs`); ``False``: return
        their paths; ``None``: lazy when ``dask`` can be imported.

    Returns
    -------
    micrographs : MicrographStar
        ``(paths, names, ctfs, pixel_size, micrographs)``, one entry per
        micrograph in the file's order.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file, the first micrograph is found in no
        directory tried (the message lists them), or a micrograph file is
        missing (the message names the first).
    ValueError
        If the file is not a RELION 3.1+ micrograph STAR file, lists no
        micrograph, has no CTF columns with ``ctf=True`` (the message says
        to run CTF estimation, or to pass ``ctf=False``, ``--no-ctf`` on
        the command line, to fit without CTFs), or its micrographs have
        different pixel sizes (mtdlearn fits micrographs of one pixel size).
    ImportError
        If ``starfile`` is not installed, or ``dask`` with ``lazy=True``.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from mtdlearn.data.micrograph_star import read_micrograph_star
    >>> text = '''
    ... data_optics
    ... loop_
    ... _rlnOpticsGroupName #1
    ... _rlnOpticsGroup #2
    ... _rlnVoltage #3
    ... _rlnSphericalAberration #4
    ... _rlnAmplitudeContrast #5
    ... _rlnMicrographPixelSize #6
    ... opticsGroup1 1 300.0 2.7 0.1 1.06
    ...
    ... data_micrographs
    ... loop_
    ... _rlnMicrographName #1
    ... _rlnOpticsGroup #2
    ... _rlnDefocusU #3
    ... _rlnDefocusV #4
    ... _rlnDefocusAngle #5
    ... MotionCorr/job002/a.npy 1 15123.4 14876.2 37.5
    ... '''
    >>> with tempfile.TemporaryDirectory() as project:
    ...     os.makedirs(os.path.join(project, "MotionCorr", "job002"))
    ...     np.save(os.path.join(project, "MotionCorr", "job002", "a.npy"), np.zeros((8, 8)))
    ...     os.makedirs(os.path.join(project, "CtfFind", "job003"))
    ...     path = os.path.join(project, "CtfFind", "job003", "micrographs_ctf.star")
    ...     with open(path, "w") as f:
    ...         _ = f.write(text)
    ...     mics = read_micrograph_star(path, lazy=False)
    ...     found = mics.paths == [Path(project, "MotionCorr", "job002", "a.npy")]
    >>> mics.names, mics.pixel_size, mics.ctfs[0].defocus_u, found
    (['MotionCorr/job002/a.npy'], 1.06, 15123.4, True)
    """
    if not isinstance(ctf, bool):
        raise TypeError(f"ctf must be True or False, got {ctf!r}")
    if lazy is not None and not isinstance(lazy, bool):
        raise TypeError(f"lazy must be True, False or None, got {lazy!r}")
    starfile = _import_starfile()
    star = Path(os.path.abspath(path))
    if not star.is_file():
        raise FileNotFoundError(f"path {path} is not a file")
    blocks = starfile.read(star, always_dict=True, parse_as_string=["rlnMicrographName"])
    table, optics = _table(blocks, "micrographs"), _table(blocks, "optics")
    ctfs = pixel_sizes = None
    if ctf:
        try:
            pairs = read_micrograph_ctfs(star)
        except ValueError as exc:
            if table is not None and any(c not in table.columns for c in CTF_COLUMNS):
                raise ValueError(f"{exc}, or pass ctf=False (on the command line: --no-ctf) "
                                 "to fit without CTFs") from None
            raise
        names, ctfs = [p.name for p in pairs], [p.ctf for p in pairs]
        pixel_sizes = {i: c.pixel_size for i, c in enumerate(ctfs)}
    elif table is None or "rlnMicrographName" not in table.columns:
        found = ", ".join(f"data_{b}" for b in blocks) or "none"
        raise ValueError(f"{star} has no data_micrographs table with rlnMicrographName "
                         f"(tables found: {found}); expected a RELION 3.1+ micrograph STAR "
                         "file such as micrographs_ctf.star or corrected_micrographs.star")
    else:
        names = [str(name) for name in table["rlnMicrographName"].tolist()]
        pixel_sizes = _optics_pixel_sizes(optics, table, star)
    if not names:
        raise ValueError(f"{star} lists no micrograph")
    pixel_size = None
    if pixel_sizes:
        distinct = sorted(set(pixel_sizes.values()))
        if len(distinct) > 1:
            raise ValueError(f"the micrographs of {star} have different pixel sizes "
                             f"({', '.join(f'{s:g}' for s in distinct)} A/px); mtdlearn fits "
                             "micrographs of one pixel size: select one optics group")
        pixel_size = float(distinct[0])
    root = (Path(os.path.abspath(project_dir)) if project_dir is not None
            else _find_project_dir(star, names[0]))
    if project_dir is not None and not root.is_dir():
        raise FileNotFoundError(f"project_dir {project_dir} is not a directory")
    paths = [root / name for name in names]
    missing = [(name, p) for name, p in zip(names, paths) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"micrograph {missing[0][0]!r} of {star} not found: "
                                f"{missing[0][1]} is not a file ({len(missing)} of the "
                                f"{len(names)} micrographs missing, under {root})")
    if lazy is None:
        try:
            import dask.array  # noqa: F401
        except ImportError:
            lazy = False
        else:
            lazy = True
    micrographs = list(paths)
    if lazy:
        try:
            import dask.array  # noqa: F401
        except ImportError:
            raise ImportError("lazy=True needs the optional 'dask' package: pip install "
                              "'mtdlearn[dask]'") from None
        micrographs = read_micrographs(paths)
        if len(micrographs) != len(paths):
            raise ValueError(f"the {len(paths)} micrograph files of {star} hold "
                             f"{len(micrographs)} micrographs: expected one 2-D micrograph "
                             "per file, found a stack")
    return MicrographStar(paths, names, ctfs, pixel_size, micrographs)
