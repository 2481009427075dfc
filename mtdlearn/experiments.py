"""The paper's experiments (§3) as functions: one trial, and many in parallel.

Used by the gallery examples; each trial simulates a measurement at the
paper's settings (L = 5, 10 coefficients, density 0.04, target pixels i.i.d.
U[0, 1] scaled to Frobenius norm 10), fits autocorrelation analysis and the
approximate EM, and reports rotation-aligned errors (eq. 19) and times.
"""

import resource
import time
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning

from .autocorrelation.estimator import AutocorrelationEstimator
from .basis.fourier_bessel import FourierBesselBasis
from .data.simulate import make_measurement, make_target
from .em.estimator import ApproxEMEstimator
from .initializers import FixedInitializer, RandomInitializer
from .metrics import relative_error

__all__ = ["run_trial", "run_trials"]


def run_trial(seed, size, snr, rotations=16, em_init="autocorrelation", n_init=1,
              noise_known=True, max_iter=200, tol=1e-6, density=0.04, image_size=5,
              n_coefficients=10, fit_em=True, n_jobs=None):
    """Run one trial of the paper's protocol (§3).

    Simulates a target (:func:`~mtdlearn.make_target`) and a measurement
    (:func:`~mtdlearn.make_measurement`) from ``seed``, fits
    :class:`~mtdlearn.AutocorrelationEstimator` (initial density 0.03) and,
    with ``fit_em``, :class:`~mtdlearn.ApproxEMEstimator`, and measures the
    rotation-aligned errors of eq. (19).  The EM's ``ConvergenceWarning`` is
    silenced (``converged_em`` reports it).

    Parameters
    ----------
    seed : int
        Seeds the target, the measurement and the initializations.
    size : int
        Measurement side ``N``.
    snr : float
        Signal-to-noise ratio ``||F||**2 / (L**2 sigma**2)``.
    rotations : int, default=16
        ``K`` of the EM, kept as given (``refinement=None``: the paper's
        grid; the default ``refinement="auto"`` would double it where the
        data resolve the angle, e.g. ``K = 8`` at SNR 50).
    em_init : {"autocorrelation", "random"}, default="autocorrelation"
        Start the EM from the autocorrelation estimate (the paper's Fig. 2)
        or from ``n_init`` random starts (Fig. 3-4).
    n_init : int, default=1
        Random starts of autocorrelation analysis (and of the EM when
        ``em_init="random"``); initial density 0.03 as in the paper.
    noise_known : bool, default=True
        Hold ``sigma**2`` at its true value (the paper's setting) or estimate it.
    max_iter : int, default=200
        Maximum number of EM iterations.
    tol : float, default=1e-6
        EM stopping tolerance on the gain of the mean log-likelihood.
    density : float, default=0.04
        Density ``gamma`` of the simulated measurement (the paper's 0.04).
    image_size : int, default=5
        ``L`` (the paper's 5).
    n_coefficients : int, default=10
        Basis functions kept (the paper's 10).
    fit_em : bool, default=True
        ``False`` runs autocorrelation analysis only.
    n_jobs : int, default=None
        Threads inside the estimators.

    Returns
    -------
    result : dict
        ``seed``, ``size``, ``snr``, ``rotations``, ``error_ac``,
        ``time_ac``, and with ``fit_em`` ``error_em``, ``time_em`` (including
        the autocorrelation start when ``em_init="autocorrelation"``),
        ``time_per_iteration_em`` (EM only), ``n_iter_em``, ``converged_em``;
        ``max_rss_mb`` of the process.
        With ``em_init="autocorrelation"``, ``time_em`` includes
        ``time_ac`` (the EM's start is part of its cost).

    See Also
    --------
    run_trials : Many trials in parallel.

    Examples
    --------
    >>> from mtdlearn.experiments import run_trial
    >>> result = run_trial(0, 150, snr=50, rotations=4)
    >>> sorted(result)
    ['converged_em', 'error_ac', 'error_em', 'max_rss_mb', 'n_iter_em', 'rotations',
     'seed', 'size', 'snr', 'time_ac', 'time_em', 'time_per_iteration_em']
    """
    basis = FourierBesselBasis(image_size, n_coefficients=n_coefficients)
    rng = np.random.default_rng(seed)
    coef = make_target(basis, random_state=rng)
    X, truth = make_measurement(coef, basis, size, density=density, snr=snr, random_state=rng)
    sigma2 = truth.noise_variance if noise_known else None
    out = {"seed": seed, "size": size, "snr": snr, "rotations": rotations}
    t0 = time.perf_counter()
    ac = AutocorrelationEstimator(image_size, basis=basis, n_init=n_init, noise_variance=sigma2,
                                  initializer=RandomInitializer(density=0.03), n_jobs=n_jobs,
                                  random_state=seed).fit(X)
    out["time_ac"] = time.perf_counter() - t0
    out["error_ac"] = relative_error(coef, ac.coef_, basis)
    if fit_em:
        if em_init == "autocorrelation":
            init, starts = FixedInitializer(ac.coef_, ac.shift_probabilities_), 1
        elif em_init == "random":
            init, starts = RandomInitializer(density=0.03), n_init
        else:
            raise ValueError(f"em_init must be 'autocorrelation' or 'random', got {em_init!r}")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            em = ApproxEMEstimator(image_size, basis=basis, rotations=rotations, initializer=init,
                                   n_init=starts, noise_variance=sigma2, max_iter=max_iter,
                                   tol=tol, refinement=None, n_jobs=n_jobs,
                                   random_state=seed).fit(X)
        out["time_em"] = time.perf_counter() - t0
        # one E-step per iteration plus the initial one
        out["time_per_iteration_em"] = out["time_em"] / (em.n_iter_ + 1)
        out["error_em"] = relative_error(coef, em.coef_, basis)
        out["n_iter_em"] = em.n_iter_
        out["converged_em"] = em.converged_
        if em_init == "autocorrelation":
            out["time_em"] += out["time_ac"]  # the EM's start is part of its cost
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_trials(settings, n_jobs=-1, verbose=0):
    """Run trials in parallel processes (joblib), results in order.

    Parameters
    ----------
    settings : iterable of dict
        Keyword arguments of :func:`run_trial`, one dict per trial.
    n_jobs : int, default=-1
        Worker processes (joblib's convention: ``-1`` uses all CPUs, ``1``
        runs in this process).
    verbose : int, default=0
        Verbosity of joblib's progress messages.

    Returns
    -------
    results : list of dict
        The result of :func:`run_trial` for each setting, in order.

    Examples
    --------
    >>> from mtdlearn.experiments import run_trials
    >>> settings = [dict(seed=seed, size=100, snr=50, fit_em=False) for seed in (0, 1)]
    >>> results = run_trials(settings, n_jobs=1)
    >>> [r["seed"] for r in results]
    [0, 1]
    """
    return Parallel(n_jobs=n_jobs, verbose=verbose)(delayed(run_trial)(**kw) for kw in settings)
