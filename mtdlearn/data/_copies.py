"""Placing and rendering the copies of a simulated measurement (paper eq. 1).

Split from :mod:`mtdlearn.data.simulate`, which re-exports both functions.
"""

from numbers import Integral

import numpy as np

__all__ = ["check_min_separation", "place_copies", "render_copies",
           "separation_max_density"]


def render_copies(out, coef, basis, positions, angles, measurement, batch=20000):
    """Add rotated copies of an image into ``out``, in place.

    Copy ``i`` is ``basis.evaluate(basis.rotate(coef, angles[i]))`` with its
    top-left corner at ``positions[i]`` of measurement ``measurement[i]``
    (the first term of eq. 1).  Copies must not overlap (the placement
    guarantees it), so a plain indexed add is exact.  Works in batches to
    bound memory.

    Parameters
    ----------
    out : ndarray of shape (n, N1, N2)
        Measurements to add the copies to; modified in place.
    coef : array-like of shape (n_functions,)
        Coefficients of the image.
    basis : FourierBesselBasis
        Basis of ``coef``.
    positions : ndarray of shape (p, 2), int
        Top-left corners (row, col); every copy must fit in ``out``.
    angles : ndarray of shape (p,)
        Rotation angles in radians.
    measurement : ndarray of shape (p,), int
        Index into ``out`` of each copy.
    batch : int, default=20000
        Copies rendered at once.

    Returns
    -------
    out : ndarray of shape (n, N1, N2)
        The same array, with the copies added.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.data.simulate import render_copies
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.ones(10)
    >>> out = render_copies(np.zeros((1, 20, 20)), coef, basis, np.array([[2, 3]]),
    ...                     np.array([0.0]), np.array([0]))
    >>> np.allclose(out[0, 2:7, 3:8], basis.evaluate(coef))
    True
    """
    L = basis.image_size
    ar = np.arange(L)
    for start in range(0, len(angles), batch):
        sl = slice(start, start + batch)
        imgs = basis.evaluate(basis.rotate(coef, angles[sl]))
        rows = positions[sl, 0][:, None, None] + ar[None, :, None]
        cols = positions[sl, 1][:, None, None] + ar[None, None, :]
        meas = measurement[sl][:, None, None]
        out[meas, rows, cols] += imgs
    return out


def check_min_separation(min_separation, image_size):
    """The minimum separation of copies' corners as an int in ``[L, 2L - 1]``.

    Parameters
    ----------
    min_separation : int or None
        Minimum Chebyshev distance between the top-left corners of two
        copies; ``None`` gives ``2L - 1``, the paper's separation (eq. 4).
    image_size : int
        ``L``.

    Returns
    -------
    min_separation : int
        The separation ``s``, ``L <= s <= 2L - 1``.

    Raises
    ------
    TypeError
        If ``min_separation`` is neither ``None`` nor an integer.
    ValueError
        If ``min_separation`` lies outside ``[L, 2L - 1]``: below ``L`` two
        copies would overlap, above ``2L - 1`` is more than the model needs.

    Examples
    --------
    >>> from mtdlearn.data._copies import check_min_separation
    >>> check_min_separation(None, 11), check_min_separation(14, 11)
    (21, 14)
    """
    L = image_size
    if min_separation is None:
        return 2 * L - 1
    if isinstance(min_separation, (bool, np.bool_)) or not isinstance(min_separation, Integral):
        raise TypeError(f"min_separation must be None or an integer in [L, 2L-1] = "
                        f"[{L}, {2 * L - 1}], got {type(min_separation).__name__} "
                        f"{min_separation!r}")
    s = int(min_separation)
    if not L <= s <= 2 * L - 1:
        raise ValueError(
            f"min_separation must lie in [L, 2L-1] = [{L}, {2 * L - 1}] for image_size "
            f"L={L} (below L copies would overlap; 2L-1 is the paper's separation), got {s}")
    return s


def separation_max_density(image_size, min_separation):
    """About the largest density of copies ``min_separation`` apart: ``L**2 / s**2``.

    At most one corner lies in each ``s x s`` cell, so a measurement of area
    ``A`` holds at most about ``A / s**2`` copies (a little more on a small
    measurement, whose corners reach up to its edge minus ``L``); random
    placement stops well short of it (it jams).

    Parameters
    ----------
    image_size : int
        ``L``.
    min_separation : int
        ``s``, as returned by :func:`check_min_separation`.

    Returns
    -------
    density : float
        ``L**2 / s**2``.

    Examples
    --------
    >>> from mtdlearn.data._copies import separation_max_density
    >>> separation_max_density(5, 9) == 25 / 81
    True
    """
    return image_size**2 / min_separation**2


def place_copies(shape, image_size, n_copies, rng, max_rounds=200, min_separation=None):
    """Random top-left corners, pairwise Chebyshev distance >= ``min_separation``.

    Candidates are drawn uniformly over ``[0, N1 - L] x [0, N2 - L]`` in
    batches; a candidate is kept when it is at least ``s = min_separation``
    (``2L - 1`` by default) away from every kept corner and from every
    earlier candidate of its batch.  The check uses a grid of cells of side
    ``s`` (at most one corner per cell), so it is linear in the number of
    candidates.  The random draws do not depend on ``s``: the default draws
    what it always did.

    Parameters
    ----------
    shape : tuple of int
        ``(N1, N2)``, the measurement shape.
    image_size : int
        ``L``; corners lie in ``[0, N1 - L] x [0, N2 - L]``.
    n_copies : int
        Number of corners requested.
    rng : numpy.random.Generator
        Source of the random draws.
    max_rounds : int, default=200
        Batches of candidates drawn at most (placement also stops after five
        batches in a row that add nothing).
    min_separation : int, default=None
        ``s``, the minimum Chebyshev distance between two corners, in
        ``[L, 2L - 1]`` (:func:`check_min_separation`).  ``None``: ``2L - 1``,
        the paper's separation, with which every ``L x L`` tile touches at
        most one copy.  With ``s < 2L - 1`` two copies can touch one tile;
        with ``s >= L`` they never overlap.

    Returns
    -------
    positions : ndarray of shape (p, 2), int64
        ``p <= n_copies``; fewer when the requested number did not fit.

    Raises
    ------
    TypeError, ValueError
        If ``min_separation`` is not ``None`` or an integer in ``[L, 2L - 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.data.simulate import place_copies
    >>> pos = place_copies((100, 100), 5, 20, np.random.default_rng(0))
    >>> pos.shape
    (20, 2)
    >>> gaps = np.abs(pos[:, None] - pos[None]).max(axis=-1)  # Chebyshev distances
    >>> bool(gaps[~np.eye(20, dtype=bool)].min() >= 2 * 5 - 1)
    True

    Copies only ``L`` apart (touching, never overlapping):

    >>> pos = place_copies((100, 100), 5, 200, np.random.default_rng(0), min_separation=5)
    >>> gaps = np.abs(pos[:, None] - pos[None]).max(axis=-1)
    >>> bool(gaps[~np.eye(len(pos), dtype=bool)].min() >= 5)
    True
    """
    L = image_size
    sep = check_min_separation(min_separation, L)
    hi0, hi1 = shape[0] - L + 1, shape[1] - L + 1  # exclusive upper bounds
    if n_copies == 0 or hi0 <= 0 or hi1 <= 0:
        return np.empty((0, 2), dtype=np.int64)
    nc0, nc1 = -(-hi0 // sep), -(-hi1 // sep)
    # cell -> index of the kept corner in it, -1 if none; padded by one cell
    grid = np.full((nc0 + 2, nc1 + 2), -1, dtype=np.int64)
    kept = np.empty((0, 2), dtype=np.int64)
    neighbours = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
    stale = 0
    for _ in range(max_rounds):
        need = n_copies - len(kept)
        if need <= 0:
            break
        m = int(min(max(2 * need, 1024), 4 * 10**6))
        cand = np.stack([rng.integers(0, hi0, m), rng.integers(0, hi1, m)], axis=1)
        cell = cand // sep + 1
        ok = np.ones(m, dtype=bool)
        # conflicts with corners kept in earlier rounds
        for a, b in neighbours:
            j = grid[cell[:, 0] + a, cell[:, 1] + b]
            has = j >= 0
            d = np.abs(kept[j[has]] - cand[has]).max(axis=1) if has.any() else np.empty(0)
            bad = np.zeros(m, dtype=bool)
            bad[np.flatnonzero(has)[d < sep]] = True
            ok &= ~bad
        # conflicts within the batch: keep a candidate only if no earlier
        # candidate of this batch is within the separation.  The earliest
        # candidate of each cell is the only one that can survive in that cell.
        first = np.full(grid.shape, m, dtype=np.int64)
        order = np.arange(m)
        np.minimum.at(first, (cell[:, 0], cell[:, 1]), order)
        ok &= first[cell[:, 0], cell[:, 1]] == order
        for a, b in neighbours:
            if a == 0 and b == 0:
                continue
            j = first[cell[:, 0] + a, cell[:, 1] + b]
            has = j < order
            d = np.abs(cand[j[has]] - cand[has]).max(axis=1) if has.any() else np.empty(0)
            bad = np.zeros(m, dtype=bool)
            bad[np.flatnonzero(has)[d < sep]] = True
            ok &= ~bad
        new = cand[ok][:need]
        if len(new) == 0:
            stale += 1
            if stale >= 5:
                break
            continue
        stale = 0
        new_cells = new // sep + 1
        grid[new_cells[:, 0], new_cells[:, 1]] = np.arange(len(kept), len(kept) + len(new))
        kept = np.concatenate([kept, new])
    return kept
