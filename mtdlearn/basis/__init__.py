"""The steerable basis of the image, rotation grids and nested band limits.

The lowest layer above the package's utilities: it knows images and their
coefficients, nothing of measurements.  :class:`~mtdlearn.FourierBesselBasis` is one
implementation of the basis protocol (:mod:`~mtdlearn.basis.protocol`,
:func:`~mtdlearn.basis.protocol.check_basis`); any object that follows it can be
passed as ``basis``.
"""

from .fourier_bessel import FourierBesselBasis
from .protocol import BASIS_PROTOCOL, check_basis, rotated_evaluation
from .rotations import UniformRotationGrid, auto_refinement, check_rotation_grid

__all__ = ["BASIS_PROTOCOL", "FourierBesselBasis", "UniformRotationGrid", "auto_refinement",
           "check_basis", "check_rotation_grid", "rotated_evaluation"]
