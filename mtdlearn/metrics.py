"""Rotation-aligned recovery error (paper eq. 19)."""

import numpy as np
from scipy.optimize import minimize_scalar

from ._validation import check_array_float
from .basis.protocol import check_basis

__all__ = ["relative_error", "align_rotation"]


def _candidate_minima(fun, degree):
    """Candidate global minimizers over [0, 2 pi) of a trigonometric polynomial
    of the given degree: a grid fine enough to bracket every local minimum,
    then Brent's method on the bracket of each discrete local minimum (at most
    ``degree + 1`` of them, best first).  Returns the refined angles and the
    grid step.

    Every well is a candidate, not only the best one on the grid: two wells of
    nearly equal depth (e.g. a target whose odd frequencies are weak) can swap
    order on the grid, or within the rounding of ``fun``; the caller compares
    the candidates by their residual computed directly.
    """
    n_grid = max(64, 16 * int(degree) + 1)
    grid = np.linspace(0.0, 2 * np.pi, n_grid, endpoint=False)
    values = fun(grid)
    step = grid[1] - grid[0]
    local = np.flatnonzero((values <= np.roll(values, 1)) & (values <= np.roll(values, -1)))
    local = local[np.argsort(values[local], kind="stable")][: int(degree) + 1]
    angles = []
    for k in local:
        res = minimize_scalar(lambda t: float(fun(np.array([t]))[0]),
                              bounds=(grid[k] - step, grid[k] + step), method="bounded",
                              options={"xatol": 1e-12})
        angles.append(float(res.x) if res.fun <= values[k] else float(grid[k]))
    return angles, step


def _refine_angle(residual, derivatives, angle, step):
    """Newton's method on ``d/dphi ||u(phi)||^2 = 0``, from ``angle``.

    ``residual(phi)`` returns ``u(phi)``, the difference of the rotated
    estimate and the truth, computed directly; ``derivatives(phi)`` returns
    ``(u'(phi), u''(phi))``.  The gradient ``2 Re <u, u'>`` has no
    cancellation, so its root is found to rounding, whereas a minimized
    objective is flat to within its own rounding over an angle range of
    ``sqrt(eps)`` relative: Brent's method on it cannot locate the minimum
    better, and the error there would be ``~sqrt(eps)`` instead of ``~eps``
    relative.  A step is kept only if it stays within one grid ``step`` and
    does not increase the residual, so the result is never worse than
    ``angle``.

    Returns ``(angle, ||u(angle)||)``.
    """
    u = residual(angle)
    best = float(np.linalg.norm(u))
    for _ in range(8):
        d1, d2 = derivatives(angle)
        curvature = np.vdot(d1, d1).real + np.vdot(u, d2).real
        if not curvature > 0:
            break
        delta = -np.vdot(u, d1).real / curvature
        if not abs(delta) <= step:
            break
        trial = angle + delta
        u_trial = residual(trial)
        value = float(np.linalg.norm(u_trial))
        if not value <= best:
            break
        angle, u, best = trial, u_trial, value
        if abs(delta) <= 4 * np.finfo(float).eps * max(1.0, abs(angle)):
            break
    return angle, best


#: What the metric needs beyond the basis protocol: the paper's complex coefficients.
_COMPLEX = ("to_complex", "from_complex", "complex_frequencies")


def _check_coef(coef, name, p):
    coef = check_array_float(coef, name, min_ndim=1)
    if coef.shape[-1] != p:
        raise ValueError(f"{name} must have last dimension n_functions={p}, "
                         f"got shape {coef.shape}")
    return coef


def _check_pair(true_coef, est_coef, basis):
    check_basis(basis)
    missing = [attr for attr in _COMPLEX if not hasattr(basis, attr)]
    if missing:
        raise TypeError("basis must also give the paper's complex coefficients (eq. 19 is "
                        f"computed on them); {type(basis).__name__} has no {', '.join(missing)}")
    a = _check_coef(true_coef, "true_coef", basis.n_functions)
    b = _check_coef(est_coef, "est_coef", basis.n_functions)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError("true_coef and est_coef must be one-dimensional coefficient vectors")
    if not np.any(a):
        raise ValueError("true_coef is zero: the relative error is undefined")
    return a, b


def _generator(basis, coef):
    """``d/dphi rotate(coef, phi)`` at ``phi = 0``: ``i nu`` times each complex
    coefficient (eq. 3).  Linear and commuting with rotation, so the derivative
    at any ``phi`` is ``_generator(basis, rotate(coef, phi))``."""
    return basis.from_complex(1j * basis.complex_frequencies * basis.to_complex(coef))


def align_rotation(true_coef, est_coef, basis, domain="coef"):
    """Find the rotation ``phi`` that best aligns an estimate with the truth.

    ``phi`` minimizes the relative error of ``rotate(est_coef, phi)``
    against ``true_coef`` (eq. 19), over the continuous angle: the squared
    error is a trigonometric polynomial in ``phi`` (degree ``nu_max`` on the
    coefficients, ``2 nu_max`` on the images), minimized globally by a grid
    search refined with Brent's method in every well, then polished by
    Newton's method on its derivative.  The error returned is the norm of
    the difference of the rotated estimate and the truth at that angle,
    computed directly, so it is accurate to rounding even for a
    near-perfect estimate.

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
    A rotated copy is aligned by the opposite rotation, with an error at the
    level of rounding (``1e-16`` relative; we check ``1e-12``):

    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.metrics import align_rotation
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.arange(1.0, 11.0)
    >>> angle, error = align_rotation(coef, basis.rotate(coef, 1.0), basis)
    >>> bool(abs(angle - (2 * np.pi - 1.0)) < 1e-12), bool(error < 1e-12)
    (True, True)
    """
    a, b = _check_pair(true_coef, est_coef, basis)
    # ``fun`` is the squared error less its part that does not depend on the
    # angle, computed without it: its rounding is then relative to the part
    # that varies, and a weak angular part (a nearly isotropic target) does
    # not drown in the rounding of the isotropic one.
    if domain == "coef":
        za, zb = basis.to_complex(a), basis.to_complex(b)
        nu = basis.complex_frequencies
        turning = nu != 0
        cross = (np.conj(za) * zb)[turning]

        def fun(phi):  # |za|^2 + |zb|^2 - 2 Re <za, zb_phi>, less the constant
            return -2 * np.real(np.exp(1j * np.outer(phi, nu[turning])) @ cross)

        def residual(phi):
            return zb * np.exp(1j * nu * phi) - za

        def derivatives(phi):
            zphi = zb * np.exp(1j * nu * phi)
            return 1j * nu * zphi, -(nu ** 2) * zphi

        degree = int(np.max(basis.frequencies, initial=0))
        norm = float(np.linalg.norm(za))
    elif domain == "image":
        B = basis.matrix
        Fa = B @ a
        b_turning = np.where(basis.frequencies != 0, b, 0.0)
        offset = B @ (b - b_turning) - Fa  # the part of the residual that does not turn

        def fun(phi):  # ||offset + F1_phi||^2, less ||offset||^2
            F1 = basis.evaluate(basis.rotate(b_turning, phi)).reshape(len(phi), -1)
            return 2 * (F1 @ offset) + np.einsum("ij,ij->i", F1, F1)

        def residual(phi):
            return B @ basis.rotate(b, phi) - Fa

        def derivatives(phi):
            d1 = _generator(basis, basis.rotate(b, phi))
            return B @ d1, B @ _generator(basis, d1)

        degree = 2 * int(np.max(basis.frequencies, initial=0))
        norm = float(np.linalg.norm(Fa))
    else:
        raise ValueError(f"domain must be 'coef' or 'image', got {domain!r}")
    candidates, step = _candidate_minima(fun, degree)
    angle, value = min((_refine_angle(residual, derivatives, phi, step) for phi in candidates),
                       key=lambda pair: pair[1])
    angle = float(angle % (2 * np.pi))
    if angle >= 2 * np.pi:  # (-tiny) % (2 pi) rounds to 2 pi
        angle = 0.0
    return angle, value / norm


def relative_error(true_coef, est_coef, basis, domain="coef"):
    """Rotation-aligned relative error, eq. (19).

    ``min over phi in [0, 2 pi) of ||alpha* - alpha_hat_phi|| / ||alpha*||``
    on the paper's complex coefficients (``domain="coef"``, see
    :meth:`FourierBesselBasis.to_complex`), or on pixel images
    ``min_phi ||F - F_hat_phi||_F / ||F||_F`` (``domain="image"``).  The
    minimum over the continuous angle is found by a grid search refined with
    Brent's method and Newton's method; the norm of the difference is then
    computed directly at that angle (see :func:`align_rotation`).

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
    A rotated copy has no error, up to rounding (``1e-16`` relative):

    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.metrics import relative_error
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.arange(1.0, 11.0)
    >>> bool(relative_error(coef, basis.rotate(coef, 1.234), basis) < 1e-12)
    True

    A copy scaled by 1.1 is off by 10%:

    >>> bool(abs(relative_error(coef, 1.1 * coef, basis) - 0.1) < 1e-12)
    True
    """
    return align_rotation(true_coef, est_coef, basis, domain)[1]
