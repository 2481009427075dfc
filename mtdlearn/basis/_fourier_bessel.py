"""Numerics of the Fourier-Bessel basis: Bessel roots, the selection rules,
the function tables, evaluation at points, rotation and the complex form,
and the least-squares projector (private; the API is
:class:`mtdlearn.FourierBesselBasis`, whose methods are thin wrappers of
these functions)."""

import numpy as np
from scipy import linalg, special

from .._validation import check_int, check_real

#: Largest image size whose default basis (neither ``n_coefficients`` nor
#: ``bandlimit``) is every candidate of the paper's ``n_coefficients`` rule.
#: From L = 11 on that rule keeps more functions than are independent on the
#: pixels (L = 11: 105 functions of rank 101; L >= 13: more functions than
#: pixels), and the default is the Nyquist band limit ``pi * radius`` instead.
_PAPER_DEFAULT_MAX_SIZE = 9

#: Bases with at most this many functions expand with ``np.linalg.pinv`` of
#: the whole disk matrix (one SVD, milliseconds at this size): the arithmetic
#: of earlier versions, so that fitted results at the paper's sizes stay the
#: same bit for bit (tests/test_regression.py pins them; the autocorrelation
#: fit turns a 1e-16 change of its input into a 1e-5 change of its result).
#: Larger bases solve the four reflection-parity blocks by QR instead: the
#: whole SVD takes seconds to minutes from a few hundred functions on.
_FULL_PINV_MAX_FUNCTIONS = 128

#: A block of the least-squares problem whose triangular factor has a
#: reciprocal condition number (LAPACK ``dtrcon``, 1-norm) below this is
#: treated as rank deficient and pseudo-inverted by SVD, as ``numpy.linalg.pinv``
#: does; every default basis is far above it.
_QR_MIN_RCOND = 1e-10


def _roots_up_to(nu, bound):
    """Positive roots of ``J_nu`` that are ``<= bound``, in increasing order.

    One ``scipy.special.jn_zeros`` call, asking for one root more than can be
    ``<= bound``: for ``nu >= 1`` the roots satisfy ``lambda_{nu,1} > nu`` and
    are more than ``pi`` apart, and ``lambda_{0,k} > (k - 1/4) pi``.  The count
    is doubled until the last root is past ``bound`` (a safeguard).  The
    ``q``-th root is the one of ``jn_zeros(nu, q)[-1]``, bit for bit (tests pin
    it), so the selection rules pick the same functions as with one call per
    ``(nu, q)``.
    """
    count = int(max(bound - nu, 0.0) / np.pi) + 2
    while True:
        roots = special.jn_zeros(int(nu), count)
        if roots[-1] > bound:
            return roots[roots <= bound]
        count *= 2


def _sorted_pairs(nus, qs, lams):
    """Concatenate per-``nu`` arrays and sort by ``(lambda, nu, q)``."""
    nu, q, lam = (np.concatenate(a) for a in (nus, qs, lams))
    order = np.lexsort((q, nu, lam))
    return nu[order], q[order], lam[order]


def _select_by_count(n, n_coefficients):
    """Pairs ``(nu, q, lambda)`` of the ``n_coefficients`` rule of the design page ("Conventions").

    ``Q`` = number of roots of ``J_0`` that are ``<= pi n``; candidates are
    ``nu < nu_max`` (the smallest ``nu >= 1`` whose first root is
    ``>= lambda_{0,Q}``) and ``q <= Q``, sorted by ``lambda``; the first
    ``n_coefficients`` real functions are kept, a cos/sin pair never split
    (``None`` keeps every candidate).
    """
    roots0 = _roots_up_to(0, np.pi * n)
    n_roots = roots0.size
    if n_roots == 0:
        raise ValueError("image_size is too small to hold any basis function")
    threshold = roots0[-1]
    nus, qs, lams = [], [], []
    # nu = 0 is always a candidate (its first root is lambda_{0,1} <= threshold);
    # the first nu >= 1 whose first root reaches the threshold ends the list
    # (starting the test at nu = 0 would give no candidate at all for L = 3).
    nu = 0
    while True:
        roots = special.jn_zeros(nu, n_roots)
        if nu >= 1 and roots[0] >= threshold:
            break
        nus.append(np.full(n_roots, nu, dtype=np.int64))
        qs.append(np.arange(1, n_roots + 1, dtype=np.int64))
        lams.append(roots)
        nu += 1
    nu, q, lam = _sorted_pairs(nus, qs, lams)
    if n_coefficients is not None:
        sizes = np.where(nu == 0, 1, 2)
        # keep a pair while fewer than n_coefficients functions precede it
        keep = (np.cumsum(sizes) - sizes) < n_coefficients
        nu, q, lam = nu[keep], q[keep], lam[keep]
    return nu, q, lam


def _select_by_bandlimit(bandlimit, max_functions=np.inf):
    """Pairs ``(nu, q, lambda)`` with ``lambda_{nu,q} <= bandlimit``, sorted.

    Stops (with part of the pairs) once they hold more than ``max_functions``
    real functions: an absurd band limit then fails fast instead of computing
    roots for hours.
    """
    nus, qs, lams = [], [], []
    nu, total = 0, 0
    while total <= max_functions:
        roots = _roots_up_to(nu, bandlimit)
        if roots.size == 0:  # lambda_{nu,1} grows with nu: no larger nu has one
            break
        nus.append(np.full(roots.size, nu, dtype=np.int64))
        qs.append(np.arange(1, roots.size + 1, dtype=np.int64))
        lams.append(roots)
        total += roots.size * (1 if nu == 0 else 2)
        nu += 1
    if not nus:
        return (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0))
    return _sorted_pairs(nus, qs, lams)


def _chebyshev_size(lam_max):
    """Number of Chebyshev points that resolve ``J_nu(lam r)``, ``r`` in [0, 1].

    In ``u = 2 r - 1`` the function has frequency ``c = lam / 2``: its
    Chebyshev coefficients fall like ``J_k(c)``, below 1e-17 for ``k > c +
    6 c**(1/3) + 12``; 15 more points leave a margin (measured with 10 fewer
    the error is still at the rounding level).
    """
    c = lam_max / 2.0
    return int(np.ceil(c + 6.0 * np.cbrt(c) + 27.0))


def _radial_values(nu, lam, r):
    """``J_nu[k](lam[k] * r[i])``, shape ``(r.size, nu.size)``, for ``r`` in [0, 1).

    With no more radii than :func:`_chebyshev_size` points, ``scipy.special.jv``
    at every ``(r, k)`` (so small images get exactly the values of ``jv``).
    Otherwise ``jv`` at the Chebyshev points of [0, 1] only, and the
    barycentric formula (stable at Chebyshev points; one matrix product for
    all functions) at the radii: several times fewer Bessel evaluations for
    large images, which dominate the cost.  The two agree to 6.3e-15 (largest
    difference over the default bases up to L = 65; the values are at most 1).
    """
    n_nodes = _chebyshev_size(lam.max())
    if r.size <= n_nodes:
        return special.jv(nu[None, :], lam[None, :] * r[:, None])
    t = np.pi * (np.arange(n_nodes) + 0.5) / n_nodes
    nodes = (1.0 + np.cos(t)) / 2.0
    weights = (-1.0) ** np.arange(n_nodes) * np.sin(t)
    values = special.jv(nu[None, :], lam[None, :] * nodes[:, None])
    diff = r[:, None] - nodes[None, :]
    hit = diff == 0.0
    diff[hit] = 1.0
    coef = weights / diff
    coef /= coef.sum(axis=1, keepdims=True)
    out = coef @ values
    at_node, node = np.nonzero(hit)
    out[at_node] = values[node]
    return out


def _reflection_parities(frequencies, kinds):
    """Parities ``(eps_x, eps_y)`` of each function under ``x -> -x``, ``y -> -y``.

    ``y -> -y`` maps ``theta`` to ``-theta``: cos is even, sin odd.
    ``x -> -x`` maps ``theta`` to ``pi - theta``: ``cos(nu theta)`` gains
    ``(-1)**nu`` and ``sin(nu theta)`` gains ``-(-1)**nu``.
    """
    eps_y = np.where(kinds == 2, -1, 1)
    eps_x = np.where(frequencies % 2 == 1, -1, 1) * eps_y
    return eps_x, eps_y


def _pinv(a):
    """Pseudo-inverse of ``a``: by QR when well conditioned, else by SVD."""
    rows, cols = a.shape
    if rows >= cols:
        q, r = linalg.qr(a, mode="economic", check_finite=False)
        rcond, _ = linalg.lapack.dtrcon(r)
        if rcond > _QR_MIN_RCOND:
            return linalg.solve_triangular(r, q.T, check_finite=False)
    return np.linalg.pinv(a)


def _reflection_blocks(x, y, eps_x, eps_y):
    """Split the disk's pixels and the functions by reflection parity.

    ``x``, ``y`` (integers, shape (m,)) are the pixels inside the disk, a set
    symmetric under ``x -> -x`` and ``y -> -y``; ``eps_x``, ``eps_y`` (shape
    (p,)) the parities of the functions (:func:`_reflection_parities`).  For
    each parity class ``(sx, sy)`` that holds functions, yields
    ``(cols, rows, gather, weights)``:

    * ``cols``: the functions of the class;
    * ``rows`` (r,): the pixels with ``x, y >= 0`` where the class can be
      nonzero (a function odd in ``x`` vanishes on ``x = 0``, likewise ``y``);
    * ``gather`` (r, 4), ``weights`` (r, 4): the orbit ``(+-x, +-y)`` of each
      such pixel (indices into the m pixels; ``m`` pads a repeated member)
      and ``sign / sqrt(w)``, ``w`` the orbit's size and ``sign`` the
      parity factor ``sx**[x < 0] * sy**[y < 0]``.

    With ``U`` (m x r) the matrix of ``weights`` at ``gather`` (orthonormal
    columns), the class's columns of the pixel matrix are
    ``U @ (sqrt(w) * matrix[rows])``, and classes are mutually orthogonal.
    """
    m = x.size
    span = int(max(np.abs(x).max(), np.abs(y).max()))
    lookup = np.full((2 * span + 1, 2 * span + 1), m, dtype=np.intp)
    lookup[x + span, y + span] = np.arange(m)
    first = np.flatnonzero((x >= 0) & (y >= 0))
    for sx in (1, -1):
        for sy in (1, -1):
            cols = np.flatnonzero((eps_x == sx) & (eps_y == sy))
            if cols.size == 0:
                continue
            rows = first[((sx == 1) | (x[first] > 0)) & ((sy == 1) | (y[first] > 0))]
            rx, ry = x[rows], y[rows]
            gather = np.stack([lookup[rx + span, ry + span],
                               np.where(rx > 0, lookup[span - rx, ry + span], m),
                               np.where(ry > 0, lookup[rx + span, span - ry], m),
                               np.where((rx > 0) & (ry > 0), lookup[span - rx, span - ry], m)],
                              axis=1)
            orbit = np.sum(gather < m, axis=1)
            weights = np.array([1.0, sx, sy, sx * sy])[None, :] / np.sqrt(orbit)[:, None]
            weights = np.where(gather < m, weights, 0.0)
            yield cols, rows, gather, weights


def _least_squares_blocks(matrix, pixels, x, y, eps_x, eps_y):
    """Factor the least squares of ``inside = matrix[pixels]`` (m x p) class by class.

    ``pixels`` (m,) are the rows of ``matrix`` inside the disk, at ``(x, y)``.
    The four reflection-parity classes of :func:`_reflection_blocks` span
    mutually orthogonal subspaces of the pixel space, so ``pinv(inside)`` is
    their pseudo-inverses stacked; and a class's columns are
    ``U @ (sqrt(w) * inside[rows])`` with ``U`` orthonormal, so its
    pseudo-inverse is ``pinv(sqrt(w) * inside[rows]) @ U.T``: a problem with
    about a quarter of the rows and of the columns, about 1/16 of the work
    of ``pinv(inside)``, exact up to the rounding of the pixel values.
    Returns ``[(cols, gather, weights, pinv), ...]``; :meth:`expand` applies
    them.
    """
    blocks = []
    for cols, rows, gather, weights in _reflection_blocks(x, y, eps_x, eps_y):
        orbit = np.sum(gather < x.size, axis=1)
        folded = matrix[np.ix_(pixels[rows], cols)] * np.sqrt(orbit)[:, None]
        blocks.append((cols, gather, weights, _pinv(folded)))
    return blocks


def _apply_least_squares(inside, blocks, n_functions):
    """Coefficients ``(..., p)`` of the pixels inside the disk ``(..., m)``.

    ``blocks`` is the whole pseudo-inverse (an array) or the reflection
    blocks of :func:`_least_squares_blocks`."""
    if isinstance(blocks, np.ndarray):  # the whole pseudo-inverse
        return inside @ blocks.T
    flat = inside.reshape(-1, inside.shape[-1])
    # pad with a zero pixel: the repeated members of an orbit point at it
    flat = np.concatenate([flat, np.zeros((flat.shape[0], 1))], axis=1)
    coef = np.empty((flat.shape[0], n_functions))
    for cols, gather, weights, pinv in blocks:
        folded = np.einsum("bkj,kj->bk", flat[:, gather], weights)
        coef[:, cols] = folded @ pinv.T
    return coef.reshape(inside.shape[:-1] + (n_functions,))


def _least_squares_factors(matrix, mask, n, frequencies, kinds, whole):
    """The factored least squares of ``expand``: ``pinv(matrix[mask.ravel()])``
    if ``whole``, else the reflection blocks of :func:`_least_squares_blocks`
    (``n``: the pixel offset, ``L = 2n + 1``)."""
    if whole:
        return np.linalg.pinv(matrix[mask.ravel()])
    i, j = np.nonzero(mask)  # row-major, as np.flatnonzero(mask)
    eps_x, eps_y = _reflection_parities(frequencies, kinds)
    return _least_squares_blocks(matrix, np.flatnonzero(mask), j - n, i - n, eps_x, eps_y)


def _pixel_coordinates(L, n):
    """``(x, y)`` of the pixels of the ``L x L`` grid, each ``(L, L)``:
    ``x = j - n`` along the columns, ``y = i - n`` along the rows."""
    idx = np.arange(L, dtype=np.float64) - n
    y, x = np.meshgrid(idx, idx, indexing="ij")
    return x, y


def _choose_functions(image_size, n_coefficients, bandlimit, radius):
    """Validate a basis's parameters and choose its functions.

    Returns ``(L, n, radius, mask, n_inside, max_count, nu, q, roots)``: the
    image size, ``n = L // 2``, the radius in pixels, the pixels inside the
    disk and their count, the largest count of functions worth choosing, and
    the chosen pairs ``(nu, q, lambda)`` sorted by ``lambda``
    (:class:`~mtdlearn.FourierBesselBasis`, Notes: the default functions).
    """
    L = check_int(image_size, "image_size", minimum=3)
    if L % 2 == 0:
        raise ValueError(f"image_size must be odd (L = 2n + 1), got {L}")
    n = L // 2
    if n_coefficients is not None and bandlimit is not None:
        raise ValueError("give at most one of n_coefficients and bandlimit, not both")
    if radius is None:
        radius = float(n + 1)
    else:
        radius = check_real(radius, "radius", minimum=0.0, strict=True)
    x, y = _pixel_coordinates(L, n)
    mask = np.hypot(x, y) / radius < 1
    n_inside = int(mask.sum())
    # a band limit keeping more than this many functions is an error anyway
    max_count = 4 * n_inside + 100
    if bandlimit is not None:
        lam = check_real(bandlimit, "bandlimit", minimum=0.0, strict=True)
        nu, q, roots = _select_by_bandlimit(lam, max_count)
        if nu.size == 0:
            raise ValueError(
                f"bandlimit={lam} is below the first root of J_0 (2.405): no function kept"
            )
    elif n_coefficients is not None or L <= _PAPER_DEFAULT_MAX_SIZE:
        m = None
        if n_coefficients is not None:
            m = check_int(n_coefficients, "n_coefficients", minimum=1)
        nu, q, roots = _select_by_count(n, m)
        available = int(np.sum(np.where(nu == 0, 1, 2)))
        if m is not None and available < m:
            raise ValueError(
                f"n_coefficients={m} exceeds the {available} candidate functions of "
                f"image_size={L} (nu < nu_max, q <= Q: the paper's rule); use "
                "bandlimit for more"
            )
    else:
        # the Nyquist band limit of the disk (FourierBesselBasis, Notes)
        nu, q, roots = _select_by_bandlimit(np.pi * radius, max_count)
        if nu.size == 0:
            raise ValueError(
                f"radius={radius} is too small for image_size={L}: the default band "
                f"limit pi * radius = {np.pi * radius:.4g} is below the first root of "
                "J_0 (2.405); give a larger radius or an explicit bandlimit"
            )
    return L, n, radius, mask, n_inside, max_count, nu, q, roots


def _function_tables(nu, q, roots):
    """``(frequencies, radial_indices, roots, kinds)`` of the real functions
    of the pairs ``(nu, q, lambda)``: one ``nu = 0`` function (kind 0), or a
    (cos, sin) pair (kinds 1, 2), per pair."""
    sizes = np.where(nu == 0, 1, 2)
    frequencies = np.repeat(nu, sizes).astype(np.int64)
    radial_indices = np.repeat(q, sizes).astype(np.int64)
    roots = np.repeat(roots, sizes).astype(np.float64)
    kinds = np.ones(int(sizes.sum()), dtype=np.int64)
    start = np.cumsum(sizes) - sizes
    kinds[start[nu == 0]] = 0
    kinds[start[nu > 0] + 1] = 2
    return frequencies, radial_indices, roots, kinds


def _check_pixel_count(n_functions, n_inside, max_count, radius):
    """No more functions than pixels inside the disk (else they are dependent)."""
    if n_inside < n_functions:
        count = (f"at least {n_functions}" if n_functions > max_count
                 else f"{n_functions}")
        raise ValueError(
            f"{count} basis functions but only {n_inside} pixels inside "
            f"the disk of radius {radius}: lower bandlimit/n_coefficients or enlarge "
            "image_size"
        )


def _evaluate_at(x, y, radius, frequencies, roots, kinds):
    """Every basis function at the points ``(x, y)`` (1-D), shape ``(len(x), p)``.

    ``J_nu`` is evaluated once per distinct radius and ``(nu, q)`` (a cos
    and a sin share it; on the pixel grid about one radius in eight is
    distinct; :func:`_radial_values`), ``cos``/``sin`` once per point and
    distinct ``nu``.  Points with ``r >= 1`` give zero.
    """
    n_functions = int(frequencies.size)
    r = np.hypot(x, y) / radius
    theta = np.arctan2(y, x)
    out = np.zeros((r.size, n_functions))
    inside = np.flatnonzero(r < 1)
    if inside.size == 0 or n_functions == 0:
        return out
    r_unique, r_index = np.unique(r[inside], return_inverse=True)
    first = np.flatnonzero(kinds != 2)  # first function of each (nu, q)
    pair = np.cumsum(kinds != 2) - 1  # function -> its (nu, q)
    radial = _radial_values(frequencies[first], roots[first], r_unique)
    # angular factors: cos(nu theta) and sin(nu theta) per distinct nu
    # (cos(0 theta) = 1 for the nu = 0 functions)
    nus, nu_index = np.unique(frequencies, return_inverse=True)
    nu_theta = nus[None, :] * theta[inside][:, None]
    angular = np.concatenate([np.cos(nu_theta), np.sin(nu_theta)], axis=1)
    column = nu_index.ravel() + np.where(kinds == 2, nus.size, 0)
    r_index = r_index.ravel()
    # assemble a block of rows at a time, so the work stays in cache
    step = max(1, 2**19 // max(n_functions, 1))
    for start in range(0, inside.size, step):
        rows = slice(start, start + step)
        block = radial[np.ix_(r_index[rows], pair)]
        block *= angular[rows][:, column]
        out[inside[rows]] = block
    return out


def _rotate_pairs(out, angles, cos, sin, nu):
    """Rotate the (cos, sin) pairs of ``out`` (at ``cos``, ``sin``, of
    frequencies ``nu``) by ``nu * angles``, in place; returns ``out``."""
    a = out[..., cos]
    b = out[..., sin]
    phase = angles[..., None] * nu
    c, s = np.cos(phase), np.sin(phase)
    out[..., cos] = a * c + b * s
    out[..., sin] = b * c - a * s
    return out


def _to_complex(coef, cos, sin):
    """The paper's complex coefficients of real ones (pairs at ``cos``, ``sin``)."""
    z = coef.astype(np.complex128)
    a, b = coef[..., cos], coef[..., sin]
    z[..., cos] = (a - 1j * b) / 2
    z[..., sin] = (a + 1j * b) / 2
    return z


def _from_complex(z, cos, sin):
    """Real coefficients of the paper's complex ones: the inverse of :func:`_to_complex`."""
    out = np.real(z).astype(np.float64)
    zp, zm = z[..., cos], z[..., sin]
    out[..., cos] = np.real(zp + zm)
    out[..., sin] = np.real(1j * (zp - zm))
    return out
