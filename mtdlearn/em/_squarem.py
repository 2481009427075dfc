"""SQUAREM (Varadhan & Roland, 2008), scheme S3, on the EM map: the
``acceleration="squarem"`` strategy.

:class:`~mtdlearn.em.estimator.ApproxEMEstimator`'s ``_step`` hook calls
:func:`cycle` once per iteration with ``acceleration="squarem"``, and with
``"incremental"`` once the incremental phase has ended (or when there are
fewer than two blocks).  A cycle calls back the estimator's ``_e_step`` and
``_m_step``; its adaptive maximum step lives in the start's
:class:`~mtdlearn.em._state._Run` (``step_max``).  The scheme is spelled out
in the estimator's Notes.
"""

import numpy as np

from . import _stopping
from ._state import _EMState

#: SQUAREM's step bounds and the factor of the adaptive maximum step
#: (Varadhan & Roland 2008, section 6: step.min0 = 1, step.max0 = 1, mstep = 4).
_STEP_MIN, _STEP_MAX0, _MSTEP = 1.0, 1.0, 4.0


class _Coordinates:
    """Unconstrained coordinates of (alpha, rho, sigma**2[, w]) for extrapolation:
    ``alpha`` as is, ``log rho`` on the support of ``rho`` (back through a
    softmax, so ``rho`` stays on the simplex and zeros stay zero),
    ``log sigma**2`` when it is estimated, and a mixture's ``log w`` (its
    components' abundances, back through a softmax too)."""

    def __init__(self, state, estimate_noise):
        self.support = np.flatnonzero(np.ravel(state.shift_probabilities) > 0)
        self.shape = np.shape(state.shift_probabilities)
        self.coef_shape = np.shape(state.coef)
        self.p = np.size(state.coef)
        self.estimate_noise = estimate_noise
        self.noise_variance = state.noise_variance
        self.n_weights = 0 if state.weights is None else np.size(state.weights)

    def encode(self, state):
        tiny = np.finfo(np.float64).tiny
        rho = np.ravel(state.shift_probabilities)[self.support]
        parts = [np.ravel(np.asarray(state.coef, dtype=np.float64)),
                 np.log(np.maximum(rho, tiny))]
        if self.estimate_noise:
            parts.append([np.log(state.noise_variance)])
        if self.n_weights:
            parts.append(np.log(np.maximum(state.weights, tiny)))
        return np.concatenate(parts)

    def decode(self, x, run):
        p, m = self.p, self.support.size
        logr = x[p:p + m]
        r = np.exp(logr - logr.max())
        rho = np.zeros(int(np.prod(self.shape)))
        rho[self.support] = r / r.sum()
        weights = None
        if self.n_weights:
            logw = x[len(x) - self.n_weights:]
            weights = np.exp(logw - logw.max())
            weights /= weights.sum()
        sigma2 = (float(np.exp(x[p + m])) if self.estimate_noise else self.noise_variance)
        return _EMState(x[:p].copy().reshape(self.coef_shape), rho.reshape(self.shape), sigma2,
                        weights, run=run)


def cycle(est, prepared, state, objective, stats, n_jobs):
    """One SQUAREM cycle (scheme S3) with the monotone safeguard: 3 E-steps
    (2 when the step is 1).

    ``x1 = F(x0)`` and ``x2 = F(x1)`` cost one E-step (at ``x1``; the one at
    ``x0`` is the previous cycle's last).  The extrapolated point ``x'`` is
    accepted when its log-likelihood (the E-step that its stabilizing EM step
    needs anyway) is not below ``x0``'s; the cycle then ends at ``F(x')``,
    which EM's monotonicity keeps at least as good.  Otherwise it ends at
    ``x2 = F(F(x0))`` and the maximum step shrinks.  The last E-step (at the
    end point) gives the cycle's log-likelihood and the next cycle's first map.
    Returns ``(state, objective, stats)`` at the end point, as the loop's
    ``_step`` does.
    """
    run = state.run
    x1 = est._m_step(prepared, state, stats)
    l1, s1 = est._e_step(prepared, x1, n_jobs)
    x2 = est._m_step(prepared, x1, s1)
    coords = _Coordinates(state, prepared.estimate_noise)
    v0, v1, v2 = coords.encode(state), coords.encode(x1), coords.encode(x2)
    r = v1 - v0
    v = v2 - 2.0 * v1 + v0
    nr, nv = np.linalg.norm(r), np.linalg.norm(v)
    _stopping.record_squarem(run, r, v, coords.p, state.coef)
    step = float(np.clip(nr / nv, _STEP_MIN, run.step_max)) if (
        np.isfinite(nr) and np.isfinite(nv) and nv > 0) else _STEP_MIN   # -alpha
    end = x2
    if abs(step - 1.0) >= 0.01:   # alpha = -1 would be x2 = F(F(x0)) itself
        lp = np.nan
        try:
            xp = coords.decode(v0 + 2.0 * step * r + step * step * v, run)
            lp, sp = est._e_step(prepared, xp, n_jobs)
        except (FloatingPointError, ValueError, np.linalg.LinAlgError):
            pass
        if np.isfinite(lp) and lp >= objective:
            end = est._m_step(prepared, xp, sp)        # the stabilizing EM step
            if step == run.step_max:
                run.step_max *= _MSTEP
        elif step == run.step_max:   # worse: fall back to F(F(x0)), shrink the step
            run.step_max = max(_STEP_MAX0, run.step_max / _MSTEP)
    elif step == run.step_max:
        run.step_max *= _MSTEP
    new_objective, new_stats = est._e_step(prepared, end, n_jobs)
    return end, new_objective, new_stats
