"""Numerics of the Fourier-Bessel basis: Bessel roots, the selection rules,
radial values and the least-squares projector (private; the API is
:class:`mtdlearn.FourierBesselBasis`)."""

import numpy as np
from scipy import linalg, special

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
