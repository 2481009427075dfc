"""What the EM's starts carry: the shared data, one start's bookkeeping, its
states, and the choice of the E-step's kernels.

:class:`~mtdlearn.em.estimator.ApproxEMEstimator` builds an :class:`_EMData`
in its ``_prepare`` hook and an :class:`_Run` for each start in
``_run_grid``; every state of that start (an :class:`_EMState`) points to
the same :class:`_Run`, through which the strategies (SQUAREM, incremental
EM, the float32 finish) keep their counters and switches.  :func:`kernels`
is called before every E-step, by the estimator's ``_e_step`` and by the
incremental passes.
"""

from dataclasses import dataclass, field

import numpy as np

from ..initializers import InitialState
from ..likelihood.fft_estep import build_fft_patch_model, choose_estep, estep_statistics_fft
from ..likelihood.formed import regroup
from ..likelihood.hypotheses import HypothesisSpace
from ..likelihood.patch_model import build_patch_model
from ..likelihood.statistics import estep_statistics


@dataclass
class _EMData:
    """What the starts of one EM fit share."""

    data: object                  # PatchData
    hypotheses: HypothesisSpace
    estimate_noise: bool
    # with CTFs or colored noise: per measurement, (whitened PatchData, the
    # HypothesisSpace of its formation); None for the paper's model
    groups: tuple = None

    def with_space(self, space):
        """The same data (and groups) with the hypotheses of another basis or grid."""
        return _EMData(self.data, space, self.estimate_noise, regroup(self.groups, space))

    def without_formation(self):
        """The same (whitened) data seen through the paper's formation: no CTF."""
        groups = tuple((d, self.hypotheses) for d, _ in self.groups)
        return _EMData(self.data, self.hypotheses, self.estimate_noise, groups)


@dataclass
class _Run:
    """Bookkeeping of one start (shared by the states of the start)."""

    dtype: np.dtype
    finish: bool = False          # dtype="auto": switch float32 -> float64
    n_e_steps: int = 0
    n_iter: int = 0
    float64_from: int = None      # iteration of the switch, None if none
    incomparable: bool = False
    step_max: float = 1.0         # SQUAREM
    incremental: bool = True      # incremental EM: still in the incremental phase
    ranges: list = None           # incremental EM: the blocks' patch ranges
    blocks: list = None           # incremental EM: each block's statistics
    n_recentred: int = 0          # center: how often the image was moved
    stop_below: float = None      # tol="auto" on the phase run to tol: _stopping's bound
    rates: list = field(default_factory=list)   # _stopping: latest EM rates
    remaining: float = np.inf     # _stopping: projected change / standard error
    normal: tuple = None          # _stopping: (normal matrices, rcond, sigma**2), last M-step
    last_coef: np.ndarray = None  # _stopping, plain EM: the last iteration's coefficients
    last_step: float = None       # _stopping, plain EM: its step
    basis: object = None          # _stopping: the basis whose rotation is not a change
    early_stop: object = None     # refinement="auto": f(state, previous, objective), True: refine

@dataclass
class _EMState(InitialState):
    """An :class:`InitialState` that carries its start's bookkeeping."""

    run: _Run = None


def checkpoint_state(state):
    """What a start saves beside its parameters in a checkpoint: its
    :class:`_Run`'s counters and switches (JSON), and a mixture's abundances."""
    run = state.run
    return {"dtype": run.dtype.name, "finish": run.finish, "n_e_steps": run.n_e_steps,
            "n_iter": run.n_iter, "float64_from": run.float64_from,
            "step_max": run.step_max, "n_recentred": run.n_recentred,
            "rates": [float(q) for q in run.rates], "last_step": run.last_step,
            "weights": None if state.weights is None else [float(w) for w in state.weights]}


def resume_state(state, saved):
    """The :class:`_EMState` of a start resumed at ``state`` from what
    :func:`checkpoint_state` saved (nothing saved: ``state``)."""
    if not saved:
        return state
    # the resumed start recomputes the E-step at the saved state: one more
    run = _Run(np.dtype(saved["dtype"]), finish=saved["finish"],
               n_e_steps=saved["n_e_steps"] - 1, n_iter=saved["n_iter"],
               float64_from=saved["float64_from"], step_max=saved["step_max"],
               n_recentred=saved.get("n_recentred", 0), rates=saved.get("rates", []),
               last_step=saved.get("last_step"),
               last_coef=np.ravel(np.asarray(state.coef, dtype=np.float64)))
    weights = saved.get("weights", state.weights)
    return _EMState(state.coef, state.shift_probabilities, state.noise_variance,
                    None if weights is None else np.asarray(weights), run=run)


def state_of(res):
    """The :class:`~mtdlearn.initializers.InitialState` at a start's result (with its
    abundances, for several components)."""
    return InitialState(res["coef"], res["shift_probabilities"], res["noise_variance"],
                        res.get("weights"))


def after_phase(first, res, name):
    """``res``, a start's result that continued from phase ``first``'s, with
    both phases' counters and history; ``name`` (an attribute) holds the
    first phase's iterations, which ``n_iter`` includes."""
    extra, before = res["extra"], first["extra"]
    extra.update({"n_e_steps_": before["n_e_steps_"] + extra["n_e_steps_"],
                  "n_recentred_": before["n_recentred_"] + extra["n_recentred_"],
                  "log_likelihood_history_": (before["log_likelihood_history_"]
                                              + extra["log_likelihood_history_"]),
                  name: first["n_iter"]})
    res["n_iter"] += first["n_iter"]
    return res


def kernels(prepared, dtype):
    """The E-step's kernels: FFT where it is cheaper (large L; see the design,
    "FFT path"), else the GEMM; the same choice in memory and on a distributed source."""
    space = prepared.hypotheses
    if choose_estep(space.image_size, space.n_rotations, dtype) == "fft":
        return build_fft_patch_model, estep_statistics_fft
    return build_patch_model, estep_statistics
