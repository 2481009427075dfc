"""Band-limit selection (``select_bandlimit=True``): fit the full basis
loosely, compare its nested sub-bases by AIC per patch, finish the best.

:class:`~mtdlearn.em.estimator.ApproxEMEstimator`'s ``_run_start`` hook
calls :func:`run` for every start of a fit with ``select_bandlimit`` (and
``max_iter > 0``, not checkpointed).  It calls back the estimator's
``_run_grid``, ``_e_step`` and ``_m_step``, and runs the chosen basis
through the grid refinement (:func:`mtdlearn.em._refinement.run`).
"""

from ..basis._bandlimits import embed_coef, nested_bases
from ..initializers import InitialState
from ..likelihood.hypotheses import HypothesisSpace
from . import _refinement
from ._precision import start_dtype
from ._state import _EMState, _Run

#: With ``select_bandlimit``, the fit in ``basis`` stops when its gain per
#: patch is below this (or ``tol``, if larger) and the band limit is chosen
#: there.  Measured at L=21, N=1536, SNR 3, 61-function target, seed 0: the
#: default basis gains 1.06, 0.057, 0.002 per patch in its first 3 SQUAREM
#: cycles (image error 0.051 reached), then less than 1e-3 for the next 37,
#: which lower the error by 0.003 (docs/results.rst, "Band-limit selection").
_SELECT_TOL = 1e-3


def run(est, prepared, state, seed, n_jobs):
    """Band-limit selection: fit ``basis_`` loosely, choose the nested
    sub-basis of highest AIC per patch (each after one M-step from the
    loose fit's posteriors and one E-step), finish it at ``tol``.  Returns
    the result of ``_run_start``, with ``coef`` in ``basis_`` and the
    choice in ``n_functions_`` and ``bandlimit_path_``."""
    full = est.basis_
    stages = nested_bases(full)
    if len(stages) == 1:   # nothing to choose from
        return _refinement.run(est, prepared, state, seed, n_jobs)
    res = est._run_grid(prepared, state, seed, n_jobs, tol=max(est.tol_, _SELECT_TOL))
    # the comparison in the precision the fit started in (float32 for "auto",
    # unless high SNR): its rounding is far below the AIC's differences
    fit = _EMState(res["coef"], res["shift_probabilities"], res["noise_variance"])
    fit.run = run = _Run(start_dtype(est.dtype, prepared.data, fit))
    objective, stats = est._e_step(prepared, fit, n_jobs)
    n_patches = prepared.data.n_patches
    penalty = 1.0 / n_patches   # -AIC / (2 N_d): 1 / N_d per parameter
    path, best = [], None
    for basis in stages:
        if basis is full:
            phase, cand, value = prepared, fit, objective
        else:
            phase = prepared.with_space(HypothesisSpace(basis, est.angles_))
            cand = est._m_step(phase, fit, stats)
            value, _ = est._e_step(phase, cand, n_jobs)
        score = value - penalty * basis.n_functions
        path.append((basis.n_functions, float(value), float(score)))
        if est.verbose:
            print(f"[{est._verbose_name}] band limit: {basis.n_functions} functions, "
                  f"log-likelihood {value:.10g}, AIC/patch {score:.10g}")
        if best is None or score > best[0]:
            best = (score, basis, phase, cand)
    _, basis, phase, cand = best
    first = res
    res = _refinement.run(est, phase, InitialState(cand.coef, cand.shift_probabilities,
                                                   cand.noise_variance), seed, n_jobs)
    extra = res["extra"]
    extra.update(n_e_steps_=first["extra"]["n_e_steps_"] + run.n_e_steps
                 + extra["n_e_steps_"],
                 n_recentred_=first["extra"]["n_recentred_"] + extra["n_recentred_"],
                 log_likelihood_history_=(first["extra"]["log_likelihood_history_"]
                                          + extra["log_likelihood_history_"]),
                 n_functions_=basis.n_functions, bandlimit_path_=path)
    if "coarse_n_iter_" in extra:
        extra["coarse_n_iter_"] += first["n_iter"]
    res["n_iter"] += first["n_iter"]
    res["coef"] = embed_coef(res["coef"], basis, full)
    return res
