"""The base class of the multi-target detection estimators.

:class:`BaseMTDEstimator` owns what both estimators share, in the
template-method style of scikit-learn's ``BaseMixture``: parameter
validation, the data (a patch source, :mod:`mtdlearn.data.patches`), the
``n_init`` starts, the iteration loop (E-step, M-step, objective,
convergence test, verbose line, history), the choice of the best start,
and ``score``, ``score_samples``, ``predict``, ``predict_proba`` and
``sample`` under the shared generative model (:mod:`mtdlearn.likelihood.patch_model`),
which it inherits from a mixin beside the model (``mtdlearn.likelihood._inference``).
A subclass provides its own steps through small hooks; a variant of the EM
(accelerated, incremental) overrides one hook, ``_step``.
"""

import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin, clone
from sklearn.exceptions import ConvergenceWarning, DataDimensionalityWarning

from . import progress
from ._parallel import check_n_jobs, ordered_map
from ._validation import check_abundances, check_int, check_random_generator, check_real
from .basis.fourier_bessel import FourierBesselBasis
from .basis.protocol import check_basis
from .checkpoint import check_checkpoint_path, hash_params, run_checkpointed
from .initializers import InitialState, RandomInitializer, data_statistics
from .imaging.shifts import check_shift_probabilities, shift_probabilities_to_density
from .likelihood._inference import _InferenceMixin, _patch_source, _scale_bounds
from .data.measurements import _max_abs
from .basis.rotations import check_rotation_grid

__all__ = ["BaseMTDEstimator"]


class BaseMTDEstimator(_InferenceMixin, DensityMixin, BaseEstimator):
    """Base class of the multi-target detection estimators.

    Owns what both estimators share: input validation (one measurement,
    a stack, a sequence of arrays or ``.npy``/``.mrc`` paths, or a
    :class:`~mtdlearn.data.patches.PatchData`), the generative model of the
    patches (``coef_``, ``shift_probabilities_``, ``noise_variance_``), the
    ``n_init`` starts through joblib, the iteration loop, and ``score``,
    ``score_samples``, ``predict``, ``predict_proba``, ``sample``.

    Subclasses store their constructor parameters (``image_size``,
    ``basis``, ``rotations``, ``initializer``, ``n_init``,
    ``noise_variance``, ``max_iter``, ``tol``, ``working_memory``,
    ``n_jobs``, ``random_state``, ``verbose``) and fill these hooks:

    ``_check_params()``
        Validate the parameters only the subclass has.
    ``_check_tol(L)``
        The tolerance of the loop as a float, stored as ``tol_``: by
        default ``tol``, checked; the EM resolves ``tol="auto"`` here.
    ``_prepare(data)``
        What the starts share, computed once per fit from the
        :class:`~mtdlearn.data.patches.PatchData` (the measured
        autocorrelations; for the EM, the patches and the hypotheses).
    ``_e_step(prepared, state, n_jobs)``
        ``(objective, stats)`` at ``state`` (an
        :class:`~mtdlearn.initializers.InitialState`); higher is better.
    ``_m_step(prepared, state, stats)``
        The next state.
    ``_step(prepared, state, objective, stats, n_jobs)``
        One iteration, ``(state, objective, stats)``; by default an M-step
        and an E-step.  Accelerated or incremental variants override it.
    ``_gain(previous, objective, state)``
        The gain of the last iteration tested against ``tol``; by default
        ``objective - previous``.  A variant whose objective changes
        definition between iterations (a precision switch) overrides it,
        and ``_gain_text(state, gain)``, the verbose line's words for it.
    ``_checkpoint_state(state)`` and ``_resume_state(state, saved)``
        What a variant keeps beside the parameters between iterations (a
        dict of numbers saved in a checkpoint), and how a resumed start gets
        it back; by default nothing.
    ``_run_start(prepared, state, seed, n_jobs, resume, callback)``
        One start: by default the loop above, until the gain of the
        objective is below ``tol`` or ``max_iter`` iterations, calling
        ``callback(state, n_iter, history)`` after every iteration (the
        checkpoint) and continuing a saved start when given
        ``resume=(n_iter, history)``; a subclass without E/M steps
        (autocorrelation analysis) overrides it.
    ``_start_extra(prepared, objective, history)``
        The fitted attributes a start adds beyond the model (by default
        ``log_likelihood_history_`` and ``lower_bound_``).

    Examples
    --------
    >>> from mtdlearn import ApproxEMEstimator, AutocorrelationEstimator, BaseMTDEstimator
    >>> issubclass(ApproxEMEstimator, BaseMTDEstimator)
    True
    >>> issubclass(AutocorrelationEstimator, BaseMTDEstimator)
    True
    """

    #: Prefix of the verbose lines.
    _verbose_name = "MTD"

    def __sklearn_tags__(self):
        """The estimator's tags for scikit-learn (``sklearn.utils.get_tags``).

        A density estimator (``score`` is a log-likelihood) without targets.
        Its input is one measurement (a 2-D array, **not** a table of
        samples by features: rows and columns are pixels) or a stack of
        measurements (3-D); dense, finite, of any sign.  It needs ``fit``;
        with a ``random_state`` it is deterministic.

        Returns
        -------
        tags : sklearn.utils.Tags
            The tags.

        Examples
        --------
        >>> from sklearn.utils import get_tags
        >>> from mtdlearn import ApproxEMEstimator
        >>> tags = get_tags(ApproxEMEstimator(5))
        >>> tags.estimator_type, tags.input_tags.three_d_array, tags.target_tags.required
        ('density_estimator', True, False)
        """
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True     # one measurement (N1, N2)
        tags.input_tags.three_d_array = True   # a stack (n, N1, N2)
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.input_tags.positive_only = False  # Gaussian noise: any sign
        tags.target_tags.required = False      # no y
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags
    #: Whether the estimator continues from its previous fit (``warm_start``).
    _warm = False

    # -- parameters ----------------------------------------------------------
    def _validate_params(self):
        """Check the parameters; set ``basis_``, ``rotations_``, ``angles_``; return ``L``."""
        L = check_int(self.image_size, "image_size", minimum=3)
        if L % 2 == 0:
            raise ValueError(f"image_size must be odd (L = 2n + 1), got {L}")
        # never mutate the user's object: work on a copy
        basis = self._default_basis(L) if self.basis is None else clone(check_basis(self.basis))
        if basis.image_size != L:
            raise ValueError(f"basis.image_size={basis.image_size} does not match "
                             f"image_size={L}")
        check_int(self.n_init, "n_init", minimum=1)
        check_int(self.max_iter, "max_iter", minimum=0)
        tol = self._check_tol(L)
        if self.noise_variance is not None:
            check_real(self.noise_variance, "noise_variance", minimum=0.0, strict=True)
        check_n_jobs(self.n_jobs)
        check_int(self.verbose, "verbose", minimum=0)
        if self.working_memory is not None:
            check_real(self.working_memory, "working_memory", minimum=0.0, strict=True)
        self._check_params()
        self.basis_ = basis
        self.tol_ = tol
        self.rotations_, self.angles_ = check_rotation_grid(self.rotations)
        return L

    def _default_basis(self, L):
        """The basis when ``basis`` is ``None`` (hook): ``FourierBesselBasis(L)``."""
        return FourierBesselBasis(L)

    def _check_tol(self, L):
        """The tolerance of the fit, as a float, from ``tol`` (hook)."""
        return check_real(self.tol, "tol", minimum=0.0)

    def _check_params(self):
        """Validate the subclass's own parameters (hook)."""

    def _check_initializer(self):
        init = self.initializer
        if init is None:
            return RandomInitializer()
        if isinstance(init, type):
            raise TypeError(f"initializer must be an instance, got the class {init.__name__}; "
                            f"pass {init.__name__}()")
        if not hasattr(init, "initialize"):
            raise TypeError("initializer must have an initialize(measurements, basis, "
                            "noise_variance, random_state) method, "
                            f"got {type(init).__name__}")
        return init

    def _n_parameters(self):
        """Number of free parameters of the fitted model (hook)."""
        raise NotImplementedError

    def _scale_bounds(self, data):
        """The range of ``max|X|`` the arithmetic of the fit holds (hook).

        By default that of sums of squares over all the pixels, in float64.
        """
        return _scale_bounds(2, sum(M.size for M in data.measurements))

    #: Whether the fit reads the pixels outside the patch grid (the margins).
    _reads_margins = False

    def _check_data(self, data, bounds, fitting=True, name="X"):
        """Refuse data that is zero where the fit reads it, or whose scale float
        arithmetic cannot hold; say how to fix it."""
        L = data.image_size
        top = data.memoize(_max_abs, None if self._reads_margins and fitting else L)
        low, high = bounds
        if top == 0.0:
            if fitting:
                where = "everywhere" if self._reads_margins else f"in every {L}x{L} patch"
                raise ValueError(f"{name} is zero {where}: there is nothing to fit")
            return
        if not low <= top <= high:
            what = "large" if top > high else "small"
            raise ValueError(
                f"{name} holds values up to {top:.3g} in magnitude, too {what} for the "
                f"floating-point arithmetic of {type(self).__name__} (it handles "
                f"{low:.1g} to {high:.1g}): scale the measurement, e.g. divide it by its "
                "standard deviation")

    def _fixed_noise_variance(self):
        return None if self.noise_variance is None else float(self.noise_variance)

    # -- fit ----------------------------------------------------------------
    def fit(self, X, y=None, *, checkpoint=None):
        """Estimate the model from measurements.

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), a sequence, or PatchData
            The measurement(s): one measurement, a stack, a sequence of
            2-D arrays or ``.npy``/``.mrc`` paths, or a
            :class:`~mtdlearn.data.patches.PatchData` (whose data-derived
            quantities are then computed once and shared).  A
            ``dask.array.Array`` of shape (N1, N2) or (n, N1, N2), or a list
            of them (e.g. :func:`mtdlearn.data.io.read_micrographs`), is fitted
            where its blocks live, on the active ``distributed.Client`` or
            dask's default scheduler, with the same result to the last bit
            (:doc:`/scaling`).  Input is never modified.
        y : None
            Ignored; present for scikit-learn compatibility.
        checkpoint : str or path-like, default=None
            A file (conventionally ``.npz``) where the state of the fit is
            saved, atomically, after every iteration and at the end (a
            :class:`~mtdlearn.checkpoint.FitCheckpoint`).  If the file
            exists, the fit resumes from it, and the result is
            bit-identical to that of an uninterrupted fit; a checkpoint
            written for other measurements or other settings (any parameter
            but ``n_jobs`` and ``verbose``) raises ``ValueError``.  A
            complete checkpoint gives its result at once; delete the file to
            fit afresh.  With a checkpoint the starts run one after another,
            each with ``n_jobs`` threads.  Dask input is fingerprinted on
            the workers (one digest per micrograph comes to the client).
            It is an argument of ``fit``, not
            an estimator parameter, because the file belongs to one fit on
            one data set: ``clone`` and model selection must not hand it to
            other fits.  A checkpointed fit may do less than one without:
            :class:`~mtdlearn.ApproxEMEstimator` stays on its first
            rotation grid (``refinement="auto"`` does not refine), and
            refuses settings that run several phases.

        Returns
        -------
        self : object
            The fitted estimator.

        Warns
        -----
        ConvergenceWarning
            If the best start did not converge within ``max_iter`` iterations,
            or ended in a degenerate state (the reason is in ``degenerate_``).

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
        # a previous fit's conditional attributes (e.g. coarse_n_iter_) would
        # not describe this one
        for key in getattr(self, "_extra_attributes", ()):
            if hasattr(self, key):
                delattr(self, key)
        # every parameter is checked before the data are read
        L = self._validate_params()
        rng = check_random_generator(self.random_state)
        warm = self._warm and hasattr(self, "coef_")
        init = None if warm else self._check_initializer()
        path = None if checkpoint is None else check_checkpoint_path(checkpoint)
        unsupported = None if checkpoint is None else self._checkpoint_unsupported()
        if unsupported:
            raise ValueError(f"checkpoint is not supported {unsupported}; fit without a "
                             "checkpoint")
        data = _patch_source(X, L)
        self._check_data(data, self._scale_bounds(data))
        n_params, n_values = self._n_parameters(), data.n_patches * L * L
        if n_values < n_params:
            warnings.warn(
                f"X holds {data.n_patches} patch(es) of {L}x{L} pixels, {n_values} numbers "
                f"for the {n_params} parameters of the model: the estimate is not "
                "determined by the data. Give more or larger measurements, or fewer "
                "basis functions.", DataDimensionalityWarning, stacklevel=2)
        fixed = self._fixed_noise_variance()
        if warm:
            warm_state = self._check_state(InitialState(
                self.coef_.copy(), self.shift_probabilities_.copy(),
                float(self.noise_variance_) if fixed is None else fixed,
                self.weights_.copy() if np.ndim(self.coef_) == 2 else None),
                source="the previous fit (warm_start)")
        if checkpoint is not None:
            # before random_state (a Generator) is drawn from
            params_hash = hash_params(self, extra=None if not warm else [
                warm_state.coef, warm_state.shift_probabilities, warm_state.noise_variance])
        prepared = self._prepare(data)
        n_init = 1 if warm else int(self.n_init)
        seeds = rng.integers(np.iinfo(np.int32).max, size=n_init)
        if warm:
            def first_state(seed):
                return warm_state
        else:
            def first_state(seed):
                return self._check_state(init.initialize(data, self.basis_, fixed,
                                                         np.random.default_rng(seed)))
        if checkpoint is None:
            states = [first_state(seed) for seed in seeds]
            # one start uses n_jobs inside; several run in parallel, one thread each;
            # on a Dask cluster the starts run in turn, each E-step over the workers
            inner, outer = ((self.n_jobs, 1) if n_init == 1 or data.distributed
                            else (1, self.n_jobs))
            results = list(ordered_map(
                lambda st, s: self._run_start(prepared, st, s, inner), zip(states, seeds),
                n_jobs=outer, limit_blas=False, verbose=max(self.verbose - 1, 0)))
        else:
            results = run_checkpointed(self, path, params_hash, data, prepared, seeds,
                                       first_state)
        # the best start by its objective, among those that did not end
        # degenerate (when any did not)
        mean_square = float(data.memoize(data_statistics, L)[1])
        # the image's power as the measurements show it: through their CTFs
        # (_formations, set by _prepare) where there are some
        formations = getattr(self, "_formations", None)
        reasons = [_degenerate_reason(r, self.basis_, mean_square, formations)
                   for r in results]
        proper = [i for i in range(len(results)) if reasons[i] is None] or range(len(results))
        best = max(proper, key=lambda i: results[i]["objective"])
        res = results[best]
        self._set_fitted(res, data.n_patches)
        self.degenerate_ = reasons[best]
        if self.degenerate_ is not None:
            self.converged_ = False
            warnings.warn(f"{type(self).__name__} ended in a degenerate state: "
                          f"{self.degenerate_}.  The estimate does not describe the data; "
                          "try other starts (n_init, random_state, initializer) or check "
                          "that the model fits the data (image_size, noise).",
                          ConvergenceWarning, stacklevel=2)
        elif not self.converged_ and self.max_iter > 0:
            warnings.warn(self._convergence_message(res), ConvergenceWarning, stacklevel=2)
        return self

    def _set_fitted(self, res, n_patches):
        """Set the fitted attributes from a start's result."""
        L = self.basis_.image_size
        self.coef_ = np.asarray(res["coef"], dtype=np.float64)
        self.shift_probabilities_ = np.asarray(res["shift_probabilities"]).reshape(2 * L, 2 * L)
        self.noise_variance_ = float(res["noise_variance"])
        self.density_ = shift_probabilities_to_density(self.shift_probabilities_)
        self.image_ = self.basis_.evaluate(self.coef_)
        # the components' abundances (GaussianMixture's weights_): [1.0] for one image
        self.weights_ = (np.ones(1) if res.get("weights") is None
                         else np.asarray(res["weights"], dtype=np.float64))
        self.n_iter_ = int(res["n_iter"])
        self.converged_ = bool(res["converged"])
        self.n_patches_ = int(n_patches)
        self.n_parameters_ = int(self._n_parameters())
        extra = res.get("extra", {})
        for key, value in extra.items():
            setattr(self, key, value)
        self._extra_attributes = tuple(extra)

    # -- one start: the loop ------------------------------------------------
    def _prepare(self, data):
        """What every start shares, computed once per fit (hook)."""
        return data

    def _e_step(self, prepared, state, n_jobs):
        """``(objective, stats)`` at ``state`` (hook of the loop)."""
        raise NotImplementedError

    def _m_step(self, prepared, state, stats):
        """The next state from the E-step's statistics (hook of the loop)."""
        raise NotImplementedError

    def _step(self, prepared, state, objective, stats, n_jobs):
        """One iteration: ``(state, objective, stats)`` (hook of the loop)."""
        state = self._m_step(prepared, state, stats)
        objective, stats = self._e_step(prepared, state, n_jobs)
        return state, objective, stats

    def _gain(self, previous, objective, state):
        """The gain of the last iteration, tested against ``tol`` (hook of the loop)."""
        return objective - previous

    def _gain_text(self, state, gain):
        """The verbose line's words for the value :meth:`_gain` returned (hook).

        An infinite gain is the loop's "not comparable" (the objective
        changed, e.g. its E-steps' precision), minus infinity a phase ended
        by the subclass: no gain to show.
        """
        return (f"gain {gain:.3e}" if np.isfinite(gain) else
                "gain n/a (new objective)" if gain > 0 else "gain n/a (phase ends)")

    def _checkpoint_state(self, state):
        """What a start keeps beside the parameters, saved in a checkpoint (hook)."""
        return {}

    def _resume_state(self, state, saved):
        """The state of a resumed start, from the parameters and what was saved (hook)."""
        return state

    def _checkpoint_unsupported(self):
        """Why the settings cannot be checkpointed, or ``None`` (hook)."""
        return None

    def _start_extra(self, prepared, objective, history):
        """Fitted attributes of a start beyond the model (hook): the EM's history.

        ``prepared`` is ``None`` when a checkpoint is restored without data.
        """
        return {"log_likelihood_history_": list(history), "lower_bound_": objective}

    def _run_start(self, prepared, state, seed, n_jobs, resume=None, callback=None, tol=None):
        """Iterate from ``state`` until the gain is below ``tol`` or ``max_iter``.

        ``tol=None`` is the estimator's ``tol`` (a subclass may stop a phase
        earlier, with a larger float or with ``tol(history)``, a threshold
        computed from the objectives so far).  ``resume=(n_iter, history,
        converged)`` continues a start saved after ``n_iter`` iterations at
        ``state`` (the statistics are recomputed from it, bit for bit);
        ``callback(state, n_iter, history, converged)`` is called after every
        iteration.
        """
        name = self._verbose_name
        tol = self.tol_ if tol is None else tol
        t0 = time.perf_counter()
        progress.start(name, self.max_iter, 0 if resume is None else min(int(resume[0]),
                                                                           self.max_iter))
        if resume is None:
            n_done = 0
            objective, stats = self._e_step(prepared, state, n_jobs)
            history = [objective]
            if self.verbose:
                print(f"[{name}] iter 0  log-likelihood {objective:.10g}  "
                      f"({time.perf_counter() - t0:.2f} s)")
        else:
            n_done, history, converged = int(resume[0]), list(resume[1]), bool(resume[2])
            if converged or n_done >= self.max_iter:  # it had finished
                progress.close()
                return self._start_result(prepared, state, history, n_done, converged)
            objective, stats = self._e_step(prepared, state, n_jobs)
            if self.verbose:
                print(f"[{name}] resumed after iter {n_done}  log-likelihood "
                      f"{objective:.10g}  ({time.perf_counter() - t0:.2f} s)")
        converged = False
        n_iter = n_done
        for n_iter in range(n_done + 1, self.max_iter + 1):
            t0 = time.perf_counter()
            state, objective, stats = self._step(prepared, state, objective, stats, n_jobs)
            gain = self._gain(history[-1], objective, state)
            history.append(objective)
            if self.verbose:
                shown = self._gain_text(state, gain)
                print(f"[{name}] iter {n_iter}  log-likelihood {objective:.10g}  "
                      f"{shown}  ({time.perf_counter() - t0:.2f} s)")
            converged = gain < (tol(history) if callable(tol) else tol)
            progress.update(n_iter, gain)
            if callback is not None:
                callback(state, n_iter, history, converged)
            if converged:
                break
        progress.close()
        return self._start_result(prepared, state, history, n_iter, converged)

    def _start_result(self, prepared, state, history, n_iter, converged):
        return {
            "coef": state.coef, "shift_probabilities": state.shift_probabilities,
            "noise_variance": state.noise_variance, "objective": history[-1],
            "n_iter": n_iter, "converged": converged, "history": history,
            "extra": self._start_extra(prepared, history[-1], history),
        }

    def _check_state(self, state, source="initializer"):
        L = self.basis_.image_size
        coef = np.asarray(state.coef, dtype=np.float64)
        shapes = self._coef_shapes()
        if coef.shape not in shapes:
            raise ValueError(f"{source} gave coef of shape {coef.shape}, expected "
                             f"{' or '.join(map(str, shapes))}")
        rho = check_shift_probabilities(state.shift_probabilities, L,
                                        "initial shift_probabilities")
        sigma2 = check_real(state.noise_variance, "initial noise_variance", minimum=0.0,
                            strict=True)
        state.coef, state.shift_probabilities, state.noise_variance = coef, rho, sigma2
        # a mixture's abundances: equal unless the start gives them
        weights = getattr(state, "weights", None)
        if coef.ndim == 2:
            state.weights = (np.full(len(coef), 1.0 / len(coef)) if weights is None
                             else check_abundances(weights, len(coef), f"{source}'s weights"))
        elif weights is not None:
            raise ValueError(f"{source} gave weights with a one-image coef")
        return state

    def _coef_shapes(self):
        """The shapes a start's ``coef`` may have (hook)."""
        return [(self.basis_.n_functions,)]

    def _convergence_message(self, res):
        return (f"{type(self).__name__} did not converge in max_iter={self.max_iter} "
                f"iterations (tol={self.tol_:.3g}). Increase max_iter, loosen tol, or start "
                "closer to the solution (e.g. initializer=AutocorrelationInitializer()).")


#: A fit is degenerate when its density is below this while the image's
#: power per pixel exceeds _MAX_IMAGE_POWER times the data's mean square:
#: a few copies of a huge image explaining a handful of outlying patches.
#: The paper's densities are 0.04; MTD below 1e-3 (a copy per 1000 areas
#: of the image) would need ~1e7 patches at the SNRs it works at.
_MIN_DENSITY = 1e-3
_MAX_IMAGE_POWER = 10.0
#: ... or when the model's mean square per pixel, sigma**2 + density
#: ||F||**2 / L**2, exceeds the data's by this factor (the M-step's moment
#: balance keeps a proper fit near 1: within 1 % on the paper's settings);
_MAX_POWER_RATIO = 2.0
#: ... or when the image holds less than this fraction of the data's power:
#: sigma**2 has absorbed the signal (at the paper's density 0.04 this is an
#: SNR of 2.5e-3, far below where MTD recovers anything).
_MIN_SIGNAL_FRACTION = 1e-4


def _degenerate_reason(res, basis, mean_square, formations=None):
    """Why a start's result is degenerate, or ``None`` for a proper fit.

    Compares the model's power per pixel with the data's mean square
    (``mean_square``, per pixel): the image's ``||F||**2 / L**2`` (as the
    data show it: the mean of ``||H F||**2 / L**2`` over the measurements'
    ``formations``, their CTFs, when given), the signal's ``density
    ||F||**2 / L**2`` and the noise's ``sigma**2``.
    """
    L = basis.image_size
    coef = np.asarray(res["coef"], dtype=np.float64)
    images = basis.evaluate(coef).reshape(-1, L * L)      # one row per component
    if formations is None:
        powers = np.sum(images * images, axis=1) / (L * L)
    else:
        powers = np.mean([np.sum(f.form(images) ** 2, axis=1) for f in formations],
                         axis=0) / (L * L)
    # a mixture's power: its components', weighted by their abundances
    image_power = float(powers[0] if coef.ndim == 1 else np.dot(res["weights"], powers))
    density = shift_probabilities_to_density(
        np.asarray(res["shift_probabilities"]).reshape(2 * L, 2 * L))
    signal = density * image_power
    model = float(res["noise_variance"]) + signal
    data = max(mean_square, np.finfo(np.float64).tiny)
    if not (np.isfinite(model) and np.isfinite(image_power)):
        return "its parameters are not finite"
    if density < _MIN_DENSITY and image_power > _MAX_IMAGE_POWER * data:
        return (f"the density collapsed to {density:.3g} while the image's power per "
                f"pixel grew to {image_power / data:.3g} times the data's mean square")
    if model > _MAX_POWER_RATIO * data:
        return (f"the model's power per pixel (noise variance + density x image power) "
                f"is {model / data:.3g} times the data's mean square")
    if signal < _MIN_SIGNAL_FRACTION * data:
        return (f"the noise variance absorbed the signal: the copies hold {signal / data:.2g} "
                f"of the data's power (density {density:.3g})")
    return None
