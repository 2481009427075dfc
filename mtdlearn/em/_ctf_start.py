"""The default start of a fit through CTFs: a white-noise phase first.

A CTF passes the image's low frequencies at a fraction of their amplitude
(the amplitude contrast, 0.1, at zero frequency) and not at all at its
zeros, so the normal equations of the CTF-free image are ill-conditioned
there, and from a random start the CTF-aware EM often ends in an optimum
whose image has exploded along those directions.  Measured (L = 11,
particle diameter 6, two micrographs of 330**2 at 0.8 and 2.0 um, 3 A/px,
SNR 20, 144 copies): from four random starts, one reached the optimum of
the fit started from the truth (mean log-likelihood 15.906 per patch,
error after rotation and translation 0.27), three ended degenerate with an
image norm 17-33 times the truth's (log-likelihood 13.5-14.1).  The image
the micrographs show, their CTFs' average, is found by the paper's
white-noise model as easily as any image; from it the CTF-aware fit reached
the truth start's optimum (15.905, error 0.26).

So the default start (``initializer=None``) of a fit with a ``ctf`` first
runs the white-noise model on the same (whitened) micrographs, to the
loose tolerance of a coarse phase (:func:`mtdlearn.em._refinement.coarse_tol`),
and the CTF-aware fit starts from its result.

That phase's random start (:class:`~mtdlearn.initializers.EnergyStart`) takes the paper's density
and scales the image to the data's signal energy.  The paper's
:class:`~mtdlearn.initializers.RandomInitializer` also matches the data's
mean, but through a CTF the mean holds the copies' mass only at the CTF's
value at zero frequency (minus the amplitude contrast), so that match
made the image several times too large at a density near zero, and the
fit stayed in an optimum of that shape.  Measured (two micrographs of
512**2 binned to 256**2 at 4 A/px, L = 13, particle diameter 8.8 px,
defocus 0.8-2.0 um, colored noise, SNR 10, tol 1e-4): with the mean
matched, the start's density was 0.0016 and its image norm 7 times the
truth's, and the fits erred 2.52, 2.81 and 3.14 on seeds 0-2 (mean
log-likelihood 139.9, 140.5, 132.2); with the energy matched, 0.071,
0.052 and 0.069 (145.0, 145.3, 135.4), where the fit started from the
truth reached 0.055 (145.4) on seed 1.
"""

from functools import partial

from . import _bandlimit_selection, _refinement
from ._state import after_phase, state_of


def applies(est, prepared):
    """Whether a start of ``est`` begins with the white-noise phase."""
    return (prepared.groups is not None and est.max_iter > 0 and est.initializer is None
            and any(space.formation.ctf is not None for _, space in prepared.groups)
            and not (est._warm and hasattr(est, "coef_")))


def run(est, prepared, state, seed, n_jobs):
    """One start: the white-noise phase, then the CTF-aware fit from its result.

    Returns the CTF-aware fit's result (``_run_start``'s), its counters and
    history including the white-noise phase's (``white_noise_n_iter_`` holds
    that phase's iterations)."""
    first = est._run_grid(prepared.without_formation(), state, seed, n_jobs,
                          tol=partial(_refinement.coarse_tol, est.tol_))
    state = state_of(first)
    if est.select_bandlimit:
        res = _bandlimit_selection.run(est, prepared, state, seed, n_jobs)
    else:
        res = _refinement.run(est, prepared, state, seed, n_jobs)
    return after_phase(first, res, "white_noise_n_iter_")
