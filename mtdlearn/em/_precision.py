"""The precision of the E-steps: ``dtype="auto"`` runs float32 E-steps
while their gains are above float32's rounding, then finishes in float64.

:class:`~mtdlearn.em.estimator.ApproxEMEstimator` calls :func:`start_dtype`
when it sets up a start (``_run_grid``, and the band-limit comparison of
:mod:`mtdlearn.em._bandlimit_selection`), and :func:`finish_in_float64`
after every iteration of its ``_step`` hook; when that switches, ``_step``
repeats the E-step in float64 and the loop's ``_gain`` hook reports no gain
for the change of precision.
"""

import numpy as np

from ..initializers import data_statistics

#: Above this estimated float32 error of the logits (relative posterior error),
#: ``dtype="auto"`` runs in float64 from the start: the expansion
#: ``||P||**2 - 2 P.T + ||T||**2`` cancels when the patch energy is much larger
#: than ``sigma**2`` (high SNR), and float32 keeps ~7 digits of each term.
_FLOAT32_MAX_ERROR = 1e-3


def float32_resolution(data, state, stats=None, objective=None):
    """Rounding level of float32 E-steps for ``state``.

    Without ``stats``: the float32 error of the logits, ``eps * energy / (2 sigma**2)``
    with the mean patch energy (the terms of the expansion that cancel),
    ``L**2`` times the whole data's mean square (:func:`data_statistics`).
    With ``stats``: the resolution of the mean log-likelihood per patch,
    ``eps * (|objective| + energy / (2 sigma**2)) / sqrt(N_d)`` (independent
    rounding errors of the N_d patch terms).
    """
    eps = np.finfo(np.float32).eps
    if stats is None:
        # the whole data's mean square per pixel times L**2 (memoized: the
        # initializers compute it too; on a distributed source, on the
        # workers), so that the choice is the same in memory and on Dask
        L = data.image_size
        energy = data.memoize(data_statistics, L)[1] * L * L
        return eps * energy / (2.0 * state.noise_variance)
    energy = stats.patch_sq / stats.n_patches
    return eps * (abs(objective) + energy / (2.0 * state.noise_variance)) / np.sqrt(
        stats.n_patches)


def start_dtype(dtype, data, state):
    """The E-steps' dtype at the start from ``state``: the estimator's
    ``dtype``, or for ``"auto"`` float32 unless its logits would cancel
    (high SNR: float64 throughout)."""
    if not isinstance(dtype, str):
        return np.dtype(dtype)
    if float32_resolution(data, state) > _FLOAT32_MAX_ERROR:
        return np.dtype(np.float64)   # high SNR: float32 logits would cancel
    return np.dtype(np.float32)


def finish_in_float64(run, data, state, stats, objective, new_objective, tol, done=False):
    """After an iteration from ``objective`` to ``new_objective``: with
    ``dtype="auto"``, switch ``run`` to float64 once the float32 gain is below
    ``tol`` or float32's resolution, or once ``done`` (the statistical rule,
    :mod:`~mtdlearn.em._stopping`, would stop).  Returns whether it switched
    (the caller then repeats the E-step at ``state`` in float64)."""
    if not (run.finish and run.dtype == np.float32 and not run.incomparable):
        return False
    resolution = float32_resolution(data, state, stats, new_objective)
    if done or new_objective - objective < max(tol, resolution):
        # float32 gains are at its rounding level: finish in float64
        run.dtype = np.dtype(np.float64)
        run.float64_from = run.n_iter
        run.incomparable = True
        return True
    return False
