"""Approximate expectation-maximization for 2-D multi-target detection
(the paper's Algorithm 1), streamed over chunks of patches.

The estimator is thin: the E-step kernels, the sufficient statistics and the
M-step are in :mod:`mtdlearn.likelihood.patch_model`, the loop in
:class:`~mtdlearn.base.BaseMTDEstimator`.  This module holds the estimator's
parameters, their validation and the hooks the loop calls; each acceleration
or phase is a module of :mod:`mtdlearn.em` that the hooks call: ``_squarem``
(``acceleration="squarem"``), ``_incremental``, ``_precision`` (float32
E-steps finished in float64), ``_refinement`` (rotation grids),
``_bandlimit_selection``, ``_stopping`` (``tol="auto"``), ``_ctf_start``
(the white-noise phase through CTFs), ``_components`` (kinds of particle)
and ``_state`` (what a start carries, the E-step's kernels).
"""

import numpy as np

from .._validation import check_bool, check_int, check_real
from ..base import BaseMTDEstimator, _scale_bounds
from ..basis._bandlimits import check_nested_basis
from ..basis.rotations import UniformRotationGrid, auto_refinement
from ..basis.fourier_bessel import FourierBesselBasis
from ..initializers import EnergyStart
from ..likelihood.formed import (NOISE_MODELS, check_ctf, check_noise, estep_groups,
                                 formation_groups, is_plain, measurement_formations)
from ..likelihood.hypotheses import HypothesisSpace
from ..likelihood.m_step import CTF_RCOND, component_weights, m_step, noise_variance_floor
from . import (_bandlimit_selection, _components, _ctf_start, _incremental, _precision,
               _refinement, _squarem, _stopping, residual)
from ._state import _EMData, _EMState, _Run, checkpoint_state, kernels, resume_state

__all__ = ["ApproxEMEstimator"]

_ACCELERATIONS = (None, "squarem", "incremental")


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
        :func:`mtdlearn.basis.protocol.check_basis`); ``None`` means
        ``FourierBesselBasis(image_size)``.  Copied with
        :func:`sklearn.base.clone`, never modified.
    rotations : int or rotation grid, default=16
        ``K``, or an object with ``get_angles()`` (eq. 8).  With the default
        ``refinement="auto"``, a uniform ``K`` too coarse for the basis's
        angular frequencies is replaced by a finer uniform grid (see
        ``refinement``; ``rotations_`` holds the grid searched).
    initializer : initializer object, default=None
        ``None`` means :class:`~mtdlearn.initializers.RandomInitializer`
        (with a ``ctf``, its image scaled to the data's energy at density
        0.03: see ``ctf``);
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
    tol : float or "auto", default="auto"
        ``"auto"``: stop when the change of ``coef_`` still to come (up to
        a rotation), projected from the EM's rate of convergence, is below
        0.3 of its standard error (:doc:`/design`, "Stopping"); ``remaining_change_``
        gives the ratio at the stop.  A float: stop when the gain of the mean
        log-likelihood per patch is below ``tol`` (the paper's rule, with
        ``1e-6``).  Phases stopped early (coarser grids, the white-noise or
        one-image phase) and the float32 finish compare gains with
        ``tol_``: the float, or ``4e-8 L**2`` for ``"auto"``.
    working_memory : float, default=None
        Memory budget in MiB of each thread's chunk of patches (scikit-learn's
        convention); ``None`` takes ``sklearn.get_config()["working_memory"]``.
        Chunks are also capped at a cache-friendly size.  Results do not
        depend on it beyond rounding.
    dtype : {"auto", numpy.float64, numpy.float32}, default="auto"
        Precision of the E-step arithmetic; sufficient statistics are
        always accumulated in float64.  ``"auto"`` runs the E-steps in
        float32 (about 3x faster, same error) while the gain per iteration
        is above float32's resolution of the mean log-likelihood and
        ``tol_`` (with ``tol="auto"``: until its rule would stop), then
        finishes in float64, so the stop is always tested in float64; at
        high SNR (float32 error of the logits above 1e-3, where ``||P||**2 -
        2 P.T + ||T||**2`` cancels) it runs in float64 throughout.
        ``numpy.float32`` runs every E-step in float32 (its gains near
        convergence are rounding noise).
    acceleration : {"squarem", "incremental", None}, default="squarem"
        ``None``: plain EM, one E-step and one M-step per iteration.
        ``"squarem"``: SQUAREM (Varadhan & Roland, 2008), scheme S3, on the
        EM map of ``(alpha, log rho, log sigma**2)`` with the monotone
        safeguard and the adaptive maximum step of the paper; one iteration
        is one cycle of 3 E-steps (2 when the step is 1).
        ``"incremental"``: for large measurements, incremental EM (Neal &
        Hinton, 1998) first: the patches are split into blocks of 8192
        (on Dask input, whole micrographs: each block one or more
        consecutive micrographs of about 8192 patches, its E-step on the
        workers; fewer than two blocks: plain SQUAREM); each iteration is one pass
        that runs an M-step before every block's E-step, so a pass moves the
        parameters once per block.  When a pass gains less than 1e-3 per
        patch (or after 20 passes) one batch E-step ends the phase and
        SQUAREM cycles finish at batch EM's fixed point.  The history holds,
        for a pass, the sum of the blocks' log-likelihoods each at its own
        E-step's parameters (not promised monotone); from the batch E-step
        on, the log-likelihood.
    refinement : int, "auto" or None, default="auto"
        ``None``: fit on the ``K``-point grid.  An int ``r >= 2``: coarse to
        fine over the uniform grids of ``K, 2K, 4K, ...`` (those below
        ``r K``) and ``r K`` rotations, each started from the previous
        grid's fixed point; the coarser grids stop once their gain per
        patch is below ``1e-4`` (or ``tol``, if larger) or below ``1e-3``
        times what the grid's phase has gained so far, the finest runs to
        ``tol``.  A grid's bias, ``1 - sinc(nu pi / K)``, falls as ``K**-2``.
        ``"auto"``: first the grid the basis needs, of ``r K`` rotations
        with ``r`` the smallest power of two for which ``r K`` is at least
        the basis's highest angular frequency ``nu_max`` (16 for the paper's
        basis at L = 5 and the default bases up to L = 13, 32 from L = 15 to
        23, 64 at L = 41); then, while the data resolve the angle finer than
        the grid, the grid doubles (at most 3 times), each from the
        previous fixed point.  The test, once per grid when its gain first
        falls below a coarse grid's bound (or at its end): the median
        posterior probability of the MAP hypothesis of the first 2000
        patches that hold a copy, ``rotation_concentration_``, is at least
        0.99 (1.000 at SNR 500, 0.2-0.4 at SNR 2-5: nothing changes there;
        :doc:`/results`), and the grid's bias (``sinc`` model) moves the
        image by at least 0.3 standard errors when the grid doubles.  ``K`` is kept for a ``rotations`` grid that is not
        a :class:`~mtdlearn.UniformRotationGrid`; a checkpointed fit runs the
        basis's grid only (an explicit ``r`` is refused there).
        ``rotations_`` and ``angles_`` describe the last grid.
    select_bandlimit : bool, default=False
        Choose the band limit from the data.  The basis must be a
        :class:`~mtdlearn.FourierBesselBasis`; its functions of ``lambda <=
        lambda_max / sqrt(2)**k`` form nested sub-bases of about half as many
        functions per step, down to 10 (none for the paper's 10-function
        basis at L = 5: the fit is then the plain one).  The fit in ``basis``
        runs until its gain per patch is below ``1e-3`` (or ``tol``, if
        larger); from its posteriors, each sub-basis gets one M-step and one
        E-step, and the basis of highest Akaike information criterion per
        patch, ``log-likelihood - n_functions / N_d``, runs
        on to ``tol`` (with ``refinement``, if given).  ``coef_`` is in
        ``basis_``, zero beyond the chosen band limit; ``n_functions_`` and
        ``bandlimit_path_`` tell what was chosen.  ``max_iter`` bounds each
        of the two phases.
    center : bool, default=True
        After each iteration, move the image by whole pixels so that the
        centre of mass of its positive part is within half a pixel of the
        centre pixel (RELION's ``--center_classes``), when it is more than
        half a pixel off in a row or column and the move keeps the image's
        energy in the basis (so never for an image that fills its disk, like
        the paper's random-coefficient targets).
        A particle smaller than its box is identified only up to a
        translation, and without this the EM drifts to a translated copy
        cut off by the disk: on ``make_particle`` targets at L = 11
        (N = 1230, SNR 3, seeds 0-4) the error after rotation and
        translation was 1.4-3.0 times that of the fit started from the
        truth, and 1.00 with it (:doc:`/results`, "Particle-like images").
        The iteration that moves the image is not tested against ``tol``;
        ``n_recentred_`` counts the moves.
    particle_diameter : float, default=None
        Diameter in pixels of the disk the image is supported on, as
        RELION's mask diameter: the default basis becomes
        ``FourierBesselBasis(image_size, radius=particle_diameter / 2)``
        (fewer functions), and the rest of the ``L x L`` box is empty.
        ``None``: the disk of the box (today's basis; a smaller default
        would clip a particle that fills the box).  With a ``ctf``, the
        box must hold the particle and the spread of its filtered copy
        (:meth:`~mtdlearn.imaging.ctf.CTF.delocalization`): choose
        ``image_size`` at least ``particle_diameter + 4``.  Measured
        (:doc:`/results`, "Micrographs from a microscope"; defocus 0.8-2.0
        um, 3 A/px): a 2-pixel margin per side took the error from 0.048
        (none) to 0.018, a 3-pixel one gave 0.019 at twice the time.  Give
        it or ``basis``, not both.
    ctf : CTF or sequence of CTF, default=None
        Each measurement's contrast transfer function
        (:class:`~mtdlearn.imaging.ctf.CTF`, RELION's convention; for
        example from :func:`~mtdlearn.data.star.read_micrograph_ctfs`): one
        for all, or one per measurement of ``X`` (in order).  A copy in
        micrograph ``m`` is then modelled as ``H_m F`` with ``H_m`` the
        CTF (and the whitening of ``noise``) on the ``L x L`` box, and the
        M-step solves for the CTF-free image from all micrographs at once
        (a defocus series fills each other's zeros); see
        :class:`~mtdlearn.imaging.formation.MicroscopeFormation`.  The
        M-step solves for the image only in the directions the micrographs
        determine (eigenvalues of its normal equations above ``1e-3`` of
        the largest) and keeps the previous image in the others, which the
        CTFs pass weakly or not at all (where maximum likelihood amplifies
        the noise without bound).  With the default start, a white-noise phase
        runs first, from a random image scaled to the data's energy at
        density 0.03 (through a CTF the data's mean does not show the
        copies' mass), and the CTF-aware fit starts from its result
        (``white_noise_n_iter_``).  An ``AutocorrelationInitializer`` left
        at ``ctf=None`` fits the moments through these CTFs and ``noise``
        (measured with room for the CTF's spread: 2-10x fewer E-steps,
        errors -17 % to +12 %; :doc:`/results`).  ``None``: bit for bit
        the paper's model.
    noise : {"white", "colored", "auto", "residual"}, RadialPSD or sequence of RadialPSD, default="white"
        The noise model.  ``"white"``: the paper's.  ``"colored"``: each
        micrograph's noise power spectrum is estimated from the micrograph
        (:func:`~mtdlearn.imaging.noise.estimate_noise_psd`, robust to
        copies over a minority of its tiles) and the micrograph and its
        copies' model are whitened by it (the noise's mean power per pixel
        is kept).  ``"auto"``: the same, but a micrograph whose spectrum
        is flat within its error bar
        (:func:`~mtdlearn.imaging.noise.is_white`) keeps white noise.  A
        :class:`~mtdlearn.imaging.noise.RadialPSD` (or one per
        measurement, ``None`` for white): whiten by the given spectra.  The
        micrograph's estimate includes the copies' power at low frequencies
        when they are strong, so ``"white"`` stays the default
        (:doc:`/results`).  ``"residual"`` (RELION's remedy): fit under
        ``"auto"``, then continue from that result with the spectra of what
        its copies leave (:func:`~mtdlearn.em.residual.residual_noise_psds`'s
        rule; ``auto_noise_n_iter_``).  ``predict``, ``score`` and the rest
        read any ``X``'s spectra the same way, with the first fit's copies
        (one more detection pass each); on the fitted ``X``, ``noise_psds_``.
    n_components : int, default=1
        Number of kinds of particle ``C`` (scikit-learn's
        ``GaussianMixture.n_components``).  Each has its own image and
        abundance (``weights_``); the shift distribution is shared, so a
        patch holds a copy of kind ``c`` at shift ``l`` with prior
        probability ``w_c rho_l``, and each E-step weighs ``C K`` template
        images.  Each start fits one image first (from the initializer's,
        to a loose tolerance), starts each kind at the mean of a k-means
        group of the copies it finds (cut out and turned back, as 2-D
        classification starts; equal abundances) and runs the mixture to
        ``tol``; ``one_component_n_iter_`` counts the first phase.
        Through CTFs or colored noise and on Dask input it is split at
        random instead (plus 0.3 of its norm in random directions), which
        on two particle kinds at L = 21 ended on both laid over each
        other (``mtdlearn.em._components``).  A start with one row per kind
        (``FixedInitializer``, ``AutocorrelationInitializer(n_components=C)``)
        starts the mixture directly.
        ``1`` is the paper's model, bit for bit.  Not yet with
        ``select_bandlimit`` or ``acceleration="incremental"``; a
        checkpoint needs a start with one row per kind (the one-image
        phase is not checkpointed).
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
    coef_ : ndarray of shape (n_functions,) or (n_components, n_functions)
        Estimated coefficients ``alpha`` of the best start; one row per
        component when ``n_components > 1``.
    image_ : ndarray of shape (L, L) or (n_components, L, L)
        Estimated image(s), ``basis_.evaluate(coef_)``.
    weights_ : ndarray of shape (n_components,)
        The components' abundances: each one's share of the copies
        (``[1.0]`` for one image).
    shift_probabilities_ : ndarray of shape (2L, 2L)
        Estimated ``rho`` (eq. 18).
    density_ : float
        Density implied by ``rho``: ``(L**2 / (2L-1)**2) * sum of rho over non-empty shifts``,
        copies of all kinds; kind ``c``'s is ``weights_[c] * density_``.
    noise_variance_ : float
        Estimated ``sigma**2``, or the fixed ``noise_variance``.
    n_iter_ : int
        Number of iterations run by the best start: EM steps for
        ``acceleration=None``, SQUAREM cycles (up to 3 E-steps each) for
        ``"squarem"``.
    n_e_steps_ : int
        Number of E-steps (passes over the data) of the best start, the
        initial one included: the honest measure of work.
    n_recentred_ : int
        How often ``center`` moved the image in the best start.
    white_noise_n_iter_ : int
        With a ``ctf`` and the default start, the iterations of the
        white-noise phase that found the start (included in ``n_iter_``).
    one_component_n_iter_ : int
        With ``n_components > 1`` and a one-image start, the iterations of
        the one-image phase before the split (included in ``n_iter_``).
    auto_noise_n_iter_ : int
        With ``noise="residual"``, the iterations of the first fit, under
        ``"auto"`` (included in ``n_iter_``).
    noise_psds_ : list of RadialPSD or None
        The spectrum each measurement was whitened by (``None`` entries:
        white), or ``None`` when every measurement's noise was white.
    coarse_n_iter_ : int
        When ``refinement`` ran several grids, the iterations on the coarser grids
        (included in ``n_iter_``; the history holds every grid's phase, each
        grid's log-likelihood being a different objective).
    rotation_concentration_ : float
        With ``refinement="auto"`` on a uniform grid, not checkpointed, the
        last grid's test statistic (see ``refinement``).
    n_functions_ : int
        With ``select_bandlimit``, the number of basis functions chosen
        (``coef_`` is zero on the others).
    bandlimit_path_ : list of tuple
        With ``select_bandlimit``, ``(n_functions, log-likelihood per
        patch, AIC per patch)`` of every candidate basis, smallest first.
    float64_from_iter_ : int or None
        With ``dtype="auto"``, the iteration after which the E-steps ran in
        float64 (``None``: no switch; float64 throughout at high SNR).
    converged_ : bool
        Whether the best start met ``tol`` within ``max_iter`` iterations, and did not end
        degenerate (``degenerate_``).
    degenerate_ : str or None
        Why the fit ended in a degenerate state, or ``None``: the density
        collapsed toward 0 while the image's power exploded, the model's
        power per pixel is far above the data's mean square, or the noise
        variance absorbed the signal (thresholds in ``mtdlearn.base``).  A
        degenerate fit warns (``ConvergenceWarning``) and is never
        ``converged_``; among several starts, the best that is not
        degenerate wins.
    tol_ : float
        The gain per patch of ``tol`` (``4e-8 L**2`` for ``"auto"``).
    remaining_change_ : float
        With ``tol="auto"``, the projected change of ``coef_`` still to come
        in standard errors at the stop (below 0.3 when ``converged_``;
        ``inf``: not measured, e.g. a float ``tol``).
    n_patches_ : int
        Number of ``L x L`` patches ``N_d`` in the fitted measurements.
    n_parameters_ : int
        Free parameters of the model, as :meth:`bic` and :meth:`aic` count
        them: ``C n_functions + 4 L**2 - 1 + (C - 1)``, plus one when
        ``sigma**2`` is estimated.
    basis_ : basis object
        The copy of ``basis`` (or the default basis) used by the fit.
    rotations_ : rotation grid
        The rotation grid searched (from ``rotations``, and ``refinement``).
    angles_ : ndarray of shape (K,)
        Its angles in radians.
    log_likelihood_history_ : list of float
        Mean log-likelihood per patch after each iteration (first entry: the
        start), in the precision of that iteration's E-step; non-decreasing
        (SQUAREM's safeguard keeps it so) up to float32 rounding before
        ``float64_from_iter_``, except at an iteration where ``center`` moved
        the image (``n_recentred_`` of them).
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

    SQUAREM (``acceleration="squarem"``), from ``x0`` with the EM map ``F``:
    ``r = F(x0) - x0``, ``v = F(F(x0)) - 2 F(x0) + x0``, step
    ``alpha = -||r|| / ||v||`` clamped to ``-[1, step_max]``,
    ``x' = x0 - 2 alpha r + alpha**2 v``.  If the log-likelihood at ``x'`` is
    below that at ``x0`` (or not finite) the cycle falls back to
    ``F(F(x0))`` and a step at ``step_max`` shrinks ``step_max`` by 4;
    otherwise the cycle ends at ``F(x')`` (the stabilizing EM step, which
    cannot lower the likelihood) and a step at ``step_max`` multiplies it
    by 4.  ``rho`` is extrapolated in log coordinates and mapped back by a
    softmax (it stays on the simplex, zeros stay zero), ``sigma**2`` in log
    coordinates.  A float ``tol`` is compared with the gain of a cycle;
    ``"auto"`` uses the cycle's two EM steps (``r`` and ``v``) for its rate.

    References
    ----------
    S. Kreymer, A. Singer, T. Bendory, "An approximate expectation-maximization
    for two-dimensional multi-target detection".

    R. M. Neal, G. E. Hinton, "A view of the EM algorithm that justifies
    incremental, sparse, and other variants", in Learning in Graphical
    Models, 1998.

    R. Varadhan, C. Roland, "Simple and globally convergent methods for
    accelerating the convergence of any EM algorithm", Scand. J. Statist.
    35:335-353, 2008.

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
                 noise_variance=None, max_iter=100, tol="auto", working_memory=None,
                 dtype="auto", acceleration="squarem", refinement="auto",
                 select_bandlimit=False, center=True, particle_diameter=None, ctf=None,
                 noise="white", n_components=1, n_jobs=None, random_state=None, verbose=0,
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
        self.acceleration = acceleration
        self.refinement = refinement
        self.select_bandlimit = select_bandlimit
        self.center = center
        self.particle_diameter = particle_diameter
        self.ctf = ctf
        self.noise = noise
        self.n_components = n_components
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    _verbose_name = "ApproxEM"

    @property
    def _warm(self):   # noise="residual"'s second phase continues the first
        return bool(self.warm_start) or getattr(self, "_phase_warm", False)

    def _noise_for(self, data):   # noise="residual": a phase's, or (fitted) X's residual's
        noise = getattr(self, "_phase_noise", self.noise)
        return residual._residual_spectra(self, data) if residual.is_residual(noise) else noise

    def fit(self, X, y=None, *, checkpoint=None):
        if checkpoint is None and residual.is_residual(self.noise):
            return residual.fit_residual(self, super().fit, X, y)
        return super().fit(X, y, checkpoint=checkpoint)

    fit.__doc__ = BaseMTDEstimator.fit.__doc__

    def _check_params(self):
        if not (isinstance(self.dtype, str) and self.dtype == "auto"):
            try:
                dt = np.dtype(self.dtype)
            except TypeError:
                dt = None
            if dt is None or dt not in (np.dtype(np.float64), np.dtype(np.float32)):
                raise ValueError("dtype must be 'auto', numpy.float64 or numpy.float32, got "
                                 f"{self.dtype!r}")
        check_bool(self.center, "center")
        if self.particle_diameter is not None and self.basis is not None:
            raise ValueError("give particle_diameter or basis, not both: "
                             "particle_diameter sets the radius of the default basis")
        check_ctf(self.ctf)
        check_noise(self.noise, models=NOISE_MODELS + ("residual",))
        C = check_int(self.n_components, "n_components", minimum=1)
        if C > 1 and (self.select_bandlimit or self.acceleration == "incremental"):
            raise ValueError("n_components > 1 does not support select_bandlimit or "
                             "acceleration='incremental' yet")
        if self.acceleration == "incremental" and not is_plain(self.ctf, self.noise):
            raise ValueError("acceleration='incremental' does not support a ctf or colored "
                             "noise yet; use acceleration='squarem' (the default)")
        check_bool(self.warm_start, "warm_start")
        if not isinstance(self.acceleration, (str, type(None))) or \
                self.acceleration not in _ACCELERATIONS:
            raise ValueError(f"acceleration must be one of {_ACCELERATIONS}, got "
                             f"{self.acceleration!r}")
        check_bool(self.select_bandlimit, "select_bandlimit")
        if self.select_bandlimit and self.basis is not None:
            check_nested_basis(self.basis)
        _refinement.check(self.refinement)

    def _check_tol(self, L):
        if isinstance(self.tol, str) and self.tol == "auto":
            # 4e-8 per pixel of the patch: the paper's 1e-6 at L = 5, exactly
            return 4e-8 * L * L
        if isinstance(self.tol, str):
            raise TypeError(f"tol must be a real number or 'auto', got str {self.tol!r}")
        return super()._check_tol(L)

    def _default_basis(self, L):
        if self.particle_diameter is None:
            return FourierBesselBasis(L)
        diameter = check_real(self.particle_diameter, "particle_diameter", minimum=3.0)
        if diameter > L + 1:
            raise ValueError(f"particle_diameter must be at most image_size + 1 = {L + 1} "
                             f"pixels (the box), got {diameter}")
        return FourierBesselBasis(L, radius=diameter / 2.0)

    def _n_parameters(self):
        # C images, the shift distribution (4 L**2 - 1 free), C - 1 abundances, sigma**2
        L, C = self.basis_.image_size, self.n_components
        return (C * self.basis_.n_functions + 4 * L * L - 1 + (C - 1)
                + (self.noise_variance is None))

    def _coef_shapes(self):
        p, C = self.basis_.n_functions, self.n_components
        return [(p,)] if C == 1 else [(p,), (C, p)]   # one image is split (_components)

    def _start_result(self, prepared, state, history, n_iter, converged):
        res = super()._start_result(prepared, state, history, n_iter, converged)
        res["weights"] = state.weights
        return res

    def _scale_bounds(self, data):
        # float64 sums over all pixels; the E-step's own dtype within a patch
        low, high = super()._scale_bounds(data)
        dtype = np.float32 if isinstance(self.dtype, str) else self.dtype   # 'auto': float32
        low_e, high_e = _scale_bounds(2, self.basis_.image_size ** 2, np.dtype(dtype))
        return max(low, low_e), min(high, high_e)

    def _validate_params(self):
        L = super()._validate_params()
        if isinstance(self.refinement, str) and isinstance(self.rotations_, UniformRotationGrid):
            # "auto": one grid, fine enough for the basis's top angular frequency
            factor = auto_refinement(self.basis_, len(self.angles_))
            if factor is not None:
                self.rotations_ = UniformRotationGrid(factor * len(self.angles_))
                self.angles_ = self.rotations_.get_angles()
        return L

    def _prepare(self, data):
        space = HypothesisSpace(self.basis_, self.angles_, n_components=self.n_components)
        formations, self.noise_psds_ = measurement_formations(data, self.ctf,
                                                              self._noise_for(data))
        self._formations = formations
        groups = (None if formations is None
                  else formation_groups(data, formations, space, merge=True))
        return _EMData(data, space, self.noise_variance is None, groups)

    # -- one start ------------------------------------------------------------
    def _check_initializer(self):
        if self.initializer is None and self.ctf is not None:   # the mean is not the mass
            return EnergyStart()
        init = super()._check_initializer()   # one that fits through CTFs sees the EM's
        through = getattr(init, "through", None)
        return (init if through is None
                else through(self.ctf, getattr(self, "_phase_noise", self.noise)))

    def _checkpoint_unsupported(self):
        if residual.is_residual(self.noise):
            return "with noise='residual' (two fits)"
        if _refinement.factor(self.refinement) is not None:
            return "with refinement (two grids of rotations)"
        if self.select_bandlimit:
            return "with select_bandlimit (several bases)"
        if self.acceleration == "incremental":
            return "with acceleration='incremental' (per-block statistics)"
        if self.ctf is not None and self.initializer is None:
            return ("with a ctf and the default start (a white-noise phase first); give an "
                    "initializer")
        if self.n_components > 1 and not (
                np.ndim(getattr(self.initializer, "coef", None)) == 2
                or getattr(self.initializer, "n_components", 1) == self.n_components):
            return (f"with n_components={self.n_components} and a one-image start (a "
                    "one-image phase first); give an initializer with one row per kind "
                    "(FixedInitializer, or AutocorrelationInitializer(n_components=...))")
        return None

    def _checkpoint_state(self, state):
        return checkpoint_state(state)

    def _resume_state(self, state, saved):
        return resume_state(state, saved)

    def _run_start(self, prepared, state, seed, n_jobs, resume=None, callback=None):
        if self.n_components > 1 and np.ndim(state.coef) == 1:   # one image: fit, split
            if resume is None and callback is None and self.max_iter > 0:
                return _components.run(self, prepared, state, seed, n_jobs)
            state = _components.split(state, self.n_components, seed)
        if resume is not None or callback is not None:   # checkpointed: one grid
            return self._run_grid(prepared, state, seed, n_jobs, resume, callback)
        if _ctf_start.applies(self, prepared):   # a white-noise phase first
            return _ctf_start.run(self, prepared, state, seed, n_jobs)
        if self.select_bandlimit and self.max_iter > 0:
            return _bandlimit_selection.run(self, prepared, state, seed, n_jobs)
        return _refinement.run(self, prepared, state, seed, n_jobs)

    def _run_grid(self, prepared, state, seed, n_jobs, resume=None, callback=None, tol=None,
                  early_stop=None):
        """One start on the grid of ``prepared``: the loop's ``_run_start``
        with a fresh :class:`~mtdlearn.em._state._Run` (or the resumed one)."""
        if isinstance(state, _EMState) and state.run is not None:   # resumed from a checkpoint
            run = state.run
        else:
            run = _Run(_precision.start_dtype(self.dtype, prepared.data, state),
                       finish=isinstance(self.dtype, str), early_stop=early_stop)
            state = _EMState(state.coef, state.shift_probabilities, state.noise_variance,
                             state.weights, run=run)
        if tol is None and isinstance(self.tol, str):   # "auto": the statistical rule
            run.stop_below = tol = _stopping._SHARE
            run.basis = prepared.hypotheses.basis
        res = super()._run_start(prepared, state, seed, n_jobs, resume, callback, tol)
        res["extra"].update(remaining_change_=float(run.remaining), n_e_steps_=run.n_e_steps,
                            float64_from_iter_=run.float64_from, n_recentred_=run.n_recentred)
        return res

    def _e_step(self, prepared, state, n_jobs):
        run = state.run
        run.n_e_steps += 1
        build, estep = kernels(prepared, run.dtype)
        if prepared.groups is not None:   # each micrograph through its own formation
            stats = estep_groups(prepared.groups, state.coef, state.shift_probabilities,
                                 state.noise_variance, build, estep, dtype=run.dtype,
                                 weights=state.weights, n_jobs=n_jobs,
                                 working_memory=self.working_memory)
        else:
            model = build(state.coef, state.shift_probabilities, state.noise_variance,
                          prepared.hypotheses, dtype=run.dtype, weights=state.weights)
            if self.acceleration == "incremental" and run.incremental and run.blocks is None:
                # the first E-step keeps each block's statistics (same work)
                stats = _incremental.blockwise_e_step(prepared, run, model, estep, n_jobs,
                                                      self.working_memory)
            else:
                stats = estep(prepared.data, model, n_jobs=n_jobs,
                              working_memory=self.working_memory)
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
        floor = noise_variance_floor(stats.patch_sq / (stats.n_patches * d))
        # the normal equations are solved where the E-step's rounding
        # (float32 or float64) leaves them determined (likelihood.m_step.solve_gram)
        run = getattr(state, "run", None)
        eps = np.finfo(np.float64 if run is None else run.dtype).eps
        spaces = (prepared.hypotheses if prepared.groups is None
                  else [space for _, space in prepared.groups])
        rcond = max(float(len(state.coef) * eps), 0.0 if prepared.groups is None else CTF_RCOND)
        info = None if run is None or run.stop_below is None else {}
        coef, rho, sigma2 = m_step(stats, state.shift_probabilities, spaces,
                                   prepared.estimate_noise, floor, coef=state.coef,
                                   rcond=rcond, info=info)
        if info is not None:   # the statistical stopping rule's standard error, when tested
            run.normal = (info["normal_matrices"], rcond,
                          sigma2 if prepared.estimate_noise else state.noise_variance)
        weights = (component_weights(stats, spaces) if prepared.hypotheses.n_components > 1
                   else None)
        return _EMState(coef, rho, sigma2 if prepared.estimate_noise else state.noise_variance,
                        weights, run=run)

    def _step(self, prepared, state, objective, stats, n_jobs):
        run = state.run
        run.n_iter += 1
        if self.acceleration == "incremental" and run.incremental:
            new = _incremental.run_pass(self, prepared, state, objective, stats, n_jobs)
        elif self.acceleration in ("squarem", "incremental"):
            new = _squarem.cycle(self, prepared, state, objective, stats, n_jobs)
        else:
            new = super()._step(prepared, state, objective, stats, n_jobs)
        state, new_objective, stats = new
        if _precision.finish_in_float64(run, prepared.data, state, stats, objective,
                                        new_objective, self.tol_,
                                        done=(run.stop_below is not None
                                              and run.remaining < run.stop_below)):
            new_objective, stats = self._e_step(prepared, state, n_jobs)
        moved = (_components.recentred(prepared.hypotheses.basis, state.coef) if self.center
                 else None)
        if moved is not None:
            # the image moved to its centre: another point, not a gain
            state = _EMState(moved, state.shift_probabilities, state.noise_variance,
                             state.weights, run=run)
            new_objective, stats = self._e_step(prepared, state, n_jobs)
            run.incomparable = True
            run.n_recentred += 1
        return state, new_objective, stats

    def _gain_text(self, state, gain):   # tol="auto" tests the change still to come
        return (super()._gain_text(state, gain) if state.run.stop_below is None
                else _stopping.describe(gain))

    def _gain(self, previous, objective, state):
        run = state.run
        if run.incomparable:   # the objective changed (precision, centring): not a gain
            run.incomparable = False
            _stopping.reset(run)   # nor a step (plain EM's rates: consecutive steps)
            return np.inf
        if run.early_stop is not None and run.early_stop(state, previous, objective):
            return -np.inf   # refinement="auto": on to a finer grid
        if run.stop_below is None:
            return objective - previous
        if self.acceleration is None:   # plain EM's rates: from consecutive steps
            _stopping.record_plain(run, state.coef)
        # tol="auto": the projected change still to come, tested in float64
        return np.inf if run.finish and run.dtype == np.float32 else run.remaining
