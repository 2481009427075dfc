"""Approximate expectation-maximization for 2-D multi-target detection
(the paper's Algorithm 1), streamed over chunks of patches."""

import time

import numpy as np
import scipy.linalg

from .base import (BaseMTDEstimator, PatchData, build_patch_model, chunk_size,
                   estep_statistics)
from .operators import empty_shifts, nonempty_shifts, shift_gather_index

__all__ = ["ApproxEMEstimator", "m_step"]


def _mstep_tables(basis, angles):
    """Per-run constants of the M-step: ``B R_k`` (K, L*L, p), the gather
    index of the non-empty shifts (S, L*L) and their visibility masks (S, L*L)."""
    L = basis.image_size
    d = L * L
    R = basis.rotation_matrices(angles)                 # (K, p, p): rotate = R @ coef
    BR = np.einsum("fp,kpq->kfq", basis.matrix, R)      # (K, d, p)
    idx = shift_gather_index(L, nonempty_shifts(L))     # (S, d) patch pixel -> F pixel
    vis = np.zeros((idx.shape[0], d + 1))
    np.put_along_axis(vis, idx, 1.0, axis=1)
    return BR, idx, vis[:, :d]


def m_step(stats, shift_probabilities, basis, angles, tables=None, estimate_noise=True,
           noise_floor=0.0):
    """Run one M-step from the sufficient statistics (eq. 16 and 18).

    Solves ``(sum_h W_h A_h^T A_h) alpha = sum_h A_h^T S_h`` where ``A_h``
    maps ``alpha`` to the template ``C T_l Z F_{phi_k}``, updates
    ``rho_l = sum_k W_{k,l} / N_d`` (the merged empty mass is split back over
    the empty shifts in proportion to the previous ``rho``), and, if asked,
    ``sigma**2 = sum_m sum_h w_mh ||P_m - A_h alpha||**2 / (N_d L**2)``.

    Parameters
    ----------
    stats : Statistics
        Sufficient statistics of the E-step, from
        :func:`~mtdlearn.base.estep_statistics`.
    shift_probabilities : array-like of shape (2L, 2L)
        The previous ``rho`` (only its empty shifts are used, to split the
        empty mass).
    basis : FourierBesselBasis
        The basis of the coefficients.
    angles : array-like of shape (K,)
        The rotation grid of the E-step (eq. 8), in radians.
    tables : tuple, default=None
        Per-run constants (rotated evaluation matrices, gather index and
        visibility masks of the shifts); ``None`` computes them.  The EM
        computes them once per run.
    estimate_noise : bool, default=True
        Also update ``sigma**2``.
    noise_floor : float, default=0.0
        Lower bound on the updated ``sigma**2``.

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
    >>> from mtdlearn import (FourierBesselBasis, UniformRotationGrid, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.base import PatchData, build_patch_model, estep_statistics
    >>> from mtdlearn.em import m_step
    >>> from mtdlearn.operators import density_to_shift_probabilities
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    >>> angles = UniformRotationGrid(4).get_angles()
    >>> rho = density_to_shift_probabilities(0.04, 5)
    >>> model = build_patch_model(coef, rho, truth.noise_variance, basis, angles)
    >>> stats = estep_statistics(PatchData([X], 5), model, chunk=64)
    >>> new_coef, new_rho, new_sigma2 = m_step(stats, rho, basis, angles)
    >>> new_coef.shape, new_rho.shape, round(float(new_rho.sum()), 12)
    ((10,), (10, 10), 1.0)
    """
    L = basis.image_size
    d = L * L
    K = len(angles)
    BR, idx, vis = _mstep_tables(basis, angles) if tables is None else tables
    S = idx.shape[0]
    W = stats.weights.reshape(K, S)
    D = W @ vis                                          # (K, d) pixel weights
    A = np.einsum("kfp,kf,kfq->pq", BR, D, BR)
    # adjoint of the shifts: scatter the weighted patches back to image pixels
    flat = (np.arange(K)[:, None, None] * (d + 1) + idx[None]).ravel()
    y = np.bincount(flat, weights=stats.weighted_patches.ravel(),
                    minlength=K * (d + 1)).reshape(K, d + 1)[:, :d]
    b = np.einsum("kfp,kf->p", BR, y)
    try:
        coef = scipy.linalg.solve(A, b, assume_a="pos")
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        coef = scipy.linalg.lstsq(A, b)[0]
    except scipy.linalg.LinAlgWarning:  # pragma: no cover - only if warnings are errors
        coef = scipy.linalg.lstsq(A, b)[0]

    n = stats.n_patches
    rho_old = np.asarray(shift_probabilities, dtype=np.float64).reshape(-1)
    rho = np.zeros(4 * L * L)
    rho[nonempty_shifts(L)] = W.sum(axis=0) / n
    em = empty_shifts(L)
    old_empty = rho_old[em].sum()
    share = rho_old[em] / old_empty if old_empty > 0 else np.full(em.size, 1.0 / em.size)
    rho[em] = stats.weight_empty / n * share
    rho /= rho.sum()

    sigma2 = None
    if estimate_noise:
        resid = stats.patch_sq - 2.0 * coef @ b + coef @ A @ coef
        sigma2 = max(resid / (n * d), noise_floor)
    return coef, rho.reshape(2 * L, 2 * L), sigma2


class ApproxEMEstimator(BaseMTDEstimator):
    """Approximate EM for two-dimensional multi-target detection (Algorithm 1).

    Maximizes the approximate likelihood (eq. 5) of the non-overlapping
    ``L x L`` patches of the measurement over the image coefficients
    ``alpha``, the shift distribution ``rho`` and (optionally) the noise
    variance, marginalizing over ``K`` rotations and ``4 L**2`` shifts per patch.

    Parameters
    ----------
    image_size : int
        Diameter ``L = 2n + 1`` of the target image, odd.
    basis : FourierBesselBasis, default=None
        Steerable basis of the image; ``None`` means
        ``FourierBesselBasis(image_size)``.  Copied, never modified.
    rotations : int or rotation grid, default=16
        ``K``, or an object with ``get_angles()`` (eq. 8).
    initializer : initializer object, default=None
        ``None`` means :class:`~mtdlearn.initializers.RandomInitializer`.
    n_init : int, default=1
        Number of starts; the one with the highest log-likelihood wins.
    noise_variance : float, default=None
        ``sigma**2``.  A float holds it fixed as in the paper; ``None``
        estimates it in the M-step (closed form).
    max_iter : int, default=100
        Maximum number of EM iterations; ``0`` returns the initialization.
    tol : float, default=1e-6
        Stop when the gain of the mean log-likelihood per patch is below ``tol``.
    working_memory : float, default=None
        Memory budget per chunk of patches in MiB (scikit-learn's
        convention); ``None`` means 64 MiB.  Results do not depend on it
        beyond rounding.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Precision of the E-step arithmetic; sufficient statistics are
        always accumulated in float64.
    n_jobs : int, default=None
        Threads for the chunks of the E-step (and for the starts when
        ``n_init > 1``).  Results do not depend on it.
    random_state : int, Generator, RandomState or None, default=None
        Seeds the initializations.
    verbose : int, default=0
        ``>= 1`` prints one line per iteration.
    warm_start : bool, default=False
        Continue from the previous fit's parameters.

    Attributes
    ----------
    coef_ : ndarray of shape (n_functions,)
        Estimated coefficients.
    image_ : ndarray of shape (L, L)
        Estimated image.
    shift_probabilities_ : ndarray of shape (2L, 2L)
        Estimated ``rho`` (eq. 18).
    density_ : float
        Density implied by ``rho``: ``(L**2 / (2L-1)**2) * sum of rho over non-empty shifts``.
    noise_variance_ : float
    n_iter_ : int
    converged_ : bool
    n_patches_ : int
    log_likelihood_history_ : list of float
        Mean log-likelihood per patch after each iteration (first entry: the start).
    lower_bound_ : float
        The final mean log-likelihood per patch.

    See Also
    --------
    AutocorrelationEstimator : Autocorrelation analysis, the paper's baseline.

    Notes
    -----
    Each iteration is one E-step (eq. 10-12) and one M-step (eq. 16, 18),
    computed as two GEMMs per chunk of patches over the
    ``H = K (2L-1)**2 + 1`` hypotheses (all empty shifts merged into one);
    see DESIGN.md §4.  Memory is bounded by the chunk size, not by the
    number of patches.

    References
    ----------
    S. Kreymer, A. Singer, T. Bendory, "An approximate expectation-maximization
    for two-dimensional multi-target detection".

    Examples
    --------
    >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
    ...                       make_target, relative_error)
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 200, snr=50, random_state=0)
    >>> em = ApproxEMEstimator(5, basis=basis, rotations=8, max_iter=200, random_state=0)
    >>> em.fit(X).coef_.shape
    (10,)
    >>> bool(relative_error(coef, em.coef_, basis) < 0.2)
    True
    """

    def __init__(self, image_size, *, basis=None, rotations=16, initializer=None, n_init=1,
                 noise_variance=None, max_iter=100, tol=1e-6, working_memory=None,
                 dtype=np.float64, n_jobs=None, random_state=None, verbose=0,
                 warm_start=False):
        self.image_size = image_size
        self.basis = basis
        self.rotations = rotations
        self.initializer = initializer
        self.n_init = n_init
        self.noise_variance = noise_variance
        self.max_iter = max_iter
        self.tol = tol
        self.working_memory = working_memory
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    def _prepare(self, measurements):
        dt = np.dtype(self.dtype)
        if dt not in (np.float64, np.float32):
            raise ValueError(f"dtype must be numpy.float64 or numpy.float32, got {self.dtype!r}")
        return PatchData(measurements, self.basis_.image_size)

    def _single_run(self, data, measurements, state, seed, inner_jobs=None):
        # the E-step limits BLAS threads itself (base._parallel_map)
        return self._run(data, state, self.n_jobs if inner_jobs is None else inner_jobs)

    def _run(self, data, state, n_jobs):
        basis, angles = self.basis_, self.angles_
        dtype = np.dtype(self.dtype)
        H = len(angles) * nonempty_shifts(basis.image_size).size
        chunk = chunk_size(H, basis.image_size, self.working_memory, dtype.itemsize)
        tables = _mstep_tables(basis, angles)
        estimate = self.noise_variance is None
        coef, rho, sigma2 = state.coef, state.shift_probabilities, state.noise_variance
        n = data.n_patches

        def estep(coef, rho, sigma2):
            model = build_patch_model(coef, rho, sigma2, basis, angles, dtype=dtype)
            stats = estep_statistics(data, model, chunk, n_jobs=n_jobs, dtype=dtype)
            if not (np.isfinite(stats.loglik) and np.all(np.isfinite(coef))):
                raise FloatingPointError(
                    "the EM's log-likelihood or coefficients are not finite: scale the "
                    "measurement (e.g. to unit noise), give a larger noise_variance, or use "
                    "dtype=numpy.float64")
            return stats

        t0 = time.perf_counter()
        stats = estep(coef, rho, sigma2)
        ll = stats.loglik / n
        history = [ll]
        # the likelihood is unbounded as sigma^2 -> 0 on data the model fits
        # exactly; keep sigma^2 above a negligible fraction of the patch energy
        floor = 1e-12 * max(stats.patch_sq / (n * basis.image_size ** 2), 1e-300)
        converged = False
        n_iter = 0
        if self.verbose:
            print(f"[ApproxEM] iter 0  log-likelihood {ll:.10g}  "
                  f"({time.perf_counter() - t0:.2f} s)")
        for n_iter in range(1, self.max_iter + 1):
            t0 = time.perf_counter()
            coef, rho, s2 = m_step(stats, rho, basis, angles, tables, estimate, floor)
            if estimate:
                sigma2 = s2
            stats = estep(coef, rho, sigma2)
            new = stats.loglik / n
            gain = new - ll
            ll = new
            history.append(ll)
            if self.verbose:
                print(f"[ApproxEM] iter {n_iter}  log-likelihood {ll:.10g}  gain {gain:.3e}  "
                      f"({time.perf_counter() - t0:.2f} s)")
            if gain < self.tol:
                converged = True
                break
        return {
            "coef": coef, "shift_probabilities": rho, "noise_variance": sigma2,
            "objective": ll, "n_iter": n_iter, "converged": converged,
            "extra": {"log_likelihood_history_": history, "lower_bound_": ll},
        }
