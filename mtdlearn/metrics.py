"""Rotation-aligned recovery error (paper eq. 19)."""

import numpy as np
from scipy.optimize import minimize_scalar

from .basis import FourierBesselBasis

__all__ = ["relative_error", "align_rotation"]


def _minimize_periodic(fun, degree):
    """Global minimum over [0, 2 pi) of a trigonometric polynomial of the given
    degree: a grid fine enough to bracket every local minimum, then Brent's
    method on the bracket of each discrete local minimum (at most
    ``degree + 1`` of them, best first); the best refined value wins.

    Refining only the best grid point is not enough: two wells of nearly equal
    depth (e.g. a target whose odd frequencies are weak) can swap order on the
    grid, and the refined minimum would then be the wrong one.
    """
    n_grid = max(64, 16 * int(degree) + 1)
    grid = np.linspace(0.0, 2 * np.pi, n_grid, endpoint=False)
    values = fun(grid)
    step = grid[1] - grid[0]
    local = np.flatnonzero((values <= np.roll(values, 1)) & (values <= np.roll(values, -1)))
    local = local[np.argsort(values[local], kind="stable")][: int(degree) + 1]
    k = int(np.argmin(values))
    best_x, best_f = float(grid[k]), float(values[k])
    for k in local:
        res = minimize_scalar(lambda t: float(fun(np.array([t]))[0]),
                              bounds=(grid[k] - step, grid[k] + step), method="bounded",
                              options={"xatol": 1e-12})
        if res.fun <= best_f:
            best_x, best_f = float(res.x % (2 * np.pi)), float(res.fun)
    if best_x >= 2 * np.pi:  # (-tiny) % (2 pi) rounds to 2 pi
        best_x = 0.0
    return best_x, best_f


def _check_pair(true_coef, est_coef, basis):
    if not isinstance(basis, FourierBesselBasis):
        raise TypeError(f"basis must be a FourierBesselBasis, got {type(basis).__name__}")
    a = basis._check_coef(true_coef, "true_coef")
    b = basis._check_coef(est_coef, "est_coef")
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError("true_coef and est_coef must be one-dimensional coefficient vectors")
    if not np.any(a):
        raise ValueError("true_coef is zero: the relative error is undefined")
    return a, b


def align_rotation(true_coef, est_coef, basis, domain="coef"):
    """Find the rotation ``phi`` that best aligns an estimate with the truth.

    ``phi`` minimizes the relative error of ``rotate(est_coef, phi)``
    against ``true_coef`` (eq. 19), over the continuous angle: the squared
    error is a trigonometric polynomial in ``phi`` (degree ``nu_max`` on the
    coefficients, ``2 nu_max`` on the images), minimized globally by a grid
    search refined with Brent's method.

    Parameters
    ----------
    true_coef : array-like of shape (n_functions,)
        Coefficients ``alpha*`` of the true image; not all zero.
    est_coef : array-like of shape (n_functions,)
        Coefficients of the estimate.
    basis : FourierBesselBasis
        The basis of both coefficient vectors.
    domain : {"coef", "image"}, default="coef"
        Measure the error on the paper's complex coefficients (eq. 19) or on
        the pixel images (see :func:`relative_error`).

    Returns
    -------
    angle : float
        In ``[0, 2 pi)``.
    error : float
        The relative error at that angle (see :func:`relative_error`).

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.metrics import align_rotation
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.arange(1.0, 11.0)
    >>> angle, error = align_rotation(coef, basis.rotate(coef, 1.0), basis)
    >>> round(angle, 6) == round(2 * np.pi - 1.0, 6), round(error, 12)
    (True, 0.0)
    """
    a, b = _check_pair(true_coef, est_coef, basis)
    if domain == "coef":
        za, zb = basis.to_complex(a), basis.to_complex(b)
        nu = basis.complex_frequencies
        cross = np.conj(za) * zb
        na, nb = np.vdot(za, za).real, np.vdot(zb, zb).real

        def fun(phi):
            c = np.real(np.exp(1j * np.outer(phi, nu)) @ cross)
            return np.maximum(na + nb - 2 * c, 0.0)

        degree = basis.max_frequency
        norm2 = na
    elif domain == "image":
        Fa = basis.evaluate(a).ravel()

        def fun(phi):
            Fb = basis.evaluate(basis.rotate(b, phi)).reshape(len(phi), -1)
            return np.sum((Fb - Fa) ** 2, axis=1)

        degree = 2 * basis.max_frequency
        norm2 = float(Fa @ Fa)
    else:
        raise ValueError(f"domain must be 'coef' or 'image', got {domain!r}")
    angle, value = _minimize_periodic(fun, degree)
    return angle, float(np.sqrt(max(value, 0.0) / norm2))


def relative_error(true_coef, est_coef, basis, domain="coef"):
    """Rotation-aligned relative error, eq. (19).

    ``min over phi in [0, 2 pi) of ||alpha* - alpha_hat_phi|| / ||alpha*||``
    on the paper's complex coefficients (``domain="coef"``, see
    :meth:`FourierBesselBasis.to_complex`), or on pixel images
    ``min_phi ||F - F_hat_phi||_F / ||F||_F`` (``domain="image"``).  The
    minimum over the continuous angle is found by a grid search refined with
    Brent's method.

    Parameters
    ----------
    true_coef, est_coef : array-like of shape (n_functions,)
        Coefficients of the true image (not all zero) and of the estimate,
        in the real layout of ``basis``.
    basis : FourierBesselBasis
        The basis of both coefficient vectors.
    domain : {"coef", "image"}, default="coef"
        ``"coef"``: the paper's eq. (19) on the complex coefficients;
        ``"image"``: the relative Frobenius error of the pixel images.

    Returns
    -------
    error : float
        The rotation-aligned relative error, ``>= 0``.

    See Also
    --------
    align_rotation : Also returns the aligning angle.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.metrics import relative_error
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.arange(1.0, 11.0)
    >>> round(relative_error(coef, basis.rotate(coef, 1.234), basis), 12)
    0.0
    """
    return align_rotation(true_coef, est_coef, basis, domain)[1]
