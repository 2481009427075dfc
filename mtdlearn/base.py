"""The shared generative model of the patches and the base estimator.

Both estimators fit the same model of the non-overlapping ``L x L`` patches
(paper eq. 5-12): patch ``m`` is ``C T_l Z F_phi + noise`` with shift ``l``
drawn from ``rho`` (2L x 2L), rotation ``phi`` uniform on the grid of ``K``
angles, and white Gaussian noise of variance ``sigma**2``.  The
approximate log-likelihood (eq. 5) treats the patches as independent.

Computation (DESIGN.md §4): hypotheses ``h = (k, l)`` over the non-empty
shifts plus one merged empty hypothesis; templates ``T_h`` form an
``H x L**2`` matrix and ``||P_m - T_h||**2 = ||P_m||**2 - 2 P_m . T_h +
||T_h||**2`` is one GEMM per chunk of patches, followed by a row-wise
log-sum-exp.  Nothing of size ``N_d x H`` outlives a chunk.
"""

import warnings
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._threads import blas_single_thread
from ._validation import check_int, check_measurements, check_random_generator, check_real
from .basis import FourierBesselBasis
from .operators import (check_shift_probabilities, empty_shifts, nonempty_shifts,
                        patch_grid_shape, shift_gather_index, shift_probabilities_to_density,
                        shift_to_offset)
from .rotations import check_rotation_grid

__all__ = ["BaseMTDEstimator", "PatchData", "PatchModel", "build_patch_model",
           "estep_statistics", "estep_per_patch", "chunk_size"]

#: Default working memory per chunk of patches, in MiB (scikit-learn's convention).
DEFAULT_WORKING_MEMORY = 64
#: A chunk's c x H block of posteriors is kept near this size so it stays in
#: cache between the GEMM, the exp, the row sums and the second GEMM (measured
#: best among 1, 2, 4 and 8 MiB on the 2-core machine); the memory budget can
#: only lower it.
CACHE_BYTES = 4 * 2**20


# ---------------------------------------------------------------------------
# patches
class PatchData:
    """Read-only, chunked access to the patches of a list of measurements.

    Patches are numbered row-major within each measurement, measurements in
    order.  ``get(start, stop)`` copies only the requested patches, so the
    full ``N_d x L**2`` array is never built.

    Parameters
    ----------
    measurements : list of ndarray of shape (N1, N2)
        Validated 2-D measurements (memory-mapped arrays are fine); kept by
        reference, never modified.
    image_size : int
        Patch side ``L``.

    Attributes
    ----------
    grid_shapes : list of (int, int)
        Patch rows and columns of each measurement.
    offsets : ndarray of shape (n_measurements + 1,)
        Index of the first patch of each measurement, then ``n_patches``.
    n_patches : int
        Total number of patches ``N_d``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.base import PatchData
    >>> data = PatchData([np.arange(36.0).reshape(6, 6)], 3)
    >>> data.n_patches
    4
    >>> data.get(1, 2)
    array([[ 3.,  4.,  5.,  9., 10., 11., 15., 16., 17.]])
    """

    def __init__(self, measurements, image_size):
        self.measurements = measurements
        self.image_size = L = image_size
        grids = [patch_grid_shape(M.shape, L) for M in measurements]
        self.grid_shapes = grids
        counts = np.array([r * c for r, c in grids], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.n_patches = int(self.offsets[-1])

    def get(self, start, stop, dtype=np.float64, out=None):
        """Copy patches ``start..stop-1`` into a ``(stop - start, L*L)`` array.

        Parameters
        ----------
        start : int
            Index of the first patch.
        stop : int
            One past the index of the last patch.
        dtype : dtype, default=numpy.float64
            Type of the new array; ignored when ``out`` is given.
        out : ndarray of shape (>= stop - start, L*L), default=None
            Buffer to write into instead of a new array.

        Returns
        -------
        patches : ndarray of shape (stop - start, L*L)
            The flattened patches (row-major pixels), ``out`` if given.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.base import PatchData
        >>> data = PatchData([np.zeros((10, 10)), np.ones((5, 5))], 5)
        >>> data.get(3, 5)
        array([[0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.,
                0., 0., 0., 0., 0., 0., 0., 0.],
               [1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1.,
                1., 1., 1., 1., 1., 1., 1., 1.]])
        """
        L = self.image_size
        if out is None:
            out = np.empty((stop - start, L * L), dtype=dtype)
        pos = start
        while pos < stop:
            i = int(np.searchsorted(self.offsets, pos, side="right") - 1)
            nr, nc = self.grid_shapes[i]
            local0 = pos - self.offsets[i]
            local1 = min(stop, self.offsets[i + 1]) - self.offsets[i]
            r0, r1 = local0 // nc, -(-local1 // nc)
            block = self.measurements[i][r0 * L:r1 * L, :nc * L]
            tiles = np.asarray(block).reshape(r1 - r0, L, nc, L).swapaxes(1, 2)
            tiles = tiles.reshape(-1, L * L)
            n = local1 - local0
            out[pos - start:pos - start + n] = tiles[local0 - r0 * nc:local1 - r0 * nc]
            pos += n
        return out

    def locate(self, index):
        """Locate patches: their measurement and top-left pixel.

        Parameters
        ----------
        index : int or array-like of int
            Global patch indices in ``[0, n_patches)``.

        Returns
        -------
        measurement : ndarray of int
            Index of the measurement holding each patch.
        row : ndarray of int
            Row of each patch's top-left pixel in its measurement.
        col : ndarray of int
            Column of each patch's top-left pixel in its measurement.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.base import PatchData
        >>> data = PatchData([np.zeros((6, 6))], 3)
        >>> data.locate([1, 3])
        (array([0, 0]), array([0, 3]), array([3, 3]))
        """
        index = np.asarray(index, dtype=np.int64)
        meas = np.searchsorted(self.offsets, index, side="right") - 1
        local = index - self.offsets[meas]
        nc = np.array([c for _, c in self.grid_shapes], dtype=np.int64)[meas]
        L = self.image_size
        return meas, (local // nc) * L, (local % nc) * L


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
        Budget in MiB; ``None`` means 64 MiB.
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
    >>> from mtdlearn.base import chunk_size
    >>> chunk_size(16 * 81, 5)  # K = 16, L = 5: cache-bound
    404
    >>> chunk_size(16 * 81, 5, working_memory=0.5)  # memory-bound
    48
    """
    wm = DEFAULT_WORKING_MEMORY if working_memory is None else working_memory
    d = image_size * image_size
    per_row = itemsize * (n_hypotheses + 2 * d + 3) + 8 * 8
    rows = int(wm * 2**20 // per_row)
    if rows < 1:
        raise ValueError(f"working_memory={wm} MiB is too small for one patch "
                         f"({per_row} bytes needed per patch)")
    return max(1, min(rows, max(16, CACHE_BYTES // (itemsize * n_hypotheses))))


# ---------------------------------------------------------------------------
# the model and its E-step
@dataclass
class PatchModel:
    """Everything the E-step needs, derived from (coef, rho, sigma**2, angles).

    The E-step of a chunk is one GEMM of the augmented patches
    ``[P, 1, -||P||**2 / (2 sigma**2)]`` with the augmented templates
    ``[T / sigma**2, b, 1]``, ``b_h = -||T_h||**2 / (2 sigma**2) + log prior_h - c``:
    it gives ``-||P - T_h||**2 / (2 sigma**2) + log prior_h - c`` for every
    non-empty hypothesis at once.  ``c`` (``shift``) is the largest log prior,
    so every exponent is ``<= 0`` (never an exp of an unshifted value).
    ``templates`` are in rotation-major order over the ``(2L-1)**2``
    non-empty shifts; log priors are ``log rho_l - log K``; the empty
    hypothesis has log prior ``log_prior_empty`` (total mass of the empty
    shifts).  Built by :func:`build_patch_model`.

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
    n_rotations : int
        ``K``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis, UniformRotationGrid
    >>> from mtdlearn.base import build_patch_model
    >>> from mtdlearn.operators import density_to_shift_probabilities
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> model = build_patch_model(np.ones(10), density_to_shift_probabilities(0.04, 5),
    ...                           1.0, basis, UniformRotationGrid(4).get_angles())
    >>> model.templates.shape, model.augmented.shape, model.n_rotations
    ((324, 25), (324, 27), 4)
    """

    templates: np.ndarray          # (H, L*L), unscaled
    augmented: np.ndarray          # (H, L*L + 2), as described above
    log_prior: np.ndarray          # (H,)
    log_prior_empty: float
    shift: float
    noise_variance: float
    n_rotations: int


def rotated_images(coef, basis, angles):
    """Flattened pixel images of the coefficients rotated by each angle, ``(K, L*L)``."""
    return basis.evaluate(basis.rotate(coef, angles)).reshape(len(angles), -1)


def build_templates(images, image_size):
    """All non-empty templates ``C T_l Z F_k``: ``(K * (2L-1)**2, L*L)``."""
    L = image_size
    ext = np.concatenate([images, np.zeros((images.shape[0], 1))], axis=1)
    idx = shift_gather_index(L, nonempty_shifts(L))  # (S, L*L)
    return ext[:, idx].reshape(-1, L * L)


def _neg_big(dtype):
    return -1e200 if np.dtype(dtype) == np.float64 else -1e30


def build_patch_model(coef, shift_probabilities, noise_variance, basis, angles, dtype=np.float64):
    """Assemble the :class:`PatchModel` of given parameters.

    Renders the rotated images ``F_{phi_k}``, all ``K (2L-1)**2`` non-empty
    templates ``C T_l Z F_{phi_k}`` (eq. 6-7) and their log priors
    ``log rho_l - log K`` (eq. 12); zero-probability hypotheses get a large
    negative bias instead of ``-inf``.

    Parameters
    ----------
    coef : array-like of shape (p,)
        Image coefficients ``alpha``.
    shift_probabilities : array-like of shape (2L, 2L)
        ``rho``.
    noise_variance : float
        ``sigma**2 > 0``.
    basis : FourierBesselBasis
        The basis of ``coef``.
    angles : array-like of shape (K,)
        The rotation grid (eq. 8), in radians.
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
    >>> from mtdlearn.base import build_patch_model
    >>> from mtdlearn.operators import density_to_shift_probabilities
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> model = build_patch_model(np.ones(10), density_to_shift_probabilities(0.04, 5),
    ...                           1.0, basis, UniformRotationGrid(4).get_angles())
    >>> model.templates.shape  # K (2L-1)**2 = 4 * 81 templates of L*L pixels
    (324, 25)
    """
    L = basis.image_size
    K = len(angles)
    T = build_templates(rotated_images(coef, basis, angles), L)
    rho = np.asarray(shift_probabilities, dtype=np.float64).reshape(-1)
    with np.errstate(divide="ignore"):
        lp = np.tile(np.log(rho[nonempty_shifts(L)]) - np.log(K), K)
        lp_empty = float(np.log(rho[empty_shifts(L)].sum()))
    shift = float(max(lp.max(), lp_empty))
    inv = 1.0 / noise_variance
    bias = -0.5 * inv * np.einsum("ij,ij->i", T, T) + lp - shift
    bias = np.where(np.isfinite(bias), bias, _neg_big(dtype))
    aug = np.empty((T.shape[0], T.shape[1] + 2), dtype=dtype)
    aug[:, :-2] = T * inv
    aug[:, -2] = bias
    aug[:, -1] = 1.0
    return PatchModel(templates=T, augmented=aug, log_prior=lp, log_prior_empty=lp_empty,
                      shift=shift, noise_variance=float(noise_variance), n_rotations=K)


def _get_augmented(data, start, stop, model, dtype, out=None):
    """Chunk of patches as ``[P, 1, -||P||**2 / (2 sigma**2)]`` and ``||P||**2``
    (written into ``out[:stop - start]`` when a buffer is given)."""
    d = data.image_size ** 2
    n = stop - start
    Pa = np.empty((n, d + 2), dtype=dtype) if out is None else out[:n]
    data.get(start, stop, out=Pa[:, :d])
    P = Pa[:, :d]
    sq = np.einsum("ij,ij->i", P, P, dtype=np.float64)
    Pa[:, d] = 1.0
    Pa[:, d + 1] = -0.5 * sq / model.noise_variance
    return Pa, sq


#: exp-sums below this are recomputed with the exact row maximum (underflow guard)
_TINY = {np.dtype(np.float64): 1e-200, np.dtype(np.float32): 1e-25}


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
    u = np.full(n, model.shift)
    logit_empty = model.log_prior_empty - model.shift + Pa[:, -1]
    tiny = _TINY[E.dtype]
    np.exp(E, out=E)
    e_empty = np.exp(logit_empty)
    # row sums as a GEMV: one streaming pass, ~40 % cheaper than ndarray.sum here
    s = (E @ np.ones(E.shape[1], dtype=E.dtype)).astype(np.float64) + e_empty
    low = np.flatnonzero(~(s > tiny))
    if low.size:  # rare: every hypothesis far below the bound; use the exact max
        L = Pa[low] @ model.augmented.T
        m = np.maximum(L.max(axis=1), logit_empty[low])
        L -= m[:, None]
        E[low] = np.exp(L)
        e_empty[low] = np.exp(logit_empty[low] - m)
        s[low] = E[low].sum(axis=1, dtype=np.float64) + e_empty[low]
        u[low] += m
    return E, u, s, e_empty


def _patch_loglik(u, s, d, model):
    return u + np.log(s) - 0.5 * d * np.log(2 * np.pi * model.noise_variance)


@dataclass
class Statistics:
    """Sufficient statistics summed over patches (DESIGN.md §4)."""

    weights: np.ndarray        # W_h, (H,)
    weight_empty: float        # W of the merged empty hypothesis
    weighted_patches: np.ndarray  # S = w^T P, (H, L*L)
    patch_sq: float            # sum ||P_m||^2
    loglik: float              # sum of per-patch log-likelihoods
    n_patches: int

    def __iadd__(self, other):
        self.weights += other.weights
        self.weight_empty += other.weight_empty
        self.weighted_patches += other.weighted_patches
        self.patch_sq += other.patch_sq
        self.loglik += other.loglik
        self.n_patches += other.n_patches
        return self


def _stats_range(data, model, start, stop, step, dtype):
    H, d = model.templates.shape
    n_max = min(step, stop - start)
    Pa_buf = np.empty((n_max, d + 2), dtype=dtype)
    E_buf = np.empty((n_max, H), dtype=dtype)
    SW = np.empty((d + 1, H), dtype=dtype)
    acc = np.zeros((d + 1, H))                   # [S | W]^T, float64
    st = Statistics(None, 0.0, None, 0.0, 0.0, 0)
    for c0 in range(start, stop, step):
        Pa, sq = _get_augmented(data, c0, min(stop, c0 + step), model, dtype, out=Pa_buf)
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


def _ranges(n, step, block):
    """Fixed partition of ``0..n-1`` into task ranges of ``block`` chunks; it
    depends on the chunk size only, never on ``n_jobs``."""
    size = step * block
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def _parallel_map(func, ranges, n_jobs):
    """Map over task ranges in order.  BLAS runs single-threaded inside: the
    chunks' GEMMs are small, and OpenBLAS threads cost more than they give
    there (measured: 3.4 s vs 0.6 s per E-step at N=1000, K=16); parallelism
    comes from the joblib threads over tasks instead."""
    with blas_single_thread():
        if n_jobs is None or n_jobs == 1 or len(ranges) == 1:
            for r in ranges:
                yield func(*r)
            return
        yield from Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(
            delayed(func)(*r) for r in ranges)


def estep_statistics(data, model, chunk, n_jobs=None, dtype=np.float64, tasks_per_block=8):
    """Run the E-step over all patches and sum the sufficient statistics.

    For every patch ``m`` and hypothesis ``h`` the posterior ``w_mh``
    (eq. 10-12) is computed in log space; the statistics ``W_h = sum_m
    w_mh``, ``S = w^T P`` and the log-likelihood (eq. 5) are summed over the
    patches (DESIGN.md §4).  Chunks of ``chunk`` patches are grouped into
    tasks run by joblib threads; results are reduced in a fixed order, so
    they do not depend on ``n_jobs``.

    Parameters
    ----------
    data : PatchData
        The patches.
    model : PatchModel
        The current parameters (:func:`build_patch_model`).
    chunk : int
        Patches per chunk (:func:`chunk_size`).
    n_jobs : int, default=None
        Threads over the tasks; ``None`` is 1.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Precision of the chunk arithmetic; sums are float64.
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
    mtdlearn.em.m_step : The M-step from these statistics.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import (FourierBesselBasis, UniformRotationGrid, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.base import PatchData, build_patch_model, estep_statistics
    >>> from mtdlearn.operators import density_to_shift_probabilities
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    >>> model = build_patch_model(coef, density_to_shift_probabilities(0.04, 5),
    ...                           truth.noise_variance, basis,
    ...                           UniformRotationGrid(4).get_angles())
    >>> stats = estep_statistics(PatchData([X], 5), model, chunk=64)
    >>> stats.n_patches, stats.weighted_patches.shape
    (400, (324, 25))
    >>> round(float(stats.weights.sum() + stats.weight_empty), 8)  # posteriors sum to 1
    400.0
    """
    ranges = _ranges(data.n_patches, chunk, tasks_per_block)
    total = None
    for st in _parallel_map(lambda a, b: _stats_range(data, model, a, b, chunk, dtype),
                            ranges, n_jobs):
        if total is None:
            total = st
        else:
            total += st
    return total


def _per_patch_range(data, model, start, stop, step, dtype):
    n = stop - start
    d = model.templates.shape[1]
    ll = np.empty(n)
    best = np.empty(n, dtype=np.int64)
    best_p = np.empty(n)
    p_empty = np.empty(n)
    Pa_buf = np.empty((min(step, n), d + 2), dtype=dtype)
    E_buf = np.empty((min(step, n), model.templates.shape[0]), dtype=dtype)
    for c0 in range(start, stop, step):
        c1 = min(stop, c0 + step)
        Pa, sq = _get_augmented(data, c0, c1, model, dtype, out=Pa_buf)
        E, u, s, e_empty = _chunk_posteriors(Pa, sq, model, out=E_buf)
        sl = slice(c0 - start, c1 - start)
        ll[sl] = _patch_loglik(u, s, d, model)
        arg = E.argmax(axis=1)
        emax = E[np.arange(len(arg)), arg]
        use_empty = e_empty >= emax
        best[sl] = np.where(use_empty, -1, arg)
        best_p[sl] = np.where(use_empty, e_empty, emax) / s
        p_empty[sl] = e_empty / s
    return ll, best, best_p, p_empty


def estep_per_patch(data, model, chunk, n_jobs=None, dtype=np.float64, tasks_per_block=8):
    """Run the E-step patch by patch: likelihoods and MAP hypotheses.

    Used by ``score_samples``, ``predict`` and ``predict_proba``; chunked
    and threaded like :func:`estep_statistics`.

    Parameters
    ----------
    data : PatchData
        The patches.
    model : PatchModel
        The parameters (:func:`build_patch_model`).
    chunk : int
        Patches per chunk (:func:`chunk_size`).
    n_jobs : int, default=None
        Threads over the tasks; ``None`` is 1.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Precision of the chunk arithmetic.
    tasks_per_block : int, default=8
        Chunks per joblib task.

    Returns
    -------
    log_likelihood : ndarray of shape (N_d,)
        ``log p(M_m | alpha, rho)`` of each patch (eq. 5 terms, Gaussian
        constant included).
    best : ndarray of shape (N_d,), int
        Index of the MAP hypothesis into ``model.templates``, or ``-1`` when
        the empty hypothesis wins.
    best_posterior : ndarray of shape (N_d,)
        Posterior probability of the MAP hypothesis.
    empty_posterior : ndarray of shape (N_d,)
        Posterior probability of the empty hypothesis.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import (FourierBesselBasis, UniformRotationGrid, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.base import PatchData, build_patch_model, estep_per_patch
    >>> from mtdlearn.operators import density_to_shift_probabilities
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    >>> model = build_patch_model(coef, density_to_shift_probabilities(0.04, 5),
    ...                           truth.noise_variance, basis,
    ...                           UniformRotationGrid(4).get_angles())
    >>> loglik, best, best_p, p_empty = estep_per_patch(PatchData([X], 5), model, 64)
    >>> loglik.shape, best.shape
    ((400,), (400,))
    """
    ranges = _ranges(data.n_patches, chunk, tasks_per_block)
    parts = list(_parallel_map(lambda a, b: _per_patch_range(data, model, a, b, chunk, dtype),
                               ranges, n_jobs))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))


# ---------------------------------------------------------------------------
class BaseMTDEstimator(BaseEstimator):
    """Base class of the multi-target detection estimators.

    Owns what both estimators share: input validation (one measurement,
    a stack, or a sequence of arrays or ``.npy`` paths), the generative
    model of the patches (``coef_``, ``shift_probabilities_``,
    ``noise_variance_``), the ``n_init`` restarts through joblib, and
    ``score``, ``score_samples``, ``predict``, ``predict_proba``, ``sample``.

    Subclasses store their constructor parameters (``image_size``,
    ``basis``, ``rotations``, ``initializer``, ``n_init``,
    ``noise_variance``, ``max_iter``, ``tol``, ``n_jobs``, ``random_state``,
    ``verbose``) and implement two hooks:

    ``_prepare(measurements)``
        Data for the runs, computed once per fit (patches for the EM, the
        measured autocorrelations for autocorrelation analysis).
    ``_single_run(data, measurements, state, seed, inner_jobs=None)``
        One start from an :class:`~mtdlearn.initializers.InitialState`;
        returns a dict with ``coef``, ``shift_probabilities``,
        ``noise_variance``, ``objective`` (higher is better), ``n_iter``,
        ``converged`` and ``extra`` (more fitted attributes).

    Examples
    --------
    >>> from mtdlearn import ApproxEMEstimator, AutocorrelationEstimator, BaseMTDEstimator
    >>> issubclass(ApproxEMEstimator, BaseMTDEstimator)
    True
    >>> issubclass(AutocorrelationEstimator, BaseMTDEstimator)
    True
    """

    # -- parameter handling shared by subclasses --------------------------
    def _check_common(self):
        L = check_int(self.image_size, "image_size", minimum=3)
        if L % 2 == 0:
            raise ValueError(f"image_size must be odd (L = 2n + 1), got {L}")
        if self.basis is None:
            basis = FourierBesselBasis(L)
        elif isinstance(self.basis, FourierBesselBasis):
            # never mutate the user's object: work on a copy
            basis = FourierBesselBasis(**self.basis.get_params())
        else:
            raise TypeError(f"basis must be a FourierBesselBasis or None, "
                            f"got {type(self.basis).__name__}")
        if basis.image_size != L:
            raise ValueError(f"basis.image_size={basis.image_size} does not match "
                             f"image_size={L}")
        check_int(self.n_init, "n_init", minimum=1)
        check_int(self.max_iter, "max_iter", minimum=0)
        check_real(self.tol, "tol", minimum=0.0)
        if self.noise_variance is not None:
            check_real(self.noise_variance, "noise_variance", minimum=0.0, strict=True)
        if self.n_jobs is not None:
            n_jobs = check_int(self.n_jobs, "n_jobs")
            if n_jobs == 0:
                raise ValueError("n_jobs must be a non-zero integer or None, got 0")
        check_int(self.verbose, "verbose", minimum=0)
        wm = getattr(self, "working_memory", None)
        if wm is not None:
            check_real(wm, "working_memory", minimum=0.0, strict=True)
        self.basis_ = basis
        self.rotations_, self.angles_ = check_rotation_grid(self._rotation_param())
        return L

    def _rotation_param(self):
        return self.rotations

    def _check_initializer(self):
        from .initializers import RandomInitializer

        init = self.initializer
        if init is None:
            return RandomInitializer()
        if not hasattr(init, "initialize"):
            raise TypeError("initializer must have an initialize(measurements, basis, "
                            "noise_variance, random_state) method, "
                            f"got {type(init).__name__}")
        return init

    # -- fit ----------------------------------------------------------------
    def fit(self, X, y=None):
        """Estimate the model from measurements.

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
            The measurement(s): one measurement, a stack, or a sequence of
            2-D arrays or ``.npy`` paths.  Input is never modified.
        y : None
            Ignored; present for scikit-learn compatibility.

        Returns
        -------
        self : object
            The fitted estimator.

        Warns
        -----
        ConvergenceWarning
            If the best start did not converge within ``max_iter`` iterations.

        Examples
        --------
        >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
        ...                       make_target)
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 150,
        ...                             snr=10, random_state=0)
        >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=200,
        ...                        random_state=0).fit(X)
        >>> em.coef_.shape, em.shift_probabilities_.shape, em.converged_
        ((10,), (10, 10), True)
        """
        L = self._check_common()
        measurements = check_measurements(X, L)
        data = self._prepare(measurements)
        rng = check_random_generator(self.random_state)
        warm = getattr(self, "warm_start", False) and hasattr(self, "coef_")
        n_init = 1 if warm else int(self.n_init)
        seeds = rng.integers(np.iinfo(np.int32).max, size=n_init)
        if warm:
            from .initializers import InitialState

            states = [self._check_state(InitialState(
                self.coef_.copy(), self.shift_probabilities_.copy(),
                float(self.noise_variance_) if self.noise_variance is None
                else float(self.noise_variance)), source="the previous fit (warm_start)")]
        else:
            init = self._check_initializer()
            states = []
            for seed in seeds:
                st = init.initialize(measurements, self.basis_,
                                     None if self.noise_variance is None
                                     else float(self.noise_variance),
                                     np.random.default_rng(seed))
                states.append(self._check_state(st))
        if n_init == 1 or self.n_jobs in (None, 1):
            results = [self._single_run(data, measurements, st, s)
                       for st, s in zip(states, seeds)]
        else:
            results = Parallel(n_jobs=self.n_jobs, prefer="threads",
                               verbose=max(self.verbose - 1, 0))(
                delayed(self._single_run)(data, measurements, st, s, inner_jobs=1)
                for st, s in zip(states, seeds))
        best = max(range(n_init), key=lambda i: results[i]["objective"])
        res = results[best]
        self.coef_ = res["coef"]
        self.shift_probabilities_ = res["shift_probabilities"].reshape(2 * L, 2 * L)
        self.noise_variance_ = float(res["noise_variance"])
        self.density_ = shift_probabilities_to_density(self.shift_probabilities_)
        self.image_ = self.basis_.evaluate(self.coef_)
        self.n_iter_ = int(res["n_iter"])
        self.converged_ = bool(res["converged"])
        self.n_patches_ = int(sum(np.prod(patch_grid_shape(M.shape, L)) for M in measurements))
        for key, value in res.get("extra", {}).items():
            setattr(self, key, value)
        if not self.converged_ and self.max_iter > 0:
            from sklearn.exceptions import ConvergenceWarning

            warnings.warn(self._convergence_message(res), ConvergenceWarning, stacklevel=2)
        return self

    def _check_state(self, state, source="initializer"):
        L = self.basis_.image_size
        coef = np.asarray(state.coef, dtype=np.float64)
        if coef.shape != (self.basis_.n_functions,):
            raise ValueError(f"{source} gave coef of shape {coef.shape}, expected "
                             f"({self.basis_.n_functions},)")
        rho = check_shift_probabilities(state.shift_probabilities, L,
                                        "initial shift_probabilities")
        sigma2 = check_real(state.noise_variance, "initial noise_variance", minimum=0.0,
                            strict=True)
        state.coef, state.shift_probabilities, state.noise_variance = coef, rho, sigma2
        return state

    def _convergence_message(self, res):
        return (f"{type(self).__name__} did not converge in max_iter={self.max_iter} "
                f"iterations (tol={self.tol}). Increase max_iter, loosen tol, or start "
                "closer to the solution (e.g. initializer=AutocorrelationInitializer()).")

    # -- the shared generative model ---------------------------------------
    def _model(self, dtype=np.float64):
        return build_patch_model(self.coef_, self.shift_probabilities_, self.noise_variance_,
                                 self.basis_, self.angles_, dtype=dtype)

    def _chunk(self, model):
        itemsize = np.dtype(getattr(self, "dtype", np.float64)).itemsize
        return chunk_size(model.templates.shape[0], self.basis_.image_size,
                          getattr(self, "working_memory", None), itemsize)

    def _per_patch(self, X):
        check_is_fitted(self, "coef_")
        L = self.basis_.image_size
        measurements = check_measurements(X, L)
        data = PatchData(measurements, L)
        model = self._model()
        out = estep_per_patch(data, model, self._chunk(model), self.n_jobs)
        return data, out

    def score_samples(self, X):
        """Compute the approximate log-likelihood of each patch.

        The terms ``log p(M_m | alpha, rho)`` of eq. (5), with the rotation
        and the shift marginalized over the fitted model (``K`` rotations of
        ``rotations``, ``4 L**2`` shifts) and the Gaussian constant
        included.

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
            Measurement(s), in any of the forms :meth:`fit` accepts.

        Returns
        -------
        log_likelihood : ndarray of shape (N_d,)
            One value per patch, patches row-major, measurements in order.

        Examples
        --------
        >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
        ...                       make_target)
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 150,
        ...                             snr=10, random_state=0)
        >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=200,
        ...                        random_state=0).fit(X)
        >>> em.score_samples(X).shape  # (150 // 5)**2 patches
        (900,)
        """
        return self._per_patch(X)[1][0]

    def score(self, X, y=None):
        """Mean approximate log-likelihood per patch (eq. 5).

        Comparable between the two estimators and between settings, which
        makes ``GridSearchCV`` work on held-out measurements.

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
            Measurement(s), in any of the forms :meth:`fit` accepts.
        y : None
            Ignored; present for scikit-learn compatibility.

        Returns
        -------
        score : float
            The mean of :meth:`score_samples`.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
        ...                       make_target)
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 150,
        ...                             snr=10, random_state=0)
        >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=200,
        ...                        random_state=0).fit(X)
        >>> bool(np.isclose(em.score(X), em.lower_bound_))  # EM's final objective
        True
        """
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X):
        """Compute each patch's posterior probability of holding (part of) a copy.

        One minus the posterior probability of the empty hypothesis (all
        shifts with ``l_0 = L`` or ``l_1 = L``) under the fitted model.

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
            Measurement(s), in any of the forms :meth:`fit` accepts.

        Returns
        -------
        proba : ndarray of shape (N_d,)
            One value in ``[0, 1]`` per patch, patches row-major,
            measurements in order.

        Examples
        --------
        >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
        ...                       make_target)
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 150,
        ...                             snr=10, random_state=0)
        >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=200,
        ...                        random_state=0).fit(X)
        >>> proba = em.predict_proba(X)
        >>> proba.shape, bool(((proba >= 0) & (proba <= 1)).all())
        ((900,), True)
        """
        return 1.0 - self._per_patch(X)[1][3]

    def predict(self, X):
        """Find the maximum-a-posteriori occurrence of each non-empty patch.

        The MAP hypothesis ``(phi_k, l)`` of eq. (11) per patch, reported in
        measurement coordinates: a copy at shift ``l`` of the patch at
        ``(r0, c0)`` has its top-left corner at ``(r0, c0) + d`` with
        ``d = (-l) mod 2L`` mapped to ``[-(L-1), L-1]``.

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
            Measurement(s), in any of the forms :meth:`fit` accepts.

        Returns
        -------
        detections : structured ndarray
            Fields ``measurement`` (int), ``row``, ``col`` (top-left corner of
            the copy in measurement coordinates, as the simulator's truth),
            ``angle`` (radians, from the rotation grid, relative to the
            estimate ``coef_``), ``probability`` (posterior of the MAP
            hypothesis).  One row per patch whose MAP is non-empty; a copy
            straddling several patches is reported by each of them.

        Examples
        --------
        >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
        ...                       make_target)
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 150,
        ...                             snr=10, random_state=0)
        >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=200,
        ...                        random_state=0).fit(X)
        >>> detections = em.predict(X)
        >>> detections.dtype.names
        ('measurement', 'row', 'col', 'angle', 'probability')
        """
        data, (_, best, best_p, _) = self._per_patch(X)
        L = self.basis_.image_size
        keep = np.flatnonzero(best >= 0)
        h = best[keep]
        S = nonempty_shifts(L)
        k, s = h // S.size, S[h % S.size]
        d0 = shift_to_offset(s // (2 * L), L)
        d1 = shift_to_offset(s % (2 * L), L)
        meas, r0, c0 = data.locate(keep)
        out = np.empty(len(keep), dtype=[("measurement", np.int64), ("row", np.int64),
                                         ("col", np.int64), ("angle", np.float64),
                                         ("probability", np.float64)])
        out["measurement"] = meas
        out["row"] = r0 + d0
        out["col"] = c0 + d1
        out["angle"] = self.angles_[k]
        out["probability"] = best_p[keep]
        return out

    def sample(self, size, n_measurements=None, random_state=None):
        """Draw a synthetic measurement from the fitted model.

        Copies of ``image_`` at the fitted density ``density_``, uniformly
        rotated, with noise of variance ``noise_variance_``
        (see :func:`mtdlearn.make_measurement`).

        Parameters
        ----------
        size : int or (int, int)
            Side ``N`` (or shape) of each measurement.
        n_measurements : int, default=None
            ``None`` draws one measurement; an int draws a stack.
        random_state : int, Generator, RandomState or None, default=None
            Seed or generator of the draw (not the estimator's
            ``random_state``).

        Returns
        -------
        X : ndarray of shape (N1, N2) or (n_measurements, N1, N2)
            The synthetic measurement(s).
        truth : MeasurementTruth
            Positions, angles and the rest of the simulated truth.

        Examples
        --------
        >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
        ...                       make_target)
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 150,
        ...                             snr=10, random_state=0)
        >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=200,
        ...                        random_state=0).fit(X)
        >>> X_new, truth_new = em.sample(100, random_state=0)
        >>> X_new.shape
        (100, 100)
        """
        check_is_fitted(self, "coef_")
        from .datasets import make_measurement

        return make_measurement(self.coef_, self.basis_, size, density=self.density_,
                                noise_variance=self.noise_variance_,
                                n_measurements=n_measurements, random_state=random_state)
