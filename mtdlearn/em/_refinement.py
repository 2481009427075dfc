"""Coarse-to-fine rotation grids: the phases of an int ``refinement``.

:class:`~mtdlearn.em.estimator.ApproxEMEstimator`'s ``_run_start`` hook
calls :func:`run` for every start that is not checkpointed (and the
band-limit selection, :mod:`mtdlearn.em._bandlimit_selection`, for the basis
it chose).  Without an int ``refinement`` it is one call of the estimator's
``_run_grid``; with one, a ``_run_grid`` per grid of ``K, 2K, 4K, ...`` and
``r K`` rotations, each from the previous grid's fixed point, the coarser
ones stopped early by :func:`coarse_tol`.

With ``refinement="auto"`` (:func:`run_adaptive`), the fit starts on the
grid the basis needs; each grid's phase is tested once (:class:`_Test`), and
while the data resolve the angle finer than the grid (:func:`concentration`
at least :data:`_CONCENTRATED`) and doubling it would move the image by a
share of its standard error (:func:`doubling_change`), the phase stops there
and the fit continues on twice as many rotations.  A phase whose test fails
runs on to ``tol``.
"""

from functools import partial

import numpy as np

from ..basis.rotations import UniformRotationGrid, _grid_schedule
from ..likelihood.hypotheses import HypothesisSpace
from ..likelihood.posteriors import build_per_patch_model, estep_detections
from . import _stopping
from ._state import after_phase, state_of

#: ``refinement="auto"`` doubles the grid while the median posterior of the
#: MAP hypothesis of the patches that hold a copy is at least this.  A
#: posterior over the grid like a Gaussian of standard deviation ``s`` in
#: the angle, sampled at the grid's step ``h``, keeps 0.99 on one point when
#: ``s`` is below ``h / 3.3``: the data resolve the angle finer than the
#: grid.  Measured at the truth, L = 5, the paper's basis, K = 16 / 32 / 64
#: (docs/results.rst): 1.000 / 1.000 / 0.978 at SNR 500, 0.999 / 0.912 /
#: 0.620 at SNR 100, 0.962 / 0.700 / 0.491 at SNR 50, 0.342 at SNR 5, 0.227
#: at SNR 2; an L = 21 particle at SNR 3 on its 32-point grid: 0.932.
_CONCENTRATED = 0.99

#: ... and while doubling would move the image by at least this many of its
#: standard errors (:func:`doubling_change`; the stopping rule's share,
#: :data:`mtdlearn.em._stopping._SHARE`: a smaller change is not worth a
#: grid twice as costly).
_MIN_CHANGE = _stopping._SHARE

#: The grid bias's correction ``1 / sinc(nu / K)`` is trusted up to this
#: factor (``sinc`` vanishes at ``nu = K``).
_MAX_CORRECTION = 10.0

#: ... at most this many times (the grid at most 8 times the basis's).
_MAX_DOUBLINGS = 3

#: ... tested once a grid's gain per patch is below this (or
#: :func:`coarse_tol`, if larger).  With :func:`coarse_tol` alone, the
#: K = 32 phase at L = 5, N = 300, SNR 500 ran 11 cycles of gains near
#: 5e-4 per patch before its test; with 1e-3, 6, and the fit took 50
#: E-steps, 2.2 s, error 0.00239, against 68, 2.8 s, 0.00245.  With 5e-3
#: (2026-12-07, after the stopping rule left out the image's rotation) the
#: K = 32 phase tests after 3 cycles: the fit takes 31 E-steps instead of
#: 40 at error 0.00239 instead of 0.00254; at N = 300 and SNR 100, 50 and
#: 20 nothing changes (the same grids, E-steps and errors).
_TEST_TOL = 5e-3

#: :func:`concentration` looks at the first this many patches (in order
#: over the measurements, the same on a distributed source; the formation
#: groups' in turn).
_N_PATCHES = 2000


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


def check(refinement):
    """Raise ``ValueError`` unless ``refinement`` is ``None``, ``"auto"`` or an
    int ``>= 2``."""
    if refinement is None or (isinstance(refinement, str) and refinement == "auto"):
        return
    if (isinstance(refinement, bool) or not isinstance(refinement, (int, np.integer))
            or refinement < 2):
        raise ValueError("refinement must be None, 'auto' or an int >= 2 (the oversampling "
                         f"factor of the rotation grid), got {refinement!r}")


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
    ``refinement`` (one grid without it; :func:`run_adaptive` for
    ``"auto"``); the result of ``_run_start``, whose history holds every
    grid's phase."""
    r = factor(est.refinement)
    if (isinstance(est.refinement, str) and est.max_iter > 0
            and isinstance(est.rotations_, UniformRotationGrid)):
        return run_adaptive(est, prepared, state, seed, n_jobs)
    if r is None or est.max_iter == 0:
        return est._run_grid(prepared, state, seed, n_jobs)
    # coarse to fine: from each grid's (loosely converged) fixed point to
    # the next, finer grid of the same uniform family; the last grid, of
    # `refinement` K rotations, runs to `tol`
    sizes = _grid_schedule(len(est.angles_), r)
    res = None
    for i, size in enumerate(sizes):
        last = i == len(sizes) - 1
        grid = None if i == 0 else UniformRotationGrid(size)
        phase = prepared if grid is None else _on_grid(prepared, grid)
        out = est._run_grid(phase, state if res is None else state_of(res), seed, n_jobs,
                            tol=None if last else partial(coarse_tol, est.tol_))
        res = _continued(res, out, grid)
    return res


def _on_grid(prepared, grid):
    """``prepared`` with the hypotheses of the rotations of ``grid``."""
    space = prepared.hypotheses
    return prepared.with_space(HypothesisSpace(space.basis, grid.get_angles(),
                                               n_components=space.n_components))


def _continued(res, out, grid):
    """The start's result after phase ``out`` on ``grid``, continued from the
    phases of ``res`` (``None``: ``out`` is the first): the counters and
    history of all of them, ``coarse_n_iter_`` those before ``out``."""
    if res is None:
        return out
    res = after_phase(res, out, "coarse_n_iter_")
    res["extra"].update(rotations_=grid, angles_=grid.get_angles())
    return res


def concentration(est, prepared, state, n_jobs):
    """The median posterior probability of the MAP hypothesis among the
    patches whose MAP is a copy, over the first :data:`_N_PATCHES` patches
    (of each formation group in turn; 0 when none holds one): how sharply
    the data pin each copy's rotation and shift on the grid of ``prepared``."""
    groups = (((prepared.data, prepared.hypotheses),) if prepared.groups is None
              else prepared.groups)
    left, found = _N_PATCHES, []
    for data, space in groups:
        if left <= 0:
            break
        model = build_per_patch_model(state.coef, state.shift_probabilities,
                                      state.noise_variance, space, state.weights)
        # on Dask, each micrograph's part on its worker: only detections travel
        stop = min(data.n_patches, left)
        found.append(estep_detections(data, model, (0, stop), n_jobs=n_jobs,
                                      working_memory=est.working_memory)[2])
        left -= stop
    p = np.concatenate(found)
    return float(np.median(p)) if p.size else 0.0


def doubling_change(coef, space, normal):
    """How far twice as many rotations would move ``coef``, in standard errors.

    With every copy's posterior on one grid point (what :func:`concentration`
    tests), the estimate is the image averaged over the grid's cell: its
    frequency-``nu`` coefficients shrunk by ``sinc(nu / K)`` (sinc(x) =
    sin(pi x) / (pi x)).  The image is then about ``coef / sinc(nu / K)``
    (the correction capped at :data:`_MAX_CORRECTION`), and on ``2K``
    rotations its estimate moves by ``coef (sinc(nu / 2K) / sinc(nu / K) -
    1)``.  The norm of that change over the complete-data standard error of
    ``normal`` (:func:`mtdlearn.em._stopping.standard_error`, the M-step's
    normal matrices).  ``inf`` when either is unknown (a basis without
    ``frequencies``; no normal matrices: a float ``tol``)."""
    nu = getattr(space.basis, "frequencies", None)
    se = _stopping.standard_error(normal)
    if nu is None or not 0 < se < np.inf:
        return np.inf
    x = np.abs(np.asarray(nu, dtype=np.float64)) / space.n_rotations
    correction = np.minimum(1.0 / np.maximum(np.sinc(x), 1.0 / _MAX_CORRECTION),
                            _MAX_CORRECTION)
    change = np.asarray(coef, dtype=np.float64) * (np.sinc(x / 2) * correction - 1.0)
    return float(np.linalg.norm(change)) / se


class _Test:
    """``refinement="auto"``'s test on one grid's phase (the loop's early
    stop, :class:`~mtdlearn.em._state._Run`): once, when the gain per patch
    first falls below :data:`_TEST_TOL` (or :func:`coarse_tol`), measure
    :func:`concentration` and :func:`doubling_change`, and stop the phase to
    refine if they are at least :data:`_CONCENTRATED` and
    :data:`_MIN_CHANGE`."""

    def __init__(self, est, phase, n_jobs):
        self.est, self.phase, self.n_jobs = est, phase, n_jobs
        self.first = self.share = self.normal = None
        self.change = np.inf

    def measure(self, state):
        self.share = concentration(self.est, self.phase, state, self.n_jobs)
        self.change = doubling_change(state.coef, self.phase.hypotheses, self.normal)
        return self.passed

    @property
    def passed(self):
        return self.share >= _CONCENTRATED and self.change >= _MIN_CHANGE

    def __call__(self, state, previous, objective):
        self.first = previous if self.first is None else self.first
        self.normal = state.run.normal   # the last M-step's normal matrices (tol="auto")
        bound = max(_TEST_TOL, coarse_tol(self.est.tol_, [self.first, objective]))
        if self.share is not None or objective - previous >= bound:
            return False
        return self.measure(state)


def run_adaptive(est, prepared, state, seed, n_jobs):
    """``refinement="auto"``: the grid of ``prepared``, then twice as many
    rotations while :class:`_Test` finds the angle resolved finer than the
    grid (at most :data:`_MAX_DOUBLINGS` times), each grid from the previous
    one's point.  A phase that ends before its test is tested at its end
    (and refined only if it converged).  Sets ``rotation_concentration_``
    (the last test's) and, when it refined, ``coarse_n_iter_``,
    ``rotations_`` and ``angles_``."""
    phase, res, grid = prepared, None, None
    for doubling in range(_MAX_DOUBLINGS + 1):
        test = _Test(est, phase, n_jobs)
        last = est._run_grid(phase, state, seed, n_jobs,
                             early_stop=test if doubling < _MAX_DOUBLINGS else None)
        res, state = _continued(res, last, grid), state_of(last)
        if test.share is None:   # ended before the test: test its end
            test.measure(state)
        res["extra"]["rotation_concentration_"] = test.share
        if not test.passed or not last["converged"] or doubling == _MAX_DOUBLINGS:
            return res
        size = phase.hypotheses.n_rotations
        grid = UniformRotationGrid(2 * size)
        if est.verbose:
            print(f"[{est._verbose_name}] the posteriors pin the angles (median MAP posterior "
                  f"{test.share:.4f} >= {_CONCENTRATED}) and doubling moves the image by "
                  f"{test.change:.3g} standard errors: {size} -> {grid.n_rotations} rotations")
        phase = _on_grid(prepared, grid)
