"""The cost of :mod:`mtdlearn.autocorrelation.fit` on a subset of shifts, by chunks of angles.

With a ``shift_radius`` (the default beyond ``L = 11``) the third moment runs
over the ``n`` kept shifts, and the cost and its gradient are sums over the
``K`` angles of the rotational average.  Here they are computed by chunks
of angles, on a fixed partition (:data:`WINDOW_BYTES` per chunk's windows,
whatever ``n_jobs``), through a map of :func:`mtdlearn._parallel.thread_map`,
and reduced in chunk order: results do not depend on ``n_jobs``.  Two
passes over the chunks: the model's moments, then (with the residuals) the
gradient.

A chunk's windows are one shift-major matrix, ``W[j, (k, x)] = F_k[x + s_j]``,
built and adjoined with one slice per shift instead of a gather of
``K L**2 n`` indices, so that its products are single BLAS calls, run
without the GIL; ``ac3`` goes by symmetric rank-k products
(:func:`_chunk_moments`), and the rotated images by the basis's rotations
(:class:`RotatedImages`) instead of a ``K x L**2 x p`` table.  Measured at
``L = 21`` (281 functions, ``K = 85``, ``n = 98``) inside L-BFGS-B, on an
otherwise idle two-core machine: 157 ms per evaluation in one piece
(gathers, the table, GEMMs), 50-53 ms so on one thread, 37 ms on two (the
slices hold the GIL).

:func:`~mtdlearn.autocorrelation.fit._cost_and_grad_flat` calls
:func:`chunked_moments` and :func:`chunked_image_gradient` for a subset of
shifts; they agree with the one-piece formulas of
:mod:`~mtdlearn.autocorrelation.model_moments` to rounding.
"""

import numpy as np

from .._parallel import _serial_map
from .model_moments import _ac2_fft, _ac2_fft_adjoint

#: Bytes of one chunk's windows ``(n, angles * L**2)``: 10 or 11 angles at
#: ``L = 21`` (chunks of 8 to 17 angles ran alike there; 85 in one piece
#: 25 % slower), one angle a chunk from ``L = 39`` on.
WINDOW_BYTES = 2**22


def chunk_ranges(n_angles, n_shifts, n_pixels):
    """The fixed partition of the angles, ``[(k0, k1), ...]``: as few chunks
    as :data:`WINDOW_BYTES` allows, of sizes differing by one at most (so
    that threads share them evenly)."""
    per = max(1, WINDOW_BYTES // (8 * n_shifts * n_pixels))
    bounds = np.linspace(0, n_angles, -(-n_angles // per) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def shift_table(sub, L):
    """``(row, col)`` of each kept shift, as Python ints (the slices' bounds)."""
    return [tuple(int(v) for v in divmod(int(i), L)) for i in sub[0]]


def shift_windows(F, shifts, L):
    """Shift-major windows ``W[j, k * L**2 + x] = F[k, x + s_j]`` (zero
    outside) of flattened images ``F`` (k, L*L): shape (n, k * L*L), the
    windows of all the chunk's images side by side."""
    k = F.shape[0]
    F3 = F.reshape(k, L, L)
    W = np.zeros((len(shifts), k, L, L))
    for j, (sr, sc) in enumerate(shifts):
        W[j, :, :L - sr, :L - sc] = F3[:, sr:, sc:]
    return W.reshape(len(shifts), k * L * L)


def shift_windows_adjoint(Q, shifts, L):
    """Adjoint of :func:`shift_windows`: (n, k * L*L) to (k, L*L)."""
    k = Q.shape[1] // (L * L)
    Q4 = Q.reshape(len(shifts), k, L, L)
    out = np.zeros((k, L, L))
    for j, (sr, sc) in enumerate(shifts):
        out[:, sr:, sc:] += Q4[j, :, :L - sr, :L - sc]
    return out.reshape(k, L * L)


def _chunk_moments(F, shifts, L):
    """Sums over a chunk's rotated images ``F`` (k, L*L) of ``sum F``,
    ``ac2(F)`` and ``ac3(F)``.

    ``sum_k ac3(F_k) = W diag(f) W^T`` (``f`` the chunk's pixels, ``W``
    their windows) is ``P P^T - N N^T`` with ``P``, ``N`` the windows of
    the pixels where ``f > 0`` and ``f < 0``, scaled by ``sqrt(|f|)``: two
    symmetric rank-k products (numpy's ``A @ A.T`` is BLAS's ``syrk``, run
    without the GIL) that skip the pixels where ``f = 0`` (outside the
    basis's disk), half the flops of a GEMM less the zeros."""
    W = shift_windows(F, shifts, L)
    f = F.reshape(-1)
    root = np.sqrt(np.abs(f))
    pos, neg = f > 0, f < 0
    P, N = W[:, pos], W[:, neg]
    P *= root[pos]
    N *= root[neg]
    return F.sum(), _ac2_fft(F).sum(axis=0), P @ P.T - N @ N.T


def _chunk_gradient(F, shifts, L, G1, G2, Gs):
    """``(d/d F_k) [G1 sum F_k + <G2, ac2(F_k)> + <G3, ac3(F_k)>]`` for a
    chunk's images (``Gs = G3 + G3^T``); the windows are rebuilt, so that no
    chunk's tensors outlive it."""
    W = shift_windows(F, shifts, L)
    V = Gs @ W  # V[s, y] = sum_s' Gs[s, s'] W[s', y]
    q = 0.5 * np.einsum("sy,sy->y", V, W).reshape(F.shape)
    V *= F.reshape(-1)
    return G1 + _ac2_fft_adjoint(F, G2) + q + shift_windows_adjoint(V, shifts, L)


def chunked_moments(F, L, sub, tmap=None):
    """The rotational means ``(E1, E2 (L*L,), E3 (n, n))`` of the pixel sum,
    ``ac2`` and ``ac3`` on the subset ``sub`` of the rotated images ``F``
    (K, L*L), by chunks of angles mapped with ``tmap``
    (:func:`~mtdlearn._parallel.thread_map`'s; ``None`` serially)."""
    K, LL = F.shape
    shifts = shift_table(sub, L)
    E1, E2, E3 = 0.0, 0.0, 0.0
    for S, A2, A3 in (tmap or _serial_map)(lambda k0, k1: _chunk_moments(F[k0:k1], shifts, L),
                                           chunk_ranges(K, len(shifts), LL)):
        E1, E2, E3 = E1 + S, E2 + A2, E3 + A3
    return E1 / K, E2.reshape(LL) / K, E3 / K


def chunked_image_gradient(F, L, sub, G1, G2, G3, tmap=None):
    """``(d/d F_k) [G1 sum F_k + <G2, ac2(F_k)> + <G3, ac3(F_k)>]`` (K, L*L)
    for each rotated image, by chunks of angles mapped with ``tmap``."""
    K, LL = F.shape
    shifts = shift_table(sub, L)
    Gs = G3 + G3.T
    chunks = chunk_ranges(K, len(shifts), LL)
    parts = (tmap or _serial_map)(
        lambda k0, k1: _chunk_gradient(F[k0:k1], shifts, L, G1, G2, Gs), chunks)
    return np.concatenate(parts)


class RotatedImages:
    """The rotated images of ``coef`` and the adjoint, ``coef -> F`` (K, L*L).

    ``F_k = H B R(phi_k) coef``.  With the plain formation (``H`` the
    identity), through the basis's rotation of the coefficients and its
    ``L**2 x p`` evaluation matrix, two small GEMMs; otherwise through the
    table ``BR`` (K, L*L, p), which the two products read whole (84 MB at
    ``L = 21``: about a quarter of an evaluation there).
    """

    def __init__(self, basis, n_angles, BR=None):
        self.angles = 2 * np.pi * np.arange(n_angles) / n_angles
        self.basis, self.BR = basis, BR
        self.B = None if BR is not None else np.asarray(basis.matrix, dtype=np.float64)

    def images(self, coef):
        """``F`` (K, L*L) of ``coef`` (p,)."""
        if self.BR is not None:
            return self.BR @ coef
        return self.basis.rotate(coef, self.angles) @ self.B.T

    def adjoint(self, gF):
        """``sum_k (H B R(phi_k))^T gF_k`` (p,)."""
        if self.BR is not None:
            return gF.reshape(-1) @ self.BR.reshape(-1, self.BR.shape[-1])
        return self.basis.rotate(gF @ self.B, -self.angles).sum(axis=0)
