"""Gold-standard half sets: two independent fits and the resolution they agree to.

:func:`fit_half_sets` splits the micrographs into two halves by a seeded
split, fits a copy of the estimator to each half independently, from the
same start (the same parameters and the same ``random_state``: no half sees
the other's data, RELION's "gold-standard" refinement), aligns the second
estimate to the first by a rotation (a reflection is not a symmetry of
the data, so none is tried), and reports their Fourier ring correlation
(:func:`~mtdlearn.resolution.fourier_ring_correlation`) and the resolution
where it falls below 0.143 (Rosenthal & Henderson 2003), as well as the
combined estimate: the mean of the two aligned halves.

The FRC of two half-set estimates, each with independent errors, estimates
the correlation of the *combined* estimate with the truth through
``C_ref = sqrt(2 FRC / (1 + FRC))`` (Rosenthal & Henderson 2003): the
half-set FRC at 0.143 is where ``C_ref`` is 0.5.
"""

import copy
from typing import NamedTuple

import numpy as np
from sklearn.base import clone

from ._validation import check_random_generator
from .metrics import align_rotation
from .resolution import DEFAULT_THRESHOLD, FRC, fourier_ring_correlation, resolution, \
    resolution_ring

__all__ = ["HalfSets", "split_half_sets", "fit_half_sets", "combined_estimator"]

#: Estimator parameters that hold one value per measurement (sliced with ``X``).
PER_MEASUREMENT_PARAMS = ("ctf", "noise")


class HalfSets(NamedTuple):
    """The result of :func:`fit_half_sets`.

    Parameters
    ----------
    estimators : tuple of two fitted estimators
        The fits of the two halves (the second *not* rotated: its own
        frame).
    halves : tuple of two ndarray of int
        The indices of the measurements of each half, increasing.
    angle : float
        The rotation that aligns the second half's estimate with the first
        (:func:`~mtdlearn.metrics.align_rotation`), radians.
    coef : ndarray of shape (n_functions,)
        The combined estimate: the mean of the first half's coefficients
        and the second half's rotated by ``angle``.
    image : ndarray of shape (L, L)
        ``coef`` on the pixel grid.
    frc : FRC
        The Fourier ring correlation of the two aligned halves' images.
    resolution : float
        Where ``frc`` falls below ``threshold``, Angstrom
        (:func:`~mtdlearn.resolution.resolution`).
    resolution_ring : float
        The same crossing as a (fractional) ring index.
    threshold : float
        The FRC threshold read.

    Examples
    --------
    >>> from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target
    >>> from mtdlearn.half_sets import fit_half_sets
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> X, _ = make_measurement(make_target(basis, random_state=0), basis, 200, snr=10,
    ...                         n_measurements=2, random_state=0)
    >>> result = fit_half_sets(ApproxEMEstimator(5, basis=basis, random_state=0), X,
    ...                        random_state=0)
    >>> len(result.estimators), result.image.shape
    (2, (5, 5))
    """

    estimators: tuple
    halves: tuple
    angle: float
    coef: np.ndarray
    image: np.ndarray
    frc: FRC
    resolution: float
    resolution_ring: float
    threshold: float


def _n_measurements(X):
    if isinstance(X, (list, tuple)):
        return len(X)
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) == 3:
        return int(shape[0])
    raise ValueError("X must hold two or more measurements for half sets: a list of "
                     "measurements (arrays, paths or Dask arrays) or a stack of shape "
                     f"(n, N1, N2); got {type(X).__name__}"
                     + (f" of shape {tuple(shape)}" if shape is not None else ""))


def _subset(X, index):
    """The measurements ``index`` of ``X`` (a list keeps its type's names)."""
    if isinstance(X, (list, tuple)):
        part = [X[i] for i in index]
        names = getattr(X, "names", None)
        if names is not None:
            sub = type(X)(part)
            sub.names = [names[i] for i in index]
            return sub
        return part
    return X[np.asarray(index)]


def split_half_sets(n_measurements, random_state=None):
    """Split ``n`` measurements into two halves by a seeded random permutation.

    Parameters
    ----------
    n_measurements : int
        How many measurements (>= 2).
    random_state : int, Generator, RandomState or None, default=None
        Seeds the split.

    Returns
    -------
    halves : tuple of two ndarray of int
        The first half holds ``ceil(n / 2)`` indices, the second the rest;
        each is sorted.

    Raises
    ------
    ValueError
        If ``n_measurements`` is below 2.

    Examples
    --------
    >>> from mtdlearn.half_sets import split_half_sets
    >>> a, b = split_half_sets(5, random_state=0)
    >>> len(a), len(b), sorted(a.tolist() + b.tolist())
    (3, 2, [0, 1, 2, 3, 4])
    """
    if isinstance(n_measurements, bool) or not isinstance(n_measurements, (int, np.integer)) \
            or n_measurements < 2:
        raise ValueError("half sets need at least 2 measurements (micrographs), got "
                         f"n_measurements={n_measurements!r}")
    order = check_random_generator(random_state).permutation(int(n_measurements))
    first = (int(n_measurements) + 1) // 2
    return np.sort(order[:first]), np.sort(order[first:])


def _half_params(estimator, index, n):
    """The per-measurement parameters of ``estimator`` restricted to ``index``."""
    params = {}
    for name in PER_MEASUREMENT_PARAMS:
        value = estimator.get_params(deep=False).get(name)
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                raise ValueError(f"the estimator's {name} has {len(value)} entries, but X "
                                 f"holds {n} measurements: give one per measurement")
            params[name] = [value[i] for i in index]
    return params


def fit_half_sets(estimator, X, *, random_state=None, threshold=DEFAULT_THRESHOLD,
                  pixel_size=1.0, same_start=True):
    """Fit two independent halves of the measurements and measure their agreement.

    The measurements are split by :func:`split_half_sets`; each half is fitted
    by a clone of ``estimator`` whose per-measurement parameters (``ctf``,
    ``noise`` given as sequences) are restricted to the half, with the same
    ``random_state`` (so the same start).  The second estimate is aligned to
    the first by a rotation, and the Fourier ring correlation of the two
    images is read at ``threshold``.

    Parameters
    ----------
    estimator : estimator with ``n_components=1``
        An unfitted ``ApproxEMEstimator`` or ``AutocorrelationEstimator``
        (cloned; not changed).  Its ``random_state`` seeds both starts; when
        it is not an int, an int is drawn from ``random_state``.
    X : list of measurements or ndarray of shape (n, N1, N2)
        Two or more measurements (arrays, paths, or Dask arrays as
        :func:`~mtdlearn.data.io.read_micrographs` gives).
    random_state : int, Generator, RandomState or None, default=None
        Seeds the split (and the starts, see ``estimator``).
    threshold : float, default=0.143
        The FRC threshold of the resolution.
    pixel_size : float, default=1.0
        Angstrom per pixel of the images (for the frequencies and the
        resolution).
    same_start : bool, default=True
        Both halves start from the same seed (the same start).  ``False``:
        the second half's seed is the first's plus one (independent starts).

    Returns
    -------
    result : HalfSets
        The two fits, the halves, the alignment, the combined estimate, the
        FRC and the resolution.

    Raises
    ------
    ValueError
        If ``X`` holds fewer than two measurements, or the estimator has
        ``n_components > 1`` (not supported yet) or per-measurement
        parameters of another length than ``X``.

    Examples
    --------
    >>> from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target
    >>> from mtdlearn.half_sets import fit_half_sets
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, _ = make_measurement(coef, basis, 300, snr=10, n_measurements=4, random_state=0)
    >>> em = ApproxEMEstimator(5, basis=basis, random_state=0)
    >>> result = fit_half_sets(em, X, random_state=0)
    >>> [h.tolist() for h in result.halves]
    [[0, 2], [1, 3]]
    >>> result.frc.correlation.shape, bool(result.frc.correlation[1] > 0.9)
    ((3,), True)
    """
    if getattr(estimator, "n_components", 1) != 1:
        raise ValueError("half sets with n_components > 1 are not supported yet; got "
                         f"n_components={estimator.n_components}")
    n = _n_measurements(X)
    rng = check_random_generator(random_state)
    halves = split_half_sets(n, rng)
    seed = estimator.get_params(deep=False).get("random_state")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        seed = int(rng.integers(2**31 - 1))
    fits = []
    for k, index in enumerate(halves):
        est = clone(estimator).set_params(random_state=seed + (0 if same_start else k),
                                          **_half_params(estimator, index, n))
        fits.append(est.fit(_subset(X, index)))
    first, second = fits
    basis = first.basis_
    angle, _ = align_rotation(first.coef_, second.coef_, basis)
    aligned = basis.rotate(second.coef_, angle)
    coef = 0.5 * (first.coef_ + aligned)
    frc = fourier_ring_correlation(basis.evaluate(first.coef_), basis.evaluate(aligned),
                                   pixel_size=pixel_size)
    return HalfSets(estimators=tuple(fits), halves=halves, angle=float(angle), coef=coef,
                    image=basis.evaluate(coef), frc=frc,
                    resolution=resolution(frc, threshold),
                    resolution_ring=resolution_ring(frc, threshold), threshold=threshold)


def combined_estimator(result, estimator, X=None):
    """A fitted estimator holding the combined model of two half sets.

    A copy of the first half's fit with the combined image
    (``result.coef``), the mean of the two halves' shift probabilities and
    noise variances, and ``estimator``'s per-measurement parameters (all
    the measurements, not a half's), so that it predicts, scores and picks
    on every micrograph.

    Parameters
    ----------
    result : HalfSets
        From :func:`fit_half_sets`.
    estimator : estimator
        The estimator given to :func:`fit_half_sets` (its ``ctf`` and
        ``noise`` are taken).
    X : ignored
        For symmetry with :func:`fit_half_sets`.

    Returns
    -------
    combined : estimator
        Fitted: ``coef_``, ``image_``, ``shift_probabilities_``,
        ``noise_variance_`` and ``density_`` are the combined ones;
        ``noise_psds_`` (when the halves estimated spectra) each
        micrograph's, in the order of the measurements; ``converged_`` is
        true only when both halves converged.  With ``noise="residual"``
        its ``predict`` and ``score`` pick the copies whose residual gives
        a micrograph's spectrum with the first half's first fit.

    Examples
    --------
    >>> from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target
    >>> from mtdlearn.half_sets import combined_estimator, fit_half_sets
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> X, _ = make_measurement(make_target(basis, random_state=0), basis, 300, snr=10,
    ...                         n_measurements=4, random_state=0)
    >>> em = ApproxEMEstimator(5, basis=basis, random_state=0)
    >>> result = fit_half_sets(em, X, random_state=0)
    >>> model = combined_estimator(result, em)
    >>> sorted(set(model.predict(X)["measurement"].tolist()))  # picks in all four
    [0, 1, 2, 3]
    """
    from .imaging.shifts import shift_probabilities_to_density

    first, second = result.estimators
    combined = copy.deepcopy(first)
    combined.set_params(**{name: estimator.get_params(deep=False)[name]
                           for name in PER_MEASUREMENT_PARAMS
                           if name in estimator.get_params(deep=False)})
    combined.coef_ = np.array(result.coef, dtype=np.float64)
    combined.image_ = np.array(result.image, dtype=np.float64)
    combined.shift_probabilities_ = 0.5 * (np.asarray(first.shift_probabilities_)
                                           + np.asarray(second.shift_probabilities_))
    combined.noise_variance_ = 0.5 * (float(first.noise_variance_)
                                      + float(second.noise_variance_))
    combined.density_ = shift_probabilities_to_density(combined.shift_probabilities_)
    combined.converged_ = bool(first.converged_ and second.converged_)
    if getattr(first, "noise_psds_", None) is not None:    # each micrograph's, in order
        psds = [None] * sum(len(h) for h in result.halves)
        for half, fitted in zip(result.halves, result.estimators):
            for i, psd in zip(half, fitted.noise_psds_):
                psds[i] = psd
        combined.noise_psds_ = psds
    return combined
