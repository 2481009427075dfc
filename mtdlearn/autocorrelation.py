"""Autocorrelation analysis of the multi-target detection model (DESIGN.md §5).

Autocorrelation analysis (the baseline of the paper, and the initializer of
the EM) matches the first three autocorrelations of the measurement with those
predicted by the model, averaged over the unknown rotations and positions.

Notes
-----
Shifts are *forward* shifts ``s = (s_row, s_col)`` in ``[0, L)**2``.

* Measurement (:func:`measurement_autocorrelations`)::

      a1          = (1/P) sum_x M[x]
      a2[s]       = (1/P) sum_x M[x] M[x+s]
      a3[s1, s2]  = (1/P) sum_x M[x] M[x+s1] M[x+s2]

  where the sums run over the ``x`` for which every pixel of the product lies
  in the measurement, and ``P`` is the total number of pixels (the sums and
  ``P`` are both summed over a stack of measurements).  ``a2`` has shape
  ``(L, L)`` and ``a3`` has shape ``(L, L, L, L)``, indexed
  ``a3[s1_row, s1_col, s2_row, s2_col]``.

* One image (:func:`image_autocorrelations`), zero outside the ``L x L``
  square::

      ac2(F)[s]      = sum_x F[x] F[x+s]
      ac3(F)[s1, s2] = sum_x F[x] F[x+s1] F[x+s2]

* Model (:func:`model_autocorrelations`) for well-separated copies of
  density ``gamma`` and white noise of variance ``sigma**2``::

      a1         = gamma / L**2 * E_phi[sum F_phi]
      a2[s]      = gamma / L**2 * E_phi[ac2(F_phi)][s] + sigma**2 delta(s)
      a3[s1, s2] = gamma / L**2 * E_phi[ac3(F_phi)][s1, s2]
                   + sigma**2 a1 (delta(s1) + delta(s2) + delta(s1 - s2))

  ``E_phi`` is the average over a uniform rotation ``phi``, computed exactly
  with equispaced angles (see :func:`model_autocorrelations`).

The least-squares cost, its analytic gradient and an L-BFGS-B fit are
:func:`autocorrelation_cost_and_grad` and :func:`fit_autocorrelations`.
"""

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from numbers import Real

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.optimize import OptimizeResult, minimize

from ._validation import check_array_float, check_int, check_measurements, check_real
from ._threads import blas_single_thread
from .base import BaseMTDEstimator
from .basis import FourierBesselBasis
from .operators import (density_to_shift_probabilities, max_density,
                        shift_probabilities_to_density)

__all__ = [
    "AutocorrelationEstimator",
    "measurement_autocorrelations",
    "image_autocorrelations",
    "model_autocorrelations",
    "autocorrelation_cost_and_grad",
    "fit_autocorrelations",
    "default_n_angles",
]

# Bytes of the per-tile buffers of the measurement pass: two (L*L, tile)
# float64 buffers, 2 * 25 * 8 * 4096 B = 1.6 MB for L = 5 (4096-pixel
# tiles), about a core's share of L2 + L3 on the two-core test machine.  Much
# larger tiles were measured to be slower (memory bound), smaller ones pay
# more Python overhead per pixel.
_TILE_BYTES = (2 * 25 + 1) * 8 * 4096


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------
def _check_basis(basis):
    if not isinstance(basis, FourierBesselBasis):
        raise TypeError(f"basis must be a FourierBesselBasis, got {type(basis).__name__}")
    return basis


def default_n_angles(basis):
    """Number of equispaced angles that makes the rotational average exact.

    The third-order model autocorrelation of the rotated image is a
    trigonometric polynomial of degree at most ``3 * nu_max`` in the angle,
    and the mean over ``K`` equispaced angles of ``exp(i k phi)`` vanishes for
    every ``0 < |k| < K``; hence ``K = 3 * nu_max + 1`` angles average it
    exactly.

    Parameters
    ----------
    basis : FourierBesselBasis
        The basis; only its ``max_frequency`` matters.

    Returns
    -------
    int
        ``3 * basis.max_frequency + 1``.

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.autocorrelation import default_n_angles
    >>> default_n_angles(FourierBesselBasis(5, n_coefficients=10))
    7
    """
    _check_basis(basis)
    return 3 * basis.max_frequency + 1


def _check_n_angles(n_angles, basis):
    if n_angles is None:
        return default_n_angles(basis)
    return check_int(n_angles, "n_angles", minimum=1)


def _check_density(density, L, name="density"):
    return check_real(density, name, minimum=0.0, maximum=max_density(L))


def _check_noise_variance(noise_variance, name="noise_variance"):
    return check_real(noise_variance, name, minimum=0.0)


def _check_coef(coef, basis, name="coef"):
    coef = check_array_float(coef, name, ndim=1)
    if coef.shape[0] != basis.n_functions:
        raise ValueError(
            f"{name} must have length basis.n_functions={basis.n_functions}, "
            f"got {coef.shape[0]}"
        )
    return coef


def _check_measured(measured, L, name="measured"):
    """``measured = (a1, a2, a3)`` with shapes (), (L, L), (L, L, L, L)."""
    if not isinstance(measured, (tuple, list)) or len(measured) != 3:
        raise TypeError(
            f"{name} must be a tuple (a1, a2, a3) as returned by "
            f"measurement_autocorrelations, got {type(measured).__name__}"
        )
    a1 = check_array_float(measured[0], f"{name}[0] (a1)", ndim=0)
    a2 = check_array_float(measured[1], f"{name}[1] (a2)")
    a3 = check_array_float(measured[2], f"{name}[2] (a3)")
    if a2.shape != (L, L):
        raise ValueError(f"{name}[1] (a2) must have shape {(L, L)}, got {a2.shape}")
    if a3.shape != (L, L, L, L):
        raise ValueError(f"{name}[2] (a3) must have shape {(L, L, L, L)}, got {a3.shape}")
    return float(a1), a2, a3


def _resolve_n_jobs(n_jobs):
    """scikit-learn's convention: ``None`` is 1, ``-1`` all CPUs, ``-2`` all but one."""
    if n_jobs is None:
        return 1
    n = check_int(n_jobs, "n_jobs")
    if n == 0:
        raise ValueError("n_jobs must be a positive integer or -1 (all CPUs), got 0")
    if n < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n)
    return n


# ---------------------------------------------------------------------------
# 1. autocorrelations of a measurement
# ---------------------------------------------------------------------------
def _band_sums(M, r_start, r_stop, L, tile_rows, tile_cols):
    """Raw sums over the output pixels ``x`` with rows in ``[r_start, r_stop)``.

    Works tile by tile.  A tile of ``h x w`` output pixels reads the
    ``(h + L - 1) x (w + L - 1)`` block below-right of it into a buffer that
    is zero beyond the measurement (zero padding on the bottom/right), forms
    the window matrix ``W`` (``L*L x h*w``: column ``x`` holds ``M[x + s]``
    for the ``L*L`` shifts ``s``, row-major in ``s``), and accumulates
    ``W m`` and ``(W * m) W^T`` with ``m = M[x]``.  Out-of-bounds pixels are
    zero, so a product touching them contributes nothing: the sums run
    exactly over the valid ``x``.

    ``(W * m) W^T`` is symmetric; only its upper block triangle (blocks
    ``(d1, d2)`` of row shifts with ``d1 <= d2``) is computed, with one GEMM
    per row shift ``d1`` (``L*(L+1)/2`` of the ``L**2`` blocks).  The caller
    fills the lower triangle.
    """
    N1, N2 = M.shape
    LL = L * L
    n_max = tile_rows * tile_cols
    Z = np.empty((tile_rows + L - 1, tile_cols + L - 1), dtype=np.float64)
    Wbuf = np.empty((LL, n_max), dtype=np.float64)
    Ybuf = np.empty((LL, n_max), dtype=np.float64)
    s1 = 0.0
    s2 = np.zeros(LL, dtype=np.float64)
    s3 = np.zeros((LL, LL), dtype=np.float64)
    for r0 in range(r_start, r_stop, tile_rows):
        r1 = min(r0 + tile_rows, r_stop)
        h = r1 - r0
        rh = min(r1 + L - 1, N1)  # last row read (exclusive)
        for c0 in range(0, N2, tile_cols):
            c1 = min(c0 + tile_cols, N2)
            w = c1 - c0
            ch = min(c1 + L - 1, N2)
            Zt = Z[: h + L - 1, : w + L - 1]
            Zt[: rh - r0, : ch - c0] = M[r0:rh, c0:ch]
            Zt[rh - r0 :, :] = 0.0
            Zt[:, ch - c0 :] = 0.0
            n = h * w
            W = Wbuf[:, :n]
            Y = Ybuf[:, :n]
            # W[(di, dj), (i, j)] = Zt[di + i, dj + j]: one strided copy
            W.reshape(L, L, h, w)[...] = sliding_window_view(Zt, (h, w))
            m = W[0]  # shift (0, 0): M[x] itself
            np.multiply(W, m, out=Y)
            for d in range(L):  # upper block triangle, one GEMM per row shift
                s3[d * L : (d + 1) * L, d * L :] += Y[d * L : (d + 1) * L] @ W[d * L :].T
            s2 += W @ m
            s1 += float(m.sum())
    return s1, s2, s3


def _symmetrize_blocks(U, L):
    """Full symmetric matrix from its upper block triangle (see _band_sums)."""
    S = np.triu(np.ones((L, L), dtype=bool), 1)
    upper = np.kron(S, np.ones((L, L), dtype=bool))
    out = np.where(upper, U, 0.0)
    out = out + out.T
    for d in range(L):  # diagonal blocks are computed whole: symmetric up to rounding
        B = U[d * L : (d + 1) * L, d * L : (d + 1) * L]
        out[d * L : (d + 1) * L, d * L : (d + 1) * L] = 0.5 * (B + B.T)
    return out


def measurement_autocorrelations(X, image_size, working_memory=None, n_jobs=None):
    """First three autocorrelations of a measurement, in one chunked pass.

    ``a1 = mean(M)``, ``a2[s] = (1/P) sum_x M[x] M[x+s]`` and
    ``a3[s1, s2] = (1/P) sum_x M[x] M[x+s1] M[x+s2]`` for forward shifts
    ``s, s1, s2`` in ``[0, L)**2``.  The sums run over the ``x`` for which
    every pixel of the product lies inside the measurement; ``P`` is the
    total number of pixels.  For a stack or a sequence of measurements the
    sums and the pixel counts are added over the measurements.

    The measurement is read once, tile by tile (row blocks, split along the
    columns when a row is long).  For every tile the ``L*L`` shifted copies
    form a window matrix ``W`` and the sums are a GEMV, ``W m``, and the
    symmetric ``(W * m) W^T``, of which the upper block triangle is formed
    with ``L`` GEMMs (one per row shift); there is no Python loop over shifts
    or shift pairs.  Tiles are zero-padded by ``L - 1`` on the bottom and right, so
    products that leave the measurement contribute nothing.  Tiles are
    processed by ``n_jobs`` threads (bands of rows fixed by the tile size, BLAS
    single-threaded meanwhile) and the partial sums are added in a fixed
    order, so the result depends neither on timing nor on ``n_jobs``.

    Parameters
    ----------
    X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence of 2-D arrays
        One measurement, a stack, or a sequence (sizes may differ; ``.npy``
        paths are opened memory-mapped).  Any real dtype; the computation is
        float64.  The input is never copied as a whole.
    image_size : int
        ``L``; the shifts run over ``[0, L)**2``.
    working_memory : float, default=None
        Upper bound, in MiB, on the temporary buffers of each thread
        (the scikit-learn convention); ``None`` uses
        ``sklearn.get_config()["working_memory"]``.  Tiles are in any case
        capped at a cache-friendly size (about 1.6 MB of buffers per
        thread, 4096 pixels for ``L = 5``), so the default pass uses a few
        MB beyond the measurement.  Smaller values give smaller tiles; the
        result does not depend on the tile size (up to rounding).
    n_jobs : int, default=None
        Number of threads (``None`` is 1, ``-1`` all CPUs).  The result is
        the same, to the last bit, for any number of threads: the bands of
        rows and the order in which their sums are added depend only on the
        tile size.

    Returns
    -------
    a1 : float
        Mean of the measurement.
    a2 : ndarray of shape (L, L)
        ``a2[s_row, s_col]``.
    a3 : ndarray of shape (L, L, L, L)
        ``a3[s1_row, s1_col, s2_row, s2_col]``; symmetric under
        ``s1 <-> s2``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.autocorrelation import measurement_autocorrelations
    >>> M = np.zeros((20, 20))
    >>> M[3, 4], M[3, 5] = 1.0, 2.0
    >>> a1, a2, a3 = measurement_autocorrelations(M, 3)
    >>> float(a1 * M.size), float(a2[0, 1] * M.size), float(a3[0, 0, 0, 1] * M.size)
    (3.0, 2.0, 2.0)
    """
    L = check_int(image_size, "image_size", minimum=1)
    measurements = check_measurements(X, L)
    if working_memory is None:
        from sklearn import get_config

        working_memory = get_config()["working_memory"]
    working_memory = check_real(working_memory, "working_memory", minimum=0.0, strict=True)
    n_threads = _resolve_n_jobs(n_jobs)
    LL = L * L

    # pixels per tile: 2 (L*L)-row buffers plus the padded input block
    bytes_per_pixel = (2 * LL + 1) * 8
    budget = int(working_memory * 2**20 / bytes_per_pixel)
    tile_pixels = max(1, min(_TILE_BYTES // bytes_per_pixel, budget))

    tasks = []
    total_pixels = 0
    for M in measurements:
        N1, N2 = M.shape
        total_pixels += N1 * N2
        # Tiles span whole rows when at least 8 rows fit, else 8 rows (fewer
        # for tiny budgets) by part of the width: the padded block read for a
        # tile then has few more rows than the tile itself.
        if tile_pixels >= 8 * N2:
            tile_rows, tile_cols = tile_pixels // N2, N2
        else:
            tile_rows = max(1, min(8, tile_pixels // 512))
            tile_cols = max(1, min(N2, tile_pixels // tile_rows))
        # contiguous bands of rows, fixed by the tile size and never by
        # n_jobs, so that the summation order (and so every bit of the
        # result) is the same for any number of threads
        band = max(tile_rows, -(-N1 // 64 // tile_rows) * tile_rows)
        for r0 in range(0, N1, band):
            tasks.append((M, r0, min(N1, r0 + band), L, tile_rows, tile_cols))

    # The GEMMs are small (L*L x tile x L*L): BLAS threads only add overhead
    # (and degrade badly on a busy machine); parallelism is over bands.
    with blas_single_thread():
        if n_threads == 1 or len(tasks) == 1:
            results = [_band_sums(*t) for t in tasks]
        else:
            with ThreadPoolExecutor(max_workers=n_threads) as pool:
                results = list(pool.map(lambda t: _band_sums(*t), tasks))

    s1 = 0.0
    s2 = np.zeros(LL, dtype=np.float64)
    s3 = np.zeros((LL, LL), dtype=np.float64)
    for r1, r2, r3 in results:  # fixed order: deterministic
        s1 += r1
        s2 += r2
        s3 += r3
    s3 = _symmetrize_blocks(s3, L)
    P = float(total_pixels)
    return s1 / P, (s2 / P).reshape(L, L), (s3 / P).reshape(L, L, L, L)


# ---------------------------------------------------------------------------
# 2. autocorrelations of small images and of the model
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _window_index(L):
    """Index ``idx[x, s]`` (``L*L x L*L``) of pixel ``x + s`` in an ``L x L``
    image flattened row-major, or ``L*L`` (a zero slot) when ``x + s`` leaves
    the image."""
    xr, xc = np.divmod(np.arange(L * L), L)
    sr, sc = np.divmod(np.arange(L * L), L)
    rr = xr[:, None] + sr[None, :]
    cc = xc[:, None] + sc[None, :]
    inside = (rr < L) & (cc < L)
    idx = np.where(inside, rr * L + cc, L * L).astype(np.intp)
    idx.setflags(write=False)
    return idx


def _windows(F):
    """Window tensor ``W[..., x, s] = F[..., x + s]`` (zero outside) of
    flattened images ``F`` of shape (..., L*L)."""
    LL = F.shape[-1]
    L = int(round(np.sqrt(LL)))
    Fz = np.concatenate([F, np.zeros(F.shape[:-1] + (1,))], axis=-1)
    return Fz[..., _window_index(L)]


def _windows_adjoint(G, L):
    """Adjoint of :func:`_windows`: ``(K, L*L, L*L)`` to ``(K, L*L)``."""
    K = G.shape[0]
    LL = L * L
    idx = _window_index(L)
    flat = (idx[None, :, :] + (LL + 1) * np.arange(K)[:, None, None]).ravel()
    out = np.bincount(flat, weights=G.ravel(), minlength=K * (LL + 1))
    return out.reshape(K, LL + 1)[:, :LL]


def _flat_autocorrelations(F):
    """Sum, ac2 and ac3 of flattened images ``F`` (K, L*L); also the windows."""
    W = _windows(F)  # (K, x, s)
    S = F.sum(axis=-1)
    A2 = np.einsum("kx,kxs->ks", F, W)
    A3 = np.matmul(np.swapaxes(F[:, :, None] * W, 1, 2), W)  # (K, s1, s2)
    return S, A2, A3, W


def image_autocorrelations(images):
    """Pixel sum and second and third autocorrelations of small images.

    For an ``L x L`` image ``F`` (zero outside the square) and forward
    shifts ``s, s1, s2`` in ``[0, L)**2``::

        ac2(F)[s]      = sum_x F[x] F[x+s]
        ac3(F)[s1, s2] = sum_x F[x] F[x+s1] F[x+s2]

    These are the raw sums of :func:`measurement_autocorrelations` for a
    measurement that holds ``F`` alone (the measured ``a2 * P`` and
    ``a3 * P``).  Vectorized over a batch: one gather and one batched GEMM.

    Parameters
    ----------
    images : array-like of shape (..., L, L)
        A batch of square images (any leading shape).

    Returns
    -------
    total : ndarray of shape (...)
        ``sum_x F[x]``.
    ac2 : ndarray of shape (..., L, L)
        ``ac2[..., s_row, s_col]``.
    ac3 : ndarray of shape (..., L, L, L, L)
        ``ac3[..., s1_row, s1_col, s2_row, s2_col]``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.autocorrelation import image_autocorrelations
    >>> F = np.arange(9.0).reshape(3, 3)
    >>> total, ac2, ac3 = image_autocorrelations(F)
    >>> float(total), float(ac2[0, 0]), float(ac2[0, 2])
    (36.0, 204.0, 63.0)
    """
    images = check_array_float(images, "images", min_ndim=2)
    L = images.shape[-1]
    if images.shape[-2] != L or L == 0:
        raise ValueError(f"images must end with a square shape (L, L), got {images.shape}")
    batch = images.shape[:-2]
    F = images.reshape((-1, L * L))
    S, A2, A3, _ = _flat_autocorrelations(F)
    return (S.reshape(batch), A2.reshape(batch + (L, L)),
            A3.reshape(batch + (L, L, L, L)))


def _rotated_evaluation(basis, n_angles):
    """``BR[k] = B R(phi_k)`` (K, L*L, p) for the equispaced angles
    ``phi_k = 2 pi k / K``: ``F_{phi_k}.ravel() = BR[k] @ coef``."""
    angles = 2 * np.pi * np.arange(n_angles) / n_angles
    R = basis.rotation_matrices(angles)  # rotate(c, phi) = R(phi) @ c
    return np.matmul(basis.matrix[None], R)


def _noise_pattern(L):
    """``D[s1, s2] = delta(s1) + delta(s2) + delta(s1 - s2)`` as (L*L, L*L)."""
    LL = L * L
    D = np.eye(LL)
    D[0, :] += 1.0
    D[:, 0] += 1.0
    return D


def _model_flat(BR, coef, density, noise_variance, L):
    """Model moments (flat) and the intermediate arrays the gradient needs."""
    F = BR @ coef  # (K, L*L)
    S, A2, A3, W = _flat_autocorrelations(F)
    E1, E2, E3 = S.mean(), A2.mean(axis=0), A3.mean(axis=0)
    scale = density / (L * L)
    a1 = scale * E1
    a2 = scale * E2
    a2[0] += noise_variance
    a3 = scale * E3 + (noise_variance * a1) * _noise_pattern(L)
    return (a1, a2, a3), (F, W, E1, E2, E3)


def model_autocorrelations(coef, basis, density, noise_variance, n_angles=None):
    """Compute the autocorrelations the model predicts for well-separated copies.

    With ``F_phi = basis.evaluate(basis.rotate(coef, phi))``, density
    ``gamma`` and noise variance ``sigma**2`` (DESIGN.md §5)::

        a1         = gamma / L**2 * E_phi[sum_x F_phi[x]]
        a2[s]      = gamma / L**2 * E_phi[ac2(F_phi)][s] + sigma**2 delta(s)
        a3[s1, s2] = gamma / L**2 * E_phi[ac3(F_phi)][s1, s2]
                     + sigma**2 a1 (delta(s1) + delta(s2) + delta(s1 - s2))

    Where the terms come from: a copy's top-left corner falls in a given
    pixel with probability ``gamma / L**2``, and well separated copies never
    contribute two factors of one product (two pixels at most ``L - 1`` apart
    in each axis cannot lie in different copies).  Writing a pixel as signal
    plus noise, ``E[(f + e)(f' + e')(f'' + e'')] = f f' f'' + f E[e' e''] +
    f' E[e e''] + f'' E[e e']`` (odd noise moments vanish): a pair of noise
    factors at the *same* pixel gives ``sigma**2`` times the remaining signal
    factor, whose mean over ``x`` is ``a1``.  The pair ``(x+s1, x+s2)``
    coincides when ``s1 = s2``, the pair ``(x, x+s2)`` when ``s2 = 0`` and
    ``(x, x+s1)`` when ``s1 = 0``; at ``s1 = s2 = 0`` all three apply, giving
    ``E[(f + e)**3] = f**3 + 3 sigma**2 f``.  In ``a2`` the noise adds
    ``E[e**2] = sigma**2`` at ``s = 0`` only; ``a1`` gets no noise term.
    (Border effects of the finite measurement are neglected.)

    ``E_phi`` is the mean over the continuous uniform rotation.  Every pixel
    of ``F_phi`` is a trigonometric polynomial of degree ``nu_max`` in
    ``phi``, so ``ac3`` has degree ``<= 3 nu_max`` (``ac2`` ``2 nu_max``,
    the sum ``nu_max``), and its mean equals the mean over ``K`` equispaced
    angles ``2 pi k / K`` whenever ``K > 3 nu_max``.  The pixel sum is not
    rotation invariant on the pixel grid, so it is averaged too.

    Parameters
    ----------
    coef : array-like of shape (n_functions,)
        Coefficients of the image ``F`` in ``basis``.
    basis : FourierBesselBasis
        The steerable basis (gives ``L`` and the rotations).
    density : float
        ``gamma`` in ``[0, L**2 / (2L - 1)**2]``.
    noise_variance : float
        ``sigma**2 >= 0``.
    n_angles : int, default=None
        Number of equispaced angles; ``None`` means ``3 * nu_max + 1``, the
        fewest that give the exact average.  Fewer angles give an
        approximation; more change nothing but the cost.

    Returns
    -------
    a1 : float
        Mean.
    a2 : ndarray of shape (L, L)
        ``a2[s_row, s_col]``.
    a3 : ndarray of shape (L, L, L, L)
        ``a3[s1_row, s1_col, s2_row, s2_col]``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.autocorrelation import model_autocorrelations
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> a1, a2, a3 = model_autocorrelations(np.ones(10), basis, 0.04, 0.5)
    >>> a2.shape, a3.shape
    ((5, 5), (5, 5, 5, 5))
    """
    _check_basis(basis)
    coef = _check_coef(coef, basis)
    L = basis.image_size
    density = _check_density(density, L)
    noise_variance = _check_noise_variance(noise_variance)
    K = _check_n_angles(n_angles, basis)
    BR = _rotated_evaluation(basis, K)
    (a1, a2, a3), _ = _model_flat(BR, coef, density, noise_variance, L)
    return float(a1), a2.reshape(L, L), a3.reshape(L, L, L, L)


# ---------------------------------------------------------------------------
# 3. least-squares cost and its gradient
# ---------------------------------------------------------------------------
def _cost_and_grad_flat(BR, density, coef, noise_variance, m1, m2, m3, L):
    """Cost and gradient with flat measured moments ``m2`` (L*L,), ``m3``
    (L*L, L*L) and precomputed ``BR`` (see :func:`autocorrelation_cost_and_grad`
    for the formulas)."""
    LL = L * L
    K = BR.shape[0]
    (a1, a2, a3), (F, W, E1, E2, E3) = _model_flat(BR, coef, density, noise_variance, L)
    R1 = a1 - m1
    R2 = a2 - m2
    R3 = a3 - m3
    cost = 0.5 * R1 * R1 + (R2 @ R2) / (2 * LL) + np.vdot(R3, R3) / (2 * LL * LL)

    G2 = R2 / LL  # dC/da2
    G3 = R3 / (LL * LL)  # dC/da3
    D = _noise_pattern(L)
    G3D = np.vdot(G3, D)  # <dC/da3, D>
    G1 = R1 + noise_variance * G3D  # total dC/da1 (a3's noise term holds a1)

    grad_noise = G2[0] + a1 * G3D
    grad_density = (G1 * E1 + G2 @ E2 + np.vdot(G3, E3)) / LL

    # gradient with respect to each rotated image F_k (then scaled by
    # gamma / (L^2 K) for the average):
    #   sum:  G1
    #   ac2 = f^T W:            W G2 + W^T-adjoint(f (x) G2)
    #   ac3 = W^T diag(f) W:    q[x] = w_x^T G3 w_x + adjoint(f[x] (W (G3 + G3^T))[x, :])
    Gs = G3 + G3.T
    V = W @ Gs  # (K, x, s)
    q = 0.5 * np.einsum("kxs,kxs->kx", V, W)
    gW = F[:, :, None] * (V + G2[None, None, :])
    gF = G1 + W @ G2 + q + _windows_adjoint(gW, L)
    grad_coef = (density / (LL * K)) * np.einsum("kx,kxp->p", gF, BR)
    return float(cost), float(grad_density), grad_coef, float(grad_noise)


def autocorrelation_cost_and_grad(density, coef, noise_variance, measured, basis,
                                  estimate_noise=False, n_angles=None):
    """Weighted least-squares misfit of the autocorrelations, and its gradient.

    ``cost = R1**2 / 2 + ||R2||**2 / (2 L**2) + ||R3||**2 / (2 L**4)`` with
    ``Rk = model_k - measured_k`` (:func:`model_autocorrelations`).  The
    gradient is analytic: the model is linear in ``gamma`` and
    ``sigma**2``, and the rotated images are linear in ``coef``, so the chain
    rule runs through ``F_phi -> (sum, ac2, ac3)`` (first and second factor
    of ``ac2``, first and the two window factors of ``ac3``) and through the
    average over the angles.  The noise term ``sigma**2 a1 D`` of ``a3``
    depends on ``gamma`` and ``coef`` through ``a1`` and is included.

    Parameters
    ----------
    density : float
        ``gamma`` in ``[0, L**2 / (2L - 1)**2]``.
    coef : array-like of shape (n_functions,)
        Coefficients of the image in ``basis``.
    noise_variance : float
        ``sigma**2 >= 0``.
    measured : tuple (a1, a2, a3)
        Measured autocorrelations, as from :func:`measurement_autocorrelations`.
    basis : FourierBesselBasis
        The steerable basis.
    estimate_noise : bool, default=False
        Whether ``noise_variance`` is a free parameter; if not, its gradient
        is returned as ``0.0``.
    n_angles : int, default=None
        See :func:`model_autocorrelations`.

    Returns
    -------
    cost : float
        The weighted least-squares misfit.
    grad_density : float
        ``d cost / d gamma``.
    grad_coef : ndarray of shape (n_functions,)
        ``d cost / d coef``.
    grad_noise_variance : float
        ``d cost / d sigma**2``; ``0.0`` unless ``estimate_noise``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.autocorrelation import (autocorrelation_cost_and_grad,
    ...                                       model_autocorrelations)
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.linspace(1.0, 2.0, 10)
    >>> measured = model_autocorrelations(coef, basis, 0.04, 0.5)
    >>> cost, g_density, g_coef, g_noise = autocorrelation_cost_and_grad(
    ...     0.04, coef, 0.5, measured, basis, estimate_noise=True)
    >>> cost, float(np.abs(g_coef).max())
    (0.0, 0.0)
    """
    _check_basis(basis)
    L = basis.image_size
    coef = _check_coef(coef, basis)
    density = _check_density(density, L)
    noise_variance = _check_noise_variance(noise_variance)
    m1, m2, m3 = _check_measured(measured, L)
    if not isinstance(estimate_noise, (bool, np.bool_)):
        raise TypeError(f"estimate_noise must be a bool, got {type(estimate_noise).__name__}")
    K = _check_n_angles(n_angles, basis)
    BR = _rotated_evaluation(basis, K)
    LL = L * L
    cost, g_density, g_coef, g_noise = _cost_and_grad_flat(
        BR, density, coef, noise_variance, m1, m2.reshape(LL), m3.reshape(LL, LL), L)
    return cost, g_density, g_coef, (g_noise if estimate_noise else 0.0)


# ---------------------------------------------------------------------------
# 4. the fit
# ---------------------------------------------------------------------------
def fit_autocorrelations(measured, basis, density0, coef0, noise_variance=None,
                         noise_variance0=None, max_iter=1000, tol=1e-14, n_angles=None):
    """Fit ``(gamma, coef[, sigma**2])`` to measured autocorrelations.

    Minimizes the cost of :func:`autocorrelation_cost_and_grad` with
    L-BFGS-B and the analytic gradient, under the bounds
    ``0 < gamma <= L**2 / (2L - 1)**2`` (the densest well-separated
    arrangement) and ``sigma**2 >= 0``.

    For conditioning the optimizer works on scaled variables:
    ``gamma / density0``, ``coef / rms(coef0)`` and ``sigma**2 / a2[0, 0]``,
    whose relative changes act on the cost alike (each moment is ``gamma``
    times a form of degree 1-3 in ``coef``), and on the cost divided by the
    cost of the zero model, ``R1**2/2 + ...`` at ``gamma = 0, sigma = 0``
    (so that L-BFGS-B's relative ``ftol`` test is meaningful however small
    the moments are).

    Parameters
    ----------
    measured : tuple (a1, a2, a3)
        Measured autocorrelations, as from :func:`measurement_autocorrelations`.
    basis : FourierBesselBasis
        The steerable basis of the coefficients.
    density0 : float
        Starting density, in ``(0, L**2 / (2L - 1)**2]``.
    coef0 : array-like of shape (n_functions,)
        Starting coefficients; not all zero (zero is a stationary point).
    noise_variance : float or None, default=None
        A float holds ``sigma**2`` fixed at that value; ``None`` estimates it.
    noise_variance0 : float, default=None
        Starting ``sigma**2`` when it is estimated; ``None`` takes
        ``max(a2[0, 0] - model a2[0, 0] without noise, 0)`` at the start.
        Must be ``None`` when ``noise_variance`` is given.
    max_iter : int, default=1000
        Maximum number of L-BFGS-B iterations.
    tol : float, default=1e-14
        L-BFGS-B's ``ftol`` and ``gtol`` on the scaled problem.
    n_angles : int, default=None
        See :func:`model_autocorrelations`.

    Returns
    -------
    scipy.optimize.OptimizeResult
        A dict with attribute access: ``density``, ``coef``,
        ``noise_variance``, ``cost`` (unscaled), ``n_iter``, ``n_eval``,
        ``converged`` (L-BFGS-B's ``success``), ``message``,
        ``estimate_noise``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.autocorrelation import (fit_autocorrelations,
    ...                                       model_autocorrelations)
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.linspace(1.0, 2.0, 10)
    >>> measured = model_autocorrelations(coef, basis, 0.04, 0.5)
    >>> res = fit_autocorrelations(measured, basis, 0.04, coef, noise_variance=0.5)
    >>> res.converged, res.cost < 1e-20
    (True, True)
    """
    _check_basis(basis)
    L = basis.image_size
    LL = L * L
    m1, m2, m3 = _check_measured(measured, L)
    m2, m3 = m2.reshape(LL), m3.reshape(LL, LL)
    gmax = max_density(L)
    density0 = check_real(density0, "density0", minimum=0.0, maximum=gmax, strict=True)
    coef0 = _check_coef(coef0, basis, "coef0")
    if not np.any(coef0):
        raise ValueError("coef0 must not be all zero (a stationary point of the cost)")
    estimate_noise = noise_variance is None
    if not estimate_noise:
        if not isinstance(noise_variance, Real):
            raise TypeError(
                f"noise_variance must be None (estimate it) or a real number, "
                f"got {type(noise_variance).__name__}"
            )
        noise_variance = _check_noise_variance(noise_variance)
        if noise_variance0 is not None:
            raise ValueError(
                "noise_variance0 is a starting value for the estimated noise variance; "
                "give it only with noise_variance=None"
            )
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    tol = check_real(tol, "tol", minimum=0.0, strict=True)
    K = _check_n_angles(n_angles, basis)
    BR = _rotated_evaluation(basis, K)

    if estimate_noise:
        if noise_variance0 is None:
            (_, a2s, _), _ = _model_flat(BR, coef0, density0, 0.0, L)
            noise_variance0 = max(m2[0] - a2s[0], 0.0)
        else:
            noise_variance0 = _check_noise_variance(noise_variance0, "noise_variance0")

    # scales (see docstring)
    g_scale = density0
    c_scale = float(np.sqrt(np.mean(coef0**2)))
    v_scale = float(m2[0]) if m2[0] > 0 else 1.0
    f_scale = 0.5 * m1 * m1 + (m2 @ m2) / (2 * LL) + np.vdot(m3, m3) / (2 * LL * LL)
    if not f_scale > 0:
        f_scale = 1.0
    p = basis.n_functions

    def unpack(z):
        gamma = z[0] * g_scale
        coef = z[1 : 1 + p] * c_scale
        var = z[1 + p] * v_scale if estimate_noise else noise_variance
        return gamma, coef, var

    def fun(z):
        gamma, coef, var = unpack(z)
        cost, gg, gc, gv = _cost_and_grad_flat(BR, gamma, coef, var, m1, m2, m3, L)
        grad = [np.array([gg * g_scale]), gc * c_scale]
        if estimate_noise:
            grad.append(np.array([gv * v_scale]))
        return cost / f_scale, np.concatenate(grad) / f_scale

    z0 = [np.array([density0 / g_scale]), coef0 / c_scale]
    bounds = [(gmax * 1e-12 / g_scale, gmax / g_scale)] + [(None, None)] * p
    if estimate_noise:
        z0.append(np.array([noise_variance0 / v_scale]))
        bounds.append((0.0, None))
    z0 = np.concatenate(z0)
    # every evaluation is a handful of tiny GEMMs: BLAS threads only hurt
    with blas_single_thread():
        res = minimize(fun, z0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": max_iter, "ftol": tol, "gtol": tol})
    gamma, coef, var = unpack(res.x)
    return OptimizeResult(
        density=float(gamma),
        coef=np.asarray(coef, dtype=np.float64),
        noise_variance=float(var),
        cost=float(res.fun * f_scale),
        n_iter=int(res.nit),
        n_eval=int(res.nfev),
        converged=bool(res.success),
        message=str(res.message),
        estimate_noise=estimate_noise,
    )


# ---------------------------------------------------------------------------
# 5. the estimator
# ---------------------------------------------------------------------------
class AutocorrelationEstimator(BaseMTDEstimator):
    """Autocorrelation analysis for two-dimensional multi-target detection.

    The paper's baseline (§3): fits the density ``gamma``, the coefficients
    ``alpha`` and, optionally, the noise variance by matching the first three
    autocorrelations of the measurement with those of the model, averaged
    over uniform rotations (DESIGN.md §5), with L-BFGS-B and the analytic
    gradient.  The measurement is read once; the fit works on ``L**4``
    numbers, whatever the measurement size.

    The fitted model is the same generative model as
    :class:`~mtdlearn.ApproxEMEstimator`'s, so ``score``, ``predict`` and
    ``sample`` (from :class:`~mtdlearn.BaseMTDEstimator`) make the two
    estimators directly comparable by held-out log-likelihood.

    Parameters
    ----------
    image_size : int
        Diameter ``L = 2n + 1`` of the target image, odd.
    basis : FourierBesselBasis, default=None
        ``None`` means ``FourierBesselBasis(image_size)``.  Copied, never modified.
    rotations : int or rotation grid, default=16
        Rotation grid used by ``score``, ``score_samples``, ``predict`` and
        ``predict_proba`` (the fit itself averages over continuous rotations).
    initializer : initializer object, default=None
        ``None`` means :class:`~mtdlearn.initializers.RandomInitializer`.
        The starting density is ``(L**2 / (2L-1)**2) * sum of rho over the
        non-empty shifts`` of the initializer's ``shift_probabilities``.
    n_init : int, default=1
        Number of starts; the lowest cost wins.
    noise_variance : float, default=None
        A float holds ``sigma**2`` fixed; ``None`` estimates it.
    max_iter : int, default=1000
        L-BFGS-B iterations at most; ``0`` returns the initialization.
    tol : float, default=1e-14
        L-BFGS-B's ``ftol`` and ``gtol`` on the scaled cost.
    working_memory : float, default=None
        Budget in MiB for the buffers of the measurement pass.
    n_jobs : int, default=None
        Threads for the measurement pass and the starts (``None`` is 1).
        Results do not depend on it.
    random_state : int, Generator, RandomState or None, default=None
        Seeds the initializations (one seed per start is drawn up front, so
        results do not depend on ``n_jobs``).
    verbose : int, default=0
        ``>= 1`` prints one line per start.

    Attributes
    ----------
    coef_ : ndarray of shape (n_functions,)
    image_ : ndarray of shape (L, L)
    density_ : float
        Fitted ``gamma``.
    shift_probabilities_ : ndarray of shape (2L, 2L)
        Derived from ``gamma``: each of the ``(2L-1)**2`` non-empty shifts
        has probability ``gamma / L**2``, the empty shifts share the rest.
    noise_variance_ : float
    autocorrelations_ : tuple (a1, a2, a3)
        The measured autocorrelations (see :func:`measurement_autocorrelations`).
    cost_ : float
        Final value of the least-squares cost.
    n_iter_ : int
    converged_ : bool
    n_patches_ : int

    See Also
    --------
    ApproxEMEstimator : The approximate EM, more accurate at the same data.
    mtdlearn.initializers.AutocorrelationInitializer : Starts the EM from this estimate.

    Examples
    --------
    >>> from mtdlearn import AutocorrelationEstimator, FourierBesselBasis
    >>> from mtdlearn import make_target, make_measurement, relative_error
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 500, snr=5, random_state=0)
    >>> ac = AutocorrelationEstimator(5, basis=basis, n_init=3, random_state=0).fit(X)
    >>> ac.coef_.shape
    (10,)
    """

    def __init__(self, image_size, *, basis=None, rotations=16, initializer=None, n_init=1,
                 noise_variance=None, max_iter=1000, tol=1e-14, working_memory=None,
                 n_jobs=None, random_state=None, verbose=0):
        self.image_size = image_size
        self.basis = basis
        self.rotations = rotations
        self.initializer = initializer
        self.n_init = n_init
        self.noise_variance = noise_variance
        self.max_iter = max_iter
        self.tol = tol
        self.working_memory = working_memory
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _prepare(self, measurements):
        return measurement_autocorrelations(measurements, self.basis_.image_size,
                                            working_memory=self.working_memory,
                                            n_jobs=self.n_jobs)

    def _single_run(self, data, measurements, state, seed, inner_jobs=None):
        basis = self.basis_
        L = basis.image_size
        density0 = shift_probabilities_to_density(state.shift_probabilities)
        fixed = None if self.noise_variance is None else float(self.noise_variance)
        if self.max_iter == 0:
            sigma2 = fixed if fixed is not None else state.noise_variance
            cost = autocorrelation_cost_and_grad(density0, state.coef, sigma2, data, basis)[0]
            res = OptimizeResult(density=density0, coef=np.array(state.coef, dtype=float),
                                 noise_variance=sigma2, cost=cost, n_iter=0, converged=False)
        else:
            res = fit_autocorrelations(
                data, basis, density0, state.coef, noise_variance=fixed,
                noise_variance0=None if fixed is not None else state.noise_variance,
                max_iter=self.max_iter, tol=self.tol)
        if self.verbose:
            print(f"[Autocorrelation] start seed {seed}: cost {res.cost:.6e}, "
                  f"{res.n_iter} iterations, density {res.density:.4f}")
        return {
            "coef": np.asarray(res.coef, dtype=np.float64),
            "shift_probabilities": density_to_shift_probabilities(res.density, L),
            "noise_variance": max(float(res.noise_variance), np.finfo(float).tiny),
            "objective": -float(res.cost), "n_iter": int(res.n_iter),
            "converged": bool(res.converged),
            "extra": {"autocorrelations_": data, "cost_": float(res.cost)},
        }
