"""The shift operators ``C T_l Z`` of the paper's eq. (6-7), and the shift distribution.

Conventions (:doc:`/design`, "Conventions"):

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

from .._validation import check_array_float, check_int, check_real

__all__ = [
    "pad_shift_crop",
    "pad_shift_crop_adjoint",
    "all_shifts",
    "shift_gather_index",
    "nonempty_shifts",
    "empty_shifts",
    "shift_to_offset",
    "offset_to_shift",
    "gather_adjoint",
    "max_density",
    "density_to_shift_probabilities",
    "shift_probabilities_to_density",
    "check_shift_probabilities",
]


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
    """Apply the shift operator ``C T_l Z`` to images (eq. 6-7).

    ``Z`` zero-pads the image to ``2L x 2L`` (zeros right and bottom),
    ``T_l`` shifts it circularly,
    ``(T_l Z F)[i, j] = (Z F)[(i + l_0) % 2L, (j + l_1) % 2L]``, and ``C``
    keeps the top-left ``L x L`` block.  The result shows ``F`` with its
    top-left corner at offset ``d = (-l) mod 2L`` (see :func:`shift_to_offset`).

    Parameters
    ----------
    image : array-like of shape (..., L, L)
        Image(s) ``F``; any leading batch shape.
    shift : pair of int in ``[0, 2L)``, or None
        The shift ``l = (l_0, l_1)``.  ``None`` returns all ``4L**2`` shifts
        at once.

    Returns
    -------
    patch : ndarray of shape (..., L, L), or (..., 2L, 2L, L, L) for ``shift=None``
        ``C T_l Z F``; for ``shift=None``, ``patch[..., l_0, l_1, :, :]``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.shifts import pad_shift_crop
    >>> F = np.arange(9.0).reshape(3, 3)
    >>> pad_shift_crop(F, (5, 5))  # offset d = (1, 1)
    array([[0., 0., 0.],
           [0., 0., 1.],
           [0., 3., 4.]])
    >>> pad_shift_crop(F, None).shape
    (6, 6, 3, 3)
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
    """Apply the adjoint ``(C T_l Z)^T``: a patch back to image coordinates.

    Pixel ``k`` of the patch is added to the pixel of ``F`` that
    :func:`pad_shift_crop` places there; patch pixels that show no pixel of
    ``F`` are dropped.

    Parameters
    ----------
    patch : array-like of shape (..., L, L)
        Patch(es); any leading batch shape.
    shift : pair of int in ``[0, 2L)``
        The shift ``l = (l_0, l_1)``.

    Returns
    -------
    image : ndarray of shape (..., L, L)
        ``(C T_l Z)^T patch``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.shifts import pad_shift_crop_adjoint
    >>> pad_shift_crop_adjoint(np.ones((3, 3)), (5, 5))
    array([[1., 1., 0.],
           [1., 1., 0.],
           [0., 0., 0.]])
    """
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
    """List all ``4L**2`` shifts ``l = (l_0, l_1)`` in flat order.

    Parameters
    ----------
    image_size : int
        ``L``.

    Returns
    -------
    shifts : ndarray of shape (4L**2, 2), int
        Row ``s`` is the shift of flat index ``s = l_0 * 2L + l_1``.

    Examples
    --------
    >>> from mtdlearn.imaging.shifts import all_shifts
    >>> all_shifts(3)[:4]
    array([[0, 0],
           [0, 1],
           [0, 2],
           [0, 3]])
    """
    L = check_int(image_size, "image_size", minimum=1)
    g = np.arange(2 * L)
    return np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)


def nonempty_shifts(image_size):
    """Get the flat indices of the ``(2L-1)**2`` shifts whose patch is not empty.

    A patch ``C T_l Z F`` is empty exactly when ``l_0 = L`` or ``l_1 = L``.

    Parameters
    ----------
    image_size : int
        ``L``.

    Returns
    -------
    shifts : ndarray of shape ((2L-1)**2,), int
        Flat shift indices ``l_0 * 2L + l_1``, increasing.

    Examples
    --------
    >>> from mtdlearn.imaging.shifts import nonempty_shifts
    >>> nonempty_shifts(3).size
    25
    """
    s = all_shifts(image_size)
    L = int(image_size)
    return np.flatnonzero((s[:, 0] != L) & (s[:, 1] != L))


def empty_shifts(image_size):
    """Get the flat indices of the ``4L-1`` shifts whose patch is empty.

    These are the shifts with ``l_0 = L`` or ``l_1 = L``.

    Parameters
    ----------
    image_size : int
        ``L``.

    Returns
    -------
    shifts : ndarray of shape (4L-1,), int
        Flat shift indices ``l_0 * 2L + l_1``, increasing.

    Examples
    --------
    >>> from mtdlearn.imaging.shifts import empty_shifts
    >>> empty_shifts(3)
    array([ 3,  9, 15, 18, 19, 20, 21, 22, 23, 27, 33])
    """
    s = all_shifts(image_size)
    L = int(image_size)
    return np.flatnonzero((s[:, 0] == L) | (s[:, 1] == L))


def shift_gather_index(image_size, shifts=None):
    """Build the gather table of ``C T_l Z``: ``patch.ravel() = F_ext[index[s]]``.

    ``F_ext`` is ``F.ravel()`` with one zero appended; ``index[s, k]`` is the
    flat pixel of ``F`` that lands at patch pixel ``k`` under shift ``s``, or
    ``L*L`` (the appended zero) when none does.

    Parameters
    ----------
    image_size : int
        ``L``.
    shifts : array-like of int, default=None
        Flat shift indices ``l_0 * 2L + l_1``; ``None`` means all ``4L**2``.

    Returns
    -------
    index : ndarray of shape (n_shifts, L*L), int
        The gather table, one row per shift.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.shifts import pad_shift_crop, shift_gather_index
    >>> F = np.arange(9.0).reshape(3, 3)
    >>> index = shift_gather_index(3, [35])  # shift (5, 5)
    >>> index
    array([[9, 9, 9, 9, 0, 1, 9, 3, 4]])
    >>> np.array_equal(np.append(F.ravel(), 0.0)[index[0]].reshape(3, 3),
    ...                pad_shift_crop(F, (5, 5)))
    True
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


def gather_adjoint(values, index, size):
    """Apply the adjoint of a zero-padded gather, batched.

    The gather maps ``x`` (``size``,) to ``append(x, 0)[index]``: index
    ``size`` reads the appended zero.  Its adjoint scatter-adds ``values``
    back to the positions they were read from (dropping the zero slot), in
    one ``bincount``.  It serves the shift operators (the M-step's
    ``sum_h A_h^T S_h``) and the window tensors of the autocorrelations.

    Parameters
    ----------
    values : array-like of shape (B,) + index.shape
        One array of gathered values per batch item.
    index : ndarray of int
        Gather table with entries in ``[0, size]``.
    size : int
        Length of the gathered vector.

    Returns
    -------
    out : ndarray of shape (B, size)
        ``out[b, i] = sum of values[b][index == i]``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.shifts import gather_adjoint, shift_gather_index
    >>> index = shift_gather_index(3, [35])          # shift (5, 5)
    >>> gather_adjoint(np.ones((1, 1, 9)), index, 9).reshape(3, 3)
    array([[1., 1., 0.],
           [1., 1., 0.],
           [0., 0., 0.]])
    """
    values = np.asarray(values, dtype=np.float64)
    B = values.shape[0]
    offset = np.arange(B).reshape((B,) + (1,) * index.ndim) * (size + 1)
    flat = (offset + index[None]).ravel()
    out = np.bincount(flat, weights=values.ravel(), minlength=B * (size + 1))
    return out.reshape(B, size + 1)[:, :size]


def shift_to_offset(shift, image_size):
    """Convert shifts ``l`` to offsets ``d`` of the image in the patch.

    ``d = (-l) mod 2L`` mapped to ``[-(L-1), L-1]``: the top-left corner of
    ``F`` sits at offset ``d`` from the patch's top-left corner in
    ``C T_l Z F``.  Works elementwise, so pass one axis (``l_0`` or ``l_1``)
    at a time or both.  The value ``L`` marks an empty axis (``l = L``).

    Parameters
    ----------
    shift : int or array-like of int
        Shift components in ``[0, 2L)``.
    image_size : int
        ``L``.

    Returns
    -------
    offset : ndarray of int
        Offsets in ``[-(L-1), L-1]``, or ``L`` for an empty shift; the shape
        of ``shift``.

    Examples
    --------
    >>> from mtdlearn.imaging.shifts import shift_to_offset
    >>> shift_to_offset([0, 1, 2, 3, 4, 5], 3)
    array([ 0, -1, -2,  3,  2,  1])
    """
    L = int(image_size)
    d = (-np.asarray(shift)) % (2 * L)
    return np.where(d > L, d - 2 * L, d)


def offset_to_shift(offset, image_size):
    """Convert offsets ``d`` to the shifts ``l = (-d) mod 2L`` that show them.

    The inverse of :func:`shift_to_offset` on the non-empty shifts: a copy
    whose top-left corner lies at offset ``d`` from a tile's origin appears
    in that tile as ``C T_l Z F`` with this ``l``.  Works elementwise.

    Parameters
    ----------
    offset : int or array-like of int
        Offsets in ``[-(L-1), L-1]``.
    image_size : int
        ``L``.

    Returns
    -------
    shift : ndarray of int
        Shift components in ``[0, 2L)``; the shape of ``offset``.

    Examples
    --------
    >>> from mtdlearn.imaging.shifts import offset_to_shift
    >>> offset_to_shift([0, -1, -2, 2, 1], 3)
    array([0, 1, 2, 4, 5])
    """
    L = int(image_size)
    return (-np.asarray(offset)) % (2 * L)


def max_density(image_size):
    """Compute the largest density for which ``rho`` stays on the simplex.

    At this density the ``(2L-1)**2`` non-empty shifts, each of probability
    ``gamma / L**2`` (:func:`density_to_shift_probabilities`), hold all the
    mass; it is also the density of the densest well-separated arrangement.

    Parameters
    ----------
    image_size : int
        ``L``.

    Returns
    -------
    density : float
        ``L**2 / (2L-1)**2``.

    Examples
    --------
    >>> from mtdlearn.imaging.shifts import max_density
    >>> max_density(5) == 25 / 81
    True
    """
    L = check_int(image_size, "image_size", minimum=1)
    return L * L / (2 * L - 1) ** 2


def density_to_shift_probabilities(density, image_size):
    """Shift distribution ``rho`` (2L x 2L) implied by a density ``gamma``.

    Each of the ``(2L-1)**2`` non-empty shifts has probability ``gamma / L**2``
    (a copy's top-left corner is equally likely at any offset of a tile);
    the ``4L-1`` empty shifts share the rest equally.

    Parameters
    ----------
    density : float
        ``gamma`` in ``[0, L**2 / (2L-1)**2]`` (:func:`max_density`).
    image_size : int
        ``L``.

    Returns
    -------
    shift_probabilities : ndarray of shape (2L, 2L)
        ``rho[l_0, l_1]`` (eq. 12), non-negative, summing to one.

    Examples
    --------
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> rho = density_to_shift_probabilities(0.04, 5)
    >>> rho.shape
    (10, 10)
    >>> bool(rho[0, 0] == 0.04 / 25)  # gamma / L**2 on each non-empty shift
    True

    The sum is one up to rounding (100 terms: at most ``100 * 2**-53``):

    >>> bool(abs(rho.sum() - 1.0) < 1e-14)
    True
    """
    L = check_int(image_size, "image_size", minimum=1)
    gamma = check_real(density, "density")
    if not (0.0 <= gamma <= max_density(L)):
        raise ValueError(f"density must lie in [0, {max_density(L):.6g}] for image_size={L}, "
                         f"got {gamma}")
    rho = np.empty(4 * L * L)
    ne, em = nonempty_shifts(L), empty_shifts(L)
    rho[ne] = gamma / (L * L)
    rho[em] = max(0.0, 1.0 - gamma * ne.size / (L * L)) / em.size
    return rho.reshape(2 * L, 2 * L)


def shift_probabilities_to_density(shift_probabilities):
    """Compute the density implied by a shift distribution ``rho``.

    ``gamma = (L**2 / (2L-1)**2) * sum of rho over the non-empty shifts``,
    the inverse of :func:`density_to_shift_probabilities`.  For a fitted
    ``rho`` (eq. 18), whose non-empty entries need not be equal, this is the
    density of the matching uniform table.

    Parameters
    ----------
    shift_probabilities : array-like of shape (2L, 2L)
        ``rho``; ``L`` is read from its shape.

    Returns
    -------
    density : float
        ``gamma``.

    Examples
    --------
    >>> from mtdlearn.imaging.shifts import (density_to_shift_probabilities,
    ...                                 shift_probabilities_to_density)
    >>> rho = density_to_shift_probabilities(0.04, 5)
    >>> gamma = shift_probabilities_to_density(rho)  # 0.04 up to rounding:
    >>> bool(abs(gamma - 0.04) < 1e-15)  # a sum of 81 terms, < 81 * 2**-53 relative
    True
    """
    rho = check_array_float(shift_probabilities, "shift_probabilities", ndim=2)
    L = rho.shape[-1] // 2
    if L < 1 or rho.shape != (2 * L, 2 * L):
        raise ValueError("shift_probabilities must have shape (2L, 2L) for an image size L, "
                         f"got {rho.shape}")
    ne = nonempty_shifts(L)
    return float(rho.reshape(-1)[ne].sum() * L * L / ne.size)


def check_shift_probabilities(shift_probabilities, image_size, name="shift_probabilities"):
    """Validate a ``2L x 2L`` probability table (non-negative, sums to one).

    Parameters
    ----------
    shift_probabilities : array-like of shape (2L, 2L)
        The table ``rho`` to check.
    image_size : int
        ``L``.
    name : str, default="shift_probabilities"
        Name used in error messages.

    Returns
    -------
    shift_probabilities : ndarray of shape (2L, 2L)
        ``rho`` as float64, divided by its sum (which is within ``1e-8`` of one).

    Raises
    ------
    ValueError
        If the shape is wrong, an entry is negative or the sum is not one.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.shifts import check_shift_probabilities
    >>> check_shift_probabilities(np.full((6, 6), 1 / 36), 3).shape
    (6, 6)
    """
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
