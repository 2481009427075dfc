"""The hypotheses of the E-step: one owner of their layout.

A hypothesis pairs a rotation of the grid (eq. 8) with a non-empty shift of
the copy in the patch (eq. 6-7); the empty shifts merge into one more
hypothesis.  :class:`HypothesisSpace` lays them out, gives their priors
(eq. 12), templates and the linear maps ``A_h`` of the M-step, and decodes
an index back to (rotation, offset).
"""

import functools

import numpy as np

from ..basis.fourier_bessel import rotated_evaluation
from ..imaging.shifts import (empty_shifts, gather_adjoint, nonempty_shifts, shift_gather_index,
                        shift_to_offset)

__all__ = ["HypothesisSpace"]


class HypothesisSpace:
    """The hypotheses of the E-step: their layout, priors, decoding and maps.

    Hypothesis ``h = k * S + j`` pairs rotation ``k`` of the grid (eq. 8)
    with the ``j``-th non-empty shift (``S = (2L-1)**2`` of them, in
    increasing flat order ``l_0 * 2L + l_1``): rotation-major.  The ``4L-1``
    empty shifts all give the same (empty) patch and form one merged
    hypothesis, kept apart.  This class is the one owner of that layout:
    everything that builds templates, priors or per-hypothesis tables, or
    decodes a hypothesis index, asks it.

    Parameters
    ----------
    basis : basis object
        The basis of the coefficients (see :func:`mtdlearn.basis.fourier_bessel.check_basis`).
    angles : array-like of shape (K,)
        The rotation grid, in radians.

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
    shifts : ndarray of shape (S,)
        Flat indices of the non-empty shifts.
    empty : ndarray of shape (4L-1,)
        Flat indices of the empty shifts.
    n_shifts : int
        ``S = (2L-1)**2``.
    n_hypotheses : int
        ``H = K * S`` non-empty hypotheses (the merged empty one not counted).

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0, 3.14159])
    >>> space.n_hypotheses, space.n_shifts, space.empty.size
    (162, 81, 19)
    """

    def __init__(self, basis, angles):
        self.basis = basis
        self.angles = np.asarray(angles, dtype=np.float64)
        self.image_size = L = int(basis.image_size)
        self.n_rotations = int(self.angles.size)
        self.shifts = nonempty_shifts(L)
        self.empty = empty_shifts(L)
        self.n_shifts = int(self.shifts.size)
        self.n_hypotheses = self.n_rotations * self.n_shifts

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
        return np.repeat(np.arange(self.n_rotations), self.n_shifts)

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
        return np.tile(self.shifts, self.n_rotations)

    def per_rotation(self, values):
        """View per-hypothesis values as ``(K, S, ...)``.

        Parameters
        ----------
        values : ndarray of shape (H, ...)
            One entry per non-empty hypothesis.

        Returns
        -------
        values : ndarray of shape (K, S, ...)
            The same values, rotation by shift.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0])
        >>> space.per_rotation(np.zeros(space.n_hypotheses)).shape
        (2, 81)
        """
        return values.reshape((self.n_rotations, self.n_shifts) + values.shape[1:])

    def decode(self, hypothesis):
        """Rotation index and copy offset of non-empty hypotheses.

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
        return (h // self.n_shifts, shift_to_offset(s // (2 * L), L),
                shift_to_offset(s % (2 * L), L))

    def log_prior(self, shift_probabilities):
        """Log prior of every hypothesis (eq. 12).

        Parameters
        ----------
        shift_probabilities : array-like of shape (2L, 2L)
            ``rho``.

        Returns
        -------
        log_prior : ndarray of shape (H,)
            ``log rho_l - log K``; ``-inf`` where ``rho_l = 0``.
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
            lp_empty = float(np.log(rho[self.empty].sum()))
        return lp, lp_empty

    def templates(self, coef):
        """All non-empty templates ``T_h = C T_l Z F_{phi_k}`` (eq. 6-7).

        Parameters
        ----------
        coef : array-like of shape (p,)
            Image coefficients ``alpha``.

        Returns
        -------
        templates : ndarray of shape (H, L*L)
            Flattened templates in hypothesis order.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0])
        >>> space.templates(np.ones(10)).shape
        (162, 25)
        """
        K, d = self.n_rotations, self.image_size ** 2
        images = self.basis.evaluate(self.basis.rotate(coef, self.angles)).reshape(K, -1)
        ext = np.concatenate([images, np.zeros((K, 1))], axis=1)
        return ext[:, self.gather_index].reshape(-1, d)

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
        """``B R(phi_k)`` for every rotation, ``(K, L*L, p)``.

        With the shifts' gather it gives the linear maps ``A_h`` of the
        M-step: ``T_h = A_h alpha``.

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
        >>> HypothesisSpace(FourierBesselBasis(5), [0.0, 1.0]).rotated_evaluation.shape
        (2, 25, 10)
        """
        return rotated_evaluation(self.basis, self.angles)

    def adjoint(self, weighted_patches):
        """Scatter per-hypothesis patches back to each rotation's image pixels.

        Applies ``sum_l (C T_l Z)^T`` within each rotation: the adjoint of
        the shifts, used by the M-step on ``S = w^T P``.

        Parameters
        ----------
        weighted_patches : ndarray of shape (H, L*L)
            One patch-sized array per hypothesis.

        Returns
        -------
        images : ndarray of shape (K, L*L)
            Per rotation, the sum of the patches mapped back to the image.

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
