"""The generative model of the patches: hypotheses, E-step kernels, M-step.

Both estimators fit the same model of the non-overlapping ``L x L``
patches (paper eq. 5-12): patch ``m`` is ``C T_l Z F_phi + noise`` with
shift ``l`` drawn from ``rho`` (2L x 2L), rotation ``phi`` uniform on a grid
of ``K`` angles, and white Gaussian noise of variance ``sigma**2``.  The
approximate log-likelihood (eq. 5) treats the patches as independent.

Computation (:doc:`/design`, "The E-step"): the hypotheses ``h = (k, l)``
over the non-empty shifts, plus one merged empty hypothesis, are laid out
by :class:`~mtdlearn.likelihood.hypotheses.HypothesisSpace`; templates ``T_h`` form an
``H x L**2`` matrix, and ``||P_m - T_h||**2 = ||P_m||**2 - 2 P_m . T_h +
||T_h||**2`` is one GEMM per chunk of patches, followed by a row-wise log-sum-exp.  Nothing of
size ``N_d x H`` outlives a chunk: the chunks are reduced to
:class:`Statistics`, from which :func:`m_step` computes the next
parameters (eq. 16, 18).
"""

import operator
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .._parallel import ordered_map, task_ranges, tree_reduce
from .hypotheses import HypothesisSpace
from ..data.patches import PatchData, chunk_rows

__all__ = ["PatchModel", "build_patch_model", "Statistics", "estep_statistics", "m_step",
           "solve_gram", "noise_variance_floor", "chunk_size"]

#: A chunk's c x H block of posteriors is kept near this size so it stays in
#: cache between the GEMM, the exp, the row sums and the second GEMM (measured
#: best among 1, 2, 4 and 8 MiB on the 2-core machine); the memory budget can
#: only lower it.
CACHE_BYTES = 4 * 2**20


def chunk_size(n_hypotheses, image_size, working_memory=None, itemsize=8):
    """Choose the number of patches per chunk of the E-step.

    The chunk's work arrays (``c x H`` posteriors, ``c x (L*L + 2)``
    augmented patches) fit in ``working_memory`` MiB, and the ``c x H``
    block in about ``CACHE_BYTES`` (4 MiB; at least 16 rows), so it stays in
    cache between the two GEMMs.

    Parameters
    ----------
    n_hypotheses : int
        ``H``, the number of columns of the posterior block.
    image_size : int
        ``L``.
    working_memory : float, default=None
        Budget in MiB; ``None`` takes ``sklearn.get_config()["working_memory"]``
        (see :mod:`mtdlearn.data.patches`).
    itemsize : int, default=8
        Bytes per number of the E-step arithmetic (8 for float64, 4 for
        float32).

    Returns
    -------
    chunk : int
        Patches per chunk, ``>= 1``.

    Raises
    ------
    ValueError
        If ``working_memory`` cannot hold a single patch.

    Examples
    --------
    >>> from mtdlearn.likelihood.patch_model import chunk_size
    >>> chunk_size(16 * 81, 5)  # K = 16, L = 5: cache-bound
    404
    >>> chunk_size(16 * 81, 5, working_memory=0.5)  # memory-bound
    48
    """
    d = image_size * image_size
    per_row = itemsize * (n_hypotheses + 2 * d + 3) + 8 * 8
    cap = max(16, CACHE_BYTES // (itemsize * n_hypotheses))
    return chunk_rows(per_row, cap, working_memory, unit="patch")


# ---------------------------------------------------------------------------
# the model and its E-step
@dataclass
class PatchModel:
    """Everything the E-step needs, derived from (coef, rho, sigma**2, hypotheses).

    The E-step of a chunk is one GEMM of the augmented patches
    ``[P, 1, -||P||**2 / (2 sigma**2)]`` with the augmented templates
    ``[T / sigma**2, b, 1]``, ``b_h = -||T_h||**2 / (2 sigma**2) + log prior_h - c``:
    it gives ``-||P - T_h||**2 / (2 sigma**2) + log prior_h - c`` for every
    non-empty hypothesis at once.  ``c`` (``shift``) is the largest log prior,
    so every exponent is ``<= 0`` (never an exp of an unshifted value).
    Hypotheses are laid out by ``hypotheses`` (:class:`~mtdlearn.likelihood.hypotheses.HypothesisSpace`); the
    empty hypothesis has log prior ``log_prior_empty`` (total mass of the
    empty shifts).  Built by :func:`build_patch_model`.

    Parameters
    ----------
    templates : ndarray of shape (H, L*L)
        The templates ``T_h = C T_l Z F_{phi_k}``, unscaled.
    augmented : ndarray of shape (H, L*L + 2)
        ``[T / sigma**2, b, 1]`` as described above, in the E-step's dtype.
    log_prior : ndarray of shape (H,)
        ``log rho_l - log K`` of each non-empty hypothesis (eq. 12).
    log_prior_empty : float
        Log of the total mass of the empty shifts.
    shift : float
        ``c``, the largest log prior.
    noise_variance : float
        ``sigma**2``.
    hypotheses : HypothesisSpace
        The layout of the hypotheses.
    impossible : ndarray of int, default=None
        Hypotheses of zero prior (``rho_l = 0``): their posteriors are set
        to exactly zero after the exponent floor of the E-step.

    Attributes
    ----------
    n_rotations : int
        ``K``.
    dtype : numpy.dtype
        Precision of the E-step arithmetic (that of ``augmented``).

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis, UniformRotationGrid
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.patch_model import build_patch_model
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> space = HypothesisSpace(basis, UniformRotationGrid(4).get_angles())
    >>> model = build_patch_model(np.ones(10), density_to_shift_probabilities(0.04, 5),
    ...                           1.0, space)
    >>> model.templates.shape, model.augmented.shape, model.n_rotations
    ((324, 25), (324, 27), 4)
    """

    templates: np.ndarray
    augmented: np.ndarray
    log_prior: np.ndarray
    log_prior_empty: float
    shift: float
    noise_variance: float
    hypotheses: HypothesisSpace
    impossible: np.ndarray = None

    @property
    def n_rotations(self):
        """``K``, the number of rotations of the grid."""
        return self.hypotheses.n_rotations

    @property
    def dtype(self):
        """Precision of the E-step arithmetic."""
        return self.augmented.dtype


def _neg_big(dtype):
    return -1e200 if np.dtype(dtype) == np.float64 else -1e30


def build_patch_model(coef, shift_probabilities, noise_variance, hypotheses, dtype=np.float64):
    """Assemble the :class:`PatchModel` of given parameters.

    Renders all ``K (2L-1)**2`` non-empty templates ``C T_l Z F_{phi_k}``
    (eq. 6-7) and their log priors ``log rho_l - log K`` (eq. 12);
    zero-probability hypotheses get a large negative bias instead of
    ``-inf``.

    Parameters
    ----------
    coef : array-like of shape (p,)
        Image coefficients ``alpha``.
    shift_probabilities : array-like of shape (2L, 2L)
        ``rho``.
    noise_variance : float
        ``sigma**2 > 0``.
    hypotheses : HypothesisSpace
        The basis, the rotation grid and the layout of the hypotheses.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Precision of the augmented templates used by the E-step GEMM.

    Returns
    -------
    model : PatchModel
        Everything the E-step needs.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis, UniformRotationGrid
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.patch_model import build_patch_model
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> space = HypothesisSpace(basis, UniformRotationGrid(4).get_angles())
    >>> model = build_patch_model(np.ones(10), density_to_shift_probabilities(0.04, 5),
    ...                           1.0, space)
    >>> model.templates.shape  # K (2L-1)**2 = 4 * 81 templates of L*L pixels
    (324, 25)
    """
    T = hypotheses.templates(coef)
    lp, lp_empty = hypotheses.log_prior(shift_probabilities)
    shift = float(max(lp.max(), lp_empty))
    inv = 1.0 / noise_variance
    bias = -0.5 * inv * np.einsum("ij,ij->i", T, T) + lp - shift
    finite = np.isfinite(bias)
    bias = np.where(finite, bias, _neg_big(dtype))
    aug = np.empty((T.shape[0], T.shape[1] + 2), dtype=dtype)
    aug[:, :-2] = T * inv
    aug[:, -2] = bias
    aug[:, -1] = 1.0
    return PatchModel(templates=T, augmented=aug, log_prior=lp, log_prior_empty=lp_empty,
                      shift=shift, noise_variance=float(noise_variance), hypotheses=hypotheses,
                      impossible=np.flatnonzero(~finite))


def _get_augmented(data, start, stop, model, out=None):
    """Chunk of patches as ``[P, 1, -||P||**2 / (2 sigma**2)]`` and ``||P||**2``
    (written into ``out[:stop - start]`` when a buffer is given)."""
    d = data.image_size ** 2
    n = stop - start
    Pa = np.empty((n, d + 2), dtype=model.dtype) if out is None else out[:n]
    data.get(start, stop, out=Pa[:, :d])
    P = Pa[:, :d]
    sq = np.einsum("ij,ij->i", P, P, dtype=np.float64)
    Pa[:, d] = 1.0
    Pa[:, d + 1] = -0.5 * sq / model.noise_variance
    return Pa, sq


#: A row whose largest shifted logit is below this is shifted by its own
#: maximum before ``exp`` (the underflow guard).  Rows sit this far below the
#: prior bound when the patch is far from every template: a poor fit, or a
#: large patch, whose noise alone puts every logit about ``L**2 / 2`` below
#: the bound (L=21: -220), so that every row of a float32 E-step at L >= 13
#: needs it.  Found by a max-reduction over the rows that can be low (those
#: whose empty logit is below it), not by recomputing the logits.
_LOW = {np.dtype(np.float64): -200.0, np.dtype(np.float32): -40.0}

#: Exponents are clamped to this floor before ``exp``.  ``exp`` slows down far
#: from zero: NumPy's SIMD ``exp`` leaves its fast path when the result is
#: subnormal or underflows (float64 below about -708, float32 between about
#: -104 and -87; 2-4x slower per element), and on an AVX2 machine float64
#: ``exp(-600)`` measured 13.8 ns against 8.9 ns at -300.  At high SNR most
#: exponents are hugely negative, which made an SNR-500 iteration cost up to
#: twice an SNR-5 one.  Every row's maximum is at least ``_LOW`` (or 0 after
#: the guard), so the clamp changes a row's posteriors by at most
#: ``H exp(floor - _LOW)`` relative: about 1e-39 for float64 and 1e-13 for
#: float32 at ``H = 1e5`` (L=41, K=16).
_FLOOR = {np.dtype(np.float64): -300.0, np.dtype(np.float32): -80.0}

#: ``exp(_FLOOR)`` as float32's ``exp`` computes it.  The FFT E-step
#: (``_exp_rows(..., exact_zeros=True)``) subtracts it after ``exp`` so that
#: the clamped hypotheses are exact zeros in its FFTs and sums: left at
#: ``exp(-80) = 1.8e-35``, their products there fell below float32's
#: smallest normal number (1.2e-38), which x86 computes far more slowly, and
#: at high SNR most hypotheses are clamped.  One float32 FFT E-step
#: (L = 21, K = 32, N = 1024, true parameters, one core) took 1.51 / 2.91 /
#: 4.91 s at SNR 1 / 10 / 100 with them, 1.43 / 1.46 / 1.45 s with exact
#: zeros.  The mass is put back where it decides something: in the row sums
#: ``s`` and (``fft_estep``) in the weight ``W_h`` of every possible
#: hypothesis, so ``rho`` keeps every shift it had; without it a shift whose
#: posteriors were all clamped got ``rho = 0``, which EM never revisits (it
#: changed an L = 41 fit's path).  What stays dropped, the clamped terms of
#: the rotation images, is within the clamp's bound (``_FLOOR``).  The GEMM
#: E-step keeps ``exp(-80)``: its cost is flat in the SNR (``bench_em.py
#: --flat-cost``), and the extra pass over ``E`` cost 4 % at L = 5.
#: float64's ``exp(-300) = 5e-131`` is far from its subnormals.
_EXP_FLOOR = {np.dtype(np.float64): 0.0,
              np.dtype(np.float32): np.exp(np.full(16, _FLOOR[np.dtype(np.float32)],
                                                   dtype=np.float32))[0]}


def _chunk_posteriors(Pa, sq, model, out=None):
    """Exponentiated, shifted log-posteriors of a chunk.

    Returns ``E`` (c, H) with ``E[m, h] = exp(logit_mh - u_m)``, the row
    shifts ``u`` (c,), the exp-sums ``s`` (c,) including the empty
    hypothesis and ``e_empty = exp(logit_empty - u)`` (c,).  The log-
    likelihood of patch ``m`` is ``u_m + log s_m - d/2 log(2 pi sigma**2)``.
    ``out`` is an optional ``(>= c, H)`` buffer for ``E``: reusing it avoids
    fresh pages (and their faults) on every chunk.
    """
    n = Pa.shape[0]
    E = np.empty((n, model.augmented.shape[0]), dtype=Pa.dtype) if out is None else out[:n]
    np.matmul(Pa, model.augmented.T, out=E)    # GEMM: logits - c, all <= ~0
    logit_empty = model.log_prior_empty - model.shift + Pa[:, -1]
    u, s, e_empty = _exp_rows(E, logit_empty, model.shift, model.impossible)
    return E, u, s, e_empty


def _exp_rows(E, logit_empty, shift, impossible, exact_zeros=False):
    """Exponentiate a chunk's shifted logits in place, with their row sums.

    ``E`` (c, H) holds ``logit - shift`` of the non-empty hypotheses,
    ``logit_empty`` (c,) that of the empty one.  Returns the row shifts ``u``
    (c,), the exp-sums ``s`` (c,) including the empty hypothesis and
    ``e_empty`` (c,).  A row whose maximum is below ``_LOW`` is shifted by
    it (``u`` then holds ``shift`` plus that maximum), exponents are clamped
    at ``_FLOOR`` (with ``exact_zeros``, in float32, the clamped ones give
    exact zeros and ``s`` keeps their mass, see ``_EXP_FLOOR``) and the
    columns ``impossible`` (zero prior) are set to exactly zero.  Shared by
    the GEMM and FFT E-steps.
    """
    u = np.full(E.shape[0], shift)
    # a row's maximum is at least its empty logit: only rows whose empty logit
    # is below _LOW can be low, and only theirs are scanned (none, for small
    # patches at moderate SNR)
    cand = np.flatnonzero(logit_empty < _LOW[E.dtype])
    low = cand[:0]
    if cand.size:
        rows = E if cand.size == E.shape[0] else E[cand]
        top = np.maximum(rows.max(axis=1), logit_empty[cand])
        is_low = top < _LOW[E.dtype]
        low, m = cand[is_low], top[is_low]
    if low.size:   # far below the prior bound: shift the row by its own maximum
        E[low] -= m[:, None]
        logit_empty = logit_empty.copy()
        logit_empty[low] -= m
        u[low] += m
    np.maximum(E, _FLOOR[E.dtype], out=E)      # keep exp on its fast path (see _FLOOR)
    np.exp(E, out=E)
    floor = _EXP_FLOOR[E.dtype] if exact_zeros else 0.0
    if floor:
        E -= floor                             # clamped: exact zeros (see _EXP_FLOOR)
    n_impossible = 0 if impossible is None else impossible.size
    if n_impossible:
        E[:, impossible] = 0.0                 # zero prior: exactly zero posterior
    e_empty = np.exp(logit_empty)
    # row sums as a GEMV: one streaming pass, ~40 % cheaper than ndarray.sum here
    s = (E @ np.ones(E.shape[1], dtype=E.dtype)).astype(np.float64) + e_empty
    if floor:                                  # the subtracted mass, back in the sums
        s += float(floor) * (E.shape[1] - n_impossible)
    return u, s, e_empty


def _patch_loglik(u, s, d, model):
    return u + np.log(s) - 0.5 * d * np.log(2 * np.pi * model.noise_variance)


@dataclass
class Statistics:
    """Sufficient statistics of the E-step, summed over patches.

    The M-step (:func:`m_step`) depends on the data only through these sums,
    so statistics of disjoint sets of patches add up (``a + b``), a block's
    statistics can be swapped out of a total (``total - old + new``,
    incremental EM), and they can be scaled (``0.5 * a``, stochastic EM).

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
        ``weighted_patches`` (then ``None``), and :func:`m_step` uses it
        when present.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.likelihood.patch_model import Statistics
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
        >>> from mtdlearn.likelihood.patch_model import Statistics
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
    """Chunk size (:func:`chunk_size` if ``None``) and :func:`_partition`."""
    if chunk is None:
        chunk = chunk_size(model.templates.shape[0], data.image_size, working_memory,
                           model.dtype.itemsize)
    return chunk, _partition(data, subset, chunk, tasks_per_block)


def _partition(data, subset, chunk, tasks_per_block):
    """The fixed task partition of ``subset`` (default: all patches), both E-steps.

    Tasks never straddle two measurements: each measurement's patches are
    partitioned on their own, from its first patch (or the subset's), so a
    measurement gives the same chunks whether it is alone in memory or a
    block on a Dask worker (:mod:`mtdlearn.data._dask`).  Returns a list of
    ``(measurement, start, stop)``.
    """
    start, stop = (0, data.n_patches) if subset is None else subset
    if not 0 <= start < stop <= data.n_patches:
        raise ValueError(f"subset must be a range (start, stop) within [0, {data.n_patches}] "
                         f"holding at least one patch, got {subset!r}")
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
        The current parameters (:func:`build_patch_model`).
    subset : (int, int), default=None
        Only the patches ``start..stop-1``; ``None`` means all.  On a
        distributed source, whole measurements only (``start`` and ``stop``
        among ``data.offsets``).
    chunk : int, default=None
        Patches per chunk; ``None`` chooses it with :func:`chunk_size`.
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
    m_step : The M-step from these statistics.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import (FourierBesselBasis, UniformRotationGrid, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.patch_model import build_patch_model, estep_statistics
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


# ---------------------------------------------------------------------------
# the M-step
def noise_variance_floor(mean_square):
    """The smallest noise variance the model is given: ``1e-12`` of the mean square pixel.

    The likelihood grows without bound as ``sigma**2 -> 0`` on data the
    model fits exactly (noise-free measurements), and ``1 / sigma**2``
    overflows; both estimators keep their estimate of ``sigma**2`` above
    this negligible fraction of the data's energy.

    Parameters
    ----------
    mean_square : float
        Mean squared pixel value of the data (``a2[0, 0]``, or the patches'
        energy per pixel).

    Returns
    -------
    floor : float
        ``1e-12 * max(mean_square, 1e-300)``.

    Examples
    --------
    >>> from mtdlearn.likelihood.patch_model import noise_variance_floor
    >>> noise_variance_floor(2.0)
    2e-12
    """
    return 1e-12 * max(float(mean_square), 1e-300)


#: The M-step forms ``sum_k BR_k^T diag(D_k) BR_k`` over blocks of
#: rotations whose weighted copy of ``BR`` stays within this many bytes.
#: The table ``BR`` is ``K L**2 p`` floats: at L = 41 and K = 64 (the last
#: grid of ``refinement="auto"``) 908 MB, and one weighted copy of all of
#: it took a K = 64 iteration's peak to 2.2 GB (measured, N = 1025).  Up to
#: this size (every L <= 21 at K <= 32) there is one block, as before.
_GRAM_BLOCK_BYTES = 64 * 2**20


def _weighted_gram(BR, D):
    """``sum_k BR[k].T @ diag(D[k]) @ BR[k]`` (p, p), in blocks of rotations."""
    K, d, p = BR.shape
    step = max(1, _GRAM_BLOCK_BYTES // (d * p * BR.itemsize))
    # one GEMM per block (a 3-operand einsum loops: 55 s at L = 41); with one
    # block, 0 + G is G exactly
    A = np.zeros((p, p))
    for k0 in range(0, K, step):
        B = BR[k0:k0 + step]
        A += (B * D[k0:k0 + step, :, None]).reshape(-1, p).T @ B.reshape(-1, p)
    return A


def solve_gram(A, b, previous=None, rcond=None):
    """Solve the M-step's normal equations ``A alpha = b`` (``A`` positive semi-definite).

    By Cholesky when ``A``'s reciprocal condition number (LAPACK's 1-norm
    estimate) is at least ``rcond``.  Below it (the patches' posteriors leave
    some combinations of the basis functions unobserved, as from a random
    start at large L on few patches), the equations are solved in the
    eigenspace of ``A``'s eigenvalues above ``rcond`` times the largest (at
    least ``10 p`` times float64's epsilon, above eigh's rounding), and
    ``previous``'s component in the others is kept (zero if ``previous`` is
    ``None``): a generalized EM step, which still does not decrease the
    M-step's objective ``2 b.alpha - alpha.A.alpha``, where the exact solution
    would amplify the rounding of ``b`` by up to ``1 / rcond``.

    Parameters
    ----------
    A : ndarray of shape (p, p)
        Symmetric positive semi-definite: ``sum_h W_h A_h^T A_h``.
    b : ndarray of shape (p,)
        The right-hand side ``sum_h A_h^T S_h``.
    previous : ndarray of shape (p,), default=None
        The coefficients before the M-step.
    rcond : float, default=None
        ``None``: ``p`` times float64's machine epsilon.  Give ``p`` times the
        epsilon of the precision the statistics were computed in.

    Returns
    -------
    alpha : ndarray of shape (p,)
        The solution, or the generalized M-step's.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.likelihood.patch_model import solve_gram
    >>> A = np.diag([2.0, 1e-20])            # the second direction is unobserved
    >>> solve_gram(A, np.array([2.0, 1e-12]), previous=np.array([0.0, 0.5])).tolist()
    [1.0, 0.5]
    """
    p = b.shape[0]
    rcond = p * np.finfo(np.float64).eps if rcond is None else rcond
    try:
        factor = scipy.linalg.cho_factor(A, lower=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):   # not positive definite
        factor = None
    if factor is not None:
        anorm = np.abs(A).sum(axis=0).max()
        estimate, info = scipy.linalg.lapack.dpocon(factor[0], anorm)
        if info == 0 and estimate >= rcond:
            return scipy.linalg.cho_solve(factor, b)
    w, V = scipy.linalg.eigh(A)
    # a singular A's zero eigenvalues come out up to a few p eps w_max above
    # zero (5 eps w_max measured at p = 3): cut well above that
    keep = w > max(rcond, 10 * p * np.finfo(np.float64).eps) * max(w[-1], 0.0)
    start = np.zeros(p) if previous is None else np.asarray(previous, dtype=np.float64)
    Vk = V[:, keep]
    return start + Vk @ ((Vk.T @ (b - A @ start)) / w[keep])


def m_step(stats, shift_probabilities, hypotheses, estimate_noise=True, noise_floor=0.0,
           coef=None, rcond=None):
    """Run one M-step from the sufficient statistics (eq. 16 and 18).

    Solves ``(sum_h W_h A_h^T A_h) alpha = sum_h A_h^T S_h`` where ``A_h``
    maps ``alpha`` to the template ``C T_l Z F_{phi_k}``, updates
    ``rho_l = sum_k W_{k,l} / N_d`` (the merged empty mass is split back over
    the empty shifts in proportion to the previous ``rho``), and, if asked,
    ``sigma**2 = sum_m sum_h w_mh ||P_m - A_h alpha||**2 / (N_d L**2)``.

    Parameters
    ----------
    stats : Statistics
        Sufficient statistics of the E-step (:func:`estep_statistics`).
    shift_probabilities : array-like of shape (2L, 2L)
        The previous ``rho`` (only its empty shifts are used, to split the
        empty mass).
    hypotheses : HypothesisSpace
        The basis, rotation grid and layout of the E-step (it caches the
        tables ``A_h``).
    estimate_noise : bool, default=True
        Also update ``sigma**2``.
    noise_floor : float, default=0.0
        Lower bound on the updated ``sigma**2``.
    coef : ndarray of shape (p,), default=None
        The previous ``alpha``, kept in the directions the statistics do not
        determine (see :func:`solve_gram`).
    rcond : float, default=None
        The reciprocal condition number of the normal equations below which
        they are solved in their well-determined subspace only
        (:func:`solve_gram`).

    Returns
    -------
    coef : ndarray of shape (p,)
        The updated ``alpha`` (eq. 16).
    shift_probabilities : ndarray of shape (2L, 2L)
        The updated ``rho`` (eq. 18), on the simplex.
    noise_variance : float or None
        The updated ``sigma**2``; ``None`` when ``estimate_noise`` is false.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import (FourierBesselBasis, UniformRotationGrid, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.patch_model import build_patch_model, estep_statistics, m_step
    >>> from mtdlearn.data.patches import PatchData
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    >>> space = HypothesisSpace(basis, UniformRotationGrid(4).get_angles())
    >>> rho = density_to_shift_probabilities(0.04, 5)
    >>> model = build_patch_model(coef, rho, truth.noise_variance, space)
    >>> stats = estep_statistics(PatchData([X], 5), model, chunk=64)
    >>> new_coef, new_rho, new_sigma2 = m_step(stats, rho, space)
    >>> new_coef.shape, new_rho.shape, bool(abs(new_rho.sum() - 1) < 1e-12)
    ((10,), (10, 10), True)
    """
    space = hypotheses
    L = space.image_size
    d = L * L
    BR = space.rotated_evaluation
    W = space.per_rotation(stats.weights)
    D = W @ space.visibility                             # (K, d) pixel weights
    A = _weighted_gram(BR, D)
    y = (space.adjoint(stats.weighted_patches) if stats.rotation_images is None
         else stats.rotation_images)                     # (K, d)
    b = np.einsum("kfp,kf->p", BR, y)
    coef = solve_gram(A, b, coef, rcond)

    n = stats.n_patches
    rho_old = np.asarray(shift_probabilities, dtype=np.float64).reshape(-1)
    rho = np.zeros(4 * L * L)
    rho[space.shifts] = W.sum(axis=0) / n
    em = space.empty
    old_empty = rho_old[em].sum()
    share = rho_old[em] / old_empty if old_empty > 0 else np.full(em.size, 1.0 / em.size)
    rho[em] = stats.weight_empty / n * share
    rho /= rho.sum()

    sigma2 = None
    if estimate_noise:
        resid = stats.patch_sq - 2.0 * coef @ b + coef @ A @ coef
        sigma2 = max(resid / (n * d), noise_floor)
    return coef, rho.reshape(2 * L, 2 * L), sigma2
