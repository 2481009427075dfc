"""The sufficient statistics of the E-step, streamed over chunks of patches.

:class:`Statistics` holds what the M-step needs of the data, summed over
patches; :func:`estep_statistics` computes them with the GEMM kernel of
:mod:`~mtdlearn.likelihood.patch_model`, chunk by chunk, in a task partition
fixed independently of ``n_jobs`` (in memory, memory-mapped, or on the
workers of a Dask cluster), reduced in a fixed order.  The FFT kernel
(:mod:`~mtdlearn.likelihood.fft_estep`) reduces to the same
:class:`Statistics`.  Their arrays follow the hypotheses' layout
(component, rotation, shift; :class:`~mtdlearn.likelihood.hypotheses.HypothesisSpace`).
"""

import operator
from dataclasses import dataclass

import numpy as np

from .._parallel import ordered_map, task_ranges, tree_reduce
from ..data.patches import PatchData
from .patch_model import _chunk_posteriors, _get_augmented, _patch_loglik, chunk_size

__all__ = ["Statistics", "GroupStatistics", "estep_statistics"]


@dataclass
class Statistics:
    """Sufficient statistics of the E-step, summed over patches.

    The M-step (:func:`~mtdlearn.likelihood.m_step.m_step`) depends on the
    data only through these sums, so statistics of disjoint sets of patches
    add up (``a + b``), a block's statistics can be swapped out of a total
    (``total - old + new``, incremental EM), and they can be scaled
    (``0.5 * a``, stochastic EM).

    Parameters
    ----------
    weights : ndarray of shape (H,)
        ``W_h = sum_m w_mh``, posterior mass of each non-empty hypothesis.
    weight_empty : float
        Posterior mass of the merged empty hypothesis.
    weighted_patches : ndarray of shape (H, L*L)
        ``S = w^T P``, the posterior-weighted sums of the patches.
    patch_sq : float
        ``sum_m ||P_m||**2``.
    loglik : float
        Sum of the per-patch log-likelihoods (eq. 5).
    n_patches : float
        Number of patches summed (scaled along with the rest).
    rotation_images : ndarray of shape (K, L*L), default=None
        ``HypothesisSpace.adjoint(S)``, what the M-step needs of ``S``; the
        FFT E-step (:mod:`mtdlearn.likelihood.fft_estep`) gives it instead of
        ``weighted_patches`` (then ``None``), and
        :func:`~mtdlearn.likelihood.m_step.m_step` uses it when present.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.likelihood.statistics import Statistics
    >>> a = Statistics(np.ones(2), 1.0, np.ones((2, 4)), 3.0, -5.0, 3)
    >>> b = a + a
    >>> b.n_patches, float(b.loglik), float((b - a).patch_sq)
    (6, -10.0, 3.0)
    """

    weights: np.ndarray
    weight_empty: float
    weighted_patches: np.ndarray
    patch_sq: float
    loglik: float
    n_patches: float
    rotation_images: np.ndarray = None

    _FIELDS = ("weights", "weight_empty", "weighted_patches", "patch_sq", "loglik",
               "n_patches", "rotation_images")

    @classmethod
    def zeros(cls, n_hypotheses, n_pixels):
        """Empty statistics (the neutral element of ``+``).

        Parameters
        ----------
        n_hypotheses : int
            ``H``.
        n_pixels : int
            ``L*L``.

        Returns
        -------
        stats : Statistics
            All sums zero.

        Examples
        --------
        >>> from mtdlearn.likelihood.statistics import Statistics
        >>> Statistics.zeros(3, 4).weighted_patches.shape
        (3, 4)
        """
        return cls(np.zeros(n_hypotheses), 0.0, np.zeros((n_hypotheses, n_pixels)), 0.0, 0.0,
                   0)

    def _combine(self, other, op):
        return Statistics(*(_none_or(op, getattr(self, f), getattr(other, f))
                            for f in self._FIELDS))

    def __add__(self, other):
        return self._combine(other, lambda a, b: a + b)

    def __sub__(self, other):
        return self._combine(other, lambda a, b: a - b)

    def __mul__(self, factor):
        return Statistics(*(None if getattr(self, f) is None else getattr(self, f) * factor
                            for f in self._FIELDS))

    __rmul__ = __mul__

    def __iadd__(self, other):
        self.weights += other.weights
        self.weight_empty += other.weight_empty
        self.weighted_patches = _none_or(np.add, self.weighted_patches, other.weighted_patches)
        self.rotation_images = _none_or(np.add, self.rotation_images, other.rotation_images)
        self.patch_sq += other.patch_sq
        self.loglik += other.loglik
        self.n_patches += other.n_patches
        return self


class GroupStatistics(tuple):
    """The statistics of several groups of measurements, each seen through its own formation.

    One :class:`Statistics` per group (per micrograph with its CTF and
    noise; :mod:`mtdlearn.imaging.formation`): the M-step sums their normal
    equations, each through its group's formation, so the groups cannot be
    summed into one :class:`Statistics`.  The totals the loop needs
    (``loglik``, ``n_patches``, ``patch_sq``) are sums over the groups;
    ``+``, ``-`` and ``*`` act group by group.

    Parameters
    ----------
    iterable : iterable of Statistics
        One per group, in the groups' order.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.likelihood.statistics import GroupStatistics, Statistics
    >>> a = Statistics(np.ones(2), 1.0, np.ones((2, 4)), 3.0, -5.0, 3)
    >>> g = GroupStatistics([a, 2 * a])
    >>> g.n_patches, float(g.loglik), len(g + g)
    (9, -15.0, 2)
    """

    __slots__ = ()

    @property
    def loglik(self):
        """Sum of the groups' log-likelihoods."""
        return sum(st.loglik for st in self)

    @property
    def n_patches(self):
        """Sum of the groups' patch counts."""
        return sum(st.n_patches for st in self)

    @property
    def patch_sq(self):
        """Sum of the groups' ``sum_m ||P_m||**2``."""
        return sum(st.patch_sq for st in self)

    def __add__(self, other):
        return GroupStatistics(a + b for a, b in zip(self, other, strict=True))

    def __sub__(self, other):
        return GroupStatistics(a - b for a, b in zip(self, other, strict=True))

    def __mul__(self, factor):
        return GroupStatistics(st * factor for st in self)

    __rmul__ = __mul__


def _none_or(op, a, b):
    """``op(a, b)``, or ``None`` for an optional field absent from both."""
    if a is None and b is None:
        return None
    if a is None or b is None:
        raise ValueError("cannot combine Statistics with weighted_patches and Statistics "
                         "with rotation_images (GEMM and FFT E-steps); use one E-step")
    return op(a, b)


def _stats_range(data, model, start, stop, step):
    H, d = model.templates.shape
    dtype = model.dtype
    n_max = min(step, stop - start)
    Pa_buf = np.empty((n_max, d + 2), dtype=dtype)
    E_buf = np.empty((n_max, H), dtype=dtype)
    SW = np.empty((d + 1, H), dtype=dtype)
    acc = np.zeros((d + 1, H))                   # [S | W]^T, float64
    st = Statistics(None, 0.0, None, 0.0, 0.0, 0)
    for c0 in range(start, stop, step):
        Pa, sq = _get_augmented(data, c0, min(stop, c0 + step), model, out=Pa_buf)
        E, u, s, e_empty = _chunk_posteriors(Pa, sq, model, out=E_buf)
        inv_s = 1.0 / s
        # [S | W]^T = [P / s, 1 / s]^T E: one GEMM (rows of P scaled, not of E)
        Q = Pa[:, :d + 1] * inv_s.astype(dtype)[:, None]
        np.matmul(Q.T, E, out=SW)
        acc += SW
        st.weight_empty += float(np.sum(e_empty * inv_s))
        st.patch_sq += float(sq.sum())
        st.loglik += float(_patch_loglik(u, s, d, model).sum())
        st.n_patches += Pa.shape[0]
    st.weighted_patches = np.ascontiguousarray(acc[:d].T)
    st.weights = acc[d].copy()
    return st


def _tasks(data, model, subset, chunk, working_memory, tasks_per_block):
    """Chunk size (:func:`~mtdlearn.likelihood.patch_model.chunk_size` if
    ``None``) and :func:`_partition`."""
    if chunk is None:
        chunk = chunk_size(model.templates.shape[0], data.image_size, working_memory,
                           model.dtype.itemsize)
    return chunk, _partition(data, subset, chunk, tasks_per_block)


def _check_subset(data, subset):
    """``(start, stop)`` of ``subset`` (default: all patches), checked against ``data``."""
    start, stop = (0, data.n_patches) if subset is None else subset
    if not 0 <= start < stop <= data.n_patches:
        raise ValueError(f"subset must be a range (start, stop) within [0, {data.n_patches}] "
                         f"holding at least one patch, got {subset!r}")
    return start, stop


def _partition(data, subset, chunk, tasks_per_block):
    """The fixed task partition of ``subset`` (default: all patches), both E-steps.

    Tasks never straddle two measurements: each measurement's patches are
    partitioned on their own, from its first patch (or the subset's), so a
    measurement gives the same chunks whether it is alone in memory or a
    block on a Dask worker (:mod:`mtdlearn.data._dask`).  Returns a list of
    ``(measurement, start, stop)``.
    """
    start, stop = _check_subset(data, subset)
    ranges = []
    offsets = data.offsets
    for i in range(len(offsets) - 1):
        a, b = max(start, int(offsets[i])), min(stop, int(offsets[i + 1]))
        if a < b:
            ranges.extend((i, a + u, a + v) for u, v in task_ranges(b - a, chunk,
                                                                    tasks_per_block))
    return ranges


def _sum_per_measurement(parts):
    """Sum ``(measurement, Statistics)`` parts: each measurement's in order, then
    the measurements along the fixed tree of :func:`~mtdlearn._parallel.tree_reduce`
    (what a distributed source's blocks give)."""
    per_measurement = {}
    for i, st in parts:
        per_measurement[i] = st if i not in per_measurement else per_measurement[i] + st
    return tree_reduce((per_measurement[i] for i in sorted(per_measurement)), operator.add)


def _block_statistics(block, image_size, model, chunk, tasks_per_block):
    """:func:`estep_statistics` of one measurement (a block of a distributed source)."""
    return estep_statistics(PatchData([block], image_size), model, chunk=chunk,
                            tasks_per_block=tasks_per_block)


def _distributed_subset(data, subset):
    """The distributed source of the patches ``subset`` (``data`` itself if ``None``).

    A distributed source's task is a whole measurement, so the subset must
    start and stop at measurement boundaries (``data.offsets``); the result
    is a view of those measurements (``data.take``) on the same workers.
    """
    if subset is None:
        return data
    offsets = [int(o) for o in data.offsets]
    start, stop = subset
    if start not in offsets or stop not in offsets:
        raise ValueError("on a distributed patch source subset must hold whole measurements "
                         f"(start and stop among the offsets {offsets}), got {subset!r}")
    return data.take(range(offsets.index(start), offsets.index(stop)))


def estep_statistics(data, model, subset=None, *, chunk=None, n_jobs=None, working_memory=None,
                     tasks_per_block=8):
    """Run the E-step over the patches and sum the sufficient statistics.

    For every patch ``m`` and hypothesis ``h`` the posterior ``w_mh``
    (eq. 10-12) is computed in log space; the statistics ``W_h = sum_m
    w_mh``, ``S = w^T P`` and the log-likelihood (eq. 5) are summed over the
    patches (:doc:`/design`, "The E-step").  Chunks of ``chunk`` patches are
    grouped into tasks run by joblib threads; results are reduced in a fixed
    order, so they do not depend on ``n_jobs``.  The arithmetic runs in the
    model's dtype; sums are float64.

    Parameters
    ----------
    data : PatchData
        The patches.
    model : PatchModel
        The current parameters (:func:`~mtdlearn.likelihood.patch_model.build_patch_model`).
    subset : (int, int), default=None
        Only the patches ``start..stop-1``; ``None`` means all.  On a
        distributed source, whole measurements only (``start`` and ``stop``
        among ``data.offsets``).
    chunk : int, default=None
        Patches per chunk; ``None`` chooses it with
        :func:`~mtdlearn.likelihood.patch_model.chunk_size`.
    n_jobs : int, default=None
        Threads over the tasks; ``None`` is 1.
    working_memory : float, default=None
        Budget in MiB per thread for choosing ``chunk``.
    tasks_per_block : int, default=8
        Chunks per joblib task.

    Returns
    -------
    stats : Statistics
        ``weights`` (H,), ``weight_empty``, ``weighted_patches`` (H, L*L),
        ``patch_sq`` (sum of ``||P_m||**2``), ``loglik`` (sum over the
        patches) and ``n_patches``.

    See Also
    --------
    mtdlearn.likelihood.m_step.m_step : The M-step from these statistics.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import (FourierBesselBasis, UniformRotationGrid, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.patch_model import build_patch_model
    >>> from mtdlearn.likelihood.statistics import estep_statistics
    >>> from mtdlearn.data.patches import PatchData
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    >>> space = HypothesisSpace(basis, UniformRotationGrid(4).get_angles())
    >>> model = build_patch_model(coef, density_to_shift_probabilities(0.04, 5),
    ...                           truth.noise_variance, space)
    >>> stats = estep_statistics(PatchData([X], 5), model, chunk=64)
    >>> stats.n_patches, stats.weighted_patches.shape
    (400, (324, 25))
    >>> total = stats.weights.sum() + stats.weight_empty  # posteriors sum to 1 per patch
    >>> bool(abs(total - 400) < 1e-9)
    True
    """
    chunk, ranges = _tasks(data, model, subset, chunk, working_memory, tasks_per_block)
    return _run_tasks(data, model, subset, chunk, ranges, n_jobs, tasks_per_block,
                      _block_statistics, _stats_range)


def _run_tasks(data, model, subset, chunk, ranges, n_jobs, tasks_per_block, per_block,
               per_range):
    """An E-step's statistics from its tasks, summed in a fixed order.

    On a distributed source one task per measurement where it lives
    (``per_block(block, L, model, chunk, tasks_per_block)``, a module-level
    function); in memory ``per_range(data, model, start, stop, chunk)`` over
    ``ranges`` in ``n_jobs`` threads.  Either way each measurement's tasks
    are summed in order, then the measurements along a fixed tree (by tasks
    on the workers when distributed): the same sums, and only the total
    reaches the client.
    """
    if data.distributed:
        data = _distributed_subset(data, subset)
        return data.map_reduce(per_block, operator.add, data.image_size, model, chunk,
                               tasks_per_block)
    return _sum_per_measurement(ordered_map(
        lambda i, a, b: (i, per_range(data, model, a, b, chunk)), ranges, n_jobs))
