"""Frequency marching: start a large-image fit from a fit of binned data.

A particle of ``L x L`` pixels seen through ``b x b`` block means is about
``L / b`` pixels wide, and the noise variance of a block mean is
``sigma**2 / b**2``.  The EM on the binned measurement is cheap (few
hypotheses, few coefficients) and at a higher per-pixel SNR; its image,
upsampled to ``L x L`` and expanded in the full basis, starts the full-size
EM near the answer (the way cryo-EM refinement starts from binned images:
RELION, cryoSPARC).  :doc:`/design`, "Multiresolution start".
"""

import numpy as np
import scipy.ndimage

from .._validation import check_int
from ..basis.fourier_bessel import FourierBesselBasis
from ..likelihood.hypotheses import HypothesisSpace
from ..initializers import (DEFAULT_DENSITY, InitialState, RandomInitializer, _ParamsMixin,
                           _check_initialize_args)
from ..imaging.shifts import density_to_shift_probabilities, max_density
from ..likelihood.patch_model import build_patch_model
from ..likelihood.statistics import estep_statistics
from ..likelihood.m_step import m_step
from ..data.patches import PatchData

__all__ = ["MultiresolutionInitializer", "bin_measurement", "upsample_image"]


def bin_measurement(measurement, factor):
    """Block means of ``factor x factor`` pixels (the measurement binned).

    The measurement is cropped to a multiple of ``factor`` first.  A block
    mean keeps the mean of the signal and divides the variance of white
    noise by ``factor**2``.

    Parameters
    ----------
    measurement : ndarray of shape (N1, N2)
        One measurement.
    factor : int
        ``b >= 1``.

    Returns
    -------
    binned : ndarray of shape (N1 // b, N2 // b)
        The block means.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.em.multiresolution import bin_measurement
    >>> bin_measurement(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    b = check_int(factor, "factor", minimum=1)
    X = np.asarray(measurement, dtype=np.float64)
    n1, n2 = X.shape[0] // b, X.shape[1] // b
    if n1 == 0 or n2 == 0:
        raise ValueError(f"factor={b} exceeds the measurement's shape {X.shape}")
    return X[:n1 * b, :n2 * b].reshape(n1, b, n2, b).mean(axis=(1, 3))


def upsample_image(image, image_size, factor):
    """Resample a binned image to the full grid (cubic spline, same centre).

    Full pixel offset ``x`` from the centre reads the small image at offset
    ``x / b`` from its centre; values (block means) keep their scale.

    Parameters
    ----------
    image : ndarray of shape (l, l)
        The small image, ``l`` odd.
    image_size : int
        ``L``, odd.
    factor : int
        ``b``.

    Returns
    -------
    upsampled : ndarray of shape (L, L)
        The image on the full grid (zero outside the small image).

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.em.multiresolution import upsample_image
    >>> up = upsample_image(np.ones((5, 5)), 9, 2)
    >>> up.shape, bool(abs(up[4, 4] - 1) < 1e-12)
    ((9, 9), True)
    """
    small = np.asarray(image, dtype=np.float64)
    l_half, n = (small.shape[0] - 1) / 2, (int(image_size) - 1) / 2
    x = (np.arange(int(image_size)) - n) / float(factor) + l_half
    rows, cols = np.meshgrid(x, x, indexing="ij")
    return scipy.ndimage.map_coordinates(small, [rows, cols], order=3, mode="constant",
                                         cval=0.0)


def _small_size(L, factor):
    s = int(np.ceil(L / factor))
    return max(3, s + (1 - s % 2))


class MultiresolutionInitializer(_ParamsMixin):
    """Start from an EM fit of the binned measurement (frequency marching).

    Bins each measurement into ``b x b`` block means (noise variance
    ``sigma**2 / b**2``), runs the approximate EM on the binned data with
    an image of odd size ``l >= L / b`` (the default basis of that size,
    a random start), then upsamples the small image to ``L x L``
    (:func:`~mtdlearn.em.multiresolution.upsample_image`) and expands it in
    the full basis.  The density
    carries over as ``gamma * L**2 / (b l)**2`` (the same number of copies)
    and a fitted ``sigma_b**2`` as ``b**2 sigma_b**2``.

    Parameters
    ----------
    factor : int, default=None
        The bin size ``b``; ``None`` chooses the largest power of two with
        ``L / b >= 5`` (the paper's size).
    rotations : int, default=16
        ``K`` of the small EM.
    max_iter : int, default=50
        Iterations of the small EM.
    tol : float, default=1e-5
        Stopping gain of the small EM (mean log-likelihood per patch).
    density : float, default=None
        Initial density of the small EM's random start; ``None`` is the
        paper's 0.03.

    See Also
    --------
    RandomInitializer : The paper's random start (the estimators' default).

    Notes
    -----
    Not the default of :class:`ApproxEMEstimator`: against the random start
    it measured no better (:doc:`/results`, "Realistic particle sizes").
    :doc:`/design`, "Multiresolution start", gives the details.

    Examples
    --------
    >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis,
    ...                       MultiresolutionInitializer, make_measurement, make_target)
    >>> basis = FourierBesselBasis(11, n_coefficients=20)
    >>> X, _ = make_measurement(make_target(basis, random_state=0), basis, 220, snr=10,
    ...                         density=0.1, random_state=0)
    >>> init = MultiresolutionInitializer(max_iter=5)
    >>> em = ApproxEMEstimator(11, basis=basis, initializer=init, max_iter=0).fit(X)
    >>> em.coef_.shape == (basis.n_functions,)
    True
    """

    _param_names = ("factor", "rotations", "max_iter", "tol", "density")

    def __init__(self, factor=None, rotations=16, max_iter=50, tol=1e-5, density=None):
        self.factor = factor
        self.rotations = rotations
        self.max_iter = max_iter
        self.tol = tol
        self.density = density

    def initialize(self, measurements, basis, noise_variance, random_state):
        """Fit the binned measurement and expand its image in ``basis``.

        Parameters
        ----------
        measurements : PatchData or list of ndarray of shape (N1, N2)
            The estimator's patch source, or validated 2-D measurements;
            only read.
        basis : basis object
            The estimator's (full-size) basis.
        noise_variance : float or None
            The estimator's fixed ``sigma**2``, or ``None`` when estimated.
        random_state : numpy.random.Generator
            Source of the small EM's random start.

        Returns
        -------
        state : InitialState
            ``coef`` (p,), ``shift_probabilities`` (2L, 2L) and
            ``noise_variance``.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis, make_measurement, make_target
        >>> from mtdlearn.em.multiresolution import MultiresolutionInitializer
        >>> basis = FourierBesselBasis(11, n_coefficients=20)
        >>> X, _ = make_measurement(make_target(basis, random_state=0), basis, 220,
        ...                         snr=10, density=0.1, random_state=0)
        >>> state = MultiresolutionInitializer(max_iter=5).initialize(
        ...     [X], basis, None, np.random.default_rng(0))
        >>> state.coef.shape == (basis.n_functions,), state.shift_probabilities.shape
        (True, (22, 22))
        """
        _check_initialize_args(measurements, basis, noise_variance, random_state)
        L = int(basis.image_size)
        if self.factor is None:
            b = 2 ** max(0, int(np.floor(np.log2(L / 5.0))))
        else:
            b = check_int(self.factor, "factor", minimum=1)
        arrays = (measurements.measurements if isinstance(measurements, PatchData)
                  else list(measurements))
        if b == 1:
            return RandomInitializer(self.density).initialize(measurements, basis,
                                                              noise_variance, random_state)
        small_L = _small_size(L, b)
        binned = [bin_measurement(X, b) for X in arrays]
        small_basis = FourierBesselBasis(small_L)
        fixed = None if noise_variance is None else noise_variance / b ** 2
        K = check_int(self.rotations, "rotations", minimum=1)
        max_iter = check_int(self.max_iter, "max_iter", minimum=0)
        data = PatchData(binned, small_L)
        state = RandomInitializer(self.density).initialize(data, small_basis, fixed,
                                                           random_state)
        space = HypothesisSpace(small_basis, 2 * np.pi * np.arange(K) / K)
        coef, rho, sigma2 = state.coef, state.shift_probabilities, state.noise_variance
        previous = -np.inf
        for _ in range(max_iter):
            stats = estep_statistics(data, build_patch_model(coef, rho, sigma2, space))
            objective = stats.loglik / stats.n_patches
            if not np.isfinite(objective) or objective - previous < self.tol:
                break
            previous = objective
            coef, rho, s2 = m_step(stats, rho, space, fixed is None,
                                   1e-12 * stats.patch_sq / (stats.n_patches * small_L ** 2),
                                   coef=coef)
            sigma2 = sigma2 if fixed is not None else s2
        image = upsample_image(small_basis.evaluate(coef), L, b)
        gamma_small = (small_L ** 2 / (2 * small_L - 1) ** 2) * rho.ravel()[space.shifts].sum()
        gamma = gamma_small * L * L / (b * small_L) ** 2
        if not 0 < gamma < max_density(L):
            gamma = DEFAULT_DENSITY if self.density is None else self.density
        sigma2_full = noise_variance if noise_variance is not None else sigma2 * b * b
        return InitialState(basis.expand(image), density_to_shift_probabilities(gamma, L),
                            float(sigma2_full))
