"""The hypotheses of the E-step: one owner of their layout.

A hypothesis names a component (the kind of particle; one in the paper's
model), a rotation of the grid (eq. 8) and a non-empty shift of the copy in
the patch (eq. 6-7); the empty shifts merge into one more hypothesis.
:class:`HypothesisSpace` lays them out, gives their priors (eq. 12),
templates and the linear maps ``A_h`` of the M-step (through the image
formation of the measurements, :mod:`mtdlearn.imaging.formation`), and
decodes an index back to (component, rotation, offset).
"""

import functools

import numpy as np

from ..basis.protocol import rotated_evaluation
from .._validation import check_int
from ..imaging.formation import check_formation
from ..imaging.shifts import (empty_shifts, gather_adjoint, nonempty_shifts, shift_gather_index,
                        shift_to_offset)

__all__ = ["HypothesisSpace"]

#: Largest ``(K, L*L, p)`` table of :attr:`HypothesisSpace.rotated_evaluation`
#: the M-step keeps; above it (L = 41 from K = 32: 454 MB at K = 32, 1.8 GB
#: at the K = 128 that ``refinement="auto"`` can reach) it is made block by
#: block each M-step (:meth:`HypothesisSpace.rotation_blocks`).  Every
#: L <= 21 at K <= 128 keeps it (at most 127 MB).
TABLE_MAX_BYTES = 256 * 2**20


class HypothesisSpace:
    """The hypotheses of the E-step: their layout, priors, decoding and maps.

    Hypothesis ``h = (c * K + k) * S + j`` pairs component ``c`` (one kind
    of particle, with its own coefficients; ``C = 1`` in the paper's model)
    and rotation ``k`` of the grid (eq. 8) with the ``j``-th non-empty shift
    (``S = (2L-1)**2`` of them, in increasing flat order ``l_0 * 2L + l_1``):
    component-major, then rotation-major.  The ``4L-1`` empty shifts all
    give the same (empty) patch and form one merged hypothesis, kept apart.
    This class is the one owner of that layout: everything that builds
    templates, priors or per-hypothesis tables, or decodes a hypothesis
    index, asks it.  A template image is one (component, rotation) pair:
    ``n_images = C K`` of them.

    Parameters
    ----------
    basis : basis object
        The basis of the coefficients (see :func:`mtdlearn.basis.protocol.check_basis`).
    angles : array-like of shape (K,)
        The rotation grid, in radians.
    n_components : int, default=1
        ``C``, the number of kinds of particle.
    formation : ImageFormation, default=None
        How a copy appears in the measurements these hypotheses explain
        (:mod:`mtdlearn.imaging.formation`); ``None``: the paper's model,
        :class:`~mtdlearn.imaging.formation.WhiteNoiseFormation`.

    Attributes
    ----------
    basis : basis object
        The basis.
    angles : ndarray of shape (K,)
        The rotation grid.
    image_size : int
        ``L``.
    n_rotations : int
        ``K``.
    n_components : int
        ``C``.
    n_images : int
        ``C K`` template images, one per (component, rotation).
    formation : ImageFormation
        The image formation of the measurements.
    shifts : ndarray of shape (S,)
        Flat indices of the non-empty shifts.
    empty : ndarray of shape (4L-1,)
        Flat indices of the empty shifts.
    n_shifts : int
        ``S = (2L-1)**2``.
    n_hypotheses : int
        ``H = C * K * S`` non-empty hypotheses (the merged empty one not counted).

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0, 3.14159])
    >>> space.n_hypotheses, space.n_shifts, space.empty.size
    (162, 81, 19)
    """

    def __init__(self, basis, angles, *, n_components=1, formation=None):
        self.basis = basis
        self.angles = np.asarray(angles, dtype=np.float64)
        self.image_size = L = int(basis.image_size)
        self.n_rotations = int(self.angles.size)
        self.n_components = check_int(n_components, "n_components", minimum=1)
        self.n_images = self.n_components * self.n_rotations
        self.formation = check_formation(formation)
        self.shifts = nonempty_shifts(L)
        self.empty = empty_shifts(L)
        self.n_shifts = int(self.shifts.size)
        self.n_hypotheses = self.n_images * self.n_shifts

    @property
    def component_index(self):
        """Component index ``c`` of each non-empty hypothesis, shape ``(H,)``.

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0], n_components=2)
        >>> space.component_index[[0, 161, 162]]
        array([0, 0, 1])
        """
        return np.repeat(np.arange(self.n_components), self.n_rotations * self.n_shifts)

    @property
    def rotation_index(self):
        """Rotation index ``k`` of each non-empty hypothesis, shape ``(H,)``.

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0]).rotation_index[[0, 81]]
        array([0, 1])
        """
        return np.tile(np.repeat(np.arange(self.n_rotations), self.n_shifts), self.n_components)

    @property
    def shift_index(self):
        """Flat shift index ``l_0 * 2L + l_1`` of each non-empty hypothesis, shape ``(H,)``.

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0]).shift_index[[0, 81]]
        array([0, 0])
        """
        return np.tile(self.shifts, self.n_images)

    def per_rotation(self, values):
        """View per-hypothesis values as ``(C K, S, ...)``: per template image, by shift.

        Parameters
        ----------
        values : ndarray of shape (H, ...)
            One entry per non-empty hypothesis.

        Returns
        -------
        values : ndarray of shape (C K, S, ...)
            The same values, (component, rotation) by shift: ``(K, S, ...)``
            for one component.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0])
        >>> space.per_rotation(np.zeros(space.n_hypotheses)).shape
        (2, 81)
        """
        return values.reshape((self.n_images, self.n_shifts) + values.shape[1:])

    def component(self, hypothesis):
        """Component index of non-empty hypotheses.

        Parameters
        ----------
        hypothesis : array-like of int
            Indices in ``[0, H)``.

        Returns
        -------
        component : ndarray of int
            ``c``, in ``[0, C)``.

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> HypothesisSpace(FourierBesselBasis(5), [0.0], n_components=2).component([0, 81])
        array([0, 1])
        """
        h = np.asarray(hypothesis, dtype=np.int64)
        return h // (self.n_rotations * self.n_shifts)

    def decode(self, hypothesis):
        """Rotation index and copy offset of non-empty hypotheses (see :meth:`component`).

        A copy at shift ``l`` of a patch has its top-left corner at offset
        ``d = (-l) mod 2L``, mapped to ``[-(L-1), L-1]``, from the patch's
        top-left corner.

        Parameters
        ----------
        hypothesis : array-like of int
            Indices in ``[0, H)``.

        Returns
        -------
        rotation : ndarray of int
            Rotation index ``k`` (angle ``angles[k]``).
        row_offset : ndarray of int
            Row offset ``d_0`` of the copy.
        col_offset : ndarray of int
            Column offset ``d_1`` of the copy.

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0])
        >>> space.decode([0, 82])
        (array([0, 1]), array([0, 0]), array([ 0, -1]))
        """
        h = np.asarray(hypothesis, dtype=np.int64)
        L = self.image_size
        s = self.shifts[h % self.n_shifts]
        return ((h // self.n_shifts) % self.n_rotations, shift_to_offset(s // (2 * L), L),
                shift_to_offset(s % (2 * L), L))

    def log_prior(self, shift_probabilities, weights=None):
        """Log prior of every hypothesis (eq. 12).

        Parameters
        ----------
        shift_probabilities : array-like of shape (2L, 2L)
            ``rho``.
        weights : array-like of shape (C,), default=None
            The components' abundances ``w_c`` (on the simplex); ``None``:
            equal, ``1 / C``.

        Returns
        -------
        log_prior : ndarray of shape (H,)
            ``log rho_l - log K + log w_c``; ``-inf`` where ``rho_l = 0``
            or ``w_c = 0``.  The shift distribution is shared by the
            components: a patch holds a copy of kind ``c`` at shift ``l``
            with probability ``w_c rho_l``.
        log_prior_empty : float
            Log of the total mass of the empty shifts.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0])
        >>> lp, lp_empty = space.log_prior(np.full((10, 10), 0.01))
        >>> lp.shape, bool(np.allclose(lp, np.log(0.005)))
        ((162,), True)
        """
        rho = np.asarray(shift_probabilities, dtype=np.float64).reshape(-1)
        with np.errstate(divide="ignore"):
            lp = np.tile(np.log(rho[self.shifts]) - np.log(self.n_rotations), self.n_rotations)
            if self.n_components > 1 and weights is None:
                lp = np.tile(lp - np.log(self.n_components), self.n_components)
            elif self.n_components > 1 or weights is not None:
                w = np.asarray(weights, dtype=np.float64).reshape(-1)
                if w.shape != (self.n_components,):
                    raise ValueError(f"weights must have one entry per component "
                                     f"({self.n_components}), got shape {np.shape(weights)}")
                lp = (lp[None, :] + np.log(w)[:, None]).reshape(-1)
            lp_empty = float(np.log(rho[self.empty].sum()))
        return lp, lp_empty

    def rotated_images(self, coef):
        """The formed, rotated images ``H F^{(c)}_{phi_k}``, one per template image.

        Parameters
        ----------
        coef : array-like of shape (p,) or (C, p)
            Image coefficients ``alpha`` (one row per component).

        Returns
        -------
        images : ndarray of shape (C K, L*L)
            Flattened images, component-major, through ``formation``.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0], n_components=2)
        >>> space.rotated_images(np.ones((2, 10))).shape
        (4, 25)
        """
        coef = np.asarray(coef)
        rows = coef.reshape(self.n_components, -1) if coef.ndim == 2 else [coef]
        if len(rows) != self.n_components:
            raise ValueError(f"coef must have {self.n_components} row(s), one per component; "
                             f"got shape {coef.shape}")
        K = self.n_rotations
        images = [self.basis.evaluate(self.basis.rotate(c, self.angles)).reshape(K, -1)
                  for c in rows]
        images = images[0] if len(images) == 1 else np.concatenate(images)
        return self.formation.form(images)

    def templates(self, coef, hypotheses=None):
        """All non-empty templates ``T_h = C T_l Z H F^{(c)}_{phi_k}`` (eq. 6-7).

        Parameters
        ----------
        coef : array-like of shape (p,) or (C, p)
            Image coefficients ``alpha`` (one row per component).
        hypotheses : array-like of int, default=None
            Only these hypotheses' templates, in this order (indices may
            repeat); ``None``: all of them.

        Returns
        -------
        templates : ndarray of shape (H, L*L) or (len(hypotheses), L*L)
            Flattened templates in hypothesis order (or in the order asked).

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0])
        >>> space.templates(np.ones(10)).shape
        (162, 25)
        """
        d = self.image_size ** 2
        images = self.rotated_images(coef)
        ext = np.concatenate([images, np.zeros((self.n_images, 1))], axis=1)
        if hypotheses is None:
            return ext[:, self.gather_index].reshape(-1, d)
        image, shift = np.divmod(np.asarray(hypotheses, dtype=np.int64), self.n_shifts)
        return ext[image[:, None], self.gather_index[shift]]

    @functools.cached_property
    def gather_index(self):
        """Gather table of the non-empty shifts, ``(S, L*L)``.

        ``T_{k, j}.ravel() = append(F_k.ravel(), 0)[gather_index[j]]``
        (see :func:`mtdlearn.imaging.shifts.shift_gather_index`).

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> HypothesisSpace(FourierBesselBasis(5), [0.0]).gather_index.shape
        (81, 25)
        """
        return shift_gather_index(self.image_size, self.shifts)

    @functools.cached_property
    def visibility(self):
        """Which image pixels each non-empty shift shows, ``(S, L*L)`` of 0/1.

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> vis = HypothesisSpace(FourierBesselBasis(5), [0.0]).visibility
        >>> vis.shape, float(vis[0].sum())  # shift (0, 0) shows the whole image
        ((81, 25), 25.0)
        """
        d = self.image_size ** 2
        vis = np.zeros((self.n_shifts, d + 1))
        np.put_along_axis(vis, self.gather_index, 1.0, axis=1)
        return vis[:, :d]

    @functools.cached_property
    def rotated_evaluation(self):
        """``H B R(phi_k)`` for every rotation, ``(K, L*L, p)``.

        The basis evaluated at each rotation, through ``formation``
        (``H``; the identity in the paper's model).  With the shifts'
        gather it gives the linear maps ``A_h`` of the M-step:
        ``T_h = A_h alpha`` (the same for every component).

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0]).rotated_evaluation.shape
        (2, 25, 10)
        """
        return self.formation.form_columns(rotated_evaluation(self.basis, self.angles))

    @property
    def table_bytes(self):
        """Bytes of the whole :attr:`rotated_evaluation` table (float64)."""
        return 8 * self.n_rotations * self.formation.support(self.image_size) ** 2 * \
            self.basis.n_functions

    @property
    def keeps_table(self):
        """Whether the M-step keeps the whole :attr:`rotated_evaluation` table.

        At most :data:`TABLE_MAX_BYTES`: made once and kept; above it,
        :meth:`rotation_blocks` makes it block by block as needed.
        """
        return self.table_bytes <= TABLE_MAX_BYTES

    def rotation_blocks(self, max_bytes):
        """:attr:`rotated_evaluation` in blocks of rotations, for the M-step.

        Parameters
        ----------
        max_bytes : int
            Bytes of a block (at least one rotation).

        Yields
        ------
        start, stop : int
            The block's rotations ``start..stop-1``.
        block : ndarray of shape (stop - start, S*S, p)
            Their rows of the table, made when asked and not kept (the
            M-step's way above :data:`TABLE_MAX_BYTES`), by
            ``basis.rotate`` (``B R(phi) = rotate(B, -phi)`` row by row,
            ``L**2 p`` per rotation instead of the ``L**2 p**2`` of a
            product with ``R(phi)``; equal to rounding).

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0, 2.0])
        >>> [(a, b, blk.shape) for a, b, blk in space.rotation_blocks(2 * 25 * 10 * 8)]
        [(0, 2, (2, 25, 10)), (2, 3, (1, 25, 10))]
        """
        K, B = self.n_rotations, self.basis.matrix
        step = max(1, int(max_bytes) // max(1, self.table_bytes // K))
        for k0 in range(0, K, step):
            k1 = min(K, k0 + step)
            block = self.basis.rotate(B[None], -self.angles[k0:k1, None])
            yield k0, k1, self.formation.form_columns(block)

    def adjoint(self, weighted_patches):
        """Scatter per-hypothesis patches back to each template image's pixels.

        Applies ``sum_l (C T_l Z)^T`` within each (component, rotation): the
        adjoint of the shifts, used by the M-step on ``S = w^T P``.

        Parameters
        ----------
        weighted_patches : ndarray of shape (H, L*L)
            One patch-sized array per hypothesis.

        Returns
        -------
        images : ndarray of shape (C K, L*L)
            Per template image, the sum of the patches mapped back to it.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0])
        >>> space.adjoint(np.ones((81, 25))).reshape(5, 5)[0]  # corner pixel seen 25 times
        array([25., 25., 25., 25., 25.])
        """
        d = self.image_size ** 2
        return gather_adjoint(self.per_rotation(weighted_patches), self.gather_index, d)
