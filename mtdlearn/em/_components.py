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
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.cluster import KMeans

from ..imaging import _centring
from ..initializers import InitialState, split_image
from ..likelihood.hypotheses import HypothesisSpace
from ..likelihood.posteriors import build_per_patch_model, estep_detections
from . import _ctf_start, _refinement
from ._state import after_phase, state_of

__all__ = []

#: The most copies :func:`classify` reads (drawn at random beyond it).
MAX_COPIES = 20000


def run(est, prepared, state, seed, n_jobs):
    """One start of a mixture from a one-image start: fit one image, then start the kinds from it.

    The one-image EM runs first on the same data (loosely, to the coarse
    phases' tolerance; through the CTFs after a white-noise phase when
    :mod:`~mtdlearn.em._ctf_start` applies).  The copies it finds are then
    grouped into the ``C`` components (:func:`classify`), or, where they
    cannot be read (through CTFs or colored noise, on a distributed
    source), its image is split at random (:func:`split`); the mixture
    runs from there to ``tol``.  The one-image phase's iterations are
    ``one_component_n_iter_``.

    Measured (``benchmarks/bench_components.py``):

    * L = 5, two random kinds, SNR 10, 1000**2, seeds 0-3: splitting the
      start's image itself found both kinds on three seeds and on the
      fourth ended with one kind at 3.5 % of the copies holding a blend
      (error 0.84); splitting the one-image fit at random found both kinds
      on all four (errors 0.0011-0.0119), as did four random splits
      (``n_init=4``) at about four times the cost, and so does
      :func:`classify` (0.0022-0.0126, the same fixed points to the
      stopping rule's precision).
    * L = 21, a complex and its subunit (``--particles``), SNR 3, 1600**2:
      the one-image fit is both kinds laid over each other (errors 0.98 and
      0.97) and the random split stayed there (0.98, 0.97; no pick named
      its kind), converged and without a warning.  :func:`classify`'s
      groups start at 0.17 and 0.16 and the mixture ends at 0.036 and
      0.045, abundances 0.59 / 0.41 (the copies' 0.58 / 0.42).
    """
    space = prepared.hypotheses
    one = prepared.with_space(HypothesisSpace(space.basis, space.angles))
    if _ctf_start.applies(est, one):
        first = _ctf_start.run(est, one, state, seed, n_jobs)
    else:
        first = est._run_grid(one, state, seed, n_jobs,
                              tol=partial(_refinement.coarse_tol, est.tol_))
    state = state_of(first)
    start = classify(one, state, space.n_components, seed, n_jobs)
    state = split(state, space.n_components, seed) if start is None else start
    res = _refinement.run(est, prepared, state, seed, n_jobs)
    return after_phase(first, res, "one_component_n_iter_")


def classify(prepared, state, n_components, seed, n_jobs):
    """A start of ``n_components`` images from the copies a one-image fit finds.

    At ``state``, a one-image fit on ``prepared`` (its one-image hypotheses),
    every patch whose most probable hypothesis is a copy (eq. 11) names the
    copy's corner and rotation
    (:func:`~mtdlearn.likelihood.posteriors.estep_detections`).  The
    distinct copies that lie inside their measurement (at most
    :data:`MAX_COPIES`, drawn from ``seed`` beyond that) are cut out,
    expanded on the basis, turned back by their rotation, and clustered
    into ``n_components`` groups by k-means
    (:class:`sklearn.cluster.KMeans`, 10 starts, seeded from ``seed``).
    Each component starts at its group's mean, with equal abundances: 2-D
    classification's start from picked particles, with the one-image fit as
    the reference that picks and aligns them.

    Returns ``None`` when the copies cannot be read here, and the caller
    splits at random (:func:`split`): on a distributed source (the
    micrographs live on the workers), through CTFs or colored noise (the
    copies are filtered), or with fewer than ``2 n_components`` copies.
    """
    data, space = prepared.data, prepared.hypotheses
    if prepared.groups is not None or data.distributed:
        return None
    basis, L = space.basis, space.image_size
    model = build_per_patch_model(np.asarray(state.coef, dtype=np.float64),
                                  state.shift_probabilities, state.noise_variance, space)
    patch, best, _ = estep_detections(data, model, n_jobs=n_jobs)
    k, d0, d1 = space.decode(best)
    m, r0, c0 = data.locate(patch)
    rows, cols = r0 + d0, c0 + d1
    shapes = np.array([M.shape for M in data.measurements], dtype=np.int64).reshape(-1, 2)[m]
    inside = ((rows >= 0) & (cols >= 0) & (rows + L <= shapes[:, 0])
              & (cols + L <= shapes[:, 1]))
    # a copy straddling several patches is named by each: keep it once
    _, first = np.unique(np.stack([m, rows, cols], axis=1)[inside], axis=0, return_index=True)
    m, rows, cols, k = (a[inside][first] for a in (m, rows, cols, k))
    if len(m) < 2 * n_components:
        return None
    rng = np.random.default_rng(seed)
    if len(m) > MAX_COPIES:
        kept = np.sort(rng.choice(len(m), MAX_COPIES, replace=False))
        m, rows, cols, k = m[kept], rows[kept], cols[kept], k[kept]
    windows = np.empty((len(m), L, L))
    for j in np.unique(m):                  # the measurements holding copies
        sel = m == j
        windows[sel] = sliding_window_view(data.measurements[j], (L, L))[rows[sel], cols[sel]]
    copies = basis.rotate(basis.expand(windows), -np.asarray(space.angles)[k])
    groups = KMeans(n_components, n_init=10,
                    random_state=int(rng.integers(2**31 - 1))).fit(copies)
    return InitialState(groups.cluster_centers_, state.shift_probabilities,
                        state.noise_variance, np.full(n_components, 1.0 / n_components))


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
