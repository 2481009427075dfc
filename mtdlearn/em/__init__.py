"""The approximate EM estimator (Algorithm 1) and the strategies its loop calls."""

from .estimator import ApproxEMEstimator
from .multiresolution import MultiresolutionInitializer

__all__ = ["ApproxEMEstimator", "MultiresolutionInitializer"]
