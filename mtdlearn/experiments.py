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

from .autocorrelation import AutocorrelationEstimator
from .basis import FourierBesselBasis
from .datasets import make_measurement, make_target
from .em import ApproxEMEstimator
from .initializers import FixedInitializer, RandomInitializer
from .metrics import relative_error

__all__ = ["run_trial", "run_trials"]


def run_trial(seed, size, snr, rotations=16, em_init="autocorrelation", n_init=1,
              noise_known=True, max_iter=200, tol=1e-6, density=0.04, image_size=5,
              n_coefficients=10, fit_em=True, n_jobs=None):
    """One trial of the paper's protocol.

    Parameters
    ----------
    seed : int
        Seeds the target, the measurement and the initializations.
    size : int
        Measurement side ``N``.
    snr : float
        Signal-to-noise ratio ``||F||**2 / (L**2 sigma**2)``.
    rotations : int, default=16
        ``K`` of the EM.
    em_init : {"autocorrelation", "random"}, default="autocorrelation"
        Start the EM from the autocorrelation estimate (the paper's Fig. 2)
        or from ``n_init`` random starts (Fig. 3-4).
    n_init : int, default=1
        Random starts of autocorrelation analysis (and of the EM when
        ``em_init="random"``); initial density 0.03 as in the paper.
    noise_known : bool, default=True
        Hold ``sigma**2`` at its true value (the paper's setting) or estimate it.
    max_iter, tol : int, float
        EM stopping rule.
    density, image_size, n_coefficients : float, int, int
        The paper's 0.04, 5 and 10 by default.
    fit_em : bool, default=True
        ``False`` runs autocorrelation analysis only.
    n_jobs : int, default=None
        Threads inside the estimators.

    Returns
    -------
    result : dict
        ``seed``, ``size``, ``snr``, ``rotations``, ``error_ac``,
        ``time_ac``, and with ``fit_em`` ``error_em``, ``time_em``,
        ``n_iter_em``, ``converged_em``; ``max_rss_mb`` of the process.
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
                                   tol=tol, n_jobs=n_jobs, random_state=seed).fit(X)
        out["time_em"] = time.perf_counter() - t0
        out["error_em"] = relative_error(coef, em.coef_, basis)
        out["n_iter_em"] = em.n_iter_
        out["converged_em"] = em.converged_
        if em_init == "autocorrelation":
            out["time_em"] += out["time_ac"]  # the EM's start is part of its cost
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_trials(settings, n_jobs=-1, verbose=0):
    """Run trials in parallel processes (joblib), one per dict of
    :func:`run_trial` keyword arguments; results come back in order."""
    return Parallel(n_jobs=n_jobs, verbose=verbose)(delayed(run_trial)(**kw) for kw in settings)
