"""Several kinds of particle (``n_components``): the mixture's start, its
re-centring, and its abundances in a start's result.

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

import numpy as np

from ..imaging import _centring
from ..initializers import InitialState

__all__ = []

#: The components of a split start differ from the start's image by this
#: fraction of its norm, each in its own random direction (split-and-merge
#: EM's split, Ueda et al. 2000): far enough for the E-step to tell them
#: apart, near enough that each stays in the start's basin.
SPLIT_SCALE = 0.3


def split(state, n_components, seed):
    """A start of ``n_components`` images from a one-image start.

    Each component is the start's image plus ``SPLIT_SCALE`` of its norm in
    an independent random direction (drawn from ``seed``), with equal
    abundances.  A start that already has one row per component is
    returned as is.
    """
    coef = np.asarray(state.coef, dtype=np.float64)
    if coef.ndim == 2:
        return state
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_components, coef.size))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    scale = SPLIT_SCALE * float(np.linalg.norm(coef))
    if not scale > 0:
        scale = SPLIT_SCALE
    coefs = coef[None, :] + scale * directions
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


def state_of(res):
    """The :class:`~mtdlearn.initializers.InitialState` at a start's result."""
    return InitialState(res["coef"], res["shift_probabilities"], res["noise_variance"],
                        res.get("weights"))
