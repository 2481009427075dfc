"""The E-step by FFT: correlations of the patches with every shifted template.

For a patch ``P`` and rotation ``k``, the inner products ``P . C T_l Z F_k``
over all ``(2L-1)**2`` non-empty shifts ``l`` are one 2-D cross-correlation
of ``P`` with ``F_k`` (:doc:`/design`, "The E-step", "FFT path").  With
both zero-padded to an ``N x N`` grid, ``N >= 2L - 1``, they cost two real
FFTs per (patch, rotation) instead of a GEMM of ``(2L-1)**2 x L**2``: the
E-step's cost per patch and rotation drops from ``O(L**4)`` to
``O(L**2 log L)``.  The M-step needs the weighted patch sums only through
``y_k = sum_m sum_l w_mkl (C T_l Z)^T P_m`` (``HypothesisSpace.adjoint``),
a convolution of the posterior maps with the patches, summed here in the
Fourier domain without forming ``S`` (``H x L**2``).

:func:`choose_estep` picks the GEMM (:mod:`mtdlearn.likelihood.patch_model`) or this
path from a cost model; both give the same statistics to rounding.
"""

from dataclasses import dataclass

import numpy as np
import scipy.fft

from .hypotheses import HypothesisSpace
from .patch_model import _EXP_FLOOR, _exp_rows, _neg_big, _patch_loglik
from .statistics import Statistics, _partition, _run_tasks
from ..data.patches import PatchData, chunk_rows

__all__ = ["FFTPatchModel", "build_fft_patch_model", "estep_statistics_fft", "choose_estep",
           "fft_chunk_size",
           "fft_grid_size"]

#: The GEMM path runs this many times more flops per second than the FFT path
#: (FFTs, complex products, the posterior maps' spectra); measured on the
#: 2-core machine, float64, L = 5...21, K = 16 (docs/design.rst, "FFT path").
FFT_FLOP_PENALTY = 5.0
#: The c x K x N**2 block of posterior maps is kept near this size (as the GEMM's c x H).
CACHE_BYTES = 4 * 2**20

def fft_grid_size(image_size):
    """Side ``N`` of the FFT grid: the smallest fast size ``>= 2L - 1``.

    ``N >= 2L - 1`` makes the circular correlation of two zero-padded
    ``L x L`` arrays equal to the linear one at every lag in
    ``[-(L-1), L-1]``.

    Parameters
    ----------
    image_size : int
        ``L``.

    Returns
    -------
    n : int
        ``N``.

    Examples
    --------
    >>> from mtdlearn.likelihood.fft_estep import fft_grid_size
    >>> fft_grid_size(5), fft_grid_size(21)
    (9, 45)
    """
    return int(scipy.fft.next_fast_len(2 * int(image_size) - 1, real=True))


def _lag_index(space, n):
    """Flat index in the N x N grid of each non-empty shift, in the space's order."""
    L = space.image_size
    s = space.shifts
    l0, l1 = s // (2 * L), s % (2 * L)
    # shift l < L is lag l; shift l > L is lag l - 2L, at N + l - 2L on the grid
    r = np.where(l0 < L, l0, n + l0 - 2 * L)
    c = np.where(l1 < L, l1, n + l1 - 2 * L)
    return r * n + c


def choose_estep(image_size, n_rotations, dtype=np.float64):
    """Choose the E-step kernel, ``"gemm"`` or ``"fft"``, from a cost model.

    Per patch and rotation the GEMM path costs about ``4 (2L-1)**2 L**2``
    flops (two GEMMs), the FFT path about ``4 N**2 (2.5 log2 N**2 + 4)``
    (three real FFTs counted as ``2.5 n log2 n``, two complex products);
    the FFT path is chosen when its flops, times ``FFT_FLOP_PENALTY``
    (the measured ratio of flop rates), are fewer.  The rule is fixed
    (the same answer for the same shape on every machine), so results never
    depend on timings: ``L = 5`` always runs the GEMM.

    Parameters
    ----------
    image_size : int
        ``L``.
    n_rotations : int
        ``K`` (both costs are linear in it; kept for the protocol).
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Precision of the E-step (both costs scale alike).

    Returns
    -------
    method : {"gemm", "fft"}
        The cheaper kernel.

    Examples
    --------
    >>> from mtdlearn.likelihood.fft_estep import choose_estep
    >>> choose_estep(5, 16), choose_estep(21, 16)
    ('gemm', 'fft')
    """
    L = int(image_size)
    n2 = fft_grid_size(L) ** 2
    gemm = 4.0 * (2 * L - 1) ** 2 * L * L
    fft = 4.0 * n2 * (2.5 * np.log2(n2) + 4.0)
    return "fft" if FFT_FLOP_PENALTY * fft < gemm else "gemm"


@dataclass
class FFTPatchModel:
    """Everything the FFT E-step needs, derived from (coef, rho, sigma**2, hypotheses).

    The logit of hypothesis ``(k, l)`` for patch ``P`` is
    ``corr(P, F_k)[l] / sigma**2 + bias[k, l] - ||P||**2 / (2 sigma**2)`` with
    ``bias = -||C T_l Z F_k||**2 / (2 sigma**2) + log prior - shift``, the same
    numbers as the GEMM's :class:`~mtdlearn.likelihood.patch_model.PatchModel` laid out on
    the ``N x N`` lag grid (entries that are no shift get a large negative bias).
    Built by :func:`build_fft_patch_model`; no ``H x L**2`` template table.

    Parameters
    ----------
    spectra : ndarray of shape (K, N, N // 2 + 1), complex
        ``rfft2`` of the zero-padded rotated images, divided by ``sigma**2``.
    bias : ndarray of shape (K, N*N)
        The bias on the lag grid, in the E-step's dtype.
    lag_index : ndarray of shape (S,), int
        Grid position of each non-empty shift, in the hypotheses' order.
    log_prior_empty : float
        Log of the total mass of the empty shifts.
    shift : float
        The largest log prior.
    noise_variance : float
        ``sigma**2``.
    hypotheses : HypothesisSpace
        The layout of the hypotheses.
    impossible : ndarray of int, default=None
        Flat indices into the ``K x N*N`` maps that hold no hypothesis (not a
        shift, or a zero prior): their posterior is exactly zero.

    Attributes
    ----------
    grid_size : int
        ``N``.
    dtype : numpy.dtype
        Precision of the E-step arithmetic.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis, UniformRotationGrid
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.fft_estep import build_fft_patch_model
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> space = HypothesisSpace(basis, UniformRotationGrid(4).get_angles())
    >>> model = build_fft_patch_model(np.ones(10), density_to_shift_probabilities(0.04, 5),
    ...                               1.0, space)
    >>> model.spectra.shape, model.bias.shape, model.grid_size
    ((4, 9, 5), (4, 81), 9)
    """

    spectra: np.ndarray
    bias: np.ndarray
    lag_index: np.ndarray
    log_prior_empty: float
    shift: float
    noise_variance: float
    hypotheses: HypothesisSpace
    impossible: np.ndarray = None

    @property
    def grid_size(self):
        """``N``, the side of the FFT grid."""
        return self.spectra.shape[1]

    @property
    def dtype(self):
        """Precision of the E-step arithmetic."""
        return self.bias.dtype


def build_fft_patch_model(coef, shift_probabilities, noise_variance, hypotheses,
                          dtype=np.float64, weights=None):
    """Assemble the :class:`FFTPatchModel` of given parameters.

    Evaluates the ``K`` rotated images once, their spectra on the ``N x N``
    grid, and the cropped-template energies ``||C T_l Z F_k||**2`` for all
    shifts at once (the correlation of ``F_k**2`` with the ``L x L`` window):
    they do not depend on the patches.

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
        Precision of the E-step arithmetic.
    weights : array-like of shape (C,), default=None
        The components' abundances (:meth:`HypothesisSpace.log_prior
        <mtdlearn.likelihood.hypotheses.HypothesisSpace.log_prior>`); ``None``: equal.

    Returns
    -------
    model : FFTPatchModel
        Everything the FFT E-step needs.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis, UniformRotationGrid
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.fft_estep import build_fft_patch_model
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> space = HypothesisSpace(basis, UniformRotationGrid(4).get_angles())
    >>> model = build_fft_patch_model(np.ones(10), density_to_shift_probabilities(0.04, 5),
    ...                               1.0, space)
    >>> int((model.bias > -1e100).sum())  # K (2L-1)**2 = 4 * 81 hypotheses
    324
    """
    dtype = np.dtype(dtype)
    space = hypotheses
    L, K = space.image_size, space.n_images      # one map per (component, rotation)
    n = fft_grid_size(L)
    images = space.rotated_images(coef).reshape(K, L, L)
    spec = scipy.fft.rfft2(images, s=(n, n))
    # energies of the cropped templates: correlation of F_k**2 with the window
    window = scipy.fft.rfft2(np.ones((L, L)), s=(n, n))
    energy = scipy.fft.irfft2(np.conj(window) * scipy.fft.rfft2(images ** 2, s=(n, n)),
                              s=(n, n)).reshape(K, -1)
    lag = _lag_index(space, n)
    lp, lp_empty = space.log_prior(shift_probabilities, weights)
    lp = space.per_rotation(lp)
    shift = float(max(lp.max(), lp_empty))
    inv = 1.0 / noise_variance
    b = -0.5 * inv * energy[:, lag] + lp - shift
    bias = np.full((K, n * n), _neg_big(dtype), dtype=dtype)
    bias[:, lag] = np.where(np.isfinite(b), b, _neg_big(dtype))
    possible = np.zeros((K, n * n), dtype=bool)    # a shift with a non-zero prior
    possible[:, lag] = np.isfinite(b)
    cdtype = np.result_type(dtype, np.complex64)
    return FFTPatchModel(spectra=(spec * inv).astype(cdtype), bias=bias, lag_index=lag,
                         log_prior_empty=lp_empty, shift=shift,
                         noise_variance=float(noise_variance), hypotheses=space,
                         impossible=np.flatnonzero(~possible.ravel()))


def _logits(Phat, pterm, model):
    """Shifted logits ``(c, K, N*N)`` of patches of spectra ``Phat``."""
    n = model.grid_size
    corr = scipy.fft.irfft2(np.conj(Phat)[:, None] * model.spectra[None], s=(n, n))
    Z = corr.reshape(corr.shape[0], corr.shape[1], -1)
    Z += model.bias
    Z += pterm[:, None, None]
    return Z


def _chunk(P, model):
    """FFT E-step of a chunk ``P`` (c, L, L): ``E, u, s, e_empty, Phat, sq``.

    As :func:`mtdlearn.likelihood.patch_model._chunk_posteriors`, with the posterior
    maps ``E`` of shape ``(c, K, N*N)`` (zero where the grid holds no shift).
    """
    n = model.grid_size
    sq = np.einsum("mij,mij->m", P, P, dtype=np.float64)
    pterm = (-0.5 / model.noise_variance) * sq
    Phat = scipy.fft.rfft2(P, s=(n, n))
    E = _logits(Phat, pterm.astype(model.dtype), model)
    c = E.shape[0]
    logit_empty = model.log_prior_empty - model.shift + pterm
    # float32: clamped hypotheses are exact zeros, not seeds of subnormal
    # numbers in the FFTs below (patch_model._EXP_FLOOR)
    u, s, e_empty = _exp_rows(E.reshape(c, -1), logit_empty, model.shift, model.impossible,
                              exact_zeros=True)
    return E, u, s, e_empty, Phat, sq


def _stats_range(data, model, start, stop, step):
    space = model.hypotheses
    L, K, n = space.image_size, space.n_images, model.grid_size
    d = L * L
    dtype = model.dtype
    W = np.zeros((K, n * n))
    Y = np.zeros((K, n, n // 2 + 1), dtype=np.complex128)
    st = Statistics(None, 0.0, None, 0.0, 0.0, 0)
    buf = np.empty((min(step, stop - start), d), dtype=dtype)
    floor, floor_mass = float(_EXP_FLOOR[np.dtype(dtype)]), 0.0
    for c0 in range(start, stop, step):
        c1 = min(stop, c0 + step)
        P = data.get(c0, c1, out=buf[:c1 - c0]).reshape(-1, L, L)
        E, u, s, e_empty, Phat, sq = _chunk(P, model)
        inv_s = 1.0 / s
        floor_mass += floor * float(inv_s.sum())
        W += np.einsum("m,mkf->kf", inv_s.astype(dtype), E)
        # y_k = sum_m (w_mk conv P_m) / s_m: summed in the Fourier domain
        Ehat = scipy.fft.rfft2(E.reshape(-1, K, n, n))
        Y += np.einsum("mkij,mij->kij", Ehat, Phat * inv_s.astype(dtype)[:, None, None])
        st.weight_empty += float(np.sum(e_empty * inv_s))
        st.patch_sq += float(sq.sum())
        st.loglik += float(_patch_loglik(u, s, d, model).sum())
        st.n_patches += P.shape[0]
    if floor_mass:   # the clamped mass back into every possible hypothesis
        W += floor_mass
        W.reshape(-1)[model.impossible] = 0.0
    st.weights = W[:, model.lag_index].reshape(-1)
    st.rotation_images = scipy.fft.irfft2(Y, s=(n, n))[:, :L, :L].reshape(K, d)
    return st


def fft_chunk_size(hypotheses, working_memory=None, itemsize=8):
    """Patches per chunk of the FFT E-step.

    The chunk's ``c x K x N**2`` posterior maps (and their spectra, about as
    large) fit in ``working_memory`` MiB, the maps in about
    ``CACHE_BYTES`` (at least 4 rows).

    Parameters
    ----------
    hypotheses : HypothesisSpace
        ``L`` and ``K``.
    working_memory : float, default=None
        Budget in MiB; ``None`` takes ``sklearn.get_config()["working_memory"]``.
    itemsize : int, default=8
        Bytes per number of the E-step arithmetic.

    Returns
    -------
    chunk : int
        Patches per chunk, ``>= 1``.

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.fft_estep import fft_chunk_size
    >>> fft_chunk_size(HypothesisSpace(FourierBesselBasis(21), [0.0] * 16))
    16
    """
    n = fft_grid_size(hypotheses.image_size)
    per_map = hypotheses.n_images * n * n * itemsize
    cap = max(4, CACHE_BYTES // per_map)
    return chunk_rows(3 * per_map + 8 * 3 * n * n, cap, working_memory, unit="patch")


def estep_statistics_fft(data, model, subset=None, *, chunk=None, n_jobs=None,
                         working_memory=None, tasks_per_block=8):
    """Run the E-step by FFT and sum the sufficient statistics.

    The same statistics as :func:`mtdlearn.likelihood.statistics.estep_statistics`, to
    rounding, except that the weighted patch sums come as
    ``rotation_images`` (``K x L*L``, what the M-step uses) and
    ``weighted_patches`` is ``None``.  Tasks are fixed independently of
    ``n_jobs``, never straddle two measurements, and are reduced in order
    (each measurement's, then the measurements'); on a distributed source
    (:mod:`mtdlearn.data._dask`) each measurement is one task on the worker
    that holds it, so the result is the in-memory one to the last bit.

    Parameters
    ----------
    data : PatchData
        The patches.
    model : FFTPatchModel
        The current parameters (:func:`build_fft_patch_model`).
    subset : (int, int), default=None
        Only the patches ``start..stop-1``; ``None`` means all.  On a
        distributed source, whole measurements only (``start`` and ``stop``
        among ``data.offsets``).
    chunk : int, default=None
        Patches per chunk; ``None`` chooses it with :func:`fft_chunk_size`.
    n_jobs : int, default=None
        Threads over the tasks; ``None`` is 1.
    working_memory : float, default=None
        Budget in MiB per thread for choosing ``chunk``.
    tasks_per_block : int, default=8
        Chunks per joblib task.

    Returns
    -------
    stats : Statistics
        ``weights`` (H,), ``weight_empty``, ``rotation_images`` (K, L*L),
        ``patch_sq``, ``loglik`` and ``n_patches``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import (FourierBesselBasis, UniformRotationGrid, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.fft_estep import build_fft_patch_model, estep_statistics_fft
    >>> from mtdlearn.data.patches import PatchData
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    >>> space = HypothesisSpace(basis, UniformRotationGrid(4).get_angles())
    >>> model = build_fft_patch_model(coef, density_to_shift_probabilities(0.04, 5),
    ...                               truth.noise_variance, space)
    >>> stats = estep_statistics_fft(PatchData([X], 5), model, chunk=64)
    >>> stats.n_patches, stats.rotation_images.shape
    (400, (4, 25))
    >>> total = stats.weights.sum() + stats.weight_empty  # posteriors sum to 1 per patch
    >>> bool(abs(total - 400) < 1e-9)
    True
    """
    if chunk is None:
        chunk = fft_chunk_size(model.hypotheses, working_memory, model.dtype.itemsize)
    ranges = _partition(data, subset, chunk, tasks_per_block)
    return _run_tasks(data, model, subset, chunk, ranges, n_jobs, tasks_per_block,
                      _block_statistics_fft, _stats_range)


def _block_statistics_fft(block, image_size, model, chunk, tasks_per_block):
    """:func:`estep_statistics_fft` of one measurement (a block of a distributed source)."""
    return estep_statistics_fft(PatchData([block], image_size), model, chunk=chunk,
                                tasks_per_block=tasks_per_block)
