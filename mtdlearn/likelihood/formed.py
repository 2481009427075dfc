"""Measurements seen through their own image formation: each micrograph's CTF and noise.

The paper's model sees every measurement alike: copies of the image in
white noise.  A microscope's micrographs each have their own CTF and
colored noise.  This module turns an estimator's ``ctf`` and ``noise``
parameters into one :class:`~mtdlearn.imaging.formation.MicroscopeFormation`
per measurement (:func:`measurement_formations`), and the measurements into
*groups* (:func:`formation_groups`): each the patches of one whitened
micrograph with the hypotheses of its formation.  The E-step runs group by
group (:func:`estep_groups`, the same kernels as for one measurement) and
gives one :class:`~mtdlearn.likelihood.statistics.Statistics` per group;
the M-step (:func:`~mtdlearn.likelihood.m_step.m_step`) adds their normal
equations, each through its group's formation.

When no measurement has a CTF and every noise is white there are no groups
(``None``): the fit is the paper's model, bit-identical to one without this
module.
"""

import numpy as np

from .._validation import check_per_measurement
from ..data.patches import PatchData
from ..imaging.ctf import CTF
from ..imaging.formation import MicroscopeFormation
from ..imaging.noise import RadialPSD, estimate_noise_psd, is_white
from .hypotheses import HypothesisSpace
from .statistics import GroupStatistics

__all__ = ["NOISE_MODELS", "check_ctf", "check_noise", "measurement_formations",
           "is_plain", "distinct_formations", "formation_groups", "regroup", "estep_groups"]

#: The noise models an estimator's ``noise`` names.
NOISE_MODELS = ("white", "colored", "auto")


def check_ctf(ctf, n_measurements=None, name="ctf"):
    """Validate ``ctf``: ``None``, one :class:`~mtdlearn.imaging.ctf.CTF`, or one per measurement.

    Parameters
    ----------
    ctf : CTF, sequence of CTF or None
        The estimator's parameter.
    n_measurements : int, default=None
        The number of measurements, when known: a sequence must have that
        many entries.
    name : str, default="ctf"
        The parameter's name, for the messages.

    Returns
    -------
    ctfs : list of CTF or None
        One per measurement (``None`` when ``n_measurements`` is ``None``
        and a single CTF is given, or when ``ctf`` is ``None``).

    Examples
    --------
    >>> from mtdlearn.imaging.ctf import CTF
    >>> from mtdlearn.likelihood.formed import check_ctf
    >>> len(check_ctf(CTF(10000.0), 3))
    3
    """
    if ctf is None:
        return None
    if isinstance(ctf, CTF):
        return None if n_measurements is None else [ctf] * n_measurements
    return check_per_measurement(ctf, CTF, name, n_measurements)


def check_noise(noise, n_measurements=None, name="noise", models=NOISE_MODELS):
    """Validate ``noise``: a model name, one :class:`~mtdlearn.imaging.noise.RadialPSD`, or one per measurement.

    Parameters
    ----------
    noise : {"white", "colored", "auto"}, RadialPSD or sequence of RadialPSD
        The estimator's parameter.  In a sequence (one per measurement) a
        ``None`` entry is white noise, as in ``noise_psds_``.
    n_measurements : int, default=None
        The number of measurements, when known.
    name : str, default="noise"
        The parameter's name, for the messages.
    models : tuple of str, default=NOISE_MODELS
        The names the caller accepts (the EM's adds ``"residual"``).

    Returns
    -------
    noise : str or list of RadialPSD
        The name, or one spectrum per measurement (a single spectrum
        stays as given when ``n_measurements`` is ``None``).

    Examples
    --------
    >>> from mtdlearn.likelihood.formed import check_noise
    >>> check_noise("white")
    'white'
    """
    if isinstance(noise, str):
        if noise not in models:
            raise ValueError(f"{name} must be one of {models}, a RadialPSD or a "
                             f"sequence of RadialPSD (one per measurement); got {noise!r}")
        return noise
    if isinstance(noise, RadialPSD):
        return noise if n_measurements is None else [noise] * n_measurements
    # None entries: white noise (as in noise_psds_)
    return check_per_measurement(noise, RadialPSD, name, n_measurements, allow_none=True)


def _psd_of(measurement):
    """The noise spectrum of one micrograph, or ``None`` if it is too small to estimate."""
    M = np.asarray(measurement)
    try:
        return estimate_noise_psd(M)
    except ValueError:
        return None


def _estimate_psds(measurements):
    """Each measurement's estimated noise spectrum (``None``: too small to estimate)."""
    return [_psd_of(M) for M in measurements]


def _list(parts):
    return list(parts)


_estimate_psds.blockwise = (_psd_of, _list)


def is_plain(ctf, noise):
    """Whether an estimator's ``ctf`` and ``noise`` name the paper's model.

    Parameters
    ----------
    ctf : CTF, sequence of CTF or None
        The estimator's parameter.
    noise : str, RadialPSD or sequence of RadialPSD
        The estimator's parameter.

    Returns
    -------
    plain : bool
        ``True`` for no CTF and white noise (``ctf=None, noise="white"``).

    Examples
    --------
    >>> from mtdlearn.likelihood.formed import is_plain
    >>> is_plain(None, "white"), is_plain(None, "colored")
    (True, False)
    """
    return ctf is None and isinstance(noise, str) and noise == "white"

def measurement_formations(data, ctf=None, noise="white"):
    """One image formation per measurement, from an estimator's ``ctf`` and ``noise``.

    ``noise``:

    - ``"white"``: the paper's white noise;
    - ``"colored"``: each micrograph's spectrum is estimated from the
      micrograph itself (:func:`~mtdlearn.imaging.noise.estimate_noise_psd`,
      computed once per data set) and whitened;
    - ``"auto"``: as ``"colored"``, but a micrograph whose estimated
      spectrum is flat within its error bar
      (:func:`~mtdlearn.imaging.noise.is_white`) keeps white noise;
    - a :class:`~mtdlearn.imaging.noise.RadialPSD`, or one per measurement:
      the given spectra.

    A micrograph too small for a spectrum to be estimated (fewer pixels than
    one tile of :func:`~mtdlearn.imaging.noise.estimate_noise_psd`) keeps
    white noise under ``"auto"``, and is an error under ``"colored"``.

    Parameters
    ----------
    data : PatchData
        The measurements.
    ctf : CTF, sequence of CTF or None, default=None
        Each measurement's CTF.
    noise : str, RadialPSD or sequence of RadialPSD, default="white"
        The noise model.

    Returns
    -------
    formations : list of MicroscopeFormation, or None
        One per measurement; ``None`` when every measurement has neither a
        CTF nor colored noise (the paper's model).
    noise_psds : list of RadialPSD or None
        The spectrum each measurement is whitened by (``None`` entries:
        white), or ``None`` for white noise everywhere.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.data.patches import PatchData
    >>> from mtdlearn.likelihood.formed import measurement_formations
    >>> measurement_formations(PatchData([np.zeros((10, 10))], 5))
    (None, None)
    """
    n = len(data.offsets) - 1
    ctfs = check_ctf(ctf, n) or [None] * n
    noise = check_noise(noise, n)
    if isinstance(noise, list):
        psds = noise
    elif noise == "white":
        psds = [None] * n
    else:
        psds = data.memoize(_estimate_psds)
        if noise == "colored":
            bad = [i for i, p in enumerate(psds) if p is None]
            if bad:
                raise ValueError(f"noise='colored': measurement(s) {bad} are too small to "
                                 "estimate their noise spectrum; give noise='white' or the "
                                 "spectra (RadialPSD)")
        else:
            psds = [None if p is None or is_white(p) else p for p in psds]
    if all(c is None for c in ctfs) and all(p is None for p in psds):
        return None, None
    formations = [MicroscopeFormation(c, p) for c, p in zip(ctfs, psds)]
    return formations, (None if all(p is None for p in psds) else psds)


def _whiten_block(block, formation):
    return formation.whiten(np.asarray(block, dtype=np.float64))


def _measurement_source(data, indices, formation):
    """The patches of measurements ``indices`` as the fit sees them: whitened by their
    (common) formation."""
    if data.distributed:
        if formation.noise_psd is None:
            return data.take(indices)
        from ..data._dask import DaskPatchData
        whitened = [data.measurements[i].rechunk(data.measurements[i].shape).map_blocks(
            _whiten_block, formation, dtype=np.float64) for i in indices]
        names = None if data.names is None else [data.names[i] for i in indices]
        return DaskPatchData(whitened, data.image_size, names)
    return PatchData([formation.whiten(data.measurements[i]) for i in indices],
                     data.image_size)


def formation_groups(data, formations, space, merge=False):
    """The measurements as groups: whitened micrographs with the hypotheses of their formation.

    Parameters
    ----------
    data : PatchData
        The measurements (never modified: whitening makes new arrays).
    formations : list of MicroscopeFormation
        One per measurement (:func:`measurement_formations`).
    space : HypothesisSpace
        The basis and rotation grid (its formation is ignored).
    merge : bool, default=False
        Put the measurements whose formations are equal (the same CTF and
        noise spectrum: a defocus group,
        :func:`~mtdlearn.imaging.groups.defocus_groups`) in one group, in
        the order of their first measurement: the E-step builds one set of
        templates per group and the M-step one normal-equation block, so
        the cost per iteration grows with the groups, not the micrographs.
        ``False``: one group per measurement (the per-measurement outputs
        of ``predict`` need that).

    Returns
    -------
    groups : tuple of (PatchData, HypothesisSpace)
        One per measurement, in order, or one per distinct formation.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.data.patches import PatchData
    >>> from mtdlearn.imaging.ctf import CTF
    >>> from mtdlearn.imaging.formation import MicroscopeFormation
    >>> from mtdlearn.likelihood.formed import formation_groups
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0])
    >>> groups = formation_groups(PatchData([np.ones((10, 10))] * 2, 5),
    ...                           [MicroscopeFormation(CTF(1e4))] * 2, space)
    >>> len(groups), groups[0][0].n_patches
    (2, 4)
    """
    if len(formations) != len(data.offsets) - 1:
        raise ValueError(f"formations must have one entry per measurement "
                         f"({len(data.offsets) - 1}); got {len(formations)}")
    if not merge:
        return tuple((_measurement_source(data, [i], f), _with_formation(space, f))
                     for i, f in enumerate(formations))
    return tuple((_measurement_source(data, idx, f), _with_formation(space, f))
                 for f, idx in distinct_formations(formations).items())



def distinct_formations(formations):
    """The distinct formations of a sequence, each with the positions that hold it.

    Parameters
    ----------
    formations : sequence of MicroscopeFormation
        One per measurement.

    Returns
    -------
    groups : dict
        Each distinct formation (in the order of its first position) mapped
        to the list of its positions: the defocus groups of
        :func:`formation_groups` (``merge=True``) and of the autocorrelation
        fit through CTFs.

    Examples
    --------
    >>> from mtdlearn.likelihood.formed import distinct_formations
    >>> from mtdlearn.imaging.ctf import CTF
    >>> from mtdlearn.imaging.formation import MicroscopeFormation
    >>> a, b = MicroscopeFormation(CTF(1e4)), MicroscopeFormation(CTF(2e4))
    >>> list(distinct_formations([a, b, a]).values())
    [[0, 2], [1]]
    """
    groups = {}
    for i, f in enumerate(formations):
        groups.setdefault(f, []).append(i)
    return groups


def _with_formation(space, formation):
    """``space``'s basis, angles and components, seen through ``formation``."""
    return HypothesisSpace(space.basis, space.angles, n_components=space.n_components,
                           formation=formation)


def regroup(groups, space):
    """The same whitened measurements with the hypotheses of another basis or grid.

    Parameters
    ----------
    groups : tuple of (PatchData, HypothesisSpace) or None
        From :func:`formation_groups`.
    space : HypothesisSpace
        The new basis and rotation grid.

    Returns
    -------
    groups : tuple of (PatchData, HypothesisSpace) or None
        Each group's data with a space of ``space``'s basis and angles and
        the group's formation.

    Examples
    --------
    >>> from mtdlearn.likelihood.formed import regroup
    >>> regroup(None, None) is None
    True
    """
    if groups is None:
        return None
    return tuple((d, _with_formation(space, s.formation)) for d, s in groups)


def estep_groups(groups, coef, shift_probabilities, noise_variance, build, estep, *,
                 dtype=np.float64, weights=None, **options):
    """The E-step of every group, each with the model of its formation.

    Parameters
    ----------
    groups : tuple of (PatchData, HypothesisSpace)
        From :func:`formation_groups`.
    coef : ndarray of shape (p,) or (C, p)
        The image coefficients.
    shift_probabilities : ndarray of shape (2L, 2L)
        ``rho``.
    noise_variance : float
        ``sigma**2`` (of the whitened data).
    build : callable
        The model builder (``build_patch_model`` or ``build_fft_patch_model``).
    estep : callable
        The matching E-step (``estep_statistics`` or ``estep_statistics_fft``).
    dtype : dtype, default=numpy.float64
        The E-step's precision.
    weights : ndarray of shape (C,), default=None
        The components' abundances; ``None``: equal.
    **options
        Passed to ``estep`` (``n_jobs``, ``working_memory``).

    Returns
    -------
    stats : GroupStatistics
        One :class:`~mtdlearn.likelihood.statistics.Statistics` per group.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis, make_target
    >>> from mtdlearn.data.patches import PatchData
    >>> from mtdlearn.imaging.ctf import CTF
    >>> from mtdlearn.imaging.formation import MicroscopeFormation
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.formed import estep_groups, formation_groups
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.patch_model import build_patch_model
    >>> from mtdlearn.likelihood.statistics import estep_statistics
    >>> basis = FourierBesselBasis(5)
    >>> groups = formation_groups(PatchData([np.ones((10, 10))] * 2, 5),
    ...     [MicroscopeFormation(CTF(1e4))] * 2, HypothesisSpace(basis, [0.0]))
    >>> stats = estep_groups(groups, make_target(basis, random_state=0),
    ...     density_to_shift_probabilities(0.05, 5), 1.0, build_patch_model, estep_statistics)
    >>> len(stats), stats.n_patches
    (2, 8)
    """
    return GroupStatistics(
        estep(data, build(coef, shift_probabilities, noise_variance, space, dtype=dtype,
                          weights=weights),
              **options)
        for data, space in groups)
