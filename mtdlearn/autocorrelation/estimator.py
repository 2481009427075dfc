"""Autocorrelation analysis: the paper's baseline estimator and the EM's initializer.

:class:`AutocorrelationEstimator` fits the model by matching the first three
autocorrelations of the measurement (:mod:`mtdlearn.autocorrelation.moments`) with those of
the model, averaged over rotations (:mod:`mtdlearn.autocorrelation.fit`).
:class:`AutocorrelationInitializer` starts the EM from its estimate.
"""

import warnings

import numpy as np
from scipy.optimize import OptimizeResult
from sklearn.exceptions import ConvergenceWarning

from ..base import BaseMTDEstimator, _scale_bounds
from ..initializers import (EnergyStart, InitialState, _check_initialize_args, _ParamsMixin,
                            split_image)
from .._validation import check_int
from .fit import autocorrelation_cost_and_grad, fit_autocorrelations, mixture_cost_and_grad
from .model_moments import default_n_angles
from .moments import _check_shift_radius, formed_autocorrelations, measurement_autocorrelations
from ..data.patches import resolve_working_memory
from ..imaging.shifts import density_to_shift_probabilities, shift_probabilities_to_density
from ..likelihood.formed import (check_ctf, check_noise, distinct_formations, is_plain,
                                 measurement_formations)
from ..likelihood.m_step import noise_variance_floor

__all__ = ["AutocorrelationEstimator", "AutocorrelationInitializer"]


class AutocorrelationEstimator(BaseMTDEstimator):
    """Autocorrelation analysis for two-dimensional multi-target detection.

    The paper's baseline (§3): fits the density ``gamma``, the coefficients
    ``alpha`` and, optionally, the noise variance by matching the first three
    autocorrelations of the measurement with those of the model, averaged
    over uniform rotations (:doc:`/design`, "Autocorrelation analysis"),
    with L-BFGS-B and the analytic gradient.  The measurement is read once; the fit works on ``L**4``
    numbers (fewer with ``shift_radius``), whatever the measurement size.

    The fitted model is the same generative model as
    :class:`~mtdlearn.ApproxEMEstimator`'s, so ``score``, ``predict`` and
    ``sample`` (from :class:`~mtdlearn.BaseMTDEstimator`) make the two
    estimators directly comparable by held-out log-likelihood.

    Parameters
    ----------
    image_size : int
        Diameter ``L = 2n + 1`` of the target image, odd.
    basis : basis object, default=None
        Any object following the protocol of :func:`mtdlearn.basis.protocol.check_basis`;
        ``None`` means ``FourierBesselBasis(image_size)``.  Copied with
        :func:`sklearn.base.clone`, never modified.
    rotations : int or rotation grid, default=16
        Rotation grid used by ``score``, ``score_samples``, ``predict`` and
        ``predict_proba`` (the fit itself averages over continuous rotations).
    initializer : initializer object, default=None
        ``None`` means :class:`~mtdlearn.initializers.RandomInitializer`.
        The starting density is ``(L**2 / (2L-1)**2) * sum of rho over the
        non-empty shifts`` of the initializer's ``shift_probabilities``.
    n_init : int, default=1
        Number of starts; the lowest cost wins.
    noise_variance : float, default=None
        A float holds ``sigma**2`` fixed; ``None`` estimates it.
    max_iter : int, default=1000
        L-BFGS-B iterations at most; ``0`` returns the initialization.
    tol : float, default=1e-14
        L-BFGS-B's ``ftol`` and ``gtol`` on the scaled cost.
    shift_radius : float, "auto" or None, default="auto"
        The third moment keeps the pairs of the forward shifts ``s`` with
        ``|s| <= shift_radius`` (:func:`~mtdlearn.autocorrelation.moments.third_order_shifts`);
        ``None`` keeps all ``L**4`` pairs.  ``"auto"`` keeps all of them up
        to ``L = 11`` (the paper's ``L = 5`` included) and uses ``L / 2``
        beyond, where the full third moment is too slow (at ``L = 21``: about
        10 times faster to measure and per cost evaluation, with a similar
        error; :doc:`/design`, "Autocorrelation analysis").
    ctf : CTF or sequence of CTF, default=None
        Each measurement's contrast transfer function, as
        :class:`~mtdlearn.ApproxEMEstimator`'s: the model's copies in
        micrograph ``m`` are ``H_m F`` on the ``L x L`` box, and the fit
        matches the mean over the distinct formations (defocus groups:
        equal CTF and noise spectrum) of their micrographs' pooled, whitened
        autocorrelations
        (:func:`~mtdlearn.autocorrelation.moments.formed_autocorrelations`)
        with the mean of their model moments, whose cost grows with the
        number of distinct formations: each takes a table of ``K L**2 p``
        float64 numbers (``K = 3 nu_max + 1`` angles, ``p`` functions), and
        more than ``working_memory`` of them is an error (group the
        micrographs with :func:`~mtdlearn.imaging.groups.defocus_groups`).  The
        moments see the whole filtered copy, the particle and its CTF's
        spread, so the box must hold both: give a ``basis`` whose disk holds
        the particle in a larger box, for example
        ``FourierBesselBasis(L, radius=...)`` with ``L`` at least the
        particle's diameter plus 4.  Measured (:doc:`/results`, "Micrographs
        from a microscope"; a particle in a disk of diameter 11, defocus
        0.8 and 2.0 um, 3 A/px, SNR 50): error 1.06-1.09 in a box of 11,
        0.44 in 15 and 0.38 in 19, against 0.16-0.26 without CTFs; six
        times the data did not lower it, so the rest is not the noise.  The
        default start is then :class:`~mtdlearn.initializers.EnergyStart`
        (through a CTF the data's mean does not show the copies' mass).
        Measurements in memory only (not Dask arrays).  ``None``: the
        paper's model, bit for bit.
    noise : {"white", "colored", "auto"}, RadialPSD or sequence of RadialPSD, default="white"
        The noise model, as :class:`~mtdlearn.ApproxEMEstimator`'s: each
        micrograph is whitened by its spectrum before its moments are
        measured, and its copies' model through the same filter.
    n_components : int, default=1
        Number of kinds of particle ``C`` (as
        :class:`~mtdlearn.ApproxEMEstimator`'s).  The moments of a mixture
        are the abundance-weighted sums of the kinds' moments (kind ``c``
        at the density ``w_c gamma``); the fit matches them with ``C``
        images and their abundances ``weights_`` jointly, the abundances
        through a softmax, so that they stay on the simplex.  Each start
        calls the initializer ``C`` times with its generator (``C``
        independent random images with the default one), with equal
        abundances and the harmonic mean of the ``C`` densities (which
        keeps the first two moments the draws matched).  A start with one
        row per kind (``FixedInitializer``) is used as it is; ``C`` equal
        images (a deterministic initializer) are each moved by 0.3 of
        their norm in a random direction, since equal kinds would stay
        equal.  ``1`` is the one-image model, bit for bit.  Not with a
        checkpoint.

        What the moments identify: the kinds' labels are interchangeable
        (rows of ``coef_`` and ``weights_`` permuted together fit alike),
        each kind only up to its own rotation (and its own translation
        for a particle smaller than its box), and the abundances trade off
        with the images.  Measured at the paper's ``L = 5`` (10
        functions), two random kinds, equal abundances: the Jacobian of
        the moments at the truth has rank 21 of the 23 parameters (the
        two rotations are the null space), so the mixture is locally
        identifiable, but its smallest non-zero singular value (relative
        to the largest) is 25 times smaller than one kind's.  From exact
        moments, random starts reach the truth with ``tol=1e-22`` (4 of
        4); with the default ``1e-14`` they stop early, along a flat
        valley in which the abundances and images trade off (the best of
        10 starts 1-2 % away, others up to 40 %).  From measured
        moments (SNR 10, density 0.08) of 1000**2 pixels the fit's cost is
        below the truth's, and both fitted kinds lie nearest the same
        true kind (errors 0.18 and 0.38, abundances 0.8 and 0.2); at
        2000**2 and 4000**2 it puts 95-98 % on one kind.  At such sizes
        the moments do not separate the kinds: fit the mixture with the
        EM, which reached both kinds within 1 % on the same data from
        this start or its own.
    working_memory : float, default=None
        Budget in MiB for the buffers of the measurement pass.
    n_jobs : int, default=None
        Threads for the measurement pass and the starts (``None`` is 1);
        one start uses them for its cost too, when the third moment keeps
        a subset of shifts (``shift_radius``; by default beyond ``L = 11``).
        Results do not depend on it.
    random_state : int, Generator, RandomState or None, default=None
        Seeds the initializations (one seed per start is drawn up front, so
        results do not depend on ``n_jobs``).
    verbose : int, default=0
        ``>= 1`` prints one line per start.

    Attributes
    ----------
    coef_ : ndarray of shape (n_functions,) or (n_components, n_functions)
        Estimated coefficients ``alpha`` of the best start; one row per
        kind when ``n_components > 1``.
    image_ : ndarray of shape (L, L) or (n_components, L, L)
        Estimated image(s), ``basis_.evaluate(coef_)``.
    density_ : float
        Fitted ``gamma``: the copies of all kinds; kind ``c``'s is
        ``weights_[c] * density_``.
    shift_probabilities_ : ndarray of shape (2L, 2L)
        Derived from ``gamma``: each of the ``(2L-1)**2`` non-empty shifts
        has probability ``gamma / L**2``, the empty shifts share the rest.
    noise_variance_ : float
        Estimated ``sigma**2``, or the fixed ``noise_variance``.
    autocorrelations_ : tuple (a1, a2, a3)
        The measured autocorrelations (see :func:`~mtdlearn.autocorrelation.moments.measurement_autocorrelations`);
        ``a3`` over the pairs of the kept shifts when ``shift_radius_`` is
        not ``None``.
    shift_radius_ : float or None
        The radius used (``"auto"`` resolved); ``None`` for all shifts.
    cost_ : float
        Final value of the least-squares cost.
    n_iter_ : int
        L-BFGS-B iterations of the best start.
    converged_ : bool
        Whether L-BFGS-B reported success for the best start, and did not end
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
        ``tol`` as a float (L-BFGS-B's ``ftol`` and ``gtol``).
    n_patches_ : int
        Number of ``L x L`` patches ``N_d`` in the fitted measurements (the
        unit of :meth:`score`).
    n_parameters_ : int
        Free parameters of the model (``n_components * n_functions``, the
        density, ``n_components - 1`` abundances, and ``sigma**2`` when it
        is estimated), as :meth:`bic` and :meth:`aic` count them.
    weights_ : ndarray of shape (n_components,)
        The kinds' abundances, on the simplex (``[1.0]`` for one image, as
        ``ApproxEMEstimator.weights_``).
    noise_psds_ : list of RadialPSD or None
        The spectrum each measurement was whitened by (``None`` entries:
        white), or ``None`` when every measurement's noise was white.
    basis_ : basis object
        The copy of ``basis`` (or the default basis) used by the fit.
    rotations_ : rotation grid
        The rotation grid of ``score`` and ``predict``.
    angles_ : ndarray of shape (K,)
        Its angles in radians.

    See Also
    --------
    ApproxEMEstimator : The approximate EM, more accurate at the same data.
    mtdlearn.AutocorrelationInitializer : Starts the EM from this estimate.

    Examples
    --------
    >>> from mtdlearn import AutocorrelationEstimator, FourierBesselBasis
    >>> from mtdlearn import make_target, make_measurement, relative_error
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 500, snr=5, random_state=0)
    >>> ac = AutocorrelationEstimator(5, basis=basis, n_init=3, random_state=0).fit(X)
    >>> ac.coef_.shape
    (10,)
    """

    def __init__(self, image_size, *, basis=None, rotations=16, initializer=None, n_init=1,
                 noise_variance=None, max_iter=1000, tol=1e-14, shift_radius="auto",
                 ctf=None, noise="white", n_components=1, working_memory=None, n_jobs=None,
                 random_state=None, verbose=0):
        self.image_size = image_size
        self.basis = basis
        self.rotations = rotations
        self.initializer = initializer
        self.n_init = n_init
        self.noise_variance = noise_variance
        self.max_iter = max_iter
        self.tol = tol
        self.shift_radius = shift_radius
        self.ctf = ctf
        self.noise = noise
        self.n_components = n_components
        self.working_memory = working_memory
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    _verbose_name = "Autocorrelation"

    _reads_margins = True  # the autocorrelations use every pixel

    def _check_params(self):
        _check_shift_radius(self.shift_radius, self.image_size)
        check_ctf(self.ctf)
        check_noise(self.noise)
        check_int(self.n_components, "n_components", minimum=1)

    def _n_parameters(self):
        # C images, the density, C - 1 abundances, sigma**2
        C = self.n_components
        return C * self.basis_.n_functions + 1 + (C - 1) + (self.noise_variance is None)

    def _coef_shapes(self):
        p, C = self.basis_.n_functions, self.n_components
        return [(p,)] if C == 1 else [(C, p)]

    def _check_initializer(self):
        if self.initializer is None and self.ctf is not None:   # the mean is not the mass
            init = EnergyStart()
        else:
            init = super()._check_initializer()
        return init if self.n_components == 1 else _MixtureStart(init, self.n_components)

    def _checkpoint_unsupported(self):
        if self.n_components > 1:
            return "with n_components > 1 (the abundances are not saved yet)"
        return None

    def _scale_bounds(self, data):
        # third moments summed over all the pixels
        return _scale_bounds(3, sum(M.size for M in data.measurements))

    def _prepare(self, data):
        # computed once per data set: shared with an EM's other starts too
        L = self.basis_.image_size
        radius = _check_shift_radius(self.shift_radius, L)
        self._formations, self.noise_psds_ = measurement_formations(data, self.ctf, self.noise)
        if self._formations is None:
            return data.memoize(measurement_autocorrelations, L,
                                working_memory=self.working_memory, n_jobs=self.n_jobs,
                                shift_radius=radius)
        if data.distributed:
            raise ValueError("AutocorrelationEstimator with a ctf or colored noise takes "
                             "measurements in memory, not Dask arrays (yet)")
        # the model: each distinct formation (defocus group) once, a table each
        n, p = len(distinct_formations(self._formations)), self.basis_.n_functions
        table = n * default_n_angles(self.basis_) * L * L * p * 8 / 2**20
        budget = resolve_working_memory(self.working_memory)
        if table > budget:
            raise ValueError(f"ctf: {n} distinct CTFs (with their noise spectra) need "
                             f"{table:.0f} MiB of model tables, above working_memory="
                             f"{budget:g} MiB; group the micrographs by defocus "
                             "(mtdlearn.imaging.groups.defocus_groups) or raise "
                             "working_memory")
        return data.memoize(formed_autocorrelations, L, tuple(self._formations),
                            working_memory=self.working_memory, n_jobs=self.n_jobs,
                            shift_radius=radius)

    def _start_extra(self, data, objective, history):
        extra = {"cost_": -objective,
                 "shift_radius_": _check_shift_radius(self.shift_radius, self.image_size)}
        if data is not None:
            extra["autocorrelations_"] = data
        return extra

    def _run_start(self, data, state, seed, n_jobs, resume=None, callback=None):
        # one quasi-Newton solve on L**4 numbers: a start runs in one piece,
        # so a checkpoint holds finished starts only (callback is never called)
        basis = self.basis_
        L = basis.image_size
        density0 = shift_probabilities_to_density(state.shift_probabilities)
        fixed = None if self.noise_variance is None else float(self.noise_variance)
        radius = _check_shift_radius(self.shift_radius, L)
        mixture = self.n_components > 1
        formation = (None if self._formations is None     # each defocus group once
                     else list(distinct_formations(self._formations)))
        weights = state.weights   # a mixture's (equal unless the start gave them; _check_state)
        if self.max_iter == 0:
            sigma2 = fixed if fixed is not None else state.noise_variance
            cost = (mixture_cost_and_grad(density0, state.coef, weights, sigma2, data, basis,
                                          shift_radius=radius, formation=formation)[0]
                    if mixture else
                    autocorrelation_cost_and_grad(density0, state.coef, sigma2, data, basis,
                                                  shift_radius=radius, formation=formation)[0])
            res = OptimizeResult(density=density0, coef=np.array(state.coef, dtype=float),
                                 noise_variance=sigma2, cost=cost, n_iter=0, converged=False,
                                 weights=weights)
        else:
            res = fit_autocorrelations(
                data, basis, density0, state.coef, noise_variance=fixed,
                noise_variance0=None if fixed is not None else state.noise_variance,
                max_iter=self.max_iter, tol=self.tol_, shift_radius=radius,
                weights0=weights, n_jobs=n_jobs, formation=formation)
        if self.verbose:
            print(f"[Autocorrelation] start seed {seed}: cost {res.cost:.6e}, "
                  f"{res.n_iter} iterations, density {res.density:.4f}")
        return {
            "coef": np.asarray(res.coef, dtype=np.float64),
            "shift_probabilities": density_to_shift_probabilities(res.density, L),
            # as the EM's: sigma^2 -> 0 on noise-free data would overflow score/predict
            "noise_variance": max(float(res.noise_variance),
                                  noise_variance_floor(data[1][0, 0])),
            "objective": -float(res.cost), "n_iter": int(res.n_iter),
            "converged": bool(res.converged), "history": [],
            "weights": res.weights if mixture else None,
            "extra": self._start_extra(data, -float(res.cost), []),
        }


class _MixtureStart:
    """The start of ``n_components`` kinds from an initializer of one image.

    The initializer is called once per kind with the same generator (so a
    random initializer draws independent images); its densities ``gamma_c``
    give the start's total density, their harmonic mean: when each
    ``gamma_c`` matches the data's first two moments with its image (as
    :class:`~mtdlearn.initializers.RandomInitializer`'s do), so does the
    mixture with equal abundances.  Kinds that came out equal (a
    deterministic initializer) would stay equal in the fit, so each then
    moves by ``0.3`` of its norm in its own random direction.  A start with
    one row per kind already is returned as it is.
    """

    def __init__(self, initializer, n_components):
        self.initializer = initializer
        self.n_components = n_components

    def initialize(self, measurements, basis, noise_variance, random_state):
        first = self.initializer.initialize(measurements, basis, noise_variance, random_state)
        if np.ndim(first.coef) == 2:
            return first
        C = self.n_components
        states = [first] + [self.initializer.initialize(measurements, basis, noise_variance,
                                                        random_state) for _ in range(C - 1)]
        coef = np.stack([np.asarray(st.coef, dtype=np.float64) for st in states])
        if np.all(coef == coef[0]):
            coef = split_image(coef[0], C, random_state)
        densities = np.array([shift_probabilities_to_density(st.shift_probabilities)
                              for st in states])
        density = C / np.sum(1.0 / densities) if np.all(densities > 0) else 0.0
        return InitialState(coef, density_to_shift_probabilities(density, basis.image_size),
                            first.noise_variance, np.full(C, 1.0 / C))


class AutocorrelationInitializer(_ParamsMixin):
    """Start EM from an autocorrelation-analysis estimate (the paper's Fig. 2 protocol).

    Runs :class:`~mtdlearn.AutocorrelationEstimator` on the same measurements
    and hands its ``coef_`` and ``shift_probabilities_`` (and
    ``noise_variance_`` when estimated, ``weights_`` for several kinds) to
    the EM.  The measured
    autocorrelations are computed once per EM fit and shared by its starts.
    A moment fit that does not converge in ``max_iter`` iterations, or ends
    degenerate, warns (``ConvergenceWarning``) that it is the EM's start; the
    EM goes on from its estimate.

    Parameters
    ----------
    n_init : int, default=1
        Random starts of the autocorrelation fit (lowest cost wins).
    max_iter : int, default=1000
        Iterations of its quasi-Newton solver.
    shift_radius : float, "auto" or None, default="auto"
        The third moment's shifts; see
        :class:`~mtdlearn.AutocorrelationEstimator` (``"auto"`` keeps all of
        them up to ``L = 11``).
    n_components : int, default=1
        Kinds of particle fitted (see
        :class:`~mtdlearn.AutocorrelationEstimator`).  With ``C > 1`` the
        start has one row per kind and their abundances, which
        ``ApproxEMEstimator(n_components=C)`` takes as they are (it splits
        a one-image start).
    ctf : CTF or sequence of CTF, default=None
        The micrographs' CTFs (see
        :class:`~mtdlearn.AutocorrelationEstimator`).  An
        :class:`~mtdlearn.ApproxEMEstimator` with a ``ctf`` or a noise model
        other than white gives its own to an initializer left at
        ``ctf=None, noise="white"`` (:meth:`through`).
    noise : {"white", "colored", "auto"}, RadialPSD or sequence of RadialPSD, default="white"
        The noise model (see :class:`~mtdlearn.AutocorrelationEstimator`).
    n_jobs : int, default=None
        Threads of the autocorrelation analysis (its ``n_jobs``: the
        measurement pass, and the cost beyond ``L = 11``); ``None`` is 1.
        Results do not depend on it.

    Examples
    --------
    >>> from mtdlearn import ApproxEMEstimator, AutocorrelationInitializer
    >>> est = ApproxEMEstimator(5, initializer=AutocorrelationInitializer(n_init=3))
    >>> est.initializer
    AutocorrelationInitializer(n_init=3, max_iter=1000, shift_radius='auto', n_components=1, ctf=None, noise='white', n_jobs=None)
    """

    _param_names = ("n_init", "max_iter", "shift_radius", "n_components", "ctf", "noise",
                    "n_jobs")

    def __init__(self, n_init=1, max_iter=1000, shift_radius="auto", n_components=1,
                 ctf=None, noise="white", n_jobs=None):
        self.n_init = n_init
        self.max_iter = max_iter
        self.shift_radius = shift_radius
        self.n_components = n_components
        self.ctf = ctf
        self.noise = noise
        self.n_jobs = n_jobs

    def through(self, ctf, noise):
        """This start seen through an estimator's ``ctf`` and ``noise``.

        Parameters
        ----------
        ctf : CTF, sequence of CTF or None
            The estimator's CTFs.
        noise : str, RadialPSD or sequence of RadialPSD
            The estimator's noise model.

        Returns
        -------
        initializer : AutocorrelationInitializer
            A copy with the estimator's ``ctf`` and ``noise`` when this one
            has the defaults (``ctf=None, noise="white"``) and the estimator
            does not; otherwise ``self``.

        Examples
        --------
        >>> from mtdlearn.autocorrelation.estimator import AutocorrelationInitializer
        >>> AutocorrelationInitializer().through(None, "colored").noise
        'colored'
        """
        if not is_plain(self.ctf, self.noise) or is_plain(ctf, noise):
            return self
        return type(self)(**{**self.get_params(), "ctf": ctf, "noise": noise})

    def initialize(self, measurements, basis, noise_variance, random_state):
        """Fit autocorrelation analysis and return its estimate.

        Parameters
        ----------
        measurements : PatchData or list of ndarray of shape (N1, N2)
            The estimator's patch source (its measured autocorrelations are
            computed once and shared), or validated 2-D measurements; only read.
        basis : basis object
            The estimator's basis, used by the autocorrelation fit too.
        noise_variance : float or None
            The estimator's fixed ``sigma**2``, or ``None`` to estimate it
            by autocorrelation analysis as well.
        random_state : numpy.random.Generator
            Draws the seed of the autocorrelation fit.

        Returns
        -------
        state : InitialState
            The fitted ``coef_``, ``shift_probabilities_`` and
            ``noise_variance_`` of :class:`~mtdlearn.AutocorrelationEstimator`,
            and its ``weights_`` when ``n_components > 1`` (``None``
            otherwise).

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis, make_measurement, make_target
        >>> from mtdlearn.autocorrelation.estimator import AutocorrelationInitializer
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 200,
        ...                             snr=5, random_state=0)
        >>> state = AutocorrelationInitializer().initialize(
        ...     [X], basis, truth.noise_variance, np.random.default_rng(0))
        >>> state.coef.shape, state.shift_probabilities.shape
        ((10,), (10, 10))
        """
        _check_initialize_args(measurements, basis, noise_variance, random_state)
        seed = int(random_state.integers(np.iinfo(np.int32).max))
        est = AutocorrelationEstimator(basis.image_size, basis=basis, n_init=self.n_init,
                                       noise_variance=noise_variance, max_iter=self.max_iter,
                                       shift_radius=self.shift_radius, ctf=self.ctf,
                                       noise=self.noise, n_components=self.n_components,
                                       n_jobs=self.n_jobs, random_state=seed)
        # the moment fit's own warnings name it and advise on it as if it were
        # the user's fit: say that it is the EM's start, and what to change
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est.fit(measurements)
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                warnings.warn(self._start_message(est), ConvergenceWarning, stacklevel=2)
            else:   # as it was, from where it was (as em.residual passes them on)
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return InitialState(est.coef_.copy(), est.shift_probabilities_.copy(),
                            float(est.noise_variance_),
                            est.weights_.copy() if est.coef_.ndim == 2 else None)

    def _start_message(self, est):
        """The warning for a start whose moment fit did not converge or degenerated."""
        what = (f"ended in a degenerate state ({est.degenerate_})" if est.degenerate_ is not None
                else f"did not converge in max_iter={self.max_iter} iterations")
        return (f"{type(self).__name__}: the autocorrelation fit of the EM's start {what}; "
                "the EM starts from its estimate all the same.  If the EM's result is poor, "
                "raise the initializer's max_iter or n_init, or give the EM another "
                "initializer.")
