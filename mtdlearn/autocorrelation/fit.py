"""Autocorrelation analysis: the least-squares misfit of the moments, and its fit.

The cost compares the measured autocorrelations
(:func:`mtdlearn.autocorrelation.moments.measurement_autocorrelations`) with the model's
(:func:`mtdlearn.autocorrelation.model_moments.model_autocorrelations`)::

    cost = R1**2 / 2 + ||R2||**2 / (2 L**2) + ||R3||**2 / (2 L**4)

with ``Rk = model_k - measured_k``; its gradient is analytic, and
:func:`fit_autocorrelations` minimizes it with L-BFGS-B.  With a
``shift_radius``, ``R3`` runs over the pairs of the ``n`` kept shifts
(:func:`~mtdlearn.autocorrelation.moments.third_order_shifts`) and its weight is
``1 / (2 n**2)``: each term stays a mean over its moment's entries.
:func:`mixture_cost_and_grad` is the cost of a mixture of several kinds,
with its gradient with respect to each kind's image and abundance, and
:func:`fit_autocorrelations` fits a mixture too, its abundances through a
softmax.
"""

from numbers import Real

import numpy as np
from scipy.optimize import OptimizeResult, minimize

from .._parallel import check_n_jobs, thread_map
from .._validation import check_bool, check_int, check_real
from ..basis.protocol import check_basis
from ._chunked import RotatedImages, chunked_image_gradient, chunked_moments
from .model_moments import (_check_coef, _check_density, _check_mixture, _check_n_angles,
                            _check_noise_variance, _model_flat, _model_flat_mixture,
                            _moments_from_means, _noise_pattern, _ac2_fft_adjoint,
                            _rotated_evaluation, _windows_adjoint)
from .moments import _check_measured, _check_shift_radius, _shift_subset
from ..imaging.shifts import gather_adjoint, max_density

__all__ = ["autocorrelation_cost_and_grad", "mixture_cost_and_grad", "fit_autocorrelations"]

#: L-BFGS-B's memory (``maxcor``): the correction pairs its Hessian model
#: keeps.  SciPy's default of 10 leaves the cost's long, flat valleys to many
#: small steps.  Measured from random starts (SNR 3, density 0.1, default
#: basis, ``shift_radius="auto"``, one core): at L = 21, N = 4096
#: (281 functions) 733 iterations and 147 s with 10 pairs, 170 / 33 s with
#: 20, 124 / 23 s with 50, 122 / 22 s with 100, each to the same cost within
#: 1%; for a band-limited particle (61 of the 281 functions), 206 and 221
#: iterations (40, 43 s) with 50 pairs to costs 15% and 21% below where 10
#: pairs stood after 1000 (204 s); at L = 11, N = 1000 (78 functions, 3
#: starts) lower costs at each start; at L = 5, N = 1000 (10 functions)
#: 332-810 iterations with 10, 77-122 with 50, to the same cost (7 digits).
#: A pair costs ``O(p)`` memory and work per iteration.  (The seconds are
#: those of the one-piece evaluation of the time, about 3 times slower at
#: L = 21 than the chunked one of :mod:`mtdlearn.autocorrelation._chunked`.)
_LBFGS_MEMORY = 50


# ---------------------------------------------------------------------------
# 3. least-squares cost and its gradient
# ---------------------------------------------------------------------------
def _residual_grads(a1, a2, a3, noise_variance, m1, m2, m3, LL):
    """The cost and its gradient with respect to the model's moments:
    ``(cost, G1, G2, G3, G3D)``, ``G1`` the total ``dC/da1`` (``a3``'s noise
    term holds ``a1``) and ``G3D = <dC/da3, D>``."""
    n3 = a3.shape[0]
    R1 = a1 - m1
    R2 = a2 - m2
    R3 = a3 - m3
    cost = 0.5 * R1 * R1 + (R2 @ R2) / (2 * LL) + np.vdot(R3, R3) / (2 * n3 * n3)

    G2 = R2 / LL  # dC/da2
    G3 = R3 / (n3 * n3)  # dC/da3
    D = _noise_pattern(n3)
    G3D = np.vdot(G3, D)  # <dC/da3, D>
    G1 = R1 + noise_variance * G3D  # total dC/da1 (a3's noise term holds a1)
    return cost, G1, G2, G3, G3D


def _image_grads(F, W, G1, G2, G3, L, sub):
    """``d/dF_k`` of ``G1 sum(F_k) + <G2, ac2(F_k)> + <G3, ac3(F_k)>`` for each
    flattened image ``F_k`` (K, L*L), from its windows ``W``."""
    # gradient with respect to each rotated image F_k:
    #   sum:  G1
    #   ac2 = f^T W:            W G2 + W^T-adjoint(f (x) G2)
    #   ac3 = W^T diag(f) W:    q[x] = w_x^T G3 w_x + adjoint(f[x] (W (G3 + G3^T))[x, :])
    # (with a subset of shifts, W holds the kept shifts' windows only and ac2
    # goes by FFT, its gradient too: _ac2_fft_adjoint)
    Gs = G3 + G3.T
    V = W @ Gs  # (K, x, s)
    q = 0.5 * np.einsum("kxs,kxs->kx", V, W)
    if sub is None:
        gW = F[:, :, None] * (V + G2[None, None, :])
        return G1 + W @ G2 + q + _windows_adjoint(gW, L)
    return G1 + _ac2_fft_adjoint(F, G2) + q + gather_adjoint(F[:, :, None] * V, sub[2], L * L)


def _cost_and_grad_flat(BR, density, coef, noise_variance, m1, m2, m3, L, sub=None,
                        tmap=None):
    """Cost and gradient with flat measured moments ``m2`` (L*L,), ``m3``
    (n, n) on the ``n`` shifts of ``sub`` (all L*L when ``None``) and
    precomputed ``BR`` (see :func:`autocorrelation_cost_and_grad` for the
    formulas).  A subset of shifts goes by chunks of angles, mapped with
    ``tmap``, and ``BR`` may then be a
    :class:`~mtdlearn.autocorrelation._chunked.RotatedImages`
    (:mod:`mtdlearn.autocorrelation._chunked`)."""
    LL = L * L
    if sub is not None:
        return _cost_and_grad_chunked(BR, density, coef, noise_variance, m1, m2, m3, L, sub,
                                      tmap)
    K = BR.shape[0]
    (a1, a2, a3), (F, W, E1, E2, E3) = _model_flat(BR, coef, density, noise_variance, L, sub)
    cost, G1, G2, G3, G3D = _residual_grads(a1, a2, a3, noise_variance, m1, m2, m3, LL)
    grad_noise = G2[0] + a1 * G3D
    grad_density = (G1 * E1 + G2 @ E2 + np.vdot(G3, E3)) / LL
    # the gradient of each rotated image, scaled by gamma / (L^2 K) for the average
    gF = _image_grads(F, W, G1, G2, G3, L, sub)
    grad_coef = (density / (LL * K)) * np.einsum("kx,kxp->p", gF, BR)
    return float(cost), float(grad_density), grad_coef, float(grad_noise)


def _cost_and_grad_chunked(rot, density, coef, noise_variance, m1, m2, m3, L, sub, tmap):
    """:func:`_cost_and_grad_flat` on a subset of shifts, by chunks of angles."""
    LL = L * L
    if not isinstance(rot, RotatedImages):
        rot = RotatedImages(None, rot.shape[0], rot)
    F = rot.images(coef)
    K = F.shape[0]
    E1, E2, E3 = chunked_moments(F, L, sub, tmap)
    a1, a2, a3 = _moments_from_means(E1, E2, E3, density, noise_variance, L)
    cost, G1, G2, G3, G3D = _residual_grads(a1, a2, a3, noise_variance, m1, m2, m3, LL)
    grad_noise = G2[0] + a1 * G3D
    grad_density = (G1 * E1 + G2 @ E2 + np.vdot(G3, E3)) / LL
    gF = chunked_image_gradient(F, L, sub, G1, G2, G3, tmap)
    grad_coef = (density / (LL * K)) * rot.adjoint(gF)
    return float(cost), float(grad_density), grad_coef, float(grad_noise)


def _cost_and_grad_mixture(BR, density, coefs, weights, noise_variance, m1, m2, m3, L,
                           sub=None):
    """:func:`_cost_and_grad_flat` of a mixture (:func:`mixture_cost_and_grad`):
    ``(cost, grad_density, grad_coef (C, p), grad_weights (C,), grad_noise)``."""
    LL = L * L
    C, K = coefs.shape[0], BR.shape[0]
    (a1, a2, a3), (F, W, E1, E2, E3) = _model_flat_mixture(BR, coefs, weights, density,
                                                           noise_variance, L, sub)
    cost, G1, G2, G3, G3D = _residual_grads(a1, a2, a3, noise_variance, m1, m2, m3, LL)
    grad_noise = G2[0] + a1 * G3D
    # d cost / d (w_c gamma): kind c's moments against the residuals
    per_kind = (G1 * E1 + E2 @ G2 + np.tensordot(E3, G3, axes=2)) / LL
    grad_density = weights @ per_kind
    grad_weights = density * per_kind
    gF = _image_grads(F, W, G1, G2, G3, L, sub).reshape(C, K, LL)
    grad_coef = ((density / (LL * K)) * weights)[:, None] * np.einsum("ckx,kxp->cp", gF, BR)
    return float(cost), float(grad_density), grad_coef, grad_weights, float(grad_noise)


def autocorrelation_cost_and_grad(density, coef, noise_variance, measured, basis,
                                  estimate_noise=False, n_angles=None, *, shift_radius=None,
                                  formation=None):
    """Weighted least-squares misfit of the autocorrelations, and its gradient.

    ``cost = R1**2 / 2 + ||R2||**2 / (2 L**2) + ||R3||**2 / (2 L**4)`` with
    ``Rk = model_k - measured_k``
    (:func:`~mtdlearn.autocorrelation.model_moments.model_autocorrelations`).  The
    gradient is analytic: the model is linear in ``gamma`` and
    ``sigma**2``, and the rotated images are linear in ``coef``, so the chain
    rule runs through ``F_phi -> (sum, ac2, ac3)`` (first and second factor
    of ``ac2``, first and the two window factors of ``ac3``) and through the
    average over the angles.  With a ``shift_radius``, ``R3`` covers the
    pairs of the ``n`` kept shifts only and its weight is ``1 / (2 n**2)``.  The noise term ``sigma**2 a1 D`` of ``a3``
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
        Measured autocorrelations, as from :func:`~mtdlearn.autocorrelation.moments.measurement_autocorrelations`
        with the same ``shift_radius``.
    basis : basis object
        The steerable basis.
    estimate_noise : bool, default=False
        Whether ``noise_variance`` is a free parameter; if not, its gradient
        is returned as ``0.0``.
    n_angles : int, default=None
        See :func:`~mtdlearn.autocorrelation.model_moments.model_autocorrelations`.
    shift_radius : float, "auto" or None, default=None
        The third moment's shifts (:func:`~mtdlearn.autocorrelation.moments.third_order_shifts`);
        ``None`` uses all of them.
    formation : ImageFormation or sequence of ImageFormation, default=None
        How a copy appears in the measurement (see
        :func:`~mtdlearn.autocorrelation.model_moments.model_autocorrelations`).

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
    >>> from mtdlearn.autocorrelation.fit import autocorrelation_cost_and_grad
    >>> from mtdlearn.autocorrelation.model_moments import model_autocorrelations
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.linspace(1.0, 2.0, 10)
    >>> measured = model_autocorrelations(coef, basis, 0.04, 0.5)
    >>> cost, g_density, g_coef, g_noise = autocorrelation_cost_and_grad(
    ...     0.04, coef, 0.5, measured, basis, estimate_noise=True)
    >>> cost, float(np.abs(g_coef).max())
    (0.0, 0.0)
    """
    check_basis(basis)
    coef = _check_coef(coef, basis)
    args = _check_cost_args(density, noise_variance, measured, basis, estimate_noise, n_angles,
                            shift_radius, formation)
    cost, g_density, g_coef, g_noise = _cost_and_grad_flat(args[0], args[1], coef, *args[2:])
    return cost, g_density, g_coef, (g_noise if estimate_noise else 0.0)


def _check_cost_args(density, noise_variance, measured, basis, estimate_noise, n_angles,
                     shift_radius, formation):
    """The checked arguments of the cost: ``(BR, density, noise_variance, m1,
    m2 (L*L,), m3 (n, n), L, sub)``."""
    L = basis.image_size
    density = _check_density(density, L)
    noise_variance = _check_noise_variance(noise_variance)
    sub = _shift_subset(L, _check_shift_radius(shift_radius, L))
    m1, m2, m3 = _check_measured(measured, L, sub)
    check_bool(estimate_noise, "estimate_noise")
    K = _check_n_angles(n_angles, basis)
    BR = _rotated_evaluation(basis, K, formation)
    LL = L * L
    n3 = m3.shape[0] if sub is not None else LL
    return BR, density, noise_variance, m1, m2.reshape(LL), m3.reshape(n3, n3), L, sub


def mixture_cost_and_grad(density, coef, weights, noise_variance, measured, basis,
                          estimate_noise=False, n_angles=None, *, shift_radius=None,
                          formation=None):
    """The cost of :func:`autocorrelation_cost_and_grad` for a mixture, and its gradient.

    The model is the mixture's
    (:func:`~mtdlearn.autocorrelation.model_moments.model_autocorrelations`
    with a ``coef`` of one row per kind and ``weights``): kind ``c``
    contributes its moments at the density ``w_c gamma``.  The gradient is
    analytic: with respect to each kind's coefficients it is the one-image
    gradient of that kind, scaled by its abundance; with respect to ``w_c``
    it is ``gamma`` times kind ``c``'s moments against the residuals (the
    partial derivatives, ``weights`` taken as free: a fit that keeps them on
    the simplex composes them with its parametrization, as
    :func:`fit_autocorrelations` does with a softmax).

    Parameters
    ----------
    density : float
        The total density ``gamma`` of the copies of all kinds, in
        ``[0, L**2 / (2L - 1)**2]``.
    coef : array-like of shape (n_components, n_functions)
        The kinds' coefficients in ``basis``, one row each.
    weights : array-like of shape (n_components,)
        Their abundances ``w_c``: non-negative, summing to 1.
    noise_variance : float
        ``sigma**2 >= 0``.
    measured : tuple (a1, a2, a3)
        Measured autocorrelations (see :func:`autocorrelation_cost_and_grad`).
    basis : basis object
        The steerable basis.
    estimate_noise : bool, default=False
        Whether ``noise_variance`` is a free parameter; if not, its gradient
        is returned as ``0.0``.
    n_angles : int, default=None
        See :func:`~mtdlearn.autocorrelation.model_moments.model_autocorrelations`.
    shift_radius : float, "auto" or None, default=None
        The third moment's shifts; ``None`` uses all of them.
    formation : ImageFormation or sequence of ImageFormation, default=None
        How a copy appears in the measurement.

    Returns
    -------
    cost : float
        The weighted least-squares misfit.
    grad_density : float
        ``d cost / d gamma``.
    grad_coef : ndarray of shape (n_components, n_functions)
        ``d cost / d coef``.
    grad_weights : ndarray of shape (n_components,)
        ``d cost / d w_c``, the partial derivatives.
    grad_noise_variance : float
        ``d cost / d sigma**2``; ``0.0`` unless ``estimate_noise``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.autocorrelation.fit import mixture_cost_and_grad
    >>> from mtdlearn.autocorrelation.model_moments import model_autocorrelations
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.stack([np.linspace(1.0, 2.0, 10), np.linspace(2.0, -1.0, 10)])
    >>> measured = model_autocorrelations(coef, basis, 0.04, 0.5, weights=[0.3, 0.7])
    >>> cost, g_density, g_coef, g_weights, g_noise = mixture_cost_and_grad(
    ...     0.04, coef, [0.3, 0.7], 0.5, measured, basis)
    >>> cost, g_coef.shape, g_weights.shape
    (0.0, (2, 10), (2,))
    """
    check_basis(basis)
    coef, weights = _check_mixture(coef, weights, basis)
    if weights is None:
        raise ValueError(f"coef must have shape (n_components, n_functions="
                         f"{basis.n_functions}) for a mixture, got {coef.shape}")
    args = _check_cost_args(density, noise_variance, measured, basis, estimate_noise, n_angles,
                            shift_radius, formation)
    cost, g_density, g_coef, g_weights, g_noise = _cost_and_grad_mixture(
        args[0], args[1], coef, weights, *args[2:])
    return cost, g_density, g_coef, g_weights, (g_noise if estimate_noise else 0.0)


# ---------------------------------------------------------------------------
# 4. the fit
# ---------------------------------------------------------------------------
def _softmax(u):
    """Abundances on the simplex from free logits."""
    e = np.exp(u - u.max())
    return e / e.sum()


def fit_autocorrelations(measured, basis, density0, coef0, noise_variance=None,
                         noise_variance0=None, max_iter=1000, tol=1e-14, n_angles=None, *,
                         shift_radius=None, formation=None, weights0=None, n_jobs=None):
    """Fit ``(gamma, coef[, sigma**2])`` to measured autocorrelations.

    Minimizes the cost of :func:`autocorrelation_cost_and_grad` with
    L-BFGS-B (50 correction pairs) and the analytic gradient, under the bounds
    ``0 < gamma <= L**2 / (2L - 1)**2`` (the densest well-separated
    arrangement) and ``sigma**2 >= 0``.

    For conditioning the optimizer works on scaled variables:
    ``gamma / density0``, ``coef / rms(coef0)`` and ``sigma**2 / a2[0, 0]``,
    whose relative changes act on the cost alike (each moment is ``gamma``
    times a form of degree 1-3 in ``coef``), and on the cost divided by the
    cost of the zero model, ``R1**2/2 + ...`` at ``gamma = 0, sigma = 0``
    (so that L-BFGS-B's relative ``ftol`` test is meaningful however small
    the moments are).

    A ``coef0`` with one row per kind fits a mixture
    (:func:`mixture_cost_and_grad`): the kinds' images and their abundances
    ``w`` jointly, ``w`` through a softmax of free logits, so that it stays
    on the simplex (the logits start at ``log(weights0)`` and are not scaled).

    Parameters
    ----------
    measured : tuple (a1, a2, a3)
        Measured autocorrelations, as from :func:`~mtdlearn.autocorrelation.moments.measurement_autocorrelations`.
    basis : basis object
        The steerable basis of the coefficients.
    density0 : float
        Starting density, in ``(0, L**2 / (2L - 1)**2]``.
    coef0 : array-like of shape (n_functions,) or (n_components, n_functions)
        Starting coefficients; not all zero (zero is a stationary point).
        One row per kind fits a mixture.
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
        See :func:`~mtdlearn.autocorrelation.model_moments.model_autocorrelations`.
    shift_radius : float, "auto" or None, default=None
        The third moment's shifts, as ``measured`` was computed with
        (:func:`~mtdlearn.autocorrelation.moments.third_order_shifts`); ``None`` uses all.
    formation : ImageFormation or sequence of ImageFormation, default=None
        How a copy appears in the measurement (see
        :func:`~mtdlearn.autocorrelation.model_moments.model_autocorrelations`).
    weights0 : array-like of shape (n_components,), default=None
        Starting abundances of a mixture's kinds, positive (a kind of
        abundance 0 would stay at 0), summing to 1; ``None`` means equal
        abundances.  Only with a two-dimensional ``coef0``.
    n_jobs : int, default=None
        Threads evaluating the cost of one image on a subset of shifts
        (``shift_radius``), by chunks of the angles of the rotational
        average (``None`` is 1).  Results do not depend on it.

    Returns
    -------
    scipy.optimize.OptimizeResult
        A dict with attribute access: ``density``, ``coef``,
        ``noise_variance``, ``cost`` (unscaled), ``n_iter``, ``n_eval``,
        ``converged`` (L-BFGS-B's ``success``), ``message``,
        ``estimate_noise``; for a mixture also ``weights``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.autocorrelation.fit import fit_autocorrelations
    >>> from mtdlearn.autocorrelation.model_moments import model_autocorrelations
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.linspace(1.0, 2.0, 10)
    >>> measured = model_autocorrelations(coef, basis, 0.04, 0.5)
    >>> res = fit_autocorrelations(measured, basis, 0.04, coef, noise_variance=0.5)
    >>> res.converged, res.cost < 1e-20
    (True, True)
    """
    check_basis(basis)
    L = basis.image_size
    LL = L * L
    sub = _shift_subset(L, _check_shift_radius(shift_radius, L))
    m1, m2, m3 = _check_measured(measured, L, sub)
    n3 = LL if sub is None else m3.shape[0]
    m2, m3 = m2.reshape(LL), m3.reshape(n3, n3)
    gmax = max_density(L)
    density0 = check_real(density0, "density0", minimum=0.0, maximum=gmax, strict=True)
    coef0, weights0 = _check_mixture(coef0, weights0, basis, "coef0", "weights0")
    mixture = weights0 is not None
    if mixture and not np.all(weights0 > 0):
        raise ValueError(f"weights0 must be positive (a kind of abundance 0 stays at 0), "
                         f"got {weights0!r}")
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
    n_jobs = check_n_jobs(n_jobs)
    K = _check_n_angles(n_angles, basis)
    if sub is not None and formation is None and not mixture:
        # rotations of the coefficients instead of the K x L**2 x p table
        BR = RotatedImages(basis, K)
    else:
        BR = _rotated_evaluation(basis, K, formation)

    if estimate_noise:
        if noise_variance0 is None:
            if isinstance(BR, RotatedImages):
                a2s = _moments_from_means(*chunked_moments(BR.images(coef0), L, sub),
                                          density0, 0.0, L)[1]
            else:
                (_, a2s, _), _ = (
                    _model_flat_mixture(BR, coef0, weights0, density0, 0.0, L, sub)
                    if mixture else _model_flat(BR, coef0, density0, 0.0, L, sub))
            noise_variance0 = max(m2[0] - a2s[0], 0.0)
        else:
            noise_variance0 = _check_noise_variance(noise_variance0, "noise_variance0")

    # scales (see docstring)
    g_scale = density0
    c_scale = float(np.sqrt(np.mean(coef0**2)))
    v_scale = float(m2[0]) if m2[0] > 0 else 1.0
    f_scale = 0.5 * m1 * m1 + (m2 @ m2) / (2 * LL) + np.vdot(m3, m3) / (2 * n3 * n3)
    if not f_scale > 0:
        f_scale = 1.0
    p = coef0.size  # every kind's coefficients, then (a mixture) its C logits
    n_w = len(weights0) if mixture else 0

    def unpack(z):
        gamma = z[0] * g_scale
        coef = (z[1 : 1 + p] * c_scale).reshape(coef0.shape)
        var = z[1 + p + n_w] * v_scale if estimate_noise else noise_variance
        return gamma, coef, var

    def fun(z):
        gamma, coef, var = unpack(z)
        if mixture:
            w = _softmax(z[1 + p : 1 + p + n_w])
            cost, gg, gc, gw, gv = _cost_and_grad_mixture(BR, gamma, coef, w, var, m1, m2, m3,
                                                          L, sub)
            # through the softmax: d w_c / d u_j = w_c (delta_cj - w_j)
            grad = [np.array([gg * g_scale]), gc.ravel() * c_scale, w * (gw - w @ gw)]
        else:
            cost, gg, gc, gv = _cost_and_grad_flat(BR, gamma, coef, var, m1, m2, m3, L, sub,
                                                   tmap)
            grad = [np.array([gg * g_scale]), gc * c_scale]
        if estimate_noise:
            grad.append(np.array([gv * v_scale]))
        return cost / f_scale, np.concatenate(grad) / f_scale

    z0 = [np.array([density0 / g_scale]), coef0.ravel() / c_scale]
    if mixture:
        z0.append(np.log(weights0))
    bounds = [(gmax * 1e-12 / g_scale, gmax / g_scale)] + [(None, None)] * (p + n_w)
    if estimate_noise:
        z0.append(np.array([noise_variance0 / v_scale]))
        bounds.append((0.0, None))
    z0 = np.concatenate(z0)
    # every evaluation is a handful of tiny GEMMs: BLAS threads only hurt
    # (thread_map limits them); n_jobs threads share the chunks of angles instead
    with thread_map(n_jobs) as tmap:
        res = minimize(fun, z0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": max_iter, "ftol": tol, "gtol": tol,
                                "maxcor": _LBFGS_MEMORY})
    gamma, coef, var = unpack(res.x)
    extra = {"weights": _softmax(res.x[1 + p : 1 + p + n_w])} if mixture else {}
    return OptimizeResult(**extra,
        # at the upper bound, (gmax / g_scale) * g_scale can round one ulp above gmax
        density=float(min(gamma, gmax)),
        coef=np.asarray(coef, dtype=np.float64),
        noise_variance=float(var),
        cost=float(res.fun * f_scale),
        n_iter=int(res.nit),
        n_eval=int(res.nfev),
        converged=bool(res.success),
        message=str(res.message),
        estimate_noise=estimate_noise,
    )
