"""Several kinds of particle (``n_components``): the mixture's start and its
re-centring.

With ``C = n_components > 1`` every hypothesis names a component
(:class:`~mtdlearn.likelihood.hypotheses.HypothesisSpace`): the E-step
weighs component ``c`` by its abundance ``w_c``
(:meth:`~mtdlearn.likelihood.hypotheses.HypothesisSpace.log_prior`), the
M-step solves each component's normal equations
(:func:`~mtdlearn.likelihood.m_step.m_step`) and updates the abundances
(:func:`~mtdlearn.likelihood.m_step.component_weights`); the shift
distribution is shared.  This module holds what the estimator adds around
them.
"""

from functools import partial

import numpy as np

from ..imaging import _centring
from ..initializers import InitialState, split_image
from ..likelihood.hypotheses import HypothesisSpace
from . import _ctf_start, _refinement
from ._state import after_phase, state_of

__all__ = []

def run(est, prepared, state, seed, n_jobs):
    """One start of a mixture from a one-image start: fit one image, then split it.

    The one-image EM runs first on the same data (loosely, to the coarse
    phases' tolerance; through the CTFs after a white-noise phase when
    :mod:`~mtdlearn.em._ctf_start` applies), its image is split into the
    ``C`` components (:func:`split`), and the mixture runs from there to
    ``tol``.  Measured (L = 5, two random kinds, SNR 10, 1000**2, seeds
    0-3): splitting the start's image itself found both kinds on three
    seeds and on the fourth ended with one kind at 3.5 % of the copies
    holding a blend (error 0.84); splitting the one-image fit found both
    kinds on all four (errors 0.007-0.012), as did four split starts
    (``n_init=4``) at about four times the cost.  The one-image phase's
    iterations are ``one_component_n_iter_``.
    """
    space = prepared.hypotheses
    one = prepared.with_space(HypothesisSpace(space.basis, space.angles))
    if _ctf_start.applies(est, one):
        first = _ctf_start.run(est, one, state, seed, n_jobs)
    else:
        first = est._run_grid(one, state, seed, n_jobs,
                              tol=partial(_refinement.coarse_tol, est.tol_))
    state = split(state_of(first), space.n_components, seed)
    res = _refinement.run(est, prepared, state, seed, n_jobs)
    return after_phase(first, res, "one_component_n_iter_")


def split(state, n_components, seed):
    """A start of ``n_components`` images from one image.

    Each component is the image plus 0.3 of its norm in an independent
    random direction drawn from ``seed``
    (:func:`~mtdlearn.initializers.split_image`), with equal abundances.  A start that already has one row per component is
    returned as is.
    """
    coef = np.asarray(state.coef, dtype=np.float64)
    if coef.ndim == 2:
        return state
    coefs = split_image(coef, n_components, np.random.default_rng(seed))
    return InitialState(coefs, state.shift_probabilities, state.noise_variance,
                        np.full(n_components, 1.0 / n_components))


def recentred(basis, coef):
    """:func:`mtdlearn.imaging._centring.recentred` of each component, or ``None`` if none moved."""
    coef = np.asarray(coef)
    if coef.ndim == 1:
        return _centring.recentred(basis, coef)
    moved = [_centring.recentred(basis, row) for row in coef]
    if all(m is None for m in moved):
        return None
    return np.stack([row if m is None else m for row, m in zip(coef, moved)])
