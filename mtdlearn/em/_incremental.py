"""Incremental EM (Neal & Hinton, 1998) over blocks of patches: the first
phase of ``acceleration="incremental"``.

Two places of :class:`~mtdlearn.em.estimator.ApproxEMEstimator` call it: its
``_e_step`` hook runs a start's first E-step through :func:`blockwise_e_step`
(one E-step per block, each block's statistics kept in the start's
:class:`~mtdlearn.em._state._Run`), and its ``_step`` hook runs one
:func:`run_pass` per iteration while the incremental phase lasts.  A pass
that gains little ends the phase with a batch E-step; SQUAREM cycles
(:mod:`mtdlearn.em._squarem`) then finish.
"""

import numpy as np

from ._state import kernels

#: Patches per block of the incremental EM (a block's E-step is then long
#: enough to keep both threads busy); fewer than two blocks: plain passes.
_BLOCK_PATCHES = 8192
#: The incremental phase ends when a pass gains less than this per patch (or
#: after _MAX_PASSES passes); batch SQUAREM cycles then finish.
_INCREMENTAL_GAIN, _MAX_PASSES = 1e-3, 20


def sum_blocks(blocks):
    """The total of the blocks' statistics, summed in block order."""
    total = blocks[0]
    for block in blocks[1:]:
        total = total + block
    return total


def blocks(data):
    """Contiguous patch ranges of the incremental EM (independent of ``n_jobs``).

    In memory: ``n_patches // _BLOCK_PATCHES`` equal ranges.  On a
    distributed source, whose tasks are whole micrographs: each edge moved
    to the nearest micrograph boundary, so a block is one micrograph or
    several consecutive ones.
    """
    n_patches = data.n_patches
    n_blocks = max(1, n_patches // _BLOCK_PATCHES)
    edges = np.linspace(0, n_patches, n_blocks + 1).round().astype(int)
    if data.distributed:
        # nearest boundary (the lower one on a tie), without a micrographs x
        # blocks table: 1000 micrographs of 4096^2 make 8e4 blocks
        offsets = np.asarray(data.offsets, dtype=np.int64)
        pos = np.clip(np.searchsorted(offsets, edges), 1, len(offsets) - 1)
        left, right = offsets[pos - 1], offsets[pos]
        edges = np.unique(np.where(edges - left <= right - edges, left, right))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def blockwise_e_step(prepared, run, model, estep, n_jobs, working_memory):
    """A start's first E-step, block by block: the same work as one E-step,
    each block's statistics kept in ``run`` for the passes.  Fewer than two
    blocks end the incremental phase before it starts.  Returns the total."""
    run.ranges = blocks(prepared.data)
    run.blocks = [estep(prepared.data, model, subset=rng, n_jobs=n_jobs,
                        working_memory=working_memory)
                  for rng in run.ranges]
    stats = sum_blocks(run.blocks)
    run.incremental = len(run.ranges) > 1
    return stats


def run_pass(est, prepared, state, objective, stats, n_jobs):
    """One pass of incremental EM (Neal & Hinton 1998) over the blocks.

    Before each block: an M-step from the total statistics; then the block's
    E-step at the new parameters, swapped into the total.  The pass's
    objective is the sum of the blocks' log-likelihoods, each at the
    parameters of its own E-step.  When a pass gains little, one batch E-step
    at the current parameters ends the incremental phase (its objective is the
    true log-likelihood, not comparable with the passes').  Returns
    ``(state, objective, stats)``, as the loop's ``_step`` does.
    """
    run = state.run
    total = stats
    build, estep = kernels(prepared, run.dtype)
    for b, rng in enumerate(run.ranges):
        state = est._m_step(prepared, state, total)
        model = build(state.coef, state.shift_probabilities, state.noise_variance,
                      prepared.hypotheses, dtype=run.dtype)
        block = estep(prepared.data, model, subset=rng, n_jobs=n_jobs,
                      working_memory=est.working_memory)
        run.blocks[b] = block
        # swap the block into the total; re-summed in block order, since
        # total - old + new cancels (weights ~0 in the other blocks go negative)
        total = sum_blocks(run.blocks)
    run.n_e_steps += 1   # one pass over the data
    pass_objective = total.loglik / total.n_patches
    if (pass_objective - objective < _INCREMENTAL_GAIN
            or run.n_iter >= _MAX_PASSES):
        run.incremental = False
        run.blocks = None
        run.incomparable = True
        state = est._m_step(prepared, state, total)
        new_objective, stats = est._e_step(prepared, state, n_jobs)
        return state, new_objective, stats
    return state, pass_objective, total
