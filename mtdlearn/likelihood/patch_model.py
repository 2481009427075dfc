"""The generative model of the patches and its GEMM E-step kernel.

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
:class:`~mtdlearn.likelihood.statistics.Statistics`
(:func:`~mtdlearn.likelihood.statistics.estep_statistics` streams the
chunks), from which :func:`~mtdlearn.likelihood.m_step.m_step` computes the
next parameters (eq. 16, 18).
"""

from dataclasses import dataclass

import numpy as np

from .hypotheses import HypothesisSpace
from ..data.patches import chunk_rows

__all__ = ["PatchModel", "build_patch_model", "chunk_size"]

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


def build_patch_model(coef, shift_probabilities, noise_variance, hypotheses, dtype=np.float64,
                      weights=None):
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
    weights : array-like of shape (C,), default=None
        The components' abundances (:meth:`HypothesisSpace.log_prior
        <mtdlearn.likelihood.hypotheses.HypothesisSpace.log_prior>`); ``None``: equal.

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
    lp, lp_empty = hypotheses.log_prior(shift_probabilities, weights)
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
