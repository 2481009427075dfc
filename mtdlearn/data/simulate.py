"""Simulated multi-target detection measurements (paper eq. 1 and §3)."""

import warnings
from dataclasses import dataclass, field

import numpy as np

from .._validation import (check_array_float, check_int, check_per_measurement,
                           check_random_generator, check_real)
from ..basis.protocol import check_basis
from ..imaging.ctf import CTF
from ..imaging.formation import MicroscopeFormation, check_formation
from ..imaging.noise import RadialPSD

__all__ = ["make_target", "make_measurement", "MeasurementTruth", "place_copies",
           "render_copies", "snr_to_noise_variance"]


def make_target(basis, norm=10.0, random_state=None):
    """Draw the paper's random target image (§3) as basis coefficients.

    An ``L x L`` image of i.i.d. U[0, 1] pixels is scaled to Frobenius norm
    ``norm`` and then expanded on the basis (least squares,
    :meth:`FourierBesselBasis.expand`), so ``basis.evaluate(coef)`` is its
    projection and has a somewhat smaller norm.

    Parameters
    ----------
    basis : FourierBesselBasis
        The basis to expand on; gives ``L``.
    norm : float, default=10.0
        Frobenius norm of the pixel image before the expansion (the paper's 10).
    random_state : int, Generator, RandomState or None, default=None
        Seed or generator of the pixel values.

    Returns
    -------
    coef : ndarray of shape (basis.n_functions,)
        Coefficients ``alpha`` of the target.

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.data.simulate import make_target
    >>> make_target(FourierBesselBasis(5, n_coefficients=10), random_state=0).shape
    (10,)
    """
    _check_basis(basis)
    norm = check_real(norm, "norm", minimum=0.0, strict=True)
    rng = check_random_generator(random_state)
    L = basis.image_size
    image = rng.uniform(0.0, 1.0, size=(L, L))
    image *= norm / np.linalg.norm(image)
    return basis.expand(image)


def _check_basis(basis):
    check_basis(basis)


def snr_to_noise_variance(coef, basis, snr):
    """Convert an SNR to the noise variance ``sigma**2 = ||F||_F**2 / (L**2 snr)``.

    The paper's definition ``SNR = ||F||_F**2 / (A sigma**2)`` with area
    ``A = L**2`` (§1), where ``F = basis.evaluate(coef)``.

    Parameters
    ----------
    coef : array-like of shape (n_functions,)
        Coefficients of the image ``F``.
    basis : FourierBesselBasis
        The basis of ``coef``.
    snr : float
        Signal-to-noise ratio, ``> 0``.

    Returns
    -------
    noise_variance : float
        ``sigma**2``.

    Raises
    ------
    ValueError
        If ``snr`` is not a finite number ``> 0``, or ``coef`` describes a
        zero image (its SNR is undefined).

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.data.simulate import snr_to_noise_variance
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.ones(10)
    >>> energy = float(np.sum(basis.evaluate(coef) ** 2))
    >>> bool(np.isclose(snr_to_noise_variance(coef, basis, 2.0), energy / (25 * 2.0)))
    True
    """
    _check_basis(basis)
    snr = check_real(snr, "snr", minimum=0.0, strict=True)
    F = basis.evaluate(coef)
    energy = float(np.sum(F**2))
    if energy == 0.0:
        raise ValueError("coef describes a zero image, whose SNR is undefined: give "
                         "noise_variance instead of snr")
    return energy / (basis.image_size**2 * snr)


@dataclass
class MeasurementTruth:
    """Ground truth of a simulated measurement.

    Returned by :func:`~mtdlearn.make_measurement` (and by the estimators' ``sample``).
    Every constructor parameter is kept as an attribute of the same name.

    Parameters
    ----------
    positions : ndarray of shape (p, 2)
        Top-left corner (row, col) of each of the ``p`` copies.
    angles : ndarray of shape (p,)
        Rotation of each copy, in radians: the copy is
        ``basis.evaluate(basis.rotate(coef, angle))``.
    measurement : ndarray of shape (p,)
        Index of the measurement holding each copy (all zero for one measurement).
    noise_variance : float
        ``sigma**2`` of the added noise.
    density : float
        Density reached, ``p * L**2 / (total area)``.
    coef : ndarray of shape (n_functions,)
        Coefficients of the target image.
    basis : FourierBesselBasis
        Basis of ``coef``.
    shape : tuple
        Shape of the measurement array.
    formations : tuple of ImageFormation, default=None
        The image formation of each measurement (``None``: the paper's
        white-noise model for all).

    Attributes
    ----------
    clean : ndarray
        The noise-free measurement, rendered on first access (not kept in
        memory unless asked for).
    n_copies : int
        Number of copies ``p``.

    Other Parameters
    ----------------
    _clean : ndarray, default=None
        Cache of the noise-free measurement; leave it ``None``.

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis, make_measurement, make_target
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    >>> truth.n_copies, truth.positions.shape, truth.clean.shape
    (16, (16, 2), (100, 100))
    """

    positions: np.ndarray
    angles: np.ndarray
    measurement: np.ndarray
    noise_variance: float
    density: float
    coef: np.ndarray
    basis: object
    shape: tuple
    formations: tuple = None
    _clean: np.ndarray = field(default=None, repr=False)

    @property
    def clean(self):
        """The noise-free measurement, same shape as the measurement array.

        Rendered from ``coef``, ``positions``, ``angles`` and ``measurement``
        on first access, then formed by each measurement's image formation
        (``formations``) and cached.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis, make_measurement, make_target
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> coef = make_target(basis, random_state=0)
        >>> X, truth = make_measurement(coef, basis, 100, random_state=0)  # no noise
        >>> np.allclose(truth.clean, X)
        True
        """
        if self._clean is None:
            out = np.zeros(self.shape)
            view = out if out.ndim == 3 else out[None]
            _add_formed_copies(view, self.coef, self.basis, self.positions, self.angles,
                               self.measurement, self.formations)
            self._clean = out
        return self._clean

    @property
    def n_copies(self):
        """Number of copies ``p`` placed in the measurement(s).

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis, make_measurement, make_target
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> coef = make_target(basis, random_state=0)
        >>> make_measurement(coef, basis, 100, snr=5, random_state=0)[1].n_copies
        16
        """
        return int(self.angles.size)


def render_copies(out, coef, basis, positions, angles, measurement, batch=20000):
    """Add rotated copies of an image into ``out``, in place.

    Copy ``i`` is ``basis.evaluate(basis.rotate(coef, angles[i]))`` with its
    top-left corner at ``positions[i]`` of measurement ``measurement[i]``
    (the first term of eq. 1).  Copies must not overlap (the placement
    guarantees it), so a plain indexed add is exact.  Works in batches to
    bound memory.

    Parameters
    ----------
    out : ndarray of shape (n, N1, N2)
        Measurements to add the copies to; modified in place.
    coef : array-like of shape (n_functions,)
        Coefficients of the image.
    basis : FourierBesselBasis
        Basis of ``coef``.
    positions : ndarray of shape (p, 2), int
        Top-left corners (row, col); every copy must fit in ``out``.
    angles : ndarray of shape (p,)
        Rotation angles in radians.
    measurement : ndarray of shape (p,), int
        Index into ``out`` of each copy.
    batch : int, default=20000
        Copies rendered at once.

    Returns
    -------
    out : ndarray of shape (n, N1, N2)
        The same array, with the copies added.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.data.simulate import render_copies
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.ones(10)
    >>> out = render_copies(np.zeros((1, 20, 20)), coef, basis, np.array([[2, 3]]),
    ...                     np.array([0.0]), np.array([0]))
    >>> np.allclose(out[0, 2:7, 3:8], basis.evaluate(coef))
    True
    """
    L = basis.image_size
    ar = np.arange(L)
    for start in range(0, len(angles), batch):
        sl = slice(start, start + batch)
        imgs = basis.evaluate(basis.rotate(coef, angles[sl]))
        rows = positions[sl, 0][:, None, None] + ar[None, :, None]
        cols = positions[sl, 1][:, None, None] + ar[None, None, :]
        meas = measurement[sl][:, None, None]
        out[meas, rows, cols] += imgs
    return out


def place_copies(shape, image_size, n_copies, rng, max_rounds=200):
    """Random top-left corners, pairwise Chebyshev distance >= 2L - 1.

    Candidates are drawn uniformly over ``[0, N1 - L] x [0, N2 - L]`` in
    batches; a candidate is kept when it is at least ``2L - 1`` away from every
    kept corner and from every earlier candidate of its batch.  The check uses
    a grid of cells of side ``2L - 1`` (at most one corner per cell), so it is
    linear in the number of candidates.

    Parameters
    ----------
    shape : tuple of int
        ``(N1, N2)``, the measurement shape.
    image_size : int
        ``L``; corners lie in ``[0, N1 - L] x [0, N2 - L]``.
    n_copies : int
        Number of corners requested.
    rng : numpy.random.Generator
        Source of the random draws.
    max_rounds : int, default=200
        Batches of candidates drawn at most (placement also stops after five
        batches in a row that add nothing).

    Returns
    -------
    positions : ndarray of shape (p, 2), int64
        ``p <= n_copies``; fewer when the requested number did not fit.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.data.simulate import place_copies
    >>> pos = place_copies((100, 100), 5, 20, np.random.default_rng(0))
    >>> pos.shape
    (20, 2)
    >>> gaps = np.abs(pos[:, None] - pos[None]).max(axis=-1)  # Chebyshev distances
    >>> bool(gaps[~np.eye(20, dtype=bool)].min() >= 2 * 5 - 1)
    True
    """
    L = image_size
    sep = 2 * L - 1
    hi0, hi1 = shape[0] - L + 1, shape[1] - L + 1  # exclusive upper bounds
    if n_copies == 0 or hi0 <= 0 or hi1 <= 0:
        return np.empty((0, 2), dtype=np.int64)
    nc0, nc1 = -(-hi0 // sep), -(-hi1 // sep)
    # cell -> index of the kept corner in it, -1 if none; padded by one cell
    grid = np.full((nc0 + 2, nc1 + 2), -1, dtype=np.int64)
    kept = np.empty((0, 2), dtype=np.int64)
    neighbours = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
    stale = 0
    for _ in range(max_rounds):
        need = n_copies - len(kept)
        if need <= 0:
            break
        m = int(min(max(2 * need, 1024), 4 * 10**6))
        cand = np.stack([rng.integers(0, hi0, m), rng.integers(0, hi1, m)], axis=1)
        cell = cand // sep + 1
        ok = np.ones(m, dtype=bool)
        # conflicts with corners kept in earlier rounds
        for a, b in neighbours:
            j = grid[cell[:, 0] + a, cell[:, 1] + b]
            has = j >= 0
            d = np.abs(kept[j[has]] - cand[has]).max(axis=1) if has.any() else np.empty(0)
            bad = np.zeros(m, dtype=bool)
            bad[np.flatnonzero(has)[d < sep]] = True
            ok &= ~bad
        # conflicts within the batch: keep a candidate only if no earlier
        # candidate of this batch is within the separation.  The earliest
        # candidate of each cell is the only one that can survive in that cell.
        first = np.full(grid.shape, m, dtype=np.int64)
        order = np.arange(m)
        np.minimum.at(first, (cell[:, 0], cell[:, 1]), order)
        ok &= first[cell[:, 0], cell[:, 1]] == order
        for a, b in neighbours:
            if a == 0 and b == 0:
                continue
            j = first[cell[:, 0] + a, cell[:, 1] + b]
            has = j < order
            d = np.abs(cand[j[has]] - cand[has]).max(axis=1) if has.any() else np.empty(0)
            bad = np.zeros(m, dtype=bool)
            bad[np.flatnonzero(has)[d < sep]] = True
            ok &= ~bad
        new = cand[ok][:need]
        if len(new) == 0:
            stale += 1
            if stale >= 5:
                break
            continue
        stale = 0
        new_cells = new // sep + 1
        grid[new_cells[:, 0], new_cells[:, 1]] = np.arange(len(kept), len(kept) + len(new))
        kept = np.concatenate([kept, new])
    return kept


def make_measurement(coef, basis, size, density=0.04, snr=None, noise_variance=None,
                     n_measurements=None, random_state=None, formation=None, ctf=None,
                     noise_psd=None):
    """Simulate a measurement of the multi-target detection model (eq. 1).

    Copies of the image ``basis.evaluate(coef)``, each rotated by an angle
    drawn uniformly on ``[0, 2 pi)``, are placed with top-left corners pairwise
    at least ``2L - 1`` apart (Chebyshev distance), so every ``L x L`` tile
    touches at most one copy; each measurement is formed by its image
    formation (the identity in the paper's model) and its noise is added
    (white Gaussian noise in the paper's model).

    Parameters
    ----------
    coef : array-like of shape (n_functions,)
        Coefficients of the target image.
    basis : FourierBesselBasis
        The basis of ``coef``; gives ``L``.
    size : int or (int, int)
        Side ``N`` (or shape) of each measurement.
    density : float, default=0.04
        ``gamma = (number of copies) * L**2 / area``, in ``[0, 1)``.  A
        density the placement cannot reach gives a warning, and
        ``truth.density`` reports the density reached.
    snr : float, default=None
        ``||F||_F**2 / (L**2 sigma**2)``.  Give at most one of ``snr`` and
        ``noise_variance``; with neither the measurement is noise-free.
    noise_variance : float, default=None
        ``sigma**2``.
    n_measurements : int, default=None
        ``None`` returns one ``(N1, N2)`` measurement; an int returns a stack
        ``(n_measurements, N1, N2)``, each with the requested density.
    random_state : int, Generator, RandomState or None, default=None
        Seed or generator of the positions, angles and noise.
    formation : ImageFormation or sequence of ImageFormation, default=None
        How the copies appear in each measurement
        (:mod:`mtdlearn.imaging.formation`): one for all, or one per
        measurement.  ``None``: the paper's model,
        :class:`~mtdlearn.imaging.formation.WhiteNoiseFormation`.  The noise
        of variance ``sigma**2`` is drawn by the formation.
    ctf : CTF or sequence of CTF, default=None
        A microscope's contrast transfer function
        (:class:`~mtdlearn.imaging.ctf.CTF`): one for all measurements, or
        one per measurement (a defocus series).  The whole measurement (the
        sum of its copies) is convolved with it, before the noise is added.
    noise_psd : RadialPSD, default=None
        The noise's power spectrum (:class:`~mtdlearn.imaging.noise.RadialPSD`,
        for example :func:`~mtdlearn.imaging.noise.make_noise_psd`): colored
        Gaussian noise of that shape, scaled to the mean power ``sigma**2``
        per pixel, so ``snr`` keeps its meaning (the power of the CTF-free
        image over the noise's mean power).  ``None``: white noise.
        ``ctf`` and ``noise_psd`` make a
        :class:`~mtdlearn.imaging.formation.MicroscopeFormation` per
        measurement (``truth.formations``); give them or ``formation``, not
        both.

    Returns
    -------
    X : ndarray of shape (N1, N2) or (n_measurements, N1, N2)
        The measurement(s).
    truth : MeasurementTruth
        ``positions``, ``angles``, ``measurement``, ``noise_variance``,
        ``density``, and ``clean`` (rendered lazily).

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.data.simulate import make_target, make_measurement
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 200, snr=5, random_state=0)
    >>> X.shape, truth.positions.shape
    ((200, 200), (64, 2))
    """
    _check_basis(basis)
    coef = check_array_float(coef, "coef", ndim=1)
    if coef.shape[0] != basis.n_functions:
        raise ValueError(
            f"coef must have length basis.n_functions={basis.n_functions}, got {coef.shape[0]}"
        )
    L = basis.image_size
    if np.ndim(size) == 0:
        size = (size, size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or a pair of ints, got {size!r}")
    shape = tuple(check_int(s, "size", minimum=L) for s in size)
    density = check_real(density, "density", minimum=0.0, maximum=1.0, strict_max=True)
    if snr is not None and noise_variance is not None:
        raise ValueError("give at most one of snr and noise_variance, not both")
    if snr is not None:
        snr = check_real(snr, "snr", minimum=0.0, strict=True)
        noise_variance = snr_to_noise_variance(coef, basis, snr)
    elif noise_variance is not None:
        noise_variance = check_real(noise_variance, "noise_variance", minimum=0.0)
    else:
        noise_variance = 0.0
    stack = n_measurements is not None
    n_meas = check_int(n_measurements, "n_measurements", minimum=1) if stack else 1
    if ctf is not None or noise_psd is not None:
        if formation is not None:
            raise ValueError("give ctf and noise_psd, or formation, not both")
        formation = _microscope_formations(ctf, noise_psd, n_meas)
    formations = _check_formations(formation, n_meas)
    rng = check_random_generator(random_state)

    area = shape[0] * shape[1]
    target = int(round(density * area / L**2))
    positions, angles, meas = [], [], []
    for i in range(n_meas):
        pos = place_copies(shape, L, target, rng)
        positions.append(pos)
        meas.append(np.full(len(pos), i, dtype=np.int64))
    positions = np.concatenate(positions)
    meas = np.concatenate(meas)
    angles = rng.uniform(0.0, 2 * np.pi, size=len(positions))
    reached = len(positions) * L**2 / (area * n_meas)
    if len(positions) < target * n_meas:
        warnings.warn(
            f"could only place {len(positions)} of {target * n_meas} copies with "
            f"separation 2L-1={2 * L - 1}: density reached {reached:.4g} instead of "
            f"{density:.4g}",
            RuntimeWarning,
            stacklevel=2,
        )

    X = np.empty((n_meas,) + shape)
    if noise_variance > 0:
        for i in range(n_meas):
            formations[i].draw_noise(X[i], noise_variance, rng)
    else:
        X.fill(0.0)
    if all(f.is_identity for f in formations):
        formations = None   # the paper's model: nothing to form
    _add_formed_copies(X, coef, basis, positions, angles, meas, formations)
    truth = MeasurementTruth(
        positions=positions,
        angles=angles,
        measurement=meas,
        noise_variance=float(noise_variance),
        density=float(reached),
        coef=coef.copy(),
        basis=basis,
        shape=X.shape if stack else shape,
        formations=None if formations is None else tuple(formations),
    )
    return (X if stack else X[0]), truth


def _add_formed_copies(out, coef, basis, positions, angles, measurement, formations):
    """Add the copies, formed by each measurement's formation, into ``out`` (n, N1, N2).

    ``formations=None`` is the identity: the copies go straight into ``out``
    (no second N^2 array).  Otherwise each measurement's copies are rendered
    on zeros and formed before they are added.
    """
    if formations is None:
        render_copies(out, coef, basis, positions, angles, measurement)
        return out
    for i, formation in enumerate(formations):
        clean = np.zeros((1,) + out.shape[1:])
        mine = measurement == i
        render_copies(clean, coef, basis, positions[mine], angles[mine],
                      np.zeros(int(mine.sum()), dtype=np.int64))
        out[i] += formation.form_measurement(clean[0])
    return out


def _microscope_formations(ctf, noise_psd, n_measurements):
    """One MicroscopeFormation per measurement from ``ctf`` (one or a sequence) and
    ``noise_psd``."""
    if noise_psd is not None and not isinstance(noise_psd, RadialPSD):
        raise TypeError(f"noise_psd must be a RadialPSD or None, got {type(noise_psd).__name__}")
    ctfs = ([ctf] * n_measurements if ctf is None or isinstance(ctf, CTF)
            else check_per_measurement(ctf, CTF, "ctf", n_measurements))
    return [MicroscopeFormation(c, noise_psd) for c in ctfs]


def _check_formations(formation, n_measurements):
    """One image formation per measurement, from ``None``, one, or a sequence."""
    if formation is None or not isinstance(formation, (list, tuple)):
        return [check_formation(formation)] * n_measurements
    if len(formation) != n_measurements:
        raise ValueError(f"formation must be one ImageFormation or one per measurement "
                         f"({n_measurements}); got {len(formation)}")
    return [check_formation(f, "formation[%d]" % i) for i, f in enumerate(formation)]
