"""Approximate expectation-maximization for 2-D multi-target detection
(the paper's Algorithm 1), streamed over chunks of patches.

The estimator is thin: the E-step kernels, the sufficient statistics and the
M-step are in :mod:`mtdlearn.patch_model`, the loop in
:class:`~mtdlearn.base.BaseMTDEstimator`.
"""

from dataclasses import dataclass

import numpy as np

from .base import BaseMTDEstimator
from .initializers import InitialState
from .hypotheses import HypothesisSpace
from .fft_estep import build_fft_patch_model, choose_estep, estep_statistics_fft
from .patch_model import build_patch_model, estep_statistics, m_step

__all__ = ["ApproxEMEstimator"]


@dataclass
class _EMData:
    """What the starts of one EM fit share."""

    data: object                  # PatchData
    hypotheses: HypothesisSpace
    estimate_noise: bool


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
    basis : basis object, default=None
        Steerable basis of the image (any object following the protocol of
        :func:`mtdlearn.basis.check_basis`); ``None`` means
        ``FourierBesselBasis(image_size)``.  Copied with
        :func:`sklearn.base.clone`, never modified.
    rotations : int or rotation grid, default=16
        ``K``, or an object with ``get_angles()`` (eq. 8).
    initializer : initializer object, default=None
        ``None`` means :class:`~mtdlearn.initializers.RandomInitializer`;
        :class:`~mtdlearn.MultiresolutionInitializer` starts from an EM fit
        of the binned measurement (not the default: it did not measure
        better, see :doc:`/results`, "Realistic particle sizes").
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
        Memory budget in MiB of each thread's chunk of patches (scikit-learn's
        convention); ``None`` takes ``sklearn.get_config()["working_memory"]``.
        Chunks are also capped at a cache-friendly size.  Results do not
        depend on it beyond rounding.
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
        Estimated coefficients ``alpha`` of the best start.
    image_ : ndarray of shape (L, L)
        Estimated image, ``basis_.evaluate(coef_)``.
    shift_probabilities_ : ndarray of shape (2L, 2L)
        Estimated ``rho`` (eq. 18).
    density_ : float
        Density implied by ``rho``: ``(L**2 / (2L-1)**2) * sum of rho over non-empty shifts``.
    noise_variance_ : float
        Estimated ``sigma**2``, or the fixed ``noise_variance``.
    n_iter_ : int
        Number of EM iterations run by the best start.
    converged_ : bool
        Whether the best start met ``tol`` within ``max_iter`` iterations.
    n_patches_ : int
        Number of ``L x L`` patches ``N_d`` in the fitted measurements.
    basis_ : basis object
        The copy of ``basis`` (or the default basis) used by the fit.
    rotations_ : rotation grid
        The rotation grid searched (from ``rotations``).
    angles_ : ndarray of shape (K,)
        Its angles in radians.
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
    see :doc:`/design`, "The E-step".  Memory is bounded by the chunk size, not by the
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

    _verbose_name = "ApproxEM"

    @property
    def _warm(self):
        return bool(self.warm_start)

    def _check_params(self):
        try:
            dt = np.dtype(self.dtype)
        except TypeError:
            dt = None
        if dt is None or dt not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ValueError(f"dtype must be numpy.float64 or numpy.float32, got {self.dtype!r}")
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise TypeError(f"warm_start must be a bool, got {type(self.warm_start).__name__} "
                            f"{self.warm_start!r}")

    def _prepare(self, data):
        return _EMData(data, HypothesisSpace(self.basis_, self.angles_),
                       self.noise_variance is None)

    def _e_step(self, prepared, state, n_jobs):
        space = prepared.hypotheses  # the FFT E-step is cheaper for large L (design, "FFT path")
        fft = choose_estep(space.image_size, space.n_rotations, self.dtype) == "fft"
        build, estep = ((build_fft_patch_model, estep_statistics_fft) if fft
                        else (build_patch_model, estep_statistics))
        model = build(state.coef, state.shift_probabilities, state.noise_variance, space,
                      dtype=np.dtype(self.dtype))
        stats = estep(prepared.data, model, n_jobs=n_jobs, working_memory=self.working_memory)
        if not (np.isfinite(stats.loglik) and np.all(np.isfinite(state.coef))):
            raise FloatingPointError(
                "the EM's log-likelihood or coefficients are not finite: scale the "
                "measurement (e.g. to unit noise), give a larger noise_variance, or use "
                "dtype=numpy.float64")
        return stats.loglik / stats.n_patches, stats

    def _m_step(self, prepared, state, stats):
        # the likelihood is unbounded as sigma^2 -> 0 on data the model fits
        # exactly; keep sigma^2 above a negligible fraction of the patch energy
        d = prepared.hypotheses.image_size ** 2
        floor = 1e-12 * max(stats.patch_sq / (stats.n_patches * d), 1e-300)
        coef, rho, sigma2 = m_step(stats, state.shift_probabilities, prepared.hypotheses,
                                   prepared.estimate_noise, floor)
        return InitialState(coef, rho, sigma2 if prepared.estimate_noise
                            else state.noise_variance)
