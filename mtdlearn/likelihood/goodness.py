"""Does the fitted model explain the data?  A posterior predictive check of the patches.

The EM's own diagnostics (``converged_``, ``degenerate_``, the density and
the noise variance) say whether the fit reached a stable, non-degenerate
state of *its* model.  They do not say whether the data follow that model:
measured (``docs/results.rst``, "Robustness"), bright blobs in 2 % of the
empty patches made the estimate the blob (error 1.17 instead of 0.015) and
a carbon edge gave 0.49, and every one of those fits converged without a
warning.

:func:`check_fit` compares the data with the fitted model's own data:

1. it draws a synthetic measurement from the fitted model
   (:meth:`~mtdlearn.BaseMTDEstimator.sample`: the same image,
   density, noise, and CTFs or noise spectra) of at least ``n_simulated``
   patches;
2. it scores every patch of both
   (:meth:`~mtdlearn.BaseMTDEstimator.score_samples`: the log-likelihood
   of eq. 5 under the fitted model);
3. it compares the two sets of scores: ``distance`` is the largest
   difference between their empirical distribution functions (the
   two-sample Kolmogorov-Smirnov statistic ``D``: the share of patches
   that would have to move for the data's scores to be distributed as the
   model's), ``statistic`` is ``D sqrt(n m / (n + m))`` for ``n`` data and
   ``m`` simulated patches, and ``p_value`` its asymptotic p-value
   (Kolmogorov's distribution, :data:`scipy.stats.kstwobign`).

If the model explains the data, both sets of scores come from one
distribution, and ``statistic`` follows Kolmogorov's distribution (mean
0.87).  The check fails when the difference is both significant and large:
``statistic > 3`` (p below 3e-8 for independent patches; a copy straddles
up to four patches, so they are not quite independent, and the fitted
parameters make the null smaller, not larger) *and* ``distance > 0.02``.
The second condition keeps a real micrograph's small misfits, which any
test detects once the patches number millions, from failing the check: it
fails when at least 2 % of the patches are distributed otherwise.  Either
direction counts: contaminants the image does not explain make patches
*less* likely than the model's own, and an image that became the
contaminant (a bright blob) makes the model's own patches spread more
than the data's.

``outliers`` names the data's patches less likely than the ``level``
quantile of the simulated ones (``level * n`` of them by chance): where to
look when the check fails because patches are unexplained.

Measured (``benchmarks/bench_robustness.py --table contaminant --remedies``;
``docs/results.rst``, "Robustness", table d): see there.  A first version
counted only the data's patches below the model's 1 % quantile; it missed
particle fits whose image had become the blob (the data were *more* likely
than the model's own: 0.22 % below), which this statistic flags.  The check
looks at each patch's likelihood, not at correlations between pixels:
colored noise fitted as white (4x more power at low frequencies than at
high, L = 5, SNR 5) passed the first version.
"""

import math
import warnings
from typing import NamedTuple

import numpy as np
from scipy import stats

from .._validation import check_int, check_random_generator, check_real

__all__ = ["FitCheck", "check_fit", "STATISTIC_MAX", "DISTANCE_MAX"]

STATISTIC_MAX = 3.0    # the scaled KS statistic beyond which a difference is significant
DISTANCE_MAX = 0.02    # the share of patches beyond which it is large


class FitCheck(NamedTuple):
    """The result of :func:`check_fit`.

    Parameters
    ----------
    distance : float
        The two-sample Kolmogorov-Smirnov statistic ``D`` between the data's
        and the simulated patches' log-likelihoods: the largest difference
        of their distribution functions, in (0, 1].
    statistic : float
        ``D sqrt(n m / (n + m))``: Kolmogorov-distributed (mean 0.87) when
        the model explains the data.
    p_value : float
        Its asymptotic p-value, for independent patches.
    passed : bool
        False when ``statistic > STATISTIC_MAX`` (3) and ``distance >
        DISTANCE_MAX`` (0.02): a significant and large difference.
    level : float
        The quantile of the simulated patches' log-likelihood below which a
        data patch is an outlier.
    threshold : float
        That quantile.
    outliers : ndarray of bool, shape (N_d,)
        Which of the data's patches are below ``threshold``, in the order
        of :meth:`~mtdlearn.BaseMTDEstimator.score_samples` (row-major,
        measurements in order); about ``level * N_d`` of them by chance.
    outlier_fraction : float
        Their share; ``level`` when the model explains the data.
    n_patches : int
        The data's patches, ``n``.
    n_simulated : int
        The simulated patches, ``m``.

    Examples
    --------
    >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
    ...                       make_target)
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 300,
    ...                             snr=10, random_state=0)
    >>> em = ApproxEMEstimator(5, basis=basis, random_state=0).fit(X)
    >>> result = em.check_fit(X)
    >>> result.passed, result.n_patches, result.outliers.shape
    (True, 3600, (3600,))
    """

    distance: float
    statistic: float
    p_value: float
    passed: bool
    level: float
    threshold: float
    outliers: np.ndarray
    outlier_fraction: float
    n_patches: int
    n_simulated: int

    def summary(self):
        """One line: the difference, its significance, and the verdict.

        Returns
        -------
        text : str
            For a report or a warning.
        """
        verdict = ("the model explains the data" if self.passed else
                   "the data hold something the model does not explain (contaminants, "
                   "carbon, a background, another kind of particle, a wrong optimum)")
        return (f"the patches' log-likelihoods differ from the model's own by "
                f"{100 * self.distance:.1f} % (Kolmogorov-Smirnov; statistic "
                f"{self.statistic:.2f}, p = {self.p_value:.2g}); "
                f"{100 * self.outlier_fraction:.2f} % of the {self.n_patches} patches are "
                f"less likely than {100 * (1 - self.level):g} % of the model's: {verdict}")


def check_fit(estimator, X, *, level=0.01, n_simulated=None, random_state=None):
    """Posterior predictive check of a fitted estimator on its data (module docstring).

    Parameters
    ----------
    estimator : fitted ApproxEMEstimator or AutocorrelationEstimator
        The fit to check: its ``score_samples`` and ``sample``.
    X : array-like or sequence
        The measurement(s), in any of the forms ``fit`` accepts: the data the
        estimator was fitted to, or held-out data.
    level : float, default=0.01
        The quantile of the simulated patches' log-likelihood below which a
        data patch is an outlier; in (0, 0.5].
    n_simulated : int, default=None
        The least number of simulated patches; ``level * n_simulated`` must
        be at least 10.  ``None``: as many as the data's patches, at least
        ``20 / level`` and at most 20000 (or ``20 / level``, if more).
    random_state : int, Generator, RandomState or None, default=None
        Seeds the simulation; ``None`` takes the estimator's
        ``random_state``.

    Returns
    -------
    result : FitCheck
        The distance between the data's and the model's scores, its
        significance, whether the check passed, and which patches are
        outliers.

    Examples
    --------
    >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.likelihood.goodness import check_fit
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 300,
    ...                             snr=10, random_state=0)
    >>> em = ApproxEMEstimator(5, basis=basis, random_state=0).fit(X)
    >>> check_fit(em, X, n_simulated=5000).passed
    True
    >>> X[:, 250:] += 1.0                         # a carbon edge over a sixth
    >>> check_fit(em, X, n_simulated=5000).passed
    False

    A contaminant in a few patches does not fail the check (it moves less
    than 2 % of the patches), but it is among the ``outliers``:

    >>> X[100:110, 100:110] += 20.0               # a bright square on 2 x 2 patches
    >>> result = check_fit(em, X, n_simulated=5000)
    >>> bool(result.outliers.reshape(60, 60)[20:22, 20:22].all())
    True
    """
    level = check_real(level, "level", minimum=0.0, maximum=0.5, strict=True)
    if n_simulated is not None:
        n_simulated = check_int(n_simulated, "n_simulated", minimum=1)
    if n_simulated is not None and level * n_simulated < 10:
        raise ValueError(f"level * n_simulated must be >= 10 (at least 10 simulated patches "
                         f"below the quantile), got {level} * {n_simulated}")
    if random_state is None:
        random_state = getattr(estimator, "random_state", None)
    rng = check_random_generator(random_state)
    data = np.asarray(estimator.score_samples(X))
    if n_simulated is None:
        least = math.ceil(20 / level)
        n_simulated = max(least, min(20000, data.size))
    n_measurements, _ = estimator._sample_formations(None)
    per = math.ceil(n_simulated / (1 if n_measurements is None else n_measurements))
    side = estimator.basis_.image_size * math.ceil(math.sqrt(per))
    with warnings.catch_warnings():
        # a fitted density near the placement's limit leaves a few copies out
        # of the draw: a shortfall of a few per cent moves the quantile little
        warnings.filterwarnings("ignore", message="could only place",
                                category=RuntimeWarning)
        simulated, truth = estimator.sample(side, random_state=rng)
    if truth.density < 0.9 * estimator.density_:
        warnings.warn(f"check_fit: the simulation placed copies at density "
                      f"{truth.density:.4g}, less than 0.9 of the fitted "
                      f"{estimator.density_:.4g} (the placement's limit): its patches hold "
                      f"fewer copies than the model's, so the check compares the data with "
                      f"another model", RuntimeWarning, stacklevel=2)
    model = np.asarray(estimator.score_samples(simulated))
    threshold = float(np.quantile(model, level))
    outliers = data < threshold
    n, m = data.size, model.size
    distance = float(stats.ks_2samp(data, model).statistic)
    statistic = distance * math.sqrt(n * m / (n + m))
    passed = not (statistic > STATISTIC_MAX and distance > DISTANCE_MAX)
    return FitCheck(distance=distance, statistic=statistic,
                    p_value=float(stats.kstwobign.sf(statistic)), passed=passed, level=level,
                    threshold=threshold, outliers=outliers,
                    outlier_fraction=float(outliers.mean()), n_patches=int(n),
                    n_simulated=int(m))
