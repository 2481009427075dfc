"""The base class of the multi-target detection estimators.

:class:`BaseMTDEstimator` owns what both estimators share, in the
template-method style of scikit-learn's ``BaseMixture``: parameter
validation, the data (a patch source, :mod:`mtdlearn.patches`), the
``n_init`` starts, the iteration loop (E-step, M-step, objective,
convergence test, verbose line, history), the choice of the best start,
and ``score``, ``score_samples``, ``predict``, ``predict_proba`` and
``sample`` under the shared generative model (:mod:`mtdlearn.patch_model`).
A subclass provides its own steps through small hooks; a variant of the EM
(accelerated, incremental) overrides one hook, ``_step``.
"""

import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from ._dask import as_dask_source, is_dask_input
from ._parallel import check_n_jobs, ordered_map
from ._validation import check_int, check_random_generator, check_real
from .basis import FourierBesselBasis, check_basis
from .datasets import make_measurement
from .initializers import InitialState, RandomInitializer
from .operators import check_shift_probabilities, shift_probabilities_to_density
from .hypotheses import HypothesisSpace
from .patch_model import build_patch_model, estep_per_patch
from .patches import as_patch_source
from .rotations import check_rotation_grid

__all__ = ["BaseMTDEstimator"]


def _patch_source(X, image_size):
    """The patch source of any input: in memory, or on Dask for dask arrays."""
    if is_dask_input(X):
        return as_dask_source(X, image_size)
    return as_patch_source(X, image_size)


class BaseMTDEstimator(BaseEstimator):
    """Base class of the multi-target detection estimators.

    Owns what both estimators share: input validation (one measurement,
    a stack, a sequence of arrays or ``.npy``/``.mrc`` paths, or a
    :class:`~mtdlearn.patches.PatchData`), the generative model of the
    patches (``coef_``, ``shift_probabilities_``, ``noise_variance_``), the
    ``n_init`` starts through joblib, the iteration loop, and ``score``,
    ``score_samples``, ``predict``, ``predict_proba``, ``sample``.

    Subclasses store their constructor parameters (``image_size``,
    ``basis``, ``rotations``, ``initializer``, ``n_init``,
    ``noise_variance``, ``max_iter``, ``tol``, ``working_memory``,
    ``n_jobs``, ``random_state``, ``verbose``) and fill these hooks:

    ``_check_params()``
        Validate the parameters only the subclass has.
    ``_prepare(data)``
        What the starts share, computed once per fit from the
        :class:`~mtdlearn.patches.PatchData` (the measured
        autocorrelations; for the EM, the patches and the hypotheses).
    ``_e_step(prepared, state, n_jobs)``
        ``(objective, stats)`` at ``state`` (an
        :class:`~mtdlearn.initializers.InitialState`); higher is better.
    ``_m_step(prepared, state, stats)``
        The next state.
    ``_step(prepared, state, objective, stats, n_jobs)``
        One iteration, ``(state, objective, stats)``; by default an M-step
        and an E-step.  Accelerated or incremental variants override it.
    ``_run_start(prepared, state, seed, n_jobs)``
        One start: by default the loop above, until the gain of the
        objective is below ``tol`` or ``max_iter`` iterations; a subclass
        without E/M steps (autocorrelation analysis) overrides it.

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
    #: Whether the estimator continues from its previous fit (``warm_start``).
    _warm = False

    # -- parameters ----------------------------------------------------------
    def _validate_params(self):
        """Check the parameters; set ``basis_``, ``rotations_``, ``angles_``; return ``L``."""
        L = check_int(self.image_size, "image_size", minimum=3)
        if L % 2 == 0:
            raise ValueError(f"image_size must be odd (L = 2n + 1), got {L}")
        # never mutate the user's object: work on a copy
        basis = FourierBesselBasis(L) if self.basis is None else clone(check_basis(self.basis))
        if basis.image_size != L:
            raise ValueError(f"basis.image_size={basis.image_size} does not match "
                             f"image_size={L}")
        check_int(self.n_init, "n_init", minimum=1)
        check_int(self.max_iter, "max_iter", minimum=0)
        check_real(self.tol, "tol", minimum=0.0)
        if self.noise_variance is not None:
            check_real(self.noise_variance, "noise_variance", minimum=0.0, strict=True)
        check_n_jobs(self.n_jobs)
        check_int(self.verbose, "verbose", minimum=0)
        if self.working_memory is not None:
            check_real(self.working_memory, "working_memory", minimum=0.0, strict=True)
        self._check_params()
        self.basis_ = basis
        self.rotations_, self.angles_ = check_rotation_grid(self.rotations)
        return L

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

    def _fixed_noise_variance(self):
        return None if self.noise_variance is None else float(self.noise_variance)

    # -- fit ----------------------------------------------------------------
    def fit(self, X, y=None):
        """Estimate the model from measurements.

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), a sequence, or PatchData
            The measurement(s): one measurement, a stack, a sequence of
            2-D arrays or ``.npy``/``.mrc`` paths, or a
            :class:`~mtdlearn.patches.PatchData` (whose data-derived
            quantities are then computed once and shared).  A
            ``dask.array.Array`` of shape (N1, N2) or (n, N1, N2), or a list
            of them (e.g. :func:`mtdlearn.io.read_micrographs`), is fitted
            where its blocks live, on the active ``distributed.Client`` or
            dask's default scheduler, with the same result to the last bit
            (:doc:`/scaling`).  Input is never modified.
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
        # every parameter is checked before the data are read
        L = self._validate_params()
        rng = check_random_generator(self.random_state)
        warm = self._warm and hasattr(self, "coef_")
        init = None if warm else self._check_initializer()
        data = _patch_source(X, L)
        prepared = self._prepare(data)
        n_init = 1 if warm else int(self.n_init)
        seeds = rng.integers(np.iinfo(np.int32).max, size=n_init)
        fixed = self._fixed_noise_variance()
        if warm:
            states = [self._check_state(InitialState(
                self.coef_.copy(), self.shift_probabilities_.copy(),
                float(self.noise_variance_) if fixed is None else fixed),
                source="the previous fit (warm_start)")]
        else:
            states = [self._check_state(init.initialize(data, self.basis_, fixed,
                                                        np.random.default_rng(seed)))
                      for seed in seeds]
        # one start uses n_jobs inside; several run in parallel, one thread each;
        # on a Dask cluster the starts run in turn, each E-step over the workers
        inner, outer = ((self.n_jobs, 1) if n_init == 1 or data.distributed
                        else (1, self.n_jobs))
        results = list(ordered_map(
            lambda st, s: self._run_start(prepared, st, s, inner), zip(states, seeds),
            n_jobs=outer, limit_blas=False, verbose=max(self.verbose - 1, 0)))
        best = max(range(n_init), key=lambda i: results[i]["objective"])
        res = results[best]
        self.coef_ = res["coef"]
        self.shift_probabilities_ = res["shift_probabilities"].reshape(2 * L, 2 * L)
        self.noise_variance_ = float(res["noise_variance"])
        self.density_ = shift_probabilities_to_density(self.shift_probabilities_)
        self.image_ = self.basis_.evaluate(self.coef_)
        self.n_iter_ = int(res["n_iter"])
        self.converged_ = bool(res["converged"])
        self.n_patches_ = data.n_patches
        for key, value in res.get("extra", {}).items():
            setattr(self, key, value)
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(self._convergence_message(res), ConvergenceWarning, stacklevel=2)
        return self

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

    def _run_start(self, prepared, state, seed, n_jobs):
        """Iterate from ``state`` until the gain is below ``tol`` or ``max_iter``."""
        name = self._verbose_name
        t0 = time.perf_counter()
        objective, stats = self._e_step(prepared, state, n_jobs)
        history = [objective]
        if self.verbose:
            print(f"[{name}] iter 0  log-likelihood {objective:.10g}  "
                  f"({time.perf_counter() - t0:.2f} s)")
        converged = False
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):
            t0 = time.perf_counter()
            state, objective, stats = self._step(prepared, state, objective, stats, n_jobs)
            gain = objective - history[-1]
            history.append(objective)
            if self.verbose:
                print(f"[{name}] iter {n_iter}  log-likelihood {objective:.10g}  "
                      f"gain {gain:.3e}  ({time.perf_counter() - t0:.2f} s)")
            if gain < self.tol:
                converged = True
                break
        return {
            "coef": state.coef, "shift_probabilities": state.shift_probabilities,
            "noise_variance": state.noise_variance, "objective": objective,
            "n_iter": n_iter, "converged": converged,
            "extra": {"log_likelihood_history_": history, "lower_bound_": objective},
        }

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
    def _hypotheses(self):
        return HypothesisSpace(self.basis_, self.angles_)

    def _per_patch(self, X):
        check_is_fitted(self, "coef_")
        data = _patch_source(X, self.basis_.image_size)
        model = build_patch_model(self.coef_, self.shift_probabilities_, self.noise_variance_,
                                  self._hypotheses())
        out = estep_per_patch(data, model, n_jobs=self.n_jobs,
                              working_memory=self.working_memory)
        return data, model, out

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
        return self._per_patch(X)[2][0]

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
        return 1.0 - self._per_patch(X)[2][3]

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
        data, model, (_, best, best_p, _) = self._per_patch(X)
        keep = np.flatnonzero(best >= 0)
        k, d0, d1 = model.hypotheses.decode(best[keep])
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
        return make_measurement(self.coef_, self.basis_, size, density=self.density_,
                                noise_variance=self.noise_variance_,
                                n_measurements=n_measurements, random_state=random_state)
