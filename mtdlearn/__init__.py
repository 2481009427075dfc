"""mtdlearn: two-dimensional multi-target detection with scikit-learn conventions.

Recovers a small image from a large, very noisy measurement that holds many
randomly rotated and translated copies of it (Kreymer, Singer and Bendory,
"An approximate expectation-maximization for two-dimensional multi-target
detection").
"""

from .autocorrelation.estimator import AutocorrelationEstimator, AutocorrelationInitializer
from .base import BaseMTDEstimator
from .basis.fourier_bessel import FourierBesselBasis
from .data.simulate import make_measurement, make_target
from .data.particles import make_particle
from .em.estimator import ApproxEMEstimator
from .initializers import FixedInitializer, RandomInitializer
from .metrics import component_errors, relative_error
from .em.multiresolution import MultiresolutionInitializer
from .basis.rotations import UniformRotationGrid

__version__ = "0.1.0"

__all__ = ["ApproxEMEstimator", "AutocorrelationEstimator", "AutocorrelationInitializer",
           "BaseMTDEstimator", "FixedInitializer", "FourierBesselBasis",
           "MultiresolutionInitializer", "RandomInitializer",
           "UniformRotationGrid", "make_measurement", "make_particle", "make_target",
           "component_errors", "relative_error", "__version__"]
