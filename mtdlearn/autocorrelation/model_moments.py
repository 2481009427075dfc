"""Autocorrelations of small images and of the model.

Autocorrelation analysis (:class:`~mtdlearn.AutocorrelationEstimator`)
matches the autocorrelations of the measurement
(:mod:`mtdlearn.autocorrelation.moments`) with those the model predicts,
computed here, averaged over the unknown rotations and positions.

.. rubric:: Notes

Shifts are *forward* shifts ``s = (s_row, s_col)`` in ``[0, L)**2``, as
for the measurement.

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

* A mixture of ``C`` kinds (``coef`` of shape (C, p), abundances ``w``):
  ``sum_c w_c`` times each kind's moments at the same ``gamma`` and
  ``sigma**2`` (kind ``c`` at the density ``w_c gamma``).

The least-squares cost, its analytic gradient and an L-BFGS-B fit are in
:mod:`mtdlearn.autocorrelation.fit`.
"""

import numpy as np
import scipy.fft

from ..imaging.formation import check_formation
from .._validation import check_abundances, check_array_float, check_int, check_real
from ..basis.protocol import check_basis, rotated_evaluation
from ..imaging.shifts import gather_adjoint, max_density
from .moments import _check_shift_radius, _shift_subset, _window_index

__all__ = ["image_autocorrelations", "model_autocorrelations", "default_n_angles"]


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------
def default_n_angles(basis):
    """Number of equispaced angles that makes the rotational average exact.

    The third-order model autocorrelation of the rotated image is a
    trigonometric polynomial of degree at most ``3 * nu_max`` in the angle,
    and the mean over ``K`` equispaced angles of ``exp(i k phi)`` vanishes for
    every ``0 < |k| < K``; hence ``K = 3 * nu_max + 1`` angles average it
    exactly.

    Parameters
    ----------
    basis : basis object
        The basis; only its largest angular frequency ``nu_max`` matters.

    Returns
    -------
    int
        ``3 * nu_max + 1``.

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.autocorrelation.model_moments import default_n_angles
    >>> default_n_angles(FourierBesselBasis(5, n_coefficients=10))
    7
    """
    check_basis(basis)
    return 3 * int(np.max(basis.frequencies, initial=0)) + 1


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


def _check_mixture(coef, weights, basis, name="coef", weights_name="weights"):
    """``(coef, weights)``: one image, ``coef`` (p,) and ``weights`` ``None``;
    or a mixture, ``coef`` (C, p) and ``weights`` (C,) on the simplex
    (``None``: equal abundances)."""
    arr = check_array_float(coef, name)
    if arr.ndim == 1:
        if weights is not None:
            raise ValueError(f"{weights_name} are the abundances of a mixture: give them with "
                             f"a {name} of shape (n_components, n_functions), or None")
        return _check_coef(arr, basis, name), None
    p = basis.n_functions
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != p:
        raise ValueError(f"{name} must have shape (n_functions={p},) or (n_components, {p}), "
                         f"got {arr.shape}")
    C = arr.shape[0]
    if weights is None:
        return arr, np.full(C, 1.0 / C)
    return arr, check_abundances(weights, C, weights_name)


# ---------------------------------------------------------------------------
# autocorrelations of small images and of the model
# ---------------------------------------------------------------------------
def _windows(F):
    """Window tensor ``W[..., x, s] = F[..., x + s]`` (zero outside) of
    flattened images ``F`` of shape (..., L*L)."""
    LL = F.shape[-1]
    L = int(round(np.sqrt(LL)))
    Fz = np.concatenate([F, np.zeros(F.shape[:-1] + (1,))], axis=-1)
    return Fz[..., _window_index(L)]


def _windows_adjoint(G, L):
    """Adjoint of :func:`_windows`: ``(K, L*L, L*L)`` to ``(K, L*L)``."""
    return gather_adjoint(G, _window_index(L), L * L)


def _flat_autocorrelations(F, sub=None):
    """Sum, ac2 and ac3 of flattened images ``F`` (K, L*L); also the windows.

    With a subset ``sub`` of ``n`` shifts, ac3 holds their pairs only,
    ``(K, n, n)``, the windows are those of the kept shifts, ``(K, L*L, n)``,
    and ac2 comes from an FFT (:func:`_ac2_fft`): the ``L**4`` window tensor
    is never formed."""
    S = F.sum(axis=-1)
    if sub is None:
        W = _windows(F)  # (K, x, s)
        A2 = np.einsum("kx,kxs->ks", F, W)
    else:
        Fz = np.concatenate([F, np.zeros(F.shape[:-1] + (1,))], axis=-1)
        W = Fz[..., sub[2]]  # (K, x, n)
        A2 = _ac2_fft(F)
    A3 = np.matmul(np.swapaxes(F[:, :, None] * W, 1, 2), W)  # (K, s1, s2)
    return S, A2, A3, W


def _ac2_fft(F):
    """``ac2`` of flattened images (K, L*L) by FFT on a ``2L x 2L`` grid.

    ``sum_x F[x] F[x + s]`` is the circular correlation of the zero-padded
    image at lag ``s``; for ``0 <= s < L`` and ``x < L``, ``x + s < 2L``,
    so no product wraps around."""
    L = int(round(np.sqrt(F.shape[-1])))
    Fh = scipy.fft.rfft2(F.reshape(-1, L, L), s=(2 * L, 2 * L))
    ac = scipy.fft.irfft2(Fh.real**2 + Fh.imag**2, s=(2 * L, 2 * L))
    return ac[:, :L, :L].reshape(F.shape)


def _ac2_fft_adjoint(F, G2):
    """Gradient of ``sum_s G2[s] ac2(F_k)[s]`` for each image (K, L*L).

    ``d ac2[s] / d F[y] = F[y + s] + F[y - s]``: a correlation plus a
    convolution with ``G2``, i.e. ``2 Re(G2^) F^`` on the ``2L x 2L`` grid
    (a lag ``y - s < 0`` wraps to a row or column ``>= L + 1``, where ``F``
    is zero)."""
    L = int(round(np.sqrt(F.shape[-1])))
    Fh = scipy.fft.rfft2(F.reshape(-1, L, L), s=(2 * L, 2 * L))
    Gh = scipy.fft.rfft2(G2.reshape(L, L), s=(2 * L, 2 * L))
    out = scipy.fft.irfft2((2 * Gh.real) * Fh, s=(2 * L, 2 * L))
    return out[:, :L, :L].reshape(F.shape)


def image_autocorrelations(images):
    """Pixel sum and second and third autocorrelations of small images.

    For an ``L x L`` image ``F`` (zero outside the square) and forward
    shifts ``s, s1, s2`` in ``[0, L)**2``::

        ac2(F)[s]      = sum_x F[x] F[x+s]
        ac3(F)[s1, s2] = sum_x F[x] F[x+s1] F[x+s2]

    These are the raw sums of
    :func:`~mtdlearn.autocorrelation.moments.measurement_autocorrelations` for a
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
    >>> from mtdlearn.autocorrelation.model_moments import image_autocorrelations
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


def _rotated_evaluation(basis, n_angles, formation=None):
    """``BR[k] = H B R(phi_k)`` (K, L*L, p) for the equispaced angles
    ``phi_k = 2 pi k / K``: ``(H F_{phi_k}).ravel() = BR[k] @ coef``, through
    the image formation ``H`` (:mod:`mtdlearn.imaging.formation`; the
    identity for ``None``).

    A sequence of formations (one per micrograph, each its own CTF) stacks
    their tables, ``(M K, L*L, p)``: the model moments' mean over the first
    axis is then the mean over the micrographs of each one's moments, which
    are the moments of the pooled micrographs when they have equal areas."""
    formations = formation if isinstance(formation, (list, tuple)) else [formation]
    if not formations:
        raise ValueError("formation must be an ImageFormation, None or a non-empty sequence "
                         "of them")
    L = basis.image_size
    BR = rotated_evaluation(basis, 2 * np.pi * np.arange(n_angles) / n_angles)
    tables = []
    for i, f in enumerate(formations):
        f = check_formation(f, "formation" if len(formations) == 1 else f"formation[{i}]")
        if f.support(L) != L:
            raise ValueError(f"the model moments need formed copies of the image's own size "
                             f"L={L}; the formation gives {f.support(L)}")
        tables.append(f.form_columns(BR))
    return tables[0] if len(tables) == 1 else np.concatenate(tables)


def _noise_pattern(n):
    """``D[s1, s2] = delta(s1) + delta(s2) + delta(s1 - s2)`` as (n, n) over the
    first ``n`` kept shifts (all ``L*L``, or a subset: shift 0 comes first)."""
    D = np.eye(n)
    D[0, :] += 1.0
    D[:, 0] += 1.0
    return D


def _model_flat(BR, coef, density, noise_variance, L, sub=None):
    """Model moments (flat; a3 over the subset ``sub`` of shifts) and the
    intermediate arrays the gradient needs."""
    F = BR @ coef  # (K, L*L)
    S, A2, A3, W = _flat_autocorrelations(F, sub)
    E1, E2, E3 = S.mean(), A2.mean(axis=0), A3.mean(axis=0)
    return _moments_from_means(E1, E2, E3, density, noise_variance, L), (F, W, E1, E2, E3)


def _moments_from_means(E1, E2, E3, density, noise_variance, L):
    """The model moments ``(a1, a2, a3)`` (flat) from the rotational means of
    the pixel sum, ``ac2`` and ``ac3``."""
    scale = density / (L * L)
    a1 = scale * E1
    a2 = scale * E2
    a2[0] += noise_variance
    a3 = scale * E3 + (noise_variance * a1) * _noise_pattern(E3.shape[0])
    return a1, a2, a3


def _model_flat_mixture(BR, coefs, weights, density, noise_variance, L, sub=None):
    """:func:`_model_flat` of a mixture: ``coefs`` (C, p), abundances
    ``weights`` (C,).  Each kind's rotational means ``E1`` (C,), ``E2``
    (C, L*L), ``E3`` (C, n, n) are weighed by ``w_c gamma / L**2``; the
    noise terms are the one-image model's, with the mixture's ``a1``.  The
    images ``F`` are stacked component-major, (C*K, L*L)."""
    C, K = coefs.shape[0], BR.shape[0]
    F = np.concatenate([BR @ c for c in coefs])  # (C*K, L*L)
    S, A2, A3, W = _flat_autocorrelations(F, sub)
    E1 = S.reshape(C, K).mean(axis=1)
    E2 = A2.reshape(C, K, -1).mean(axis=1)
    E3 = A3.reshape((C, K) + A3.shape[1:]).mean(axis=1)
    scale = density / (L * L)
    a1 = scale * (weights @ E1)
    a2 = scale * (weights @ E2)
    a2[0] += noise_variance
    a3 = scale * np.tensordot(weights, E3, axes=1) \
        + (noise_variance * a1) * _noise_pattern(E3.shape[-1])
    return (a1, a2, a3), (F, W, E1, E2, E3)


def model_autocorrelations(coef, basis, density, noise_variance, n_angles=None, *,
                           shift_radius=None, formation=None, weights=None):
    """Compute the autocorrelations the model predicts for well-separated copies.

    With ``F_phi = basis.evaluate(basis.rotate(coef, phi))``, density
    ``gamma`` and noise variance ``sigma**2`` (:doc:`/design`, "Autocorrelation
    analysis")::

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

    A mixture of ``C`` kinds of particle (``coef`` of shape (C, p)) at the
    total density ``gamma`` holds kind ``c`` at the density ``w_c gamma``;
    copies of any kinds are well separated, so the signal terms are the
    kinds' ones weighed by their abundances ``w_c``, and the noise terms are
    those above with the mixture's ``a1``: the mixture's moments are
    ``sum_c w_c`` times each kind's moments at ``gamma`` and ``sigma**2``.

    Parameters
    ----------
    coef : array-like of shape (n_functions,) or (n_components, n_functions)
        Coefficients of the image ``F`` in ``basis``; one row per kind for
        a mixture.
    basis : basis object
        The steerable basis (gives ``L`` and the rotations).
    density : float
        ``gamma`` in ``[0, L**2 / (2L - 1)**2]``.
    noise_variance : float
        ``sigma**2 >= 0``.
    n_angles : int, default=None
        Number of equispaced angles; ``None`` means ``3 * nu_max + 1``, the
        fewest that give the exact average.  Fewer angles give an
        approximation; more change nothing but the cost.
    shift_radius : float, "auto" or None, default=None
        Keep the third moment on the pairs of
        :func:`~mtdlearn.autocorrelation.moments.third_order_shifts`
        only; ``None`` keeps all of them.
    formation : ImageFormation or sequence of ImageFormation, default=None
        How a copy appears in the measurement: ``F_phi`` above becomes the
        formed copy ``H F_phi`` (:mod:`mtdlearn.imaging.formation`; ``None``,
        the paper's model, is the identity).  The noise terms are those of
        white noise (data whitened by the formation's filter).  A sequence,
        one per micrograph (each with its own CTF), gives the mean of their
        moments: the moments of the pooled micrographs when their areas are
        equal (otherwise each micrograph weighs the same, not by its area).
    weights : array-like of shape (n_components,), default=None
        The kinds' abundances ``w_c`` (non-negative, summing to 1) when
        ``coef`` has one row per kind; ``None`` means equal abundances (and
        is the only value for a one-dimensional ``coef``).

    Returns
    -------
    a1 : float
        Mean.
    a2 : ndarray of shape (L, L)
        ``a2[s_row, s_col]``.
    a3 : ndarray of shape (L, L, L, L) or (n_shifts, n_shifts)
        ``a3[s1_row, s1_col, s2_row, s2_col]``; with a ``shift_radius``,
        ``a3[i, j]`` at the shifts ``third_order_shifts(L, shift_radius)[i]``
        and ``[j]``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.autocorrelation.model_moments import model_autocorrelations
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> a1, a2, a3 = model_autocorrelations(np.ones(10), basis, 0.04, 0.5)
    >>> a2.shape, a3.shape
    ((5, 5), (5, 5, 5, 5))
    >>> mix = model_autocorrelations(np.stack([np.ones(10), np.zeros(10)]), basis, 0.04,
    ...                              0.5, weights=[0.5, 0.5])
    >>> bool(np.isclose(mix[0], 0.5 * a1))
    True
    """
    check_basis(basis)
    coef, weights = _check_mixture(coef, weights, basis)
    L = basis.image_size
    density = _check_density(density, L)
    noise_variance = _check_noise_variance(noise_variance)
    K = _check_n_angles(n_angles, basis)
    sub = _shift_subset(L, _check_shift_radius(shift_radius, L))
    BR = _rotated_evaluation(basis, K, formation)
    if weights is None:
        (a1, a2, a3), _ = _model_flat(BR, coef, density, noise_variance, L, sub)
    else:
        (a1, a2, a3), _ = _model_flat_mixture(BR, coef, weights, density, noise_variance, L,
                                              sub)
    return float(a1), a2.reshape(L, L), (a3.reshape(L, L, L, L) if sub is None else a3)
