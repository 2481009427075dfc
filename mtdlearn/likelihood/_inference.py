"""The inference of the fitted estimators under the shared generative model.

:class:`_InferenceMixin` gives :class:`~mtdlearn.base.BaseMTDEstimator` (and
so both estimators) ``score``, ``score_samples``, ``predict``,
``predict_per_measurement``, ``predict_proba``, ``sample`` and ``check_fit``: the per-patch
E-steps of :mod:`mtdlearn.likelihood.posteriors` and the statistics of
:mod:`mtdlearn.likelihood.patch_model` at the fitted parameters ``coef_``,
``shift_probabilities_``, ``noise_variance_``, and the simulator of
:mod:`mtdlearn.data.simulate`.  It relies on the base class for
``basis_``, ``angles_``, ``n_jobs``, ``working_memory`` and ``_check_data``.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..data._dask import as_dask_source, is_dask_input
from ..data.patches import as_patch_source
from ..data.simulate import make_measurement
from .fft_estep import FFTPatchModel, estep_statistics_fft
from ..imaging.ctf import CTF
from ..imaging.formation import MicroscopeFormation
from .formed import check_ctf, formation_groups, measurement_formations
from .hypotheses import HypothesisSpace
from .posteriors import build_per_patch_model, estep_per_patch, iter_detections
from .statistics import estep_statistics


def _scale_bounds(power, n_values, dtype=np.float64):
    """Range of ``max|x|`` whose ``power``-th powers, summed over ``n_values``
    terms in ``dtype``, neither overflow nor fall within ``1e12`` of underflow."""
    info = np.finfo(dtype)
    return ((float(info.tiny) * 1e12) ** (1.0 / power),
            (float(info.max) / (64.0 * n_values)) ** (1.0 / power))


def _patch_source(X, image_size):
    """The patch source of any input: in memory, or on Dask for dask arrays."""
    if is_dask_input(X):
        return as_dask_source(X, image_size)
    return as_patch_source(X, image_size)


class _InferenceMixin:
    """``score``, ``predict``, ``sample`` and the rest under the fitted model.

    A mixin of :class:`~mtdlearn.base.BaseMTDEstimator`, which documents
    these methods as its own.
    """

    # -- the shared generative model ---------------------------------------
    def _hypotheses(self):
        return HypothesisSpace(self.basis_, self.angles_, n_components=self._n_components())

    def _n_components(self):
        return 1 if np.ndim(self.coef_) == 1 else int(np.shape(self.coef_)[0])

    def _weights(self):
        """The abundances the model is built with: ``None`` for one image."""
        return None if self._n_components() == 1 else self.weights_

    def _noise_for(self, data):
        """The noise model ``data`` is seen through (hook: the EM's ``"residual"``)."""
        return getattr(self, "noise", "white")

    def _patch_model(self, X, noise=None, params=None):
        """The patches of ``X`` and the fitted model, for the per-patch E-steps.

        Returns ``(parts, options)``: ``parts`` lists ``(measurement, data,
        model)``, one part for all the measurements in the paper's model
        (``measurement`` ``None``), or one per measurement seen through its
        own CTF and noise (the estimator's ``ctf`` and ``noise``, or the
        given ``noise``), its data whitened.  ``params``: ``(coef,
        shift_probabilities, noise_variance, weights)`` instead of the
        fitted ones.
        """
        check_is_fitted(self, "coef_")
        data = _patch_source(X, self.basis_.image_size)
        self._check_data(data, _scale_bounds(2, sum(M.size for M in data.measurements)),
                         fitting=False)
        space = self._hypotheses()
        formations, _ = measurement_formations(
            data, getattr(self, "ctf", None), self._noise_for(data) if noise is None else noise)
        groups = ([(None, data, space)] if formations is None else
                  [(i, d, s) for i, (d, s) in enumerate(formation_groups(data, formations,
                                                                         space))])
        params = params or (self.coef_, self.shift_probabilities_, self.noise_variance_,
                            self._weights())
        parts = [(i, d, build_per_patch_model(*params[:3], s, params[3])) for i, d, s in groups]
        return parts, dict(n_jobs=self.n_jobs, working_memory=self.working_memory)

    def _per_patch(self, X, components=False):
        parts, options = self._patch_model(X)
        outputs = [estep_per_patch(data, model, components=components, **options)
                   for _, data, model in parts]
        if len(outputs) == 1:
            return outputs[0]
        return tuple(np.concatenate(column) for column in zip(*outputs))

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
        return self._per_patch(X)[0]

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
        loglik, n_patches = self._total_log_likelihood(X)
        return loglik / n_patches

    def _total_log_likelihood(self, X):
        """``(sum of the patches' log-likelihoods, number of patches)`` of ``X``."""
        parts, options = self._patch_model(X)
        # reduced chunk by chunk: memory does not grow with X
        # the kernel the model was built for (FFT from L = 13 at the fitted K)
        loglik = n_patches = 0
        for _, data, model in parts:
            estep = (estep_statistics_fft if isinstance(model, FFTPatchModel)
                     else estep_statistics)
            loglik += estep(data, model, **options).loglik
            n_patches += data.n_patches
        return loglik, n_patches

    def bic(self, X):
        """Bayesian information criterion of the fitted model on ``X`` (lower is better).

        ``-2 log L + n_parameters log N_d``, with ``log L`` the patches'
        summed approximate log-likelihood (eq. 5, :meth:`score` times
        ``N_d``) and ``N_d`` the number of patches: scikit-learn's
        ``GaussianMixture.bic`` with a patch as a sample.  The parameters
        are counted as free numbers: ``C`` images of ``n_functions``
        coefficients, the shift distribution (``4 L**2 - 1``), ``C - 1``
        abundances and ``sigma**2`` when it is estimated (the estimator's
        ``n_parameters_``, for ``C = n_components``).  The patches of a
        measurement are not independent (a copy straddles up to four), so
        the criterion is a heuristic for comparing fits of the same data,
        such as the number of kinds of particle.

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
            Measurement(s), in any of the forms :meth:`fit` accepts.

        Returns
        -------
        bic : float
            The criterion; among fits of the same ``X``, the lowest is preferred.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
        ...                       make_target)
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 150,
        ...                             snr=10, random_state=0)
        >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, random_state=0).fit(X)
        >>> n = em.n_patches_
        >>> bool(np.isclose(em.bic(X), -2 * em.score(X) * n + em.n_parameters_ * np.log(n)))
        True
        """
        loglik, n_patches = self._total_log_likelihood(X)
        return float(-2.0 * loglik + self.n_parameters_ * np.log(n_patches))

    def aic(self, X):
        """Akaike information criterion of the fitted model on ``X`` (lower is better).

        ``-2 log L + 2 n_parameters``, as :meth:`bic` counts them
        (scikit-learn's ``GaussianMixture.aic``).

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
            Measurement(s), in any of the forms :meth:`fit` accepts.

        Returns
        -------
        aic : float
            The criterion; among fits of the same ``X``, the lowest is preferred.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
        ...                       make_target)
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 150,
        ...                             snr=10, random_state=0)
        >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, random_state=0).fit(X)
        >>> bool(np.isclose(em.aic(X), -2 * em.score(X) * em.n_patches_
        ...                 + 2 * em.n_parameters_))
        True
        """
        loglik, _ = self._total_log_likelihood(X)
        return float(-2.0 * loglik + 2.0 * self.n_parameters_)

    def predict_proba(self, X):
        """Compute each patch's posterior probability of holding (part of) a copy.

        One minus the posterior probability of the empty hypothesis (all
        shifts with ``l_0 = L`` or ``l_1 = L``) under the fitted model.  A
        model of several kinds of particle (``coef_`` of shape ``(C, p)``,
        ``C > 1``) gives it per kind: the posterior probability that the
        patch holds (part of) a copy of kind ``c``, the mass of all of
        component ``c``'s hypotheses (every rotation and non-empty shift);
        the kinds' probabilities of a patch sum to its probability of
        holding a copy.

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
            Measurement(s), in any of the forms :meth:`fit` accepts.

        Returns
        -------
        proba : ndarray of shape (N_d,) or (N_d, C)
            One value in ``[0, 1]`` per patch, patches row-major,
            measurements in order; with ``C > 1`` components, one column
            per component (in the order of ``weights_``), each row summing to at
            most 1 (to one minus the posterior probability of the empty
            hypothesis).

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
        check_is_fitted(self, "coef_")
        if self._n_components() == 1:
            return 1.0 - self._per_patch(X)[3]
        return self._per_patch(X, components=True)[4]

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
        return self._predict(X)

    def _predict(self, X, noise=None, params=None):
        """:meth:`predict`, optionally under another ``noise`` or ``params``
        (see ``_patch_model``)."""
        return np.concatenate([rows for _, rows in self._per_measurement(X, noise, params)])

    def predict_per_measurement(self, X):
        """Yield :meth:`predict`'s detections one measurement at a time.

        The same rows as :meth:`predict`, grouped by measurement, in order;
        each measurement's are yielded as soon as they are found, so a
        caller that writes them (:func:`mtdlearn.data.star.write_star_per_micrograph`)
        holds one measurement's at a time, however many micrographs there
        are.  With Dask input each micrograph's detections are found on its
        worker and come to the client in turn (:doc:`/scaling`).

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
            Measurement(s), in any of the forms :meth:`fit` accepts.

        Returns
        -------
        detections : generator of (int, structured ndarray)
            ``(measurement, rows)`` for every measurement, in order:
            its index and its rows of :meth:`predict` (possibly none).
            ``X`` is checked when this method is called, the E-step runs as
            the generator is consumed.

        Examples
        --------
        >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
        ...                       make_target)
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 100,
        ...                             snr=10, n_measurements=2, random_state=0)
        >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=200,
        ...                        random_state=0).fit(X)
        >>> [(i, bool((det["measurement"] == i).all()))
        ...  for i, det in em.predict_per_measurement(X)]
        [(0, True), (1, True)]
        """
        return self._per_measurement(X)

    def _per_measurement(self, X, noise=None, params=None):
        """:meth:`predict_per_measurement`, optionally under another ``noise``
        or ``params`` (see ``_patch_model``)."""
        parts, options = self._patch_model(X, noise, params)
        return (item for measurement, data, model in parts
                for item in self._detections(data, model, options, measurement))

    def _detections(self, data, model, options, measurement=None):
        """Detections of ``data``; ``measurement`` renumbers a one-measurement part."""
        fields = [("measurement", np.int64), ("row", np.int64), ("col", np.int64),
                  ("angle", np.float64), ("probability", np.float64)]
        mixture = model.hypotheses.n_components > 1
        if mixture:
            fields.append(("component", np.int64))
        for i, keep, best, best_p in iter_detections(data, model, **options):
            i = i if measurement is None else measurement
            out = np.empty(len(keep), dtype=fields)
            for a in range(0, len(keep), 2**16):  # temporaries of a block, not of the output
                sl = slice(a, a + 2**16)
                k, d0, d1 = model.hypotheses.decode(best[sl])
                _, r0, c0 = data.locate(keep[sl])
                out["row"][sl] = r0 + d0
                out["col"][sl] = c0 + d1
                out["angle"][sl] = self.angles_[k]
                if mixture:
                    out["component"][sl] = model.hypotheses.component(best[sl])
            out["measurement"] = i
            out["probability"] = best_p
            yield i, out

    def sample(self, size, n_measurements=None, random_state=None):
        """Draw a synthetic measurement from the fitted model.

        Copies of ``image_`` at the fitted density ``density_``, uniformly
        rotated, with noise of variance ``noise_variance_``
        (see :func:`mtdlearn.make_measurement`).  A fit through CTFs or
        colored noise draws its micrographs as it modelled them: the sum of
        the copies convolved with a micrograph's CTF (``ctf``), then noise
        of its spectrum (``noise_psds_``) with mean power
        ``noise_variance_`` per pixel.

        Parameters
        ----------
        size : int or (int, int)
            Side ``N`` (or shape) of each measurement.
        n_measurements : int, default=None
            ``None`` draws one measurement; an int draws a stack.  For a fit
            of ``M`` micrographs each with its own CTF or noise spectrum,
            ``None`` draws one per micrograph, in order (a stack when
            ``M > 1``), and an int must be ``M``.
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
        n_measurements, formation = self._sample_formations(n_measurements)
        return make_measurement(self.coef_, self.basis_, size, density=self.density_,
                                noise_variance=self.noise_variance_,
                                n_measurements=n_measurements, random_state=random_state,
                                formation=formation, weights=self._weights())

    def check_fit(self, X, *, level=0.01, n_simulated=None, random_state=None):
        """Check that the fitted model explains ``X``: a posterior predictive check.

        Compares the log-likelihoods (:meth:`score_samples`) of ``X``'s
        patches with those of patches drawn from the fitted patch model
        (:func:`~mtdlearn.likelihood.goodness.draw_patches`): the two-sample
        Kolmogorov-Smirnov distance.
        Contaminants, a carbon edge or a background make it large, though
        the fit converged.  See :mod:`mtdlearn.likelihood.goodness`.

        Parameters
        ----------
        X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
            Measurement(s), in any of the forms :meth:`fit` accepts.
        level : float, default=0.01
            The quantile of the simulated patches' scores below which a
            patch of ``X`` is an outlier, in (0, 0.5].
        n_simulated : int, default=None
            The least number of simulated patches (``level * n_simulated >=
            10``); ``None``: as many as ``X``'s patches, from ``20 / level``
            to 20000.
        random_state : int, Generator, RandomState or None, default=None
            Seeds the simulation; ``None`` takes the estimator's ``random_state``.

        Returns
        -------
        result : FitCheck
            ``distance``, ``statistic``, ``p_value``, ``passed``,
            ``outliers`` (one bool per patch) and the rest;
            ``result.summary()`` says it in a line.
        """
        from .goodness import check_fit

        check_is_fitted(self, "coef_")
        return check_fit(self, X, level=level, n_simulated=n_simulated,
                         random_state=random_state)

    def _sample_formations(self, n_measurements):
        """``sample``'s measurement count and image formation(s): the fit's own."""
        ctf, psds = getattr(self, "ctf", None), getattr(self, "noise_psds_", None)
        if ctf is None and psds is None:    # the paper's model
            return n_measurements, None
        if psds is None and isinstance(ctf, CTF):   # one CTF for all, white noise
            return n_measurements, MicroscopeFormation(ctf)
        M = len(psds) if psds is not None else len(ctf)
        if n_measurements is not None and n_measurements != M:
            raise ValueError(f"n_measurements must be None or {M}: the fit saw {M} "
                             f"micrographs, each through its own CTF or noise spectrum; "
                             f"got {n_measurements!r}")
        ctfs = check_ctf(ctf, M) or [None] * M
        formations = [MicroscopeFormation(c, p)
                      for c, p in zip(ctfs, psds if psds is not None else [None] * M)]
        return (None, formations[0]) if M == 1 else (M, formations)
