"""Autocorrelation analysis: moments of data and model, their fit, the estimator."""

from .estimator import AutocorrelationEstimator, AutocorrelationInitializer

__all__ = ["AutocorrelationEstimator", "AutocorrelationInitializer"]
