"""Writing picks as RELION STAR files (never over an existing file unless asked).

:func:`picks_table` turns an estimator's detections into picks with
RELION's columns (:data:`STAR_COLUMNS`); :func:`write_star` writes them to
one file, :func:`write_star_per_micrograph` to one file per micrograph
(named by :func:`star_paths`) as they arrive.  Every file is written to a
temporary name and renamed when complete.  Needs the optional
``starfile`` package (``pip install mtdlearn[star]``, with ``pandas``).
"""

from pathlib import Path

import numpy as np

__all__ = ["picks_table", "write_star", "star_paths", "write_star_per_micrograph"]


#: RELION's columns of a picks table (``src/autopicker.cpp``).
STAR_COLUMNS = ("rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnAnglePsi",
                "rlnAutopickFigureOfMerit")


def picks_table(detections, image_size, micrograph_names=None):
    """Turn ``predict``'s detections into picks with RELION's columns.

    One row per occurrence: a copy reported by several patches (same
    micrograph and corner) is kept once, with its highest probability.

    Conventions (:doc:`/scaling`, "Picks for cryo-EM tools"), in the axes of
    the stored array, ``x`` along the columns and ``y`` along the rows,
    the first pixel at ``(0, 0)`` (RELION's convention for image centres):

    * ``rlnCoordinateX = col + (L - 1) / 2`` and ``rlnCoordinateY = row +
      (L - 1) / 2``: the centre pixel of the ``L x L`` copy whose top-left
      corner ``predict`` reports (RELION's coordinates are particle
      centres, in pixels).
    * ``rlnAnglePsi = (-degrees(angle)) mod 360``.  A copy at ``angle =
      phi`` is ``F_phi(r, theta) = F(r, theta + phi)`` with ``theta =
      atan2(y, x)`` (:mod:`mtdlearn.basis.fourier_bessel`): the estimate turned by
      ``-phi``, from ``+x`` towards ``+y``.  RELION's ``psi`` is the angle
      that turns the reference into the particle, positive from ``+x``
      towards ``+y`` (right-handed): hence ``psi = -phi``.
    * ``rlnAutopickFigureOfMerit``: the posterior probability of the MAP
      hypothesis.

    Parameters
    ----------
    detections : structured ndarray
        The output of an estimator's ``predict``.
    image_size : int
        ``L``.
    micrograph_names : sequence of str, default=None
        Name of each micrograph (e.g. ``read_micrographs(...).names``);
        ``None`` names them ``micrograph_0``, ``micrograph_1``, ...

    Returns
    -------
    picks : pandas.DataFrame
        Columns ``micrograph`` (index) and :data:`STAR_COLUMNS`, sorted by
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
    return pd.DataFrame({
        "micrograph": meas,
        "rlnMicrographName": names[meas] if len(meas) else np.array([], dtype=object),
        "rlnCoordinateX": det["col"] + (L - 1) / 2.0,
        "rlnCoordinateY": det["row"] + (L - 1) / 2.0,
        "rlnAnglePsi": np.mod(-np.degrees(det["angle"]), 360.0),
        "rlnAutopickFigureOfMerit": det["probability"].astype(np.float64),
    })


def write_star(picks, path, micrograph_names=None, overwrite=False):
    """Write picks as a RELION STAR file (with ``starfile``), atomically.

    Parameters
    ----------
    picks : pandas.DataFrame
        The output of :func:`picks_table` (only :data:`STAR_COLUMNS` are
        written).
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
    import os
    import tempfile

    import starfile

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    table = picks[list(STAR_COLUMNS)].copy()
    if micrograph_names is not None:
        table["rlnMicrographName"] = np.asarray(list(micrograph_names),
                                                dtype=object)[picks["micrograph"].to_numpy()]
    fd, tmp = tempfile.mkstemp(suffix=".star", dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        starfile.write(table, tmp, float_format="%.17g", overwrite=True)
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
                              overwrite=False, suffix="_picks.star"):
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
        written.append(write_star(picks_table(det, image_size, names), targets[i],
                                  overwrite=overwrite))
    return written
