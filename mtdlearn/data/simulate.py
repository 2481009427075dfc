"""Simulated multi-target detection measurements (paper eq. 1 and §3)."""

import warnings
from dataclasses import dataclass, field

import numpy as np

from .._validation import (check_abundances, check_array_float, check_int,
                           check_per_measurement, check_random_generator, check_real)
from ..basis.protocol import check_basis
from ..imaging.ctf import CTF
from ..imaging.formation import MicroscopeFormation, check_formation
from ..imaging.noise import RadialPSD
from ._copies import (check_min_separation, place_copies, render_copies,
                      separation_max_density)

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


def _check_coef(coef, basis):
    """``coef`` as a finite float array of shape (n_functions,) or
    (n_components, n_functions), with at least one component."""
    coef = check_array_float(coef, "coef")
    p = basis.n_functions
    if coef.ndim == 1:
        if coef.shape[0] != p:
            raise ValueError(f"coef must have length basis.n_functions={p}, got {coef.shape[0]}")
    elif coef.ndim == 2:
        if coef.shape[1] != p or coef.shape[0] < 1:
            raise ValueError(
                f"a 2-D coef must have shape (n_components >= 1, basis.n_functions={p}), "
                f"got {coef.shape}"
            )
    else:
        raise ValueError(
            f"coef must be 1-D (n_functions,) or 2-D (n_components, n_functions), "
            f"got shape {coef.shape}"
        )
    return coef


def _check_weights(weights, coef):
    """The abundances of a 2-D ``coef``'s components as a float array (equal ones for
    ``None``); ``None`` for a 1-D ``coef``, where giving ``weights`` is an error."""
    if coef.ndim == 1:
        if weights is not None:
            raise ValueError("weights is only for a 2-D coef (one row per component); "
                             "got weights with a 1-D coef")
        return None
    n_components = coef.shape[0]
    if weights is None:
        return np.full(n_components, 1.0 / n_components)
    return check_abundances(weights, n_components)


def _mean_power(coef, basis, weights):
    """``||F||_F**2`` of a 1-D ``coef``; ``sum_c weights[c] ||F_c||_F**2`` of a 2-D one
    (each component evaluated on its own, so one row with weight 1 gives the 1-D value)."""
    if coef.ndim == 1:
        return float(np.sum(basis.evaluate(coef) ** 2))
    power = 0.0
    for w, row in zip(weights, coef):
        power += float(w) * float(np.sum(basis.evaluate(row) ** 2))
    return power


def snr_to_noise_variance(coef, basis, snr, *, weights=None):
    """Convert an SNR to the noise variance ``sigma**2 = ||F||_F**2 / (L**2 snr)``.

    The paper's definition ``SNR = ||F||_F**2 / (A sigma**2)`` with area
    ``A = L**2`` (§1), where ``F = basis.evaluate(coef)``.  For a mixture
    of several images ``F_c`` (a 2-D ``coef``) the power ``||F||_F**2`` is
    their abundance-weighted mean,
    ``sigma**2 = sum_c weights[c] ||F_c||_F**2 / (L**2 snr)``.

    Parameters
    ----------
    coef : array-like of shape (n_functions,) or (n_components, n_functions)
        Coefficients of the image ``F``, or one row per image ``F_c`` of a
        mixture.
    basis : FourierBesselBasis
        The basis of ``coef``.
    snr : float
        Signal-to-noise ratio, ``> 0``.
    weights : array-like of shape (n_components,), default=None
        Abundances of a mixture's images (non-negative, summing to 1);
        ``None``: equal abundances.  Only with a 2-D ``coef``.

    Returns
    -------
    noise_variance : float
        ``sigma**2``.

    Raises
    ------
    ValueError
        If ``snr`` is not a finite number ``> 0``, ``coef`` has the wrong
        shape or describes a zero image (whose SNR is undefined; for a
        mixture: a zero weighted mean power), or ``weights`` is invalid or
        given with a 1-D ``coef``.

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

    A mixture of ``F`` (abundance 0.2) and ``2 F`` (power ``4 ||F||**2``,
    abundance 0.8):

    >>> mixture = np.stack([coef, 2 * coef])
    >>> sigma2 = snr_to_noise_variance(mixture, basis, 2.0, weights=[0.2, 0.8])
    >>> bool(np.isclose(sigma2, (0.2 + 0.8 * 4) * energy / (25 * 2.0)))
    True
    """
    _check_basis(basis)
    snr = check_real(snr, "snr", minimum=0.0, strict=True)
    coef = _check_coef(coef, basis)
    weights = _check_weights(weights, coef)
    return _snr_to_noise_variance(coef, basis, snr, weights)


def _snr_to_noise_variance(coef, basis, snr, weights):
    """:func:`snr_to_noise_variance` on validated arguments."""
    energy = _mean_power(coef, basis, weights)
    if energy == 0.0:
        what = ("coef describes a zero image" if coef.ndim == 1 else
                "the components of coef have a zero weighted mean power")
        raise ValueError(f"{what}, whose SNR is undefined: give noise_variance instead of snr")
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
        ``basis.evaluate(basis.rotate(coef, angle))`` (for a mixture,
        ``coef[component[i]]`` for copy ``i``).
    measurement : ndarray of shape (p,)
        Index of the measurement holding each copy (all zero for one measurement).
    noise_variance : float
        ``sigma**2`` of the added noise.
    density : float
        Density reached, ``p * L**2 / (total area)`` (copies of all kinds).
    coef : ndarray of shape (n_functions,) or (n_components, n_functions)
        Coefficients of the target image, or one row per kind of particle of
        a mixture.
    basis : FourierBesselBasis
        Basis of ``coef``.
    shape : tuple
        Shape of the measurement array.
    formations : tuple of ImageFormation, default=None
        The image formation of each measurement (``None``: the paper's
        white-noise model for all).
    component : ndarray of shape (p,), int, default=None
        For a mixture (2-D ``coef``): the kind of each copy, a 0-based row
        index into ``coef``.  ``None`` for a 1-D ``coef``.
    weights : ndarray of shape (n_components,), default=None
        For a mixture: the abundances the kinds were drawn from.  ``None``
        for a 1-D ``coef``.

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
    >>> truth.component is None
    True
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
    component: np.ndarray = None
    weights: np.ndarray = None
    _clean: np.ndarray = field(default=None, repr=False)

    @property
    def clean(self):
        """The noise-free measurement, same shape as the measurement array.

        Rendered from ``coef``, ``positions``, ``angles`` and ``measurement``
        (and, for a mixture, ``component``: each copy with its own kind's
        coefficients, one batched render per kind) on first access, then
        formed by each measurement's image formation (``formations``) and
        cached.

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
                               self.measurement, self.formations, self.component)
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


def make_measurement(coef, basis, size, density=0.04, snr=None, noise_variance=None,
                     n_measurements=None, random_state=None, formation=None, ctf=None,
                     noise_psd=None, *, weights=None, min_separation=None):
    """Simulate a measurement of the multi-target detection model (eq. 1).

    Copies of the image ``basis.evaluate(coef)``, each rotated by an angle
    drawn uniformly on ``[0, 2 pi)``, are placed with top-left corners pairwise
    at least ``2L - 1`` apart (Chebyshev distance), so every ``L x L`` tile
    touches at most one copy (``min_separation`` packs them closer); each
    measurement is formed by its image formation (the identity in the
    paper's model) and its noise is added (white Gaussian noise in the
    paper's model).

    With a 2-D ``coef`` the measurement holds a mixture of several kinds of
    particle: the kind of each copy is drawn i.i.d. from ``weights`` (as
    scikit-learn's ``GaussianMixture.weights_``) and the copy is the image
    of that kind's row of ``coef``.

    The random draws, all from the one generator of ``random_state``, come
    in this order: the positions of each measurement in turn
    (:func:`place_copies`), the angles of all copies, the noise of each
    measurement in turn (only when ``sigma**2 > 0``), and last, for a 2-D
    ``coef`` only, the kinds of all copies
    (``rng.choice(n_components, size=n_copies, p=weights)``, in the order
    of ``truth.positions``).  So a 1-D ``coef`` draws exactly what it always
    did, and a mixture with the same seed, size, density and noise variance
    has the same positions, angles and noise as a 1-D ``coef``; a
    ``(1, n_functions)`` ``coef`` gives the same measurement as its 1-D row.

    Parameters
    ----------
    coef : array-like of shape (n_functions,) or (n_components, n_functions)
        Coefficients of the target image, or one row per kind of particle
        of a mixture.
    basis : FourierBesselBasis
        The basis of ``coef``; gives ``L``.
    size : int or (int, int)
        Side ``N`` (or shape) of each measurement.
    density : float, default=0.04
        ``gamma = (number of copies) * L**2 / area``, in ``[0, 1)``.  A
        density the placement cannot reach gives a warning, and
        ``truth.density`` reports the density reached.  Copies ``s =
        min_separation`` apart fit at most about ``L**2 / s**2``
        (``25 / 81 = 0.31`` for ``L = 5`` at the default ``s = 2L - 1``),
        and random placement jams at 0.54-0.59 of it (measured for
        ``L = 5`` and ``11``).
    snr : float, default=None
        ``||F||_F**2 / (L**2 sigma**2)``.  For a mixture ``||F||_F**2`` is
        the abundance-weighted mean power of the kinds,
        ``sum_c weights[c] ||F_c||_F**2`` (see
        :func:`snr_to_noise_variance`).  Give at most one of ``snr`` and
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
    weights : array-like of shape (n_components,), default=None
        Abundances of the kinds of a mixture (2-D ``coef``): non-negative,
        summing to 1 within ``1e-8`` (neither clipped nor renormalized).
        ``None``: equal abundances.  Giving it with a 1-D ``coef`` is an
        error.
    min_separation : int, default=None
        ``s``, the minimum Chebyshev distance between the top-left corners
        of two copies, an int in ``[L, 2L - 1]``.  ``None``: ``2L - 1``, the
        paper's separation (eq. 4), with which every ``L x L`` patch holds
        at most one copy (whole or in part).  A smaller ``s`` packs copies
        closer than the paper's model allows, to measure the estimators'
        robustness: copies cross patch boundaries more often and two copies
        can fall in one patch; they never overlap (``s >= L``).  The random
        draws do not depend on ``s``, and ``None`` draws exactly what it
        always did.

    Returns
    -------
    X : ndarray of shape (N1, N2) or (n_measurements, N1, N2)
        The measurement(s).
    truth : MeasurementTruth
        ``positions``, ``angles``, ``measurement``, ``noise_variance``,
        ``density``, ``coef`` (of the shape given), ``clean`` (rendered
        lazily), and for a mixture ``component`` (the kind of each copy)
        and ``weights`` (``None`` for a 1-D ``coef``).

    Raises
    ------
    ValueError
        If ``density`` is outside ``[0, 1)``, ``min_separation`` outside
        ``[L, 2L - 1]``, or another argument is invalid.

    Warns
    -----
    RuntimeWarning
        If fewer copies than ``density`` asks for fit at ``min_separation``.

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.data.simulate import make_target, make_measurement
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 200, snr=5, random_state=0)
    >>> X.shape, truth.positions.shape
    ((200, 200), (64, 2))

    A mixture of two kinds of particle, a quarter of the copies of the
    first kind:

    >>> import numpy as np
    >>> coefs = np.stack([coef, make_target(basis, random_state=1)])
    >>> X, truth = make_measurement(coefs, basis, 200, snr=5, weights=[0.25, 0.75],
    ...                             random_state=0)
    >>> X.shape, truth.coef.shape, truth.component.shape
    ((200, 200), (2, 10), (64,))
    >>> np.bincount(truth.component, minlength=2).tolist()
    [18, 46]

    Copies packed closer than the paper's separation, only ``L = 5`` apart:

    >>> X, truth = make_measurement(coef, basis, 200, density=0.3, min_separation=5,
    ...                             random_state=0)
    >>> gaps = np.abs(truth.positions[:, None] - truth.positions[None]).max(axis=-1)
    >>> bool(gaps[~np.eye(truth.n_copies, dtype=bool)].min() >= 5), truth.n_copies
    (True, 480)
    """
    _check_basis(basis)
    coef = _check_coef(coef, basis)
    weights = _check_weights(weights, coef)
    L = basis.image_size
    if np.ndim(size) == 0:
        size = (size, size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or a pair of ints, got {size!r}")
    shape = tuple(check_int(s, "size", minimum=L) for s in size)
    density = check_real(density, "density", minimum=0.0, maximum=1.0, strict_max=True)
    separation = check_min_separation(min_separation, L)
    if snr is not None and noise_variance is not None:
        raise ValueError("give at most one of snr and noise_variance, not both")
    if snr is not None:
        snr = check_real(snr, "snr", minimum=0.0, strict=True)
        noise_variance = _snr_to_noise_variance(coef, basis, snr, weights)
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
        pos = place_copies(shape, L, target, rng, min_separation=separation)
        positions.append(pos)
        meas.append(np.full(len(pos), i, dtype=np.int64))
    positions = np.concatenate(positions)
    meas = np.concatenate(meas)
    angles = rng.uniform(0.0, 2 * np.pi, size=len(positions))
    reached = len(positions) * L**2 / (area * n_meas)
    if len(positions) < target * n_meas:
        warnings.warn(
            f"could only place {len(positions)} of {target * n_meas} copies "
            f"{separation} apart (min_separation; 2L-1={2 * L - 1} by default): density "
            f"reached {reached:.4g} instead of {density:.4g}; copies {separation} apart fit "
            f"at most about L**2/min_separation**2="
            f"{separation_max_density(L, separation):.4g}",
            RuntimeWarning,
            stacklevel=2,
        )

    X = np.empty((n_meas,) + shape)
    if noise_variance > 0:
        for i in range(n_meas):
            formations[i].draw_noise(X[i], noise_variance, rng)
    else:
        X.fill(0.0)
    component = None
    if coef.ndim == 2:   # drawn last: positions, angles and noise are those of a 1-D coef
        component = rng.choice(coef.shape[0], size=len(positions), p=weights)
    if all(f.is_identity for f in formations):
        formations = None   # the paper's model: nothing to form
    _add_formed_copies(X, coef, basis, positions, angles, meas, formations, component)
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
        component=component,
        weights=weights,
    )
    return (X if stack else X[0]), truth


def _render_kinds(out, coef, basis, positions, angles, measurement, component):
    """:func:`render_copies` for a 1-D ``coef`` (``component=None``), or for a 2-D one
    with each copy ``i`` rendered from ``coef[component[i]]``: one batched render per kind."""
    if coef.ndim == 1:
        if component is not None:
            raise ValueError("component is only for a 2-D coef (one row per component)")
        return render_copies(out, coef, basis, positions, angles, measurement)
    if component is None or np.shape(component) != np.shape(angles):
        raise ValueError("a 2-D coef needs component, the kind of each copy, of shape "
                         f"{np.shape(angles)}; got "
                         f"{None if component is None else np.shape(component)}")
    component = np.asarray(component)
    if component.size and (component.min() < 0 or component.max() >= coef.shape[0]):
        raise ValueError(f"component must index the {coef.shape[0]} rows of coef")
    for c in range(coef.shape[0]):
        mine = component == c
        if mine.all():
            render_copies(out, coef[c], basis, positions, angles, measurement)
        elif mine.any():
            render_copies(out, coef[c], basis, positions[mine], angles[mine], measurement[mine])
    return out


def _add_formed_copies(out, coef, basis, positions, angles, measurement, formations,
                       component=None):
    """Add the copies, formed by each measurement's formation, into ``out`` (n, N1, N2).

    ``formations=None`` is the identity: the copies go straight into ``out``
    (no second N^2 array).  Otherwise each measurement's copies are rendered
    on zeros and formed before they are added.  For a 2-D ``coef``,
    ``component`` gives the row of each copy (see :func:`_render_kinds`).
    """
    if formations is None:
        _render_kinds(out, coef, basis, positions, angles, measurement, component)
        return out
    for i, formation in enumerate(formations):
        clean = np.zeros((1,) + out.shape[1:])
        mine = measurement == i
        _render_kinds(clean, coef, basis, positions[mine], angles[mine],
                      np.zeros(int(mine.sum()), dtype=np.int64),
                      None if component is None else component[mine])
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
