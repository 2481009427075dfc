"""The approximate likelihood of the patches (eq. 5) and its EM steps.

The hypotheses (component, rotation, shift) of a patch, their templates,
the streamed E-step kernels (GEMM and FFT), per-patch posteriors, the
sufficient statistics and the M-step.  Both estimators score and predict
with this model, so it sits below :mod:`mtdlearn.base`; the EM estimator
and its accelerations (:mod:`mtdlearn.em`) are built on it.
"""
