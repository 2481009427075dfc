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

from dataclasses import dataclass

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


@dataclass
class _EMState(InitialState):
    """An :class:`InitialState` that carries its start's bookkeeping."""

    run: _Run = None


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
