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
3. it counts the data's patches less likely than the ``level`` quantile of
   the simulated ones (``level`` 0.01: less likely than 99 % of the
   patches the model makes).

If the model explains the data, that share is ``level`` within its noise.
The count of ``n`` patches below an estimated quantile has variance
``n q (1 - q) (1 + n / n_sim)`` (binomial, plus the quantile's own error),
and ``z`` is the excess in those standard deviations.  The check fails
when ``z > 5`` (:data:`Z_MAX`): a copy straddles up to four patches, so
the patches are not independent and the null spread of ``z`` is somewhat
wider than 1; 5 leaves room for that.  Something in the data the model has
no hypothesis for (a contaminant, a carbon edge, a background gradient, a
second kind of particle) makes patches less likely than the model's own,
and the check names them (``outliers``).  It looks at each patch's
likelihood, not at correlations between pixels: colored noise fitted as
white (4x more power at low frequencies than at high, L = 5, SNR 5) passed
it.

Measured (``benchmarks/bench_robustness.py --table contaminant --remedies``,
the paper's target at L = 5, SNR 5, N = 1024, seeds 0 and 1): the clean
fits' shares were 0.97-0.98 % (z -0.4 and -0.2); every contaminated fit
failed, blobs in 2-10 % of the empty patches at 1.58-3.18 % (z 6.8-25.5)
and a carbon edge at 3.13-3.16 % (z 25); every fit of the remedies
(a junk kind, :func:`~mtdlearn.imaging.background.subtract_background`)
passed (z -2.4 to 0.4).  At the true parameters through two CTFs (L = 11,
16200 patches) z was -0.5 to 0.1 over three simulation seeds.  The check is
one-sided: a model whose own patches are *less* likely than the data's is
not flagged.  Wrong optima of CTF-aware fits from random starts (error
2.4-2.9, L = 11, 1800 patches) left no data patch below the threshold (z
-3.1), but the fits that reached the right optimum read -2.2 and -2.4 on
the same data, so the check does not tell them apart.
"""

import math
import warnings
from typing import NamedTuple

import numpy as np

from .._validation import check_int, check_random_generator, check_real

__all__ = ["FitCheck", "check_fit", "Z_MAX"]

Z_MAX = 5.0     # the excess, in standard deviations, beyond which the check fails


class FitCheck(NamedTuple):
    """The result of :func:`check_fit`.

    Parameters
    ----------
    level : float
        The quantile ``q`` of the simulated patches' log-likelihood taken as
        the threshold.
    threshold : float
        That quantile: a patch less likely than this is an outlier.
    fraction : float
        The share of the data's patches below ``threshold``; ``level`` when
        the model explains the data.
    ratio : float
        ``fraction / level``.
    z : float
        The excess of the count over ``level`` in standard deviations
        (module docstring).
    passed : bool
        ``z <= Z_MAX``.
    outliers : ndarray of bool, shape (N_d,)
        Which patches are below ``threshold``, in the order of
        :meth:`~mtdlearn.BaseMTDEstimator.score_samples` (row-major,
        measurements in order).  It holds about ``level * N_d`` patches by
        chance.
    n_patches : int
        The data's patches.
    n_simulated : int
        The simulated patches.

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

    level: float
    threshold: float
    fraction: float
    ratio: float
    z: float
    passed: bool
    outliers: np.ndarray
    n_patches: int
    n_simulated: int

    def summary(self):
        """One line: the share, the expected share, and the verdict.

        Returns
        -------
        text : str
            For a report or a warning.
        """
        verdict = ("the model explains the data" if self.passed else
                   "the data hold something the model does not explain (contaminants, "
                   "carbon, a background, another kind of particle)")
        return (f"{100 * self.fraction:.2f} % of the {self.n_patches} patches are less "
                f"likely than {100 * (1 - self.level):g} % of the model's own "
                f"(expected {100 * self.level:g} %; z = {self.z:.1f}): {verdict}")


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
        The share of outliers, its ``z``, whether the check passed, and
        which patches are outliers.

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

    A contaminant in a few patches does not fail the check (1 % of the
    patches are below the threshold by chance), but it is among the
    ``outliers``:

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
    n = data.size
    fraction = float(outliers.mean())
    sd = math.sqrt(n * level * (1 - level) * (1 + n / model.size))
    z = (float(outliers.sum()) - level * n) / sd
    return FitCheck(level=level, threshold=threshold, fraction=fraction,
                    ratio=fraction / level, z=z, passed=bool(z <= Z_MAX), outliers=outliers,
                    n_patches=int(n), n_simulated=int(model.size))
