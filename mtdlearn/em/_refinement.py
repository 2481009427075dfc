"""Coarse-to-fine rotation grids: the phases of an int ``refinement``.

:class:`~mtdlearn.em.estimator.ApproxEMEstimator`'s ``_run_start`` hook
calls :func:`run` for every start that is not checkpointed (and the
band-limit selection, :mod:`mtdlearn.em._bandlimit_selection`, for the basis
it chose).  Without an int ``refinement`` it is one call of the estimator's
``_run_grid``; with one, a ``_run_grid`` per grid of ``K, 2K, 4K, ...`` and
``r K`` rotations, each from the previous grid's fixed point, the coarser
ones stopped early by :func:`coarse_tol`.
"""

from functools import partial

from ..basis.rotations import UniformRotationGrid, _grid_schedule
from ..likelihood.hypotheses import HypothesisSpace
from ._state import state_of


#: With ``refinement``, a coarser grid's phase stops when its gain per patch
#: is below this (or ``tol``, if larger): it only has to land near the next
#: grid's fixed point.  Measured at N=300, SNR 500, K=16, r=4, one thread
#: (min of 3): coarse phases run to ``tol`` 9.8 s, at 1e-5 7.4 s, at 1e-4
#: 6.8 s, at 1e-3 8.5 s, all with error 0.0024; plain K=16 took 4.1 s.
_COARSE_TOL = 1e-4

#: ... or below this fraction of what the phase has gained so far (its
#: objective now minus at its first E-step).  The absolute 1e-4 alone does
#: not scale: a patch's log-likelihood sums over its ``L**2`` pixels and
#: grows with the SNR, so at large L the coarse phases ran on long after
#: their error had stalled.  Measured, one core each (docs/results.rst):
#: L = 21, N = 1536, SNR 3, seeds 0-2, the K = 16 phase ran 18 / 13 / 42
#: cycles with 1e-4 alone and 4 / 4 / 4 with this rule; eq. (19) <= 0.08
#: after 138 / 103 / 299 s before, after cycle 5 (47-101 s) now, the same
#: error after 300 s (0.063 / 0.057 / 0.057 before, 0.063 / 0.058 / 0.059
#: now).  L = 41, N = 4096: the K = 16 phase ran 20 cycles (762 s), now 4
#: (176 s).  L = 5, N = 300, SNR 500, r = 4 (``bench_refinement.py``):
#: 90 E-steps, 4.0 s, error 0.00239 before; 83, 3.8 s, 0.00246 now.
_COARSE_RELATIVE_TOL = 1e-3


def factor(refinement):
    """The oversampling factor ``r`` of ``refinement`` (``None``: one grid;
    ``"auto"`` has set ``rotations_`` to its one grid)."""
    if refinement is None or isinstance(refinement, str):
        return None
    return int(refinement)


def coarse_tol(tol, history):
    """A coarse grid's phase stops below this gain per patch (see ``_COARSE_TOL``):
    ``tol`` is the estimator's ``tol_``, ``history`` the phase's objectives."""
    return max(tol, _COARSE_TOL, _COARSE_RELATIVE_TOL * (history[-1] - history[0]))


def run(est, prepared, state, seed, n_jobs):
    """One start of ``est`` from ``state``, coarse to fine over the grids of
    ``refinement`` (one grid without it); the result of ``_run_start``, whose
    history holds every grid's phase."""
    r = factor(est.refinement)
    if r is None or est.max_iter == 0:
        return est._run_grid(prepared, state, seed, n_jobs)
    # coarse to fine: from each grid's (loosely converged) fixed point to
    # the next, finer grid of the same uniform family; the last grid, of
    # `refinement` K rotations, runs to `tol`
    sizes = _grid_schedule(len(est.angles_), r)
    res, n_iter, n_e_steps, n_recentred, history = None, 0, 0, 0, []
    for i, size in enumerate(sizes):
        last = i == len(sizes) - 1
        if i == 0:
            phase = prepared
        else:
            grid = UniformRotationGrid(size)
            phase = prepared.with_space(HypothesisSpace(
                prepared.hypotheses.basis, grid.get_angles(),
                n_components=prepared.hypotheses.n_components))
            state = state_of(res)
        if last:
            coarse_n_iter = n_iter
        res = est._run_grid(phase, state, seed, n_jobs,
                            tol=None if last else partial(coarse_tol, est.tol_))
        n_iter += res["n_iter"]
        n_e_steps += res["extra"]["n_e_steps_"]
        n_recentred += res["extra"]["n_recentred_"]
        history += res["extra"]["log_likelihood_history_"]
    extra = res["extra"]
    extra.update(n_e_steps_=n_e_steps, n_recentred_=n_recentred, coarse_n_iter_=coarse_n_iter,
                 log_likelihood_history_=history, rotations_=grid,
                 angles_=grid.get_angles())
    res["n_iter"] = n_iter
    return res
