"""Does the fitted model explain the data?  A posterior predictive check of the patches.

The EM's own diagnostics (``converged_``, ``degenerate_``, the density and
the noise variance) say whether the fit reached a stable, non-degenerate
state of *its* model.  They do not say whether the data follow that model:
measured (``docs/results.rst``, "Robustness"), bright blobs in 2 % of the
empty patches made the estimate the blob (error 1.17 instead of 0.015) and
a carbon edge gave 0.49, and every one of those fits converged without a
warning.

:func:`check_fit` compares the data with the fitted model's own data:

1. it draws at least ``n_simulated`` patches from the model the EM fitted,
   the approximate likelihood of eq. (5) (:func:`draw_patches`): each
   patch independently empty or a copy of the image in one hypothesis
   (kind, rotation, shift) with the fitted prior, seen as the fit sees it
   (through each micrograph's CTF and whitening), plus white noise of the
   fitted variance;
2. it scores every patch of both, as
   :meth:`~mtdlearn.BaseMTDEstimator.score_samples` does;
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
``docs/results.rst``, "Robustness", table d, for the paper's target and a
particle with blobs and a carbon edge).  Two earlier versions were measured
and replaced:

* counting only the data's patches below the model's 1 % quantile missed
  particle fits whose image had become the blob (the data were *more*
  likely than the model's own: 0.22 % below);
* drawing the reference from the simulator (whole micrographs, a CTF's
  spread beyond the box included) failed fits through CTFs that had found
  the right optimum: the demo's data read ``D`` 0.26, because the fitted
  parameters absorb what the patch model leaves out (the demo reads 0.023
  against the patch model).

Through CTFs the patch model is itself an approximation: a filtered copy
spreads beyond its box.  With the box the user guide recommends
(``particle_diameter + 4``) the demo reads ``D`` 0.023; with no room for
the spread (a 6-pixel particle in an 11-pixel box, two CTFs, 1800
patches), fits at the right optimum read 0.093 (statistic 2.9: passing at
that size, not with many more patches) and fits in wrong optima from random
starts 0.18-0.20 (statistic 5.5-6.1: failing).  The check looks at each
patch's likelihood, not at correlations between pixels: colored noise
fitted as white (4x more power at low frequencies than at high, L = 5,
SNR 5) passed the first version.
"""

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

from .._validation import check_int, check_random_generator, check_real
from ..data.patches import PatchData
from .posteriors import estep_per_patch

__all__ = ["FitCheck", "check_fit", "draw_patches", "STATISTIC_MAX", "DISTANCE_MAX"]

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
        The fit to check: its per-patch model (as ``score_samples`` uses it)
        and its fitted prior.
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
    parts, options = estimator._patch_model(X)
    data = [estep_per_patch(d, model, **options)[0] for _, d, model in parts]
    total = sum(x.size for x in data)
    if n_simulated is None:
        n_simulated = max(math.ceil(20 / level), min(20000, total))
    model = []
    for (_, _, group), scores in zip(parts, data):   # each group's share of the draws
        drawn = draw_patches(estimator, group, math.ceil(n_simulated * scores.size / total),
                             rng)
        model.append(estep_per_patch(drawn, group, **options)[0])
    data, model = np.concatenate(data), np.concatenate(model)
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


def draw_patches(estimator, model, n, rng):
    """At least ``n`` patches (a square mosaic of them) drawn from the patch model.

    Each patch independently: the empty hypothesis or a hypothesis ``h``
    (kind, rotation, shift) with the fitted prior (eq. 12), its template
    ``T_h`` as ``model`` forms it (through a group's CTF and whitening),
    plus white noise of variance ``model.noise_variance``: the distribution
    whose likelihood (eq. 5) the EM maximized.

    Parameters
    ----------
    estimator : fitted estimator
        Its ``coef_``, ``shift_probabilities_`` and abundances.
    model : PatchModel or FFTPatchModel
        A per-patch model of it (:func:`~mtdlearn.likelihood.posteriors.build_per_patch_model`),
        whose ``hypotheses`` form the templates and whose ``noise_variance``
        is the noise's.
    n : int
        The least number of patches.
    rng : numpy.random.Generator
        The draws' generator.

    Returns
    -------
    patches : PatchData
        One measurement tiled by the ``ceil(sqrt(n))**2`` drawn patches.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.likelihood.goodness import draw_patches
    >>> from mtdlearn.likelihood.posteriors import build_per_patch_model
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> X, _ = make_measurement(make_target(basis, random_state=0), basis, 200, snr=10,
    ...                         random_state=0)
    >>> em = ApproxEMEstimator(5, basis=basis, random_state=0).fit(X)
    >>> model = build_per_patch_model(em.coef_, em.shift_probabilities_,
    ...                               em.noise_variance_, em._hypotheses())
    >>> draw_patches(em, model, 1000, np.random.default_rng(0)).n_patches
    1024
    """
    space = model.hypotheses
    L = space.image_size
    log_prior, log_empty = space.log_prior(estimator.shift_probabilities_,
                                           estimator._weights())
    p = np.append(np.exp(log_prior), np.exp(log_empty))
    side = math.ceil(math.sqrt(n))
    h = rng.choice(p.size, size=side * side, p=p / p.sum())
    copy = h < space.n_hypotheses              # the last index is the empty hypothesis
    patches = np.zeros((side * side, L * L))
    patches[copy] = space.templates(estimator.coef_, h[copy])
    patches += math.sqrt(model.noise_variance) * rng.standard_normal(patches.shape)
    mosaic = patches.reshape(side, side, L, L).transpose(0, 2, 1, 3).reshape(side * L, side * L)
    return PatchData([mosaic], L)
