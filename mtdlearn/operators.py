"""Patches and the shift operators ``C T_l Z`` of the paper's eq. (6-7).

Conventions (``DESIGN.md`` §2):

* A measurement is cropped to ``floor(N/L) * L`` along each axis and tiled
  row-major into non-overlapping ``L x L`` patches.
* ``Z`` zero-pads an ``L x L`` image to ``2L x 2L`` (zeros right and bottom),
  ``T_l`` shifts circularly, ``(T_l Z F)[i, j] = (Z F)[(i + l_0) % 2L, (j + l_1) % 2L]``,
  and ``C`` keeps the top-left ``L x L`` block.
* ``C T_l Z F`` shows ``F`` with its top-left corner at offset
  ``d = (-l) mod 2L`` mapped into ``[-(L-1), L-1]``; when ``l_0 = L`` or
  ``l_1 = L`` the patch is empty.  There are ``(2L-1)**2`` non-empty and
  ``4L-1`` empty shifts.

Shifts are indexed flat, ``s = l_0 * 2L + l_1``, in ``0 .. 4L**2 - 1``.
"""

import numpy as np

from ._validation import check_array_float, check_int

__all__ = [
    "extract_patches",
    "patch_grid_shape",
    "pad_shift_crop",
    "pad_shift_crop_adjoint",
    "all_shifts",
    "shift_gather_index",
    "nonempty_shifts",
    "empty_shifts",
    "shift_to_offset",
    "offset_to_shift",
    "enumerate_hypotheses",
    "max_density",
    "density_to_shift_probabilities",
    "shift_probabilities_to_density",
    "check_shift_probabilities",
]


def patch_grid_shape(shape, image_size):
    """Number of patch rows and columns of a measurement of ``shape``."""
    return shape[-2] // image_size, shape[-1] // image_size


def extract_patches(measurement, image_size):
    """Non-overlapping ``L x L`` patches of a measurement, row-major.

    Parameters
    ----------
    measurement : array-like of shape (..., N1, N2)
        One measurement or a stack; it is cropped to multiples of ``L``.
    image_size : int
        Patch side ``L``.

    Returns
    -------
    patches : ndarray of shape (..., N_d, L, L)
        ``N_d = (N1 // L) * (N2 // L)``; patch ``m`` covers rows
        ``(m // (N2 // L)) * L + [0, L)`` and columns ``(m % (N2 // L)) * L + [0, L)``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.operators import extract_patches
    >>> extract_patches(np.arange(36.).reshape(6, 6), 3)[1]
    array([[ 3.,  4.,  5.],
           [ 9., 10., 11.],
           [15., 16., 17.]])
    """
    L = check_int(image_size, "image_size", minimum=1)
    M = check_array_float(measurement, "measurement", min_ndim=2, dtype=None)
    nr, nc = patch_grid_shape(M.shape, L)
    if nr == 0 or nc == 0:
        raise ValueError(
            f"measurement of shape {M.shape} is smaller than one {L}x{L} patch"
        )
    lead = M.shape[:-2]
    tiles = M[..., : nr * L, : nc * L].reshape(lead + (nr, L, nc, L))
    tiles = np.swapaxes(tiles, -3, -2)
    return tiles.reshape(lead + (nr * nc, L, L))


def _shift_index(L):
    """``idx[l, i] = (i + l) % 2L`` for l in [0, 2L), i in [0, L)."""
    return (np.arange(L)[None, :] + np.arange(2 * L)[:, None]) % (2 * L)


def _as_shift(shift, L):
    shift = np.asarray(shift)
    if shift.shape != (2,) or not np.issubdtype(shift.dtype, np.integer):
        raise ValueError(f"shift must be a pair of integers, got {shift!r}")
    if np.any(shift < 0) or np.any(shift >= 2 * L):
        raise ValueError(f"shift must lie in [0, {2 * L - 1}]^2, got {tuple(shift)}")
    return int(shift[0]), int(shift[1])


def pad_shift_crop(image, shift):
    """``C T_l Z`` applied to images (eq. 6-7).

    Parameters
    ----------
    image : array-like of shape (..., L, L)
    shift : pair of int in ``[0, 2L)``, or None
        ``None`` returns all ``4L**2`` shifts at once.

    Returns
    -------
    patch : ndarray of shape (..., L, L), or (..., 2L, 2L, L, L) for ``shift=None``
    """
    F = check_array_float(image, "image", min_ndim=2)
    L = F.shape[-1]
    if F.shape[-2] != L:
        raise ValueError(f"image must be square, got shape {F.shape}")
    Z = np.zeros(F.shape[:-2] + (2 * L, 2 * L))
    Z[..., :L, :L] = F
    idx = _shift_index(L)
    if shift is None:
        return Z[..., idx[:, None, :, None], idx[None, :, None, :]]
    l0, l1 = _as_shift(shift, L)
    return Z[..., idx[l0][:, None], idx[l1][None, :]]


def pad_shift_crop_adjoint(patch, shift):
    """Adjoint ``(C T_l Z)^T``: an ``L x L`` patch back to image coordinates."""
    P = check_array_float(patch, "patch", min_ndim=2)
    L = P.shape[-1]
    if P.shape[-2] != L:
        raise ValueError(f"patch must be square, got shape {P.shape}")
    l0, l1 = _as_shift(shift, L)
    Z = np.zeros(P.shape[:-2] + (2 * L, 2 * L))
    idx = _shift_index(L)
    Z[..., idx[l0][:, None], idx[l1][None, :]] = P
    return Z[..., :L, :L]


def all_shifts(image_size):
    """All ``4L**2`` shifts as an ``(4L**2, 2)`` integer array, flat order."""
    L = check_int(image_size, "image_size", minimum=1)
    g = np.arange(2 * L)
    return np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)


def nonempty_shifts(image_size):
    """Flat indices of the ``(2L-1)**2`` shifts whose patch is not empty."""
    s = all_shifts(image_size)
    L = int(image_size)
    return np.flatnonzero((s[:, 0] != L) & (s[:, 1] != L))


def empty_shifts(image_size):
    """Flat indices of the ``4L-1`` shifts whose patch is empty."""
    s = all_shifts(image_size)
    L = int(image_size)
    return np.flatnonzero((s[:, 0] == L) | (s[:, 1] == L))


def shift_gather_index(image_size, shifts=None):
    """Gather table of ``C T_l Z``: ``patch.ravel() = F_ext[index[s]]``.

    ``F_ext`` is ``F.ravel()`` with one zero appended; ``index[s, k]`` is the
    flat pixel of ``F`` that lands at patch pixel ``k`` under shift ``s``, or
    ``L*L`` (the appended zero) when none does.  Shape ``(n_shifts, L*L)``.
    """
    L = check_int(image_size, "image_size", minimum=1)
    if shifts is None:
        shifts = np.arange(4 * L * L)
    shifts = np.asarray(shifts)
    l0, l1 = shifts // (2 * L), shifts % (2 * L)
    idx = _shift_index(L)
    rows = idx[l0][:, :, None]  # (S, L, 1)
    cols = idx[l1][:, None, :]  # (S, 1, L)
    valid = (rows < L) & (cols < L)
    flat = np.where(valid, rows * L + cols, L * L)
    return flat.reshape(len(shifts), L * L)


def shift_to_offset(shift, image_size):
    """Offset ``d`` in ``[-(L-1), L-1]`` of the image's top-left corner in the
    patch for shift ``l`` (elementwise); ``L`` marks an empty axis."""
    L = int(image_size)
    d = (-np.asarray(shift)) % (2 * L)
    return np.where(d > L, d - 2 * L, d)


def offset_to_shift(offset, image_size):
    """Shift ``l = (-d) mod 2L`` that shows the image at offset ``d``."""
    L = int(image_size)
    return (-np.asarray(offset)) % (2 * L)


def enumerate_hypotheses(image_size, n_rotations):
    """The non-empty hypotheses ``(rotation index k, shift s)``.

    Returns
    -------
    rotation : ndarray of shape (K * (2L-1)**2,)
    shift : ndarray of shape (K * (2L-1)**2,)
        Flat shift index (``l_0 * 2L + l_1``).  Rotation-major order.
    empty : ndarray of shape (4L-1,)
        The empty shifts, all identified in one "empty" hypothesis.
    """
    K = check_int(n_rotations, "n_rotations", minimum=1)
    ne = nonempty_shifts(image_size)
    rotation = np.repeat(np.arange(K), ne.size)
    shift = np.tile(ne, K)
    return rotation, shift, empty_shifts(image_size)


def max_density(image_size):
    """Largest density ``L**2 / (2L-1)**2`` for which ``rho`` stays on the simplex."""
    L = int(image_size)
    return L * L / (2 * L - 1) ** 2


def density_to_shift_probabilities(density, image_size):
    """Shift distribution ``rho`` (2L x 2L) implied by a density ``gamma``.

    Each of the ``(2L-1)**2`` non-empty shifts has probability ``gamma / L**2``
    (a copy's top-left corner is equally likely at any offset of a tile);
    the ``4L-1`` empty shifts share the rest equally.
    """
    L = check_int(image_size, "image_size", minimum=1)
    gamma = float(density)
    if not (0.0 <= gamma <= max_density(L)):
        raise ValueError(f"density must lie in [0, {max_density(L):.6g}] for image_size={L}, "
                         f"got {gamma}")
    rho = np.empty(4 * L * L)
    ne, em = nonempty_shifts(L), empty_shifts(L)
    rho[ne] = gamma / (L * L)
    rho[em] = max(0.0, 1.0 - gamma * ne.size / (L * L)) / em.size
    return rho.reshape(2 * L, 2 * L)


def shift_probabilities_to_density(shift_probabilities):
    """Density ``gamma = (L**2 / (2L-1)**2) * sum of rho over non-empty shifts``
    (the inverse of :func:`density_to_shift_probabilities`)."""
    rho = np.asarray(shift_probabilities, dtype=np.float64)
    L = rho.shape[-1] // 2
    ne = nonempty_shifts(L)
    return float(rho.reshape(-1)[ne].sum() * L * L / ne.size)


def check_shift_probabilities(shift_probabilities, image_size, name="shift_probabilities"):
    """Validate a 2L x 2L probability table (non-negative, sums to one)."""
    L = int(image_size)
    rho = check_array_float(shift_probabilities, name, ndim=2)
    if rho.shape != (2 * L, 2 * L):
        raise ValueError(f"{name} must have shape ({2 * L}, {2 * L}), got {rho.shape}")
    if np.any(rho < 0):
        raise ValueError(f"{name} must be non-negative")
    total = rho.sum()
    if abs(total - 1.0) > 1e-8:
        raise ValueError(f"{name} must sum to 1, got {total:.12g}")
    return rho / total
