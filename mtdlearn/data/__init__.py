"""Measurements: validation and tiling, patch sources, files and the simulator.

Patch sources (:class:`~mtdlearn.data.patches.PatchData` for arrays and
memory-mapped files, :class:`~mtdlearn.data._dask.DaskPatchData` for
Dask arrays) hand the estimators their ``L x L`` patches of measurements
validated and tiled by :mod:`~mtdlearn.data.measurements`;
:mod:`~mtdlearn.data.io` reads MRC and ``.npy`` files and
:mod:`~mtdlearn.data.star` writes RELION STAR picks and reads micrographs'
CTFs, :mod:`~mtdlearn.data.micrograph_star` finds a micrograph STAR file's
micrographs in their RELION project (:mod:`~mtdlearn.data.project` writes a
simulated project);
:mod:`~mtdlearn.data.simulate` draws measurements from the model and
:mod:`~mtdlearn.data.particles` compact, particle-like targets.
"""

from .io import micrograph_names, read_measurement, read_micrographs
from .star import picks_table, write_star, write_star_per_micrograph
from .micrograph_star import read_micrograph_star
from .simulate import MeasurementTruth, make_measurement, make_target
from .particles import make_particle

__all__ = ["MeasurementTruth", "make_measurement", "make_particle", "make_target",
           "micrograph_names", "picks_table", "read_measurement", "read_micrograph_star", "read_micrographs",
           "write_star", "write_star_per_micrograph"]
