"""Defocus groups: micrographs of similar defocus share one image formation.

A fit through CTFs models each micrograph's copies through its own CTF and
whitening (:class:`~mtdlearn.imaging.formation.MicroscopeFormation`), so
its E-step builds one set of templates per micrograph and its M-step one
block of normal equations per micrograph.  With hundreds of micrographs
that per-micrograph work dominates: measured (L = 13, white noise, one
thread, the same 6000 patches split into more micrographs), 1.05 s per
iteration for one micrograph of 1014², 1.53 s for 4, 3.41 s for 16 and
7.40 s for 64.  RELION groups micrographs by defocus for its noise spectra
and scales; here a group shares one formation, whose CTF is that of the
group's member of median defocus and whose noise spectrum is the mean of
the members' (:func:`defocus_groups`).  An estimator given the grouped CTFs
and spectra puts the micrographs of equal formations in one group
(:func:`~mtdlearn.likelihood.formed.formation_groups`), so its cost per
iteration grows with the groups, not the micrographs.
"""

from numbers import Integral

import numpy as np

from .ctf import CTF
from .noise import RadialPSD

__all__ = ["defocus_groups", "mean_psd"]


def mean_psd(psds):
    """The mean of noise spectra estimated on the same frequency bins.

    Parameters
    ----------
    psds : sequence of RadialPSD
        At least one, all with the same ``frequencies``.

    Returns
    -------
    psd : RadialPSD
        The mean ``values``; the ``errors`` of a mean of independent
        estimates, ``sqrt(sum errors**2) / n`` (``None`` if any is ``None``).

    Examples
    --------
    >>> from mtdlearn.imaging.groups import mean_psd
    >>> from mtdlearn.imaging.noise import RadialPSD
    >>> a = RadialPSD([0.0, 0.5], [4.0, 1.0], errors=[0.3, 0.4])
    >>> b = RadialPSD([0.0, 0.5], [2.0, 1.0], errors=[0.4, 0.3])
    >>> m = mean_psd([a, b])
    >>> m.values.tolist(), m.errors.tolist()
    ([3.0, 1.0], [0.25, 0.25])
    """
    psds = list(psds)
    if not psds or not all(isinstance(p, RadialPSD) for p in psds):
        raise TypeError("psds must be a non-empty sequence of RadialPSD")
    freq = psds[0].frequencies
    if any(not np.array_equal(p.frequencies, freq) for p in psds):
        raise ValueError("psds must share their frequency bins (spectra of micrographs of "
                         "one size, estimated with the same tiles)")
    values = np.mean([p.values for p in psds], axis=0)
    errors = (None if any(p.errors is None for p in psds)
              else np.sqrt(np.sum([p.errors ** 2 for p in psds], axis=0)) / len(psds))
    return RadialPSD(freq, values, errors)


def defocus_groups(ctfs, n_groups, noise_psds=None):
    """Group micrographs by defocus; each takes its group's CTF and noise spectrum.

    The micrographs are sorted by their mean defocus ``(defocus_u +
    defocus_v) / 2`` and cut into ``n_groups`` runs of consecutive
    defoci, as equal in size as possible (RELION's defocus groups).  A
    group's CTF is its member of median defocus (the lower median for an
    even count: a CTF that one micrograph has, never an average of
    astigmatism angles); its noise spectrum, when
    ``noise_psds`` is given, is the mean of its members' (:func:`mean_psd`).

    Parameters
    ----------
    ctfs : sequence of CTF
        One per micrograph.
    n_groups : int
        The number of groups, ``1 <= n_groups <= len(ctfs)``.
        ``len(ctfs)`` keeps every micrograph's own CTF.
    noise_psds : sequence of RadialPSD, default=None
        One per micrograph (for example from
        :func:`~mtdlearn.imaging.noise.estimate_noise_psd`), or ``None``.

    Returns
    -------
    labels : ndarray of shape (n_micrographs,)
        Each micrograph's group, ``0 .. n_groups - 1`` in increasing defocus.
    ctfs : list of CTF
        Each micrograph's group CTF: give it as the estimator's ``ctf``.
    noise_psds : list of RadialPSD or None
        Each micrograph's group spectrum: give it as the estimator's
        ``noise`` (``None`` when ``noise_psds`` is ``None``).

    Examples
    --------
    >>> from mtdlearn.imaging.ctf import CTF
    >>> from mtdlearn.imaging.groups import defocus_groups
    >>> ctfs = [CTF(d, pixel_size=2.0) for d in (9000.0, 21000.0, 10000.0, 20000.0)]
    >>> labels, grouped, _ = defocus_groups(ctfs, 2)
    >>> labels.tolist(), [c.defocus_u for c in grouped]
    ([0, 1, 0, 1], [9000.0, 20000.0, 9000.0, 20000.0])
    """
    if isinstance(ctfs, CTF) or not all(isinstance(c, CTF) for c in ctfs):
        raise TypeError("ctfs must be a sequence of CTF, one per micrograph")
    ctfs = list(ctfs)
    n = len(ctfs)
    if isinstance(n_groups, bool) or not isinstance(n_groups, Integral) or not (
            1 <= n_groups <= max(n, 1)):
        raise ValueError(f"n_groups must be an integer in [1, {n}] (the number of "
                         f"micrographs), got {n_groups!r}")
    if noise_psds is not None:
        noise_psds = list(noise_psds)
        if len(noise_psds) != n:
            raise ValueError(f"noise_psds must have one entry per CTF ({n}); got "
                             f"{len(noise_psds)}")
    defocus = np.array([(c.defocus_u + c.defocus_v) / 2.0 for c in ctfs])
    order = np.argsort(defocus, kind="stable")
    labels = np.empty(n, dtype=np.int64)
    group_ctfs, group_psds = [None] * n, [None] * n
    for g, members in enumerate(np.array_split(order, int(n_groups))):
        labels[members] = g
        ctf = ctfs[members[(len(members) - 1) // 2]]    # sorted: the median member
        psd = None if noise_psds is None else mean_psd([noise_psds[i] for i in members])
        for i in members:
            group_ctfs[i], group_psds[i] = ctf, psd
    return labels, group_ctfs, (None if noise_psds is None else group_psds)
