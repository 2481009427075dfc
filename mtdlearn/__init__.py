"""mtdlearn: two-dimensional multi-target detection with scikit-learn conventions.

Recovers a small image from a large, very noisy measurement that holds many
randomly rotated and translated copies of it (Kreymer, Singer and Bendory,
"An approximate expectation-maximization for two-dimensional multi-target
detection").
"""

from .autocorrelation import AutocorrelationEstimator, AutocorrelationInitializer
from .base import BaseMTDEstimator
from .basis import FourierBesselBasis
from .datasets import make_measurement, make_target
from .em import ApproxEMEstimator
from .initializers import FixedInitializer, RandomInitializer
from .metrics import relative_error
from .multiresolution import MultiresolutionInitializer
from .rotations import UniformRotationGrid

__version__ = "0.1.0"

__all__ = ["ApproxEMEstimator", "AutocorrelationEstimator", "AutocorrelationInitializer",
           "BaseMTDEstimator", "FixedInitializer", "FourierBesselBasis",
           "MultiresolutionInitializer", "RandomInitializer",
           "UniformRotationGrid", "make_measurement", "make_target", "relative_error",
           "__version__"]
