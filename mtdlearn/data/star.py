"""RELION STAR files: picks written, micrographs' CTFs read and written.

:func:`picks_table` turns an estimator's detections into picks with
RELION's columns (:data:`STAR_COLUMNS`); :func:`write_star` writes them to
one file, :func:`write_star_per_micrograph` to one file per micrograph
(named by :func:`star_paths`) as they arrive.  :func:`read_micrograph_ctfs`
reads the CTF of every micrograph of a RELION 3.1+ micrograph STAR file
(``micrographs_ctf.star``) as a :class:`~mtdlearn.imaging.ctf.CTF`;
:func:`write_micrograph_ctfs` writes one.  Files are never written over
unless asked, and every file is written to a temporary name and renamed
when complete.  Needs the optional ``starfile`` package (``pip install
mtdlearn[star]``, with ``pandas``).
"""

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..imaging.ctf import CTF

__all__ = ["picks_table", "write_star", "star_paths", "write_star_per_micrograph",
           "MicrographCTF", "read_micrograph_ctfs", "write_micrograph_ctfs"]


#: RELION's columns of a picks table (``src/autopicker.cpp``).
STAR_COLUMNS = ("rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnAnglePsi",
                "rlnAutopickFigureOfMerit")


def picks_table(detections, image_size, micrograph_names=None, scale=1.0):
    """Turn ``predict``'s detections into picks with RELION's columns.

    One row per occurrence: a copy reported by several patches (same
    micrograph and corner) is kept once, with its highest probability.

    Conventions (:doc:`/scaling`, "Picks for cryo-EM tools"), in the axes of
    the stored array, ``x`` along the columns and ``y`` along the rows,
    the first pixel at ``(0, 0)`` (RELION's convention for image centres):

    * ``rlnCoordinateX = col + (L - 1) / 2`` and ``rlnCoordinateY = row +
      (L - 1) / 2``: the centre pixel of the ``L x L`` copy whose top-left
      corner ``predict`` reports (RELION's coordinates are particle
      centres, in pixels).  A copy cut by the micrograph's edge is
      reported too (the model sees its part inside), so its centre can lie
      up to ``(L - 1) / 2`` pixels outside the micrograph; RELION's
      extraction skips such boxes.
    * ``rlnAnglePsi = (-degrees(angle)) mod 360``.  A copy at ``angle =
      phi`` is ``F_phi(r, theta) = F(r, theta + phi)`` with ``theta =
      atan2(y, x)`` (:mod:`mtdlearn.basis.fourier_bessel`): the estimate turned by
      ``-phi``, from ``+x`` towards ``+y``.  RELION's ``psi`` is the angle
      that turns the reference into the particle, positive from ``+x``
      towards ``+y`` (right-handed): hence ``psi = -phi``.
    * ``rlnAutopickFigureOfMerit``: the posterior probability of the MAP
      hypothesis.
    * ``rlnClassNumber`` (only when the detections have a ``component``
      field, from a fit with ``n_components > 1``): the kind of particle,
      ``component + 1`` (RELION's classes count from 1).

    Parameters
    ----------
    detections : structured ndarray
        The output of an estimator's ``predict``.
    image_size : int
        ``L``.
    micrograph_names : sequence of str, default=None
        Name of each micrograph (e.g. ``read_micrographs(...).names``);
        ``None`` names them ``micrograph_0``, ``micrograph_1``, ...
    scale : float or (float, float), default=1.0
        Pixels of the original micrograph per pixel of the fitted one,
        ``(rows, columns)`` or one for both: the coordinates are multiplied
        by it, so that picks of a binned fit
        (:func:`~mtdlearn.imaging.binning.fourier_crop`, ``N / n`` per
        axis) are in the original micrographs' pixels.

    Returns
    -------
    picks : pandas.DataFrame
        Columns ``micrograph`` (index) and :data:`STAR_COLUMNS` (and
        ``rlnClassNumber`` for a mixture's detections), sorted by
        micrograph, then row, then column.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.data.star import picks_table
    >>> det = np.array([(0, 10, 20, np.pi / 2, 0.9), (0, 10, 20, np.pi / 2, 0.7)],
    ...                dtype=[("measurement", int), ("row", int), ("col", int),
    ...                       ("angle", float), ("probability", float)])
    >>> picks = picks_table(det, 5, ["a.mrc"])
    >>> picks[["rlnCoordinateX", "rlnCoordinateY", "rlnAnglePsi"]].values.tolist()
    [[22.0, 12.0, 270.0]]
    """
    import pandas as pd

    det = np.asarray(detections)
    L = int(image_size)
    scale_y, scale_x = np.broadcast_to(np.asarray(scale, dtype=np.float64), (2,))
    if not (np.isfinite(scale_y) and np.isfinite(scale_x) and scale_y > 0 and scale_x > 0):
        raise ValueError(f"scale must be positive and finite, got {scale!r}")
    order = np.lexsort((-det["probability"], det["col"], det["row"], det["measurement"]))
    det = det[order]
    key = np.stack([det["measurement"], det["row"], det["col"]], axis=1)
    first = np.ones(len(det), dtype=bool)
    first[1:] = np.any(key[1:] != key[:-1], axis=1)
    det = det[first]
    meas = det["measurement"].astype(np.int64)
    n = int(meas.max()) + 1 if len(meas) else 0
    if micrograph_names is None:
        micrograph_names = [f"micrograph_{i}" for i in range(n)]
    names = np.asarray(list(micrograph_names), dtype=object)
    if len(names) < n:
        raise ValueError(f"micrograph_names has {len(names)} names for detections in "
                         f"{n} micrographs")
    columns = {
        "micrograph": meas,
        "rlnMicrographName": names[meas] if len(meas) else np.array([], dtype=object),
        "rlnCoordinateX": (det["col"] + (L - 1) / 2.0) * scale_x,
        "rlnCoordinateY": (det["row"] + (L - 1) / 2.0) * scale_y,
        "rlnAnglePsi": np.mod(-np.degrees(det["angle"]), 360.0),
        "rlnAutopickFigureOfMerit": det["probability"].astype(np.float64),
    }
    if "component" in (det.dtype.names or ()):
        columns["rlnClassNumber"] = det["component"].astype(np.int64) + 1
    return pd.DataFrame(columns)


def write_star(picks, path, micrograph_names=None, overwrite=False):
    """Write picks as a RELION STAR file (with ``starfile``), atomically.

    Parameters
    ----------
    picks : pandas.DataFrame
        The output of :func:`picks_table` (only :data:`STAR_COLUMNS`, and
        ``rlnClassNumber`` when there is one, are written).
    path : str or Path
        The ``.star`` file to write.
    micrograph_names : sequence of str, default=None
        Replaces ``rlnMicrographName`` by ``micrograph_names[micrograph]``.
    overwrite : bool, default=False
        Replace an existing file; otherwise an existing file is an error.

    Returns
    -------
    path : Path
        The file written.  It is written to a temporary file beside it and
        renamed, so a reader never sees half a file.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import starfile
    >>> from mtdlearn.data.star import picks_table, write_star
    >>> det = np.array([(0, 10, 20, 0.5, 0.9)],
    ...                dtype=[("measurement", int), ("row", int), ("col", int),
    ...                       ("angle", float), ("probability", float)])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_star(picks_table(det, 5), os.path.join(tmp, "picks.star"))
    ...     list(starfile.read(path).columns)
    ['rlnMicrographName', 'rlnCoordinateX', 'rlnCoordinateY', 'rlnAnglePsi', 'rlnAutopickFigureOfMerit']
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    table = picks[list(STAR_COLUMNS) + [c for c in ("rlnClassNumber",)
                                        if c in picks.columns]].copy()
    if micrograph_names is not None:
        table["rlnMicrographName"] = np.asarray(list(micrograph_names),
                                                dtype=object)[picks["micrograph"].to_numpy()]
    return _write_atomically(table, path, overwrite)


def _import_starfile():
    try:
        import starfile
    except ImportError:
        raise ImportError("reading and writing STAR files needs the optional 'starfile' "
                          "package: pip install 'mtdlearn[star]'") from None
    return starfile


def _write_atomically(data, path, overwrite):
    """Write STAR ``data`` (a table or a dict of blocks) to a temporary file and rename it."""
    import os
    import tempfile

    starfile = _import_starfile()
    fd, tmp = tempfile.mkstemp(suffix=".star", dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        starfile.write(data, tmp, float_format="%.17g", overwrite=True)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file appeared meanwhile: never replaced
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def star_paths(micrograph_names, output_dir, suffix="_picks.star"):
    """The per-micrograph STAR files of :func:`write_star_per_micrograph`.

    ``<output_dir>/<stem><suffix>`` with the stem of each micrograph's file
    name (RELION's layout of per-micrograph picks); a stack's section
    ``name@j`` gets ``<stem>_<j><suffix>``.

    Parameters
    ----------
    micrograph_names : sequence of str
        One name per micrograph (``read_micrographs(...).names``).
    output_dir : str or Path
        The directory of the files.
    suffix : str, default="_picks.star"
        Appended to each stem.

    Returns
    -------
    paths : list of Path
        One per micrograph, in order.

    Raises
    ------
    ValueError
        If two micrographs would write the same file.

    Examples
    --------
    >>> from mtdlearn.data.star import star_paths
    >>> [p.name for p in star_paths(["a.mrc", "b.mrcs@2"], "picks")]
    ['a_picks.star', 'b_2_picks.star']
    """
    paths, seen = [], {}
    for name in micrograph_names:
        base, _, section = str(name).partition("@")
        stem = Path(base).stem + (f"_{section}" if section else "")
        path = Path(output_dir) / f"{stem}{suffix}"
        if path in seen:
            raise ValueError(f"micrograph_names {seen[path]!r} and {name!r} would both be "
                             f"written to {path}; rename one of the files")
        seen[path] = name
        paths.append(path)
    return paths


def write_star_per_micrograph(detections, image_size, output_dir, micrograph_names,
                              overwrite=False, suffix="_picks.star", scale=1.0):
    """Write picks as one RELION STAR file per micrograph, as they arrive.

    Consumes ``(measurement, detections)`` pairs one at a time (an
    estimator's ``predict_per_measurement(X)``), turns each into picks
    (:func:`picks_table`) and writes them with :func:`write_star` to the
    micrograph's own file (:func:`star_paths`), so memory holds one
    micrograph's picks at a time, however many micrographs there are.
    Every file is written to a temporary name and renamed when complete:
    a file named ``*_picks.star`` is always finished.  A micrograph without
    picks gets a file with the columns and no rows.

    Parameters
    ----------
    detections : iterable of (int, structured ndarray)
        Each micrograph's index and its rows of ``predict``.
    image_size : int
        ``L``.
    output_dir : str or Path
        The directory of the files (created if missing).
    micrograph_names : sequence of str
        One name per micrograph: the files' names and ``rlnMicrographName``.
    overwrite : bool, default=False
        Replace existing files.  Otherwise any existing target is an error
        raised before anything is consumed or written.
    suffix : str, default="_picks.star"
        Appended to each micrograph's stem.
    scale : float or (float, float), default=1.0
        Original pixels per fitted pixel (:func:`picks_table`).

    Returns
    -------
    paths : list of Path
        The files written, in the order of ``detections``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import starfile
    >>> from mtdlearn.data.star import write_star_per_micrograph
    >>> dtype = [("measurement", int), ("row", int), ("col", int), ("angle", float),
    ...          ("probability", float)]
    >>> per_micrograph = [(0, np.array([(0, 10, 20, 0.5, 0.9)], dtype=dtype)),
    ...                   (1, np.array([], dtype=dtype))]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = write_star_per_micrograph(per_micrograph, 5, tmp, ["a.mrc", "b.mrc"])
    ...     [(p.name, len(starfile.read(p))) for p in paths]
    [('a_picks.star', 1), ('b_picks.star', 0)]
    """
    names = list(micrograph_names)
    targets = star_paths(names, output_dir, suffix)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir {output_dir} is not a directory")
    if not overwrite:
        existing = [str(p) for p in targets if p.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} exists ({len(existing)} of the "
                                  f"{len(targets)} files); pass overwrite=True to replace")
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, det in detections:
        if not 0 <= i < len(names):
            raise ValueError(f"micrograph_names has {len(names)} names; got the detections "
                             f"of micrograph {i}")
        written.append(write_star(picks_table(det, image_size, names, scale), targets[i],
                                  overwrite=overwrite))
    return written


# ----------------------------------------------------------------------
# micrographs' CTFs (RELION 3.1+ micrograph STAR files)

#: Columns of ``data_micrographs`` that hold a micrograph's CTF.
CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
#: Columns of ``data_optics`` an optics group needs (besides its pixel size).
OPTICS_COLUMNS = ("rlnOpticsGroup", "rlnVoltage", "rlnSphericalAberration",
                  "rlnAmplitudeContrast")


class MicrographCTF(NamedTuple):
    """A micrograph's name and its CTF: a pair, as :func:`read_micrograph_ctfs` returns.

    Parameters
    ----------
    name : str
        ``rlnMicrographName``, as written in the file (relative to the
        RELION project directory).
    ctf : CTF
        The micrograph's :class:`~mtdlearn.imaging.ctf.CTF`, with its pixel
        size.

    Examples
    --------
    >>> from mtdlearn.data.star import MicrographCTF
    >>> from mtdlearn.imaging.ctf import CTF
    >>> name, ctf = MicrographCTF("MotionCorr/a.mrc", CTF(15000.0))
    >>> name, ctf.defocus_v
    ('MotionCorr/a.mrc', 15000.0)
    """

    name: str
    ctf: CTF


def _table(blocks, name):
    """Block ``name`` as a DataFrame (a one-row simple block too), or None."""
    import pandas as pd

    block = blocks.get(name)
    if isinstance(block, dict):
        return pd.DataFrame([block])
    return block


def read_micrograph_ctfs(path):
    """Read the CTF of every micrograph of a RELION 3.1+ micrograph STAR file.

    Reads ``data_micrographs`` (``rlnMicrographName``, ``rlnOpticsGroup``,
    ``rlnDefocusU``, ``rlnDefocusV``, ``rlnDefocusAngle``, and
    ``rlnPhaseShift`` and ``rlnCtfBfactor`` when present) and
    ``data_optics`` (``rlnOpticsGroup``, ``rlnVoltage``,
    ``rlnSphericalAberration``, ``rlnAmplitudeContrast``,
    ``rlnMicrographPixelSize`` or else ``rlnImagePixelSize``, and
    ``rlnPhaseShift`` when the micrographs have none), as CTF estimation
    (``micrographs_ctf.star``) writes them.  The file is only read.

    Parameters
    ----------
    path : str or Path
        The STAR file.

    Returns
    -------
    ctfs : list of MicrographCTF
        One ``(name, ctf)`` pair per micrograph, in the file's order.

    Raises
    ------
    ValueError
        If the file has no ``data_micrographs`` or ``data_optics`` table
        (RELION < 3.1 files have no optics table), no CTF columns (CTF
        estimation has not been run), or values out of range (the message
        names the micrograph).
    ImportError
        If ``starfile`` is not installed.

    Examples
    --------
    >>> import os, tempfile
    >>> from mtdlearn.data.star import read_micrograph_ctfs
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
    ... MotionCorr/a.mrc 1 15123.4 14876.2 37.5
    ... '''
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "micrographs_ctf.star")
    ...     with open(path, "w") as f:
    ...         _ = f.write(text)
    ...     [(name, ctf)] = read_micrograph_ctfs(path)
    >>> name, ctf.defocus_u, ctf.pixel_size
    ('MotionCorr/a.mrc', 15123.4, 1.06)
    """
    starfile = _import_starfile()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path {path} is not a file")
    blocks = starfile.read(path, always_dict=True, parse_as_string=["rlnMicrographName"])
    micrographs, optics = _table(blocks, "micrographs"), _table(blocks, "optics")
    if micrographs is None:
        found = ", ".join(f"data_{b}" for b in blocks) or "none"
        old = " (a file of RELION < 3.1 has no data_optics table: convert it with RELION " \
            "3.1+, relion_convert_star)" if optics is None else ""
        raise ValueError(f"{path} has no data_micrographs table (tables found: {found}); "
                         "expected a RELION 3.1+ micrograph STAR file such as "
                         f"micrographs_ctf.star{old}")
    missing = [c for c in CTF_COLUMNS if c not in micrographs.columns]
    if missing:
        raise ValueError(f"{path} has no CTF columns ({', '.join(missing)}); run CTF "
                         "estimation first")
    if "rlnMicrographName" not in micrographs.columns:
        raise ValueError(f"{path} has no rlnMicrographName column in data_micrographs")
    if optics is None:
        raise ValueError(f"{path} has no data_optics table: a STAR file of RELION < 3.1; "
                         "convert it with RELION 3.1+ (relion_convert_star)")
    groups = _optics_groups(optics, path)
    if "rlnOpticsGroup" in micrographs.columns:
        group_of = micrographs["rlnOpticsGroup"].tolist()
    elif len(groups) == 1:
        group_of = [next(iter(groups))] * len(micrographs)
    else:
        raise ValueError(f"{path} has {len(groups)} optics groups and no rlnOpticsGroup "
                         "column in data_micrographs")

    def column(name, default=0.0):
        if name in micrographs.columns:
            return micrographs[name].tolist()
        return [default] * len(micrographs)

    result = []
    rows = zip(micrographs["rlnMicrographName"].tolist(), group_of, column("rlnDefocusU"),
               column("rlnDefocusV"), column("rlnDefocusAngle"), column("rlnPhaseShift", None),
               column("rlnCtfBfactor"))
    for name, group, u, v, angle, phase, b_factor in rows:
        if group not in groups:
            raise ValueError(f"{path}: micrograph {name!r} is in optics group {group!r}, "
                             f"which data_optics does not define (groups: {sorted(groups)})")
        optic = dict(groups[group])
        if phase is not None:
            optic["phase_shift"] = phase
        try:
            ctf = CTF(defocus_u=u, defocus_v=v, defocus_angle=angle, b_factor=b_factor,
                      **optic)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{path}, micrograph {name!r}: {exc}") from None
        result.append(MicrographCTF(str(name), ctf))
    return result


def _optics_groups(optics, path):
    """``{group number: CTF keyword arguments}`` of a ``data_optics`` table."""
    missing = [c for c in OPTICS_COLUMNS if c not in optics.columns]
    if missing:
        raise ValueError(f"{path}: data_optics has no column(s) {', '.join(missing)}")
    for pixel_column in ("rlnMicrographPixelSize", "rlnImagePixelSize"):
        if pixel_column in optics.columns:
            break
    else:
        raise ValueError(f"{path}: data_optics has no pixel size (rlnMicrographPixelSize "
                         "or rlnImagePixelSize)")
    names = {"rlnVoltage": "voltage", "rlnSphericalAberration": "spherical_aberration",
             "rlnAmplitudeContrast": "amplitude_contrast", pixel_column: "pixel_size",
             "rlnPhaseShift": "phase_shift"}
    groups = {}
    for row in optics.to_dict("records"):
        groups[row["rlnOpticsGroup"]] = {key: row[col] for col, key in names.items()
                                         if col in row}
    return groups


def write_micrograph_ctfs(path, names, ctfs, overwrite=False):
    """Write micrographs' CTFs as a RELION 3.1 micrograph STAR file, atomically.

    One optics group per distinct (voltage, spherical aberration, amplitude
    contrast, pixel size), numbered from 1 in order of first appearance;
    ``rlnMicrographOriginalPixelSize`` is written equal to the pixel size.
    ``rlnPhaseShift`` and ``rlnCtfBfactor`` are written (per micrograph)
    when some CTF has a non-zero one.  Floats are written with 17
    significant digits, so :func:`read_micrograph_ctfs` gives back equal
    CTFs.

    Parameters
    ----------
    path : str or Path
        The ``.star`` file to write.
    names : sequence of str
        ``rlnMicrographName`` of each micrograph: non-empty, without
        whitespace, quotes or ``#``.
    ctfs : sequence of CTF
        The CTF of each micrograph.
    overwrite : bool, default=False
        Replace an existing file; otherwise an existing file is an error.

    Returns
    -------
    path : Path
        The file written (through a temporary file beside it, renamed).

    Examples
    --------
    >>> import os, tempfile
    >>> from mtdlearn.data.star import read_micrograph_ctfs, write_micrograph_ctfs
    >>> from mtdlearn.imaging.ctf import CTF
    >>> ctfs = [CTF(15000.0, 14000.0, 30.0, pixel_size=1.06), CTF(21000.0, pixel_size=1.06)]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_micrograph_ctfs(os.path.join(tmp, "mics.star"), ["a.mrc", "b.mrc"], ctfs)
    ...     read_micrograph_ctfs(path) == list(zip(["a.mrc", "b.mrc"], ctfs))
    True
    """
    import pandas as pd

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if isinstance(names, str):
        raise TypeError("names must be a sequence of str, got one str")
    names, ctfs = list(names), list(ctfs)
    if len(names) != len(ctfs):
        raise ValueError(f"names and ctfs must have the same length, got {len(names)} and "
                         f"{len(ctfs)}")
    for i, (name, ctf) in enumerate(zip(names, ctfs)):
        if not isinstance(name, str) or not name or any(
                c.isspace() or c in "\"'#" for c in name):
            raise ValueError(f"names[{i}] must be a non-empty str without whitespace, quotes "
                             f"or '#', got {name!r}")
        if not isinstance(ctf, CTF):
            raise TypeError(f"ctfs[{i}] must be a CTF, got {type(ctf).__name__}")
    keys = [(c.voltage, c.spherical_aberration, c.amplitude_contrast, c.pixel_size)
            for c in ctfs]
    group_of = {}
    for key in keys:
        group_of.setdefault(key, len(group_of) + 1)
    optics = pd.DataFrame({
        "rlnOpticsGroupName": [f"opticsGroup{g}" for g in group_of.values()],
        "rlnOpticsGroup": list(group_of.values()),
        "rlnMicrographOriginalPixelSize": [k[3] for k in group_of],
        "rlnVoltage": [k[0] for k in group_of],
        "rlnSphericalAberration": [k[1] for k in group_of],
        "rlnAmplitudeContrast": [k[2] for k in group_of],
        "rlnMicrographPixelSize": [k[3] for k in group_of],
    }, columns=["rlnOpticsGroupName", "rlnOpticsGroup", "rlnMicrographOriginalPixelSize",
                "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                "rlnMicrographPixelSize"])
    micrographs = pd.DataFrame({
        "rlnMicrographName": pd.Series(names, dtype=object),
        "rlnOpticsGroup": pd.Series([group_of[k] for k in keys], dtype=np.int64),
        "rlnDefocusU": pd.Series([c.defocus_u for c in ctfs], dtype=np.float64),
        "rlnDefocusV": pd.Series([c.defocus_v for c in ctfs], dtype=np.float64),
        "rlnCtfAstigmatism": pd.Series([abs(c.defocus_u - c.defocus_v) for c in ctfs],
                                       dtype=np.float64),
        "rlnDefocusAngle": pd.Series([c.defocus_angle for c in ctfs], dtype=np.float64),
    })
    if any(c.phase_shift != 0.0 for c in ctfs):
        micrographs["rlnPhaseShift"] = np.array([c.phase_shift for c in ctfs], dtype=np.float64)
    if any(c.b_factor != 0.0 for c in ctfs):
        micrographs["rlnCtfBfactor"] = np.array([c.b_factor for c in ctfs], dtype=np.float64)
    return _write_atomically({"optics": optics, "micrographs": micrographs}, path, overwrite)
