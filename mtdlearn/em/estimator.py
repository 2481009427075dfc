"""Approximate expectation-maximization for 2-D multi-target detection
(the paper's Algorithm 1), streamed over chunks of patches.

The estimator is thin: the E-step kernels, the sufficient statistics and the
M-step are in :mod:`mtdlearn.likelihood.patch_model`, the loop in
:class:`~mtdlearn.base.BaseMTDEstimator`.
"""

from dataclasses import dataclass

import numpy as np

from ..base import BaseMTDEstimator, _scale_bounds
from ..initializers import InitialState, data_statistics
from ..likelihood.hypotheses import HypothesisSpace
from ..likelihood.fft_estep import build_fft_patch_model, choose_estep, estep_statistics_fft
from ..likelihood.patch_model import build_patch_model, estep_statistics, m_step, noise_variance_floor
from ..basis._bandlimits import check_nested_basis, embed_coef, nested_bases
from ..basis.rotations import UniformRotationGrid, _grid_schedule, auto_refinement

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
        :func:`mtdlearn.basis.fourier_bessel.check_basis`); ``None`` means
        ``FourierBesselBasis(image_size)``.  Copied with
        :func:`sklearn.base.clone`, never modified.
    rotations : int or rotation grid, default=16
        ``K``, or an object with ``get_angles()`` (eq. 8).  With the default
        ``refinement="auto"``, a uniform ``K`` too coarse for the basis's
        angular frequencies is replaced by a finer uniform grid (see
        ``refinement``; ``rotations_`` holds the grid searched).
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
    tol : float or "auto", default="auto"
        Stop when the gain of the mean log-likelihood per patch is below
        ``tol``.  ``"auto"``: ``4e-8`` per pixel of a patch, ``4e-8 L**2``,
        which is the paper's ``1e-6`` at L = 5.  A patch's log-likelihood
        sums over its ``L**2`` pixels, so a fixed ``1e-6`` asks far more of
        a large image: at L = 41 (N = 4096, SNR 3), from cycle 8 to 25 the
        gain per SQUAREM cycle wandered between ``3e-5`` and ``5e-4`` per
        patch, without a trend, while the image error stayed at 0.021
        (:doc:`/results`).
    working_memory : float, default=None
        Memory budget in MiB of each thread's chunk of patches (scikit-learn's
        convention); ``None`` takes ``sklearn.get_config()["working_memory"]``.
        Chunks are also capped at a cache-friendly size.  Results do not
        depend on it beyond rounding.
    dtype : {"auto", numpy.float64, numpy.float32}, default="auto"
        Precision of the E-step arithmetic; sufficient statistics are
        always accumulated in float64.  ``"auto"`` runs the E-steps in
        float32 (about 3x faster, same error) while the gain per iteration
        is above float32's resolution of the mean log-likelihood (and above
        ``tol``), then finishes in float64, so ``tol`` is always met by
        float64 gains; at high SNR (float32 error of the logits above 1e-3,
        where ``||P||**2 - 2 P.T + ||T||**2`` cancels) it runs in float64
        throughout.  ``numpy.float32`` runs every E-step in float32 (its
        gains near convergence are rounding noise).
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
        grid's fixed point.  The coarser grids stop once their gain per
        patch is below ``1e-4`` (or ``tol``, if larger) or below ``1e-3``
        times what the grid's phase has gained so far; the finest runs to
        ``tol``.  This gives the accuracy of the fine grid (whose bias
        ``1 - sinc(nu pi / K)`` is ``r**2`` times smaller) for a few fine
        iterations.  ``rotations_`` and ``angles_`` then describe the fine
        grid.  ``"auto"``: one grid, fine enough for the basis: the uniform
        grid of ``r K`` rotations, ``r`` the smallest power of two for which
        ``r K`` is at least the basis's highest angular frequency ``nu_max``
        (``basis_.frequencies``), fitted from the start without the coarser
        grids; ``rotations_`` and ``angles_`` describe it.  ``K`` is kept
        when ``K >= nu_max``, for a basis without frequencies, and for a
        ``rotations`` grid that is not a
        :class:`~mtdlearn.UniformRotationGrid`.  So the grid grows with the
        image: 16 rotations for the paper's basis at L = 5 (``nu_max = 2``)
        and for the default bases up to L = 13, 32 from L = 15 to 23, 64 at
        L = 41 (``nu_max = 58``).  At L = 21, N = 1536, SNR 3 the 32-point
        grid lowers eq. (19)'s error from 0.096-0.107 (K = 16) to
        0.059-0.063 (seeds 0-2); going through the coarser grids first
        reached that no sooner at L = 21 and later at L = 41
        (:doc:`/results`).  Checkpointed fits run it too (an explicit ``r``
        is refused there).
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
        Number of iterations run by the best start: EM steps for
        ``acceleration=None``, SQUAREM cycles (up to 3 E-steps each) for
        ``"squarem"``.
    n_e_steps_ : int
        Number of E-steps (passes over the data) of the best start, the
        initial one included: the honest measure of work.
    coarse_n_iter_ : int
        With an int ``refinement``, the iterations on the coarser grids (included in
        ``n_iter_``; the history holds every grid's phase, each grid's
        log-likelihood being a different objective).
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
        Whether the best start met ``tol`` within ``max_iter`` iterations.
    tol_ : float
        The tolerance used: ``tol``, or its value for ``"auto"``.
    n_patches_ : int
        Number of ``L x L`` patches ``N_d`` in the fitted measurements.
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
        ``float64_from_iter_``.
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
    coordinates.  The convergence test applies ``tol`` to the gain of a
    cycle.

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
                 select_bandlimit=False, n_jobs=None, random_state=None, verbose=0,
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
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    _verbose_name = "ApproxEM"

    @property
    def _warm(self):
        return bool(self.warm_start)

    def _check_params(self):
        if not (isinstance(self.dtype, str) and self.dtype == "auto"):
            try:
                dt = np.dtype(self.dtype)
            except TypeError:
                dt = None
            if dt is None or dt not in (np.dtype(np.float64), np.dtype(np.float32)):
                raise ValueError("dtype must be 'auto', numpy.float64 or numpy.float32, got "
                                 f"{self.dtype!r}")
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise TypeError(f"warm_start must be a bool, got {type(self.warm_start).__name__} "
                            f"{self.warm_start!r}")
        if not isinstance(self.acceleration, (str, type(None))) or \
                self.acceleration not in _ACCELERATIONS:
            raise ValueError(f"acceleration must be one of {_ACCELERATIONS}, got "
                             f"{self.acceleration!r}")
        if not isinstance(self.select_bandlimit, (bool, np.bool_)):
            raise TypeError("select_bandlimit must be a bool, got "
                            f"{type(self.select_bandlimit).__name__} "
                            f"{self.select_bandlimit!r}")
        if self.select_bandlimit and self.basis is not None:
            check_nested_basis(self.basis)
        if self.refinement is not None and not (isinstance(self.refinement, str)
                                                and self.refinement == "auto"):
            if (isinstance(self.refinement, bool)
                    or not isinstance(self.refinement, (int, np.integer))
                    or self.refinement < 2):
                raise ValueError("refinement must be None, 'auto' or an int >= 2 (the "
                                 "oversampling factor of the rotation grid), got "
                                 f"{self.refinement!r}")

    def _check_tol(self, L):
        if isinstance(self.tol, str) and self.tol == "auto":
            # 4e-8 per pixel of the patch: the paper's 1e-6 at L = 5, exactly
            return 4e-8 * L * L
        if isinstance(self.tol, str):
            raise TypeError(f"tol must be a real number or 'auto', got str {self.tol!r}")
        return super()._check_tol(L)

    def _n_parameters(self):
        L = self.basis_.image_size
        return self.basis_.n_functions + 4 * L * L - 1 + (self.noise_variance is None)

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
        return _EMData(data, HypothesisSpace(self.basis_, self.angles_),
                       self.noise_variance is None)

    # -- one start ------------------------------------------------------------
    def _refinement_factor(self):
        """The oversampling factor ``r`` of ``refinement`` (``None``: one grid;
        ``"auto"`` has set ``rotations_`` to its one grid)."""
        if self.refinement is None or isinstance(self.refinement, str):
            return None
        return int(self.refinement)

    def _checkpoint_unsupported(self):
        if self._refinement_factor() is not None:
            return "with refinement (two grids of rotations)"
        if self.select_bandlimit:
            return "with select_bandlimit (several bases)"
        if self.acceleration == "incremental":
            return "with acceleration='incremental' (per-block statistics)"
        return None

    def _checkpoint_state(self, state):
        run = state.run
        return {"dtype": run.dtype.name, "finish": run.finish, "n_e_steps": run.n_e_steps,
                "n_iter": run.n_iter, "float64_from": run.float64_from,
                "step_max": run.step_max}

    def _resume_state(self, state, saved):
        if not saved:
            return state
        # the resumed start recomputes the E-step at the saved state: one more
        run = _Run(np.dtype(saved["dtype"]), finish=saved["finish"],
                   n_e_steps=saved["n_e_steps"] - 1, n_iter=saved["n_iter"],
                   float64_from=saved["float64_from"], step_max=saved["step_max"])
        return _EMState(state.coef, state.shift_probabilities, state.noise_variance, run)

    def _run_start(self, prepared, state, seed, n_jobs, resume=None, callback=None):
        if resume is not None or callback is not None:   # checkpointed: one grid
            return self._run_grid(prepared, state, seed, n_jobs, resume, callback)
        if self.select_bandlimit and self.max_iter > 0:
            return self._run_selecting(prepared, state, seed, n_jobs)
        return self._run_refined(prepared, state, seed, n_jobs)

    def _run_refined(self, prepared, state, seed, n_jobs):
        factor = self._refinement_factor()
        if factor is None or self.max_iter == 0:
            return self._run_grid(prepared, state, seed, n_jobs)
        # coarse to fine: from each grid's (loosely converged) fixed point to
        # the next, finer grid of the same uniform family; the last grid, of
        # `refinement` K rotations, runs to `tol`
        sizes = _grid_schedule(len(self.angles_), factor)
        res, n_iter, n_e_steps, history = None, 0, 0, []
        for i, size in enumerate(sizes):
            last = i == len(sizes) - 1
            if i == 0:
                phase = prepared
            else:
                grid = UniformRotationGrid(size)
                phase = _EMData(prepared.data, HypothesisSpace(prepared.hypotheses.basis,
                                                                grid.get_angles()),
                                prepared.estimate_noise)
                state = InitialState(res["coef"], res["shift_probabilities"],
                                     res["noise_variance"])
            if last:
                coarse_n_iter = n_iter
            res = self._run_grid(phase, state, seed, n_jobs,
                                 tol=None if last else self._coarse_tol)
            n_iter += res["n_iter"]
            n_e_steps += res["extra"]["n_e_steps_"]
            history += res["extra"]["log_likelihood_history_"]
        extra = res["extra"]
        extra.update(n_e_steps_=n_e_steps, coarse_n_iter_=coarse_n_iter,
                     log_likelihood_history_=history, rotations_=grid,
                     angles_=grid.get_angles())
        res["n_iter"] = n_iter
        return res

    def _coarse_tol(self, history):
        """A coarse grid's phase stops below this gain per patch (see ``_COARSE_TOL``)."""
        return max(self.tol_, _COARSE_TOL, _COARSE_RELATIVE_TOL * (history[-1] - history[0]))

    def _run_selecting(self, prepared, state, seed, n_jobs):
        """Band-limit selection: fit ``basis_`` loosely, choose the nested
        sub-basis of highest AIC per patch (each after one M-step from the
        loose fit's posteriors and one E-step), finish it at ``tol``."""
        full = self.basis_
        stages = nested_bases(full)
        if len(stages) == 1:   # nothing to choose from
            return self._run_refined(prepared, state, seed, n_jobs)
        res = self._run_grid(prepared, state, seed, n_jobs, tol=max(self.tol_, _SELECT_TOL))
        # the comparison in the precision the fit started in (float32 for "auto",
        # unless high SNR): its rounding is far below the AIC's differences
        auto = isinstance(self.dtype, str)
        run = _Run(np.dtype(np.float32) if auto else np.dtype(self.dtype))
        fit = _EMState(res["coef"], res["shift_probabilities"], res["noise_variance"], run)
        if auto and _float32_resolution(prepared.data, fit) > _FLOAT32_MAX_ERROR:
            run.dtype = np.dtype(np.float64)
        objective, stats = self._e_step(prepared, fit, n_jobs)
        n_patches = prepared.data.n_patches
        penalty = 1.0 / n_patches   # -AIC / (2 N_d): 1 / N_d per parameter
        path, best = [], None
        for basis in stages:
            if basis is full:
                phase, cand, value = prepared, fit, objective
            else:
                phase = _EMData(prepared.data, HypothesisSpace(basis, self.angles_),
                                prepared.estimate_noise)
                cand = self._m_step(phase, fit, stats)
                value, _ = self._e_step(phase, cand, n_jobs)
            score = value - penalty * basis.n_functions
            path.append((basis.n_functions, float(value), float(score)))
            if self.verbose:
                print(f"[{self._verbose_name}] band limit: {basis.n_functions} functions, "
                      f"log-likelihood {value:.10g}, AIC/patch {score:.10g}")
            if best is None or score > best[0]:
                best = (score, basis, phase, cand)
        _, basis, phase, cand = best
        first = res
        res = self._run_refined(phase, InitialState(cand.coef, cand.shift_probabilities,
                                                    cand.noise_variance), seed, n_jobs)
        extra = res["extra"]
        extra.update(n_e_steps_=first["extra"]["n_e_steps_"] + run.n_e_steps
                     + extra["n_e_steps_"],
                     log_likelihood_history_=(first["extra"]["log_likelihood_history_"]
                                              + extra["log_likelihood_history_"]),
                     n_functions_=basis.n_functions, bandlimit_path_=path)
        if "coarse_n_iter_" in extra:
            extra["coarse_n_iter_"] += first["n_iter"]
        res["n_iter"] += first["n_iter"]
        res["coef"] = embed_coef(res["coef"], basis, full)
        return res

    def _run_grid(self, prepared, state, seed, n_jobs, resume=None, callback=None, tol=None):
        if isinstance(state, _EMState):   # resumed from a checkpoint
            run = state.run
        else:
            auto = isinstance(self.dtype, str)
            run = _Run(np.dtype(np.float32) if auto else np.dtype(self.dtype), finish=auto)
            state = _EMState(state.coef, state.shift_probabilities, state.noise_variance, run)
            if auto and _float32_resolution(prepared.data, state) > _FLOAT32_MAX_ERROR:
                run.dtype = np.dtype(np.float64)   # high SNR: float32 logits would cancel
        res = super()._run_start(prepared, state, seed, n_jobs, resume, callback, tol)
        res["extra"]["n_e_steps_"] = run.n_e_steps
        res["extra"]["float64_from_iter_"] = run.float64_from
        return res

    def _e_step(self, prepared, state, n_jobs):
        run = state.run
        run.n_e_steps += 1
        build, estep = _kernels(prepared, run.dtype)
        model = build(state.coef, state.shift_probabilities, state.noise_variance,
                      prepared.hypotheses, dtype=run.dtype)
        if self.acceleration == "incremental" and run.incremental and run.blocks is None:
            # the first E-step keeps each block's statistics (same work)
            run.ranges = _blocks(prepared.data)
            run.blocks = [estep(prepared.data, model, subset=rng, n_jobs=n_jobs,
                                working_memory=self.working_memory)
                          for rng in run.ranges]
            stats = _sum_blocks(run.blocks)
            run.incremental = len(run.ranges) > 1
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
        # (float32 or float64) leaves them determined (patch_model.solve_gram)
        run = getattr(state, "run", None)
        eps = np.finfo(np.float64 if run is None else run.dtype).eps
        coef, rho, sigma2 = m_step(stats, state.shift_probabilities, prepared.hypotheses,
                                   prepared.estimate_noise, floor, coef=state.coef,
                                   rcond=float(len(state.coef) * eps))
        return _EMState(coef, rho, sigma2 if prepared.estimate_noise else state.noise_variance,
                        run)

    def _step(self, prepared, state, objective, stats, n_jobs):
        run = state.run
        run.n_iter += 1
        if self.acceleration == "incremental" and run.incremental:
            new = _incremental_pass(self, prepared, state, objective, stats, n_jobs)
        elif self.acceleration in ("squarem", "incremental"):
            new = _squarem_cycle(self, prepared, state, objective, stats, n_jobs)
        else:
            new = super()._step(prepared, state, objective, stats, n_jobs)
        state, new_objective, stats = new
        if run.finish and run.dtype == np.float32 and not run.incomparable:
            resolution = _float32_resolution(prepared.data, state, stats, new_objective)
            if new_objective - objective < max(self.tol_, resolution):
                # float32 gains are at its rounding level: finish in float64
                run.dtype = np.dtype(np.float64)
                run.float64_from = run.n_iter
                run.incomparable = True
                new_objective, stats = self._e_step(prepared, state, n_jobs)
        return state, new_objective, stats

    def _gain(self, previous, objective, state):
        run = state.run
        if run.incomparable:   # the objective just changed precision: not a gain
            run.incomparable = False
            return np.inf
        return objective - previous


_ACCELERATIONS = (None, "squarem", "incremental")

#: With ``refinement``, a coarser grid's phase stops when its gain per patch
#: is below this (or ``tol``, if larger): it only has to land near the next
#: grid's fixed point.  Measured at N=300, SNR 500, K=16, r=4, one thread
#: (min of 3): coarse phases run to ``tol`` 9.8 s, at 1e-5 7.4 s, at 1e-4
#: 6.8 s, at 1e-3 8.5 s, all with error 0.0024; plain K=16 took 4.1 s.
_COARSE_TOL = 1e-4

#: ... or below this fraction of what the phase has gained so far (its
#: objective now minus at its first E-step).  The absolute 1e-4 alone does
#: not scale: a patch's log-likelihood sums over its ``L**2`` pixels and
#: grows with the SNR, so at large L the coarse phases ran on long after
#: their error had stalled.  Measured, one core each (docs/results.rst):
#: L = 21, N = 1536, SNR 3, seeds 0-2, the K = 16 phase ran 18 / 13 / 42
#: cycles with 1e-4 alone and 4 / 4 / 4 with this rule; eq. (19) <= 0.08
#: after 138 / 103 / 299 s before, after cycle 5 (47-101 s) now, the same
#: error after 300 s (0.063 / 0.057 / 0.057 before, 0.063 / 0.058 / 0.059
#: now).  L = 41, N = 4096: the K = 16 phase ran 20 cycles (762 s), now 4
#: (176 s).  L = 5, N = 300, SNR 500, r = 4 (``bench_refinement.py``):
#: 90 E-steps, 4.0 s, error 0.00239 before; 83, 3.8 s, 0.00246 now.
_COARSE_RELATIVE_TOL = 1e-3

#: With ``select_bandlimit``, the fit in ``basis`` stops when its gain per
#: patch is below this (or ``tol``, if larger) and the band limit is chosen
#: there.  Measured at L=21, N=1536, SNR 3, 61-function target, seed 0: the
#: default basis gains 1.06, 0.057, 0.002 per patch in its first 3 SQUAREM
#: cycles (image error 0.051 reached), then less than 1e-3 for the next 37,
#: which lower the error by 0.003 (docs/results.rst, "Band-limit selection").
_SELECT_TOL = 1e-3


#: Above this estimated float32 error of the logits (relative posterior error),
#: ``dtype="auto"`` runs in float64 from the start: the expansion
#: ``||P||**2 - 2 P.T + ||T||**2`` cancels when the patch energy is much larger
#: than ``sigma**2`` (high SNR), and float32 keeps ~7 digits of each term.
_FLOAT32_MAX_ERROR = 1e-3


def _float32_resolution(data, state, stats=None, objective=None):
    """Rounding level of float32 E-steps for ``state``.

    Without ``stats``: the float32 error of the logits, ``eps * energy / (2 sigma**2)``
    with the mean patch energy (the terms of the expansion that cancel),
    ``L**2`` times the whole data's mean square (:func:`data_statistics`).
    With ``stats``: the resolution of the mean log-likelihood per patch,
    ``eps * (|objective| + energy / (2 sigma**2)) / sqrt(N_d)`` (independent
    rounding errors of the N_d patch terms).
    """
    eps = np.finfo(np.float32).eps
    if stats is None:
        # the whole data's mean square per pixel times L**2 (memoized: the
        # initializers compute it too; on a distributed source, on the
        # workers), so that the choice is the same in memory and on Dask
        L = data.image_size
        energy = data.memoize(data_statistics, L)[1] * L * L
        return eps * energy / (2.0 * state.noise_variance)
    energy = stats.patch_sq / stats.n_patches
    return eps * (abs(objective) + energy / (2.0 * state.noise_variance)) / np.sqrt(
        stats.n_patches)


@dataclass
class _Run:
    """Bookkeeping of one start (shared by the states of the start)."""

    dtype: np.dtype
    finish: bool = False          # dtype="auto": switch float32 -> float64
    n_e_steps: int = 0
    n_iter: int = 0
    float64_from: int = None      # iteration of the switch, None if none
    incomparable: bool = False
    step_max: float = 1.0         # SQUAREM
    incremental: bool = True      # incremental EM: still in the incremental phase
    ranges: list = None           # incremental EM: the blocks' patch ranges
    blocks: list = None           # incremental EM: each block's statistics


@dataclass
class _EMState(InitialState):
    """An :class:`InitialState` that carries its start's bookkeeping."""

    run: _Run = None


# ---------------------------------------------------------------------------
# SQUAREM
#: SQUAREM's step bounds and the factor of the adaptive maximum step
#: (Varadhan & Roland 2008, section 6: step.min0 = 1, step.max0 = 1, mstep = 4).
_STEP_MIN, _STEP_MAX0, _MSTEP = 1.0, 1.0, 4.0


class _Coordinates:
    """Unconstrained coordinates of (alpha, rho, sigma**2) for extrapolation:
    ``alpha`` as is, ``log rho`` on the support of ``rho`` (back through a
    softmax, so ``rho`` stays on the simplex and zeros stay zero) and
    ``log sigma**2`` when it is estimated."""

    def __init__(self, state, estimate_noise):
        self.support = np.flatnonzero(np.ravel(state.shift_probabilities) > 0)
        self.shape = np.shape(state.shift_probabilities)
        self.p = np.size(state.coef)
        self.estimate_noise = estimate_noise
        self.noise_variance = state.noise_variance

    def encode(self, state):
        rho = np.ravel(state.shift_probabilities)[self.support]
        parts = [np.asarray(state.coef, dtype=np.float64),
                 np.log(np.maximum(rho, np.finfo(np.float64).tiny))]
        if self.estimate_noise:
            parts.append([np.log(state.noise_variance)])
        return np.concatenate(parts)

    def decode(self, x, run):
        p, m = self.p, self.support.size
        logr = x[p:p + m]
        r = np.exp(logr - logr.max())
        rho = np.zeros(int(np.prod(self.shape)))
        rho[self.support] = r / r.sum()
        sigma2 = float(np.exp(x[-1])) if self.estimate_noise else self.noise_variance
        return _EMState(x[:p].copy(), rho.reshape(self.shape), sigma2, run)


def _squarem_cycle(est, prepared, state, objective, stats, n_jobs):
    """One SQUAREM cycle (scheme S3) with the monotone safeguard: 3 E-steps
    (2 when the step is 1).

    ``x1 = F(x0)`` and ``x2 = F(x1)`` cost one E-step (at ``x1``; the one at
    ``x0`` is the previous cycle's last).  The extrapolated point ``x'`` is
    accepted when its log-likelihood (the E-step that its stabilizing EM step
    needs anyway) is not below ``x0``'s; the cycle then ends at ``F(x')``,
    which EM's monotonicity keeps at least as good.  Otherwise it ends at
    ``x2 = F(F(x0))`` and the maximum step shrinks.  The last E-step (at the
    end point) gives the cycle's log-likelihood and the next cycle's first map.
    """
    run = state.run
    x1 = est._m_step(prepared, state, stats)
    l1, s1 = est._e_step(prepared, x1, n_jobs)
    x2 = est._m_step(prepared, x1, s1)
    coords = _Coordinates(state, prepared.estimate_noise)
    v0, v1, v2 = coords.encode(state), coords.encode(x1), coords.encode(x2)
    r = v1 - v0
    v = v2 - 2.0 * v1 + v0
    nr, nv = np.linalg.norm(r), np.linalg.norm(v)
    step = float(np.clip(nr / nv, _STEP_MIN, run.step_max)) if (
        np.isfinite(nr) and np.isfinite(nv) and nv > 0) else _STEP_MIN   # -alpha
    end = x2
    if abs(step - 1.0) >= 0.01:   # alpha = -1 would be x2 = F(F(x0)) itself
        lp = np.nan
        try:
            xp = coords.decode(v0 + 2.0 * step * r + step * step * v, run)
            lp, sp = est._e_step(prepared, xp, n_jobs)
        except (FloatingPointError, ValueError, np.linalg.LinAlgError):
            pass
        if np.isfinite(lp) and lp >= objective:
            end = est._m_step(prepared, xp, sp)        # the stabilizing EM step
            if step == run.step_max:
                run.step_max *= _MSTEP
        elif step == run.step_max:   # worse: fall back to F(F(x0)), shrink the step
            run.step_max = max(_STEP_MAX0, run.step_max / _MSTEP)
    elif step == run.step_max:
        run.step_max *= _MSTEP
    new_objective, new_stats = est._e_step(prepared, end, n_jobs)
    return end, new_objective, new_stats


# ---------------------------------------------------------------------------
# incremental EM
#: Patches per block of the incremental EM (a block's E-step is then long
#: enough to keep both threads busy); fewer than two blocks: plain passes.
_BLOCK_PATCHES = 8192
#: The incremental phase ends when a pass gains less than this per patch (or
#: after _MAX_PASSES passes); batch SQUAREM cycles then finish.
_INCREMENTAL_GAIN, _MAX_PASSES = 1e-3, 20


def _kernels(prepared, dtype):
    """The E-step's kernels: FFT where it is cheaper (large L; see the design,
    "FFT path"), else the GEMM; the same choice in memory and on a distributed source."""
    space = prepared.hypotheses
    if choose_estep(space.image_size, space.n_rotations, dtype) == "fft":
        return build_fft_patch_model, estep_statistics_fft
    return build_patch_model, estep_statistics


def _sum_blocks(blocks):
    total = blocks[0]
    for block in blocks[1:]:
        total = total + block
    return total


def _blocks(data):
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


def _incremental_pass(est, prepared, state, objective, stats, n_jobs):
    """One pass of incremental EM (Neal & Hinton 1998) over the blocks.

    Before each block: an M-step from the total statistics; then the block's
    E-step at the new parameters, swapped into the total.  The pass's
    objective is the sum of the blocks' log-likelihoods, each at the
    parameters of its own E-step.  When a pass gains little, one batch E-step
    at the current parameters ends the incremental phase (its objective is the
    true log-likelihood, not comparable with the passes').
    """
    run = state.run
    total = stats
    build, estep = _kernels(prepared, run.dtype)
    for b, rng in enumerate(run.ranges):
        state = est._m_step(prepared, state, total)
        model = build(state.coef, state.shift_probabilities, state.noise_variance,
                      prepared.hypotheses, dtype=run.dtype)
        block = estep(prepared.data, model, subset=rng, n_jobs=n_jobs,
                      working_memory=est.working_memory)
        run.blocks[b] = block
        # swap the block into the total; re-summed in block order, since
        # total - old + new cancels (weights ~0 in the other blocks go negative)
        total = _sum_blocks(run.blocks)
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
