"""Rotation-aligned recovery error (paper eq. 19), optionally also translation-aligned."""

import numpy as np
from scipy.optimize import OptimizeResult, linear_sum_assignment, minimize, minimize_scalar

from ._validation import check_array_float
from .basis.protocol import check_basis
from .resolution import fourier_ring_correlation, resolution  # noqa: F401  (public here too)

__all__ = ["relative_error", "component_errors", "align_rotation", "align_rotation_translation",
           "fourier_ring_correlation", "resolution"]

#: The values of ``relative_error``'s ``align``.
_ALIGNS = ("rotation", "rotation+translation")


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
        the pixel images (see :func:`~mtdlearn.relative_error`).

    Returns
    -------
    angle : float
        In ``[0, 2 pi)``.
    error : float
        The relative error at that angle (see :func:`~mtdlearn.relative_error`).

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


class _ShiftedResidual:
    """The residual of the rotated and translated estimate on a padded grid.

    ``u(x) = T_d G_phi - F`` on the ``M x M`` grid, ``M = 2 L + 1``, that
    holds the ``L x L`` images in its corner and zeros elsewhere, with
    ``x = (phi * scale, dy, dx)``: ``G_phi`` is the image of the estimate
    rotated by ``phi``, ``T_d`` the translation by ``d = (dy, dx)`` pixels
    (``T_d G(y, x) = G(y - dy, x - dx)``), a phase ramp on the Fourier
    transform of the padded grid.  ``scale`` turns the angle into pixels of
    arc at the rim of the disk, so the three variables have comparable
    curvature.

    ``M`` is odd, so there is no Nyquist frequency and ``T_d`` of a real
    image is real (the band-limited, periodic interpolation of the pixels).
    ``M >= 2 L - 1`` makes the grid a plane for the comparison: for an
    integer ``d`` with ``|dy|, |dx| < L`` the padded residual is the residual
    on the infinite grid (no wrap-around onto the truth), and every larger
    integer shift leaves the two images without overlap, as on the plane.
    """

    def __init__(self, basis, a, b):
        self.basis, self.b = basis, b
        F = basis.evaluate(a)
        L = F.shape[-1]
        self.M = M = 2 * L + 1
        self.F = np.zeros((M, M))
        self.F[:L, :L] = F
        self.norm = float(np.linalg.norm(F))
        self.Fhat = np.fft.rfft2(F, s=(M, M))
        self.ky = 2 * np.pi * np.fft.fftfreq(M)[:, None]   # radians per pixel
        self.kx = 2 * np.pi * np.fft.rfftfreq(M)[None, :]
        self.scale = max(1.0, L / 2)

    def _spectrum(self, coef):
        return np.fft.rfft2(self.basis.evaluate(coef), s=(self.M, self.M))

    def _ramp(self, x):
        return np.exp(-1j * (self.ky * x[1] + self.kx * x[2]))

    def residual(self, x):
        """``u(x)`` divided by ``||F||``, shape ``(M, M)``."""
        M = self.M
        G = self._spectrum(self.basis.rotate(self.b, x[0] / self.scale))
        return (np.fft.irfft2(self._ramp(x) * G, s=(M, M)) - self.F) / self.norm

    def derivatives(self, x):
        """``u(x) / ||F||`` flattened, its Jacobian ``J`` (shape ``(M * M,
        3)``) and ``S = sum_i u_i Hess(u_i)`` (shape ``(3, 3)``), all
        divided by ``||F||``."""
        M, basis = self.M, self.basis
        coef = basis.rotate(self.b, x[0] / self.scale)
        d1 = _generator(basis, coef)
        ramp = self._ramp(x)
        images = basis.evaluate(np.stack([coef, d1, _generator(basis, d1)]))
        G0, G1, G2 = ramp * np.fft.rfft2(images, s=(M, M))
        G1, G2 = G1 / self.scale, G2 / self.scale ** 2
        iky, ikx = -1j * self.ky, -1j * self.kx
        spectra = np.stack([G0, G1, iky * G0, ikx * G0,                            # u, J
                            G2, iky * G1, ikx * G1, iky * iky * G0, iky * ikx * G0,  # Hess
                            ikx * ikx * G0])
        images = np.fft.irfft2(spectra, s=(M, M)).reshape(len(spectra), -1) / self.norm
        u = images[0] - self.F.ravel() / self.norm
        tt, ty, tx, yy, yx, xx = images[4:] @ u
        return u, images[1:4].T, np.array([[tt, ty, tx], [ty, yy, yx], [tx, yx, xx]])

    def _cached(self, x):
        key = x.tobytes()
        if key not in self._cache:
            self._cache = {key: self.derivatives(x)}
        return self._cache[key]

    def objective(self, x):
        """``||u||^2 / ||F||^2`` and its gradient, for ``scipy.optimize.minimize``."""
        u, J, _ = self._cached(x)
        return float(u @ u), 2 * (u @ J)

    def hessian(self, x):
        """The Hessian of :meth:`objective`, ``2 (J^T J + S)``."""
        _, J, S = self._cached(x)
        return 2 * (J.T @ J + S)

    def starts(self, n_angles, n_starts):
        """Coarse search: for each of ``n_angles`` angles the best integer
        shift, from the FFT cross-correlation of the padded images; returns
        the ``(phi * scale, dy, dx)`` of the best ``n_starts`` local minima
        over the angles."""
        M, basis = self.M, self.basis
        angles = np.arange(n_angles) * (2 * np.pi / n_angles)
        values = np.empty(n_angles)
        shifts = np.empty((n_angles, 2))
        for lo in range(0, n_angles, 64):  # bounded memory at large L
            chunk = slice(lo, lo + 64)
            images = basis.evaluate(basis.rotate(self.b, angles[chunk]))
            spectra = np.fft.rfft2(images, s=(M, M))
            # corr[s] = sum_y F(y) G(y - s) = <F, T_s G>
            corr = np.fft.irfft2(self.Fhat * np.conj(spectra), s=(M, M)).reshape(len(images), -1)
            sq = np.einsum("kij,kij->k", images, images)
            best = np.argmax(corr, axis=1)
            values[chunk] = sq - 2 * corr[np.arange(len(images)), best]  # less ||F||^2
            s = np.stack(np.unravel_index(best, (M, M)), axis=1)
            shifts[chunk] = np.where(s > M // 2, s - M, s)
        local = np.flatnonzero((values <= np.roll(values, 1)) & (values <= np.roll(values, -1)))
        local = local[np.argsort(values[local], kind="stable")][:n_starts]
        return [np.array([angles[k] * self.scale, *shifts[k]]) for k in local]

    def refine(self, x, value):
        """Trust-region Newton on ``||u||^2`` from ``x`` (where the relative
        error is ``value``), then Gauss-Newton steps on ``u`` itself.

        The Newton iterations are capped at 20: from a start within a grid
        step they converge in fewer, but a particle with a symmetry (a round
        blob: every angle, with its own shift, is optimal) has a valley of
        minima along which the iterations only creep, at no gain in the
        error.  The Gauss-Newton steps (least squares, minimum norm in such
        a valley) use the Jacobian of ``u``, computed without cancellation,
        so a zero residual is reached to rounding, not to ``sqrt(eps)``.  A
        step is kept only if it lowers the error computed directly, so the
        result is never worse than ``x``.  Returns ``(x, value)``.
        """
        self._cache = {}
        res = minimize(self.objective, x, jac=True, hess=self.hessian,
                       method="trust-exact", options={"gtol": 1e-12, "maxiter": 20})
        trial_value = float(np.linalg.norm(self.residual(res.x)))
        if trial_value < value:
            x, value = res.x, trial_value
        for _ in range(8):
            u, J, _ = self.derivatives(x)
            step = np.linalg.lstsq(J, -u, rcond=None)[0]
            trial = x + step
            trial_value = float(np.linalg.norm(self.residual(trial)))
            if not trial_value < value:
                break
            x, value = trial, trial_value
            if np.max(np.abs(step)) <= 4 * np.finfo(float).eps * max(1.0, np.max(np.abs(x))):
                break
        return x, value


def align_rotation_translation(true_coef, est_coef, basis):
    """Find the rotation and translation that best align an estimate with the truth.

    Minimizes the relative error of the pixel images over the angle ``phi``
    and a sub-pixel translation ``d = (dy, dx)``::

        min over phi, d of ||F - T_d F_hat_phi||_F / ||F||_F,

    where ``F`` and ``F_hat_phi`` are the images of ``true_coef`` and of
    ``rotate(est_coef, phi)`` on the ``L x L`` grid, and
    ``T_d G(y, x) = G(y - dy, x - dx)`` moves the estimate by ``d`` pixels.
    This is the error that ignores everything the data cannot see when the
    particle is smaller than its box: a copy of ``T_d F`` at position ``p``
    of the measurement is a copy of ``F`` at ``p + R_phi d``, so a shifted
    copy of the truth is as good as the truth.

    Parameters
    ----------
    true_coef : array-like of shape (n_functions,)
        Coefficients of the true image; not all zero.
    est_coef : array-like of shape (n_functions,)
        Coefficients of the estimate.
    basis : FourierBesselBasis
        The basis of both coefficient vectors.

    Returns
    -------
    angle : float
        The rotation ``phi`` of the estimate, in ``[0, 2 pi)``, as in
        :func:`align_rotation`.
    shift : ndarray of shape (2,)
        The translation ``(dy, dx)`` in pixels (rows, columns) applied to the
        rotated estimate, in ``[-M / 2, M / 2)`` with ``M = 2 L + 1``.
    error : float
        The relative error at that angle and shift.

    See Also
    --------
    relative_error : With ``align="rotation+translation"``, the error alone.
    align_rotation : Rotation only, on the coefficients or the images.

    Notes
    -----
    **The comparison.**  Both images are zero-padded to ``M x M`` pixels,
    ``M = 2 L + 1``, and compared there, so a part of the estimate moved out
    of the ``L x L`` box still counts, against a truth that is zero there:
    a shifted copy of an image that lies inside the disk gives an error of
    about 0, while an estimate cannot hide a wrong part by moving it out of
    the box.  The translation is a phase ramp on the Fourier transform of
    the padded grid: exact for integer shifts, the band-limited
    interpolation of the pixels otherwise.  ``M`` is odd, so a shifted real
    image stays real, and at least ``2 L - 1``, so no integer shift wraps
    the estimate onto the truth.  The norm of the estimate does not change
    with ``d``, so the error is at most ``sqrt(1 + ||F_hat||^2 / ||F||^2)``,
    that of an estimate moved away from the truth altogether.

    **When the translation matters.**  When the particle is smaller than its
    box (say a blob inside the disk), the data cannot tell it from its
    shifted copies and only this error is meaningful.  A target that fills
    the disk (such as the random coefficients of
    :func:`~mtdlearn.make_target`) is identifiable: shifting it moves part
    of it out of the disk, where no estimate in the basis has signal, so the
    best shift is about 0.  At ``d = 0`` this is the rotation-only
    image-domain error (``relative_error(..., domain="image")``); since it
    minimizes over more, this error is never larger, and equal when the best
    shift is 0.

    **The search.**  For ``max(64, 8 nu_max)`` angles at once, the images of
    the rotated estimate are cross-correlated with the truth by FFT, which
    gives the best integer shift for each angle; the best four local minima
    over the angles, and the rotation-only optimum of
    :func:`align_rotation` (``domain="image"``) with ``d = 0``, start a
    joint refinement of ``(phi, dy, dx)`` with ``scipy.optimize.minimize``
    (``method="trust-exact"``, with the exact gradient and Hessian),
    polished by Gauss-Newton steps.  The error returned is the norm of the
    residual computed directly at the angle and shift returned.  The search
    is global over the integer shifts of every angle of the coarse grid,
    local in the refinement.  It takes about 0.1-0.2 s at ``L = 21``.

    A particle with a symmetry has several optimal ``(angle, shift)``: a
    round blob off the centre is matched at any angle, by the shift that
    brings it back; any of them may be returned.

    Examples
    --------
    A particle of two Gaussian blobs, smaller than its box, and a copy of it
    shifted by ``(1.5, -0.5)`` pixels and rotated by 1 radian: the copy is
    rotated back and shifted back, with an error at the level of the basis
    expansion of the shifted particle (``1e-4`` at this small ``L``):

    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.metrics import align_rotation_translation, relative_error
    >>> basis = FourierBesselBasis(15)
    >>> y, x = np.mgrid[-7:8, -7:8]
    >>> def particle(cy, cx):
    ...     blob = lambda u, v: np.exp(-((y - u) ** 2 + (x - v) ** 2) / 4.5)
    ...     return blob(cy, cx) + 0.5 * blob(cy, cx + 2)
    >>> true = basis.expand(particle(0, 0))
    >>> est = basis.rotate(basis.expand(particle(1.5, -0.5)), 1.0)
    >>> angle, shift, error = align_rotation_translation(true, est, basis)
    >>> bool(abs(angle - (2 * np.pi - 1.0)) < 1e-3), bool(error < 1e-3)
    (True, True)
    >>> bool(np.allclose(shift, [-1.5, 0.5], atol=1e-3))
    True

    Aligned by rotation alone, the same copy is far off:

    >>> bool(relative_error(true, est, basis, domain="image") > 0.3)
    True
    """
    a, b = _check_pair(true_coef, est_coef, basis)
    phi0, error0 = align_rotation(a, b, basis, domain="image")
    problem = _ShiftedResidual(basis, a, b)
    n_angles = max(64, 8 * int(np.max(basis.frequencies, initial=0)))
    # the rotation-only optimum, at d = 0, with its error computed on the
    # L x L images: the result is never worse than it
    starts = [(np.array([phi0 * problem.scale, 0.0, 0.0]), error0)]
    starts += [(x0, float(np.linalg.norm(problem.residual(x0))))
               for x0 in problem.starts(n_angles, n_starts=4)]
    best_x, best = starts[0]
    for x0, value0 in starts:
        x, value = problem.refine(x0, value0)
        if value < best:
            best_x, best = x, value
    M = problem.M
    angle = float((best_x[0] / problem.scale) % (2 * np.pi))
    if angle >= 2 * np.pi:  # (-tiny) % (2 pi) rounds to 2 pi
        angle = 0.0
    shift = (best_x[1:] + M / 2) % M - M / 2
    return angle, shift, best


def relative_error(true_coef, est_coef, basis, domain=None, align="rotation"):
    """Rotation-aligned relative error, eq. (19), optionally also translation-aligned.

    ``min over phi in [0, 2 pi) of ||alpha* - alpha_hat_phi|| / ||alpha*||``
    on the paper's complex coefficients (``domain="coef"``, see
    :meth:`FourierBesselBasis.to_complex`), or on pixel images
    ``min_phi ||F - F_hat_phi||_F / ||F||_F`` (``domain="image"``).  The
    minimum over the continuous angle is found by a grid search refined with
    Brent's method and Newton's method; the norm of the difference is then
    computed directly at that angle (see :func:`align_rotation`).

    With ``align="rotation+translation"`` the error also ignores a sub-pixel
    translation ``d`` of the estimate, on the pixel images:
    ``min over phi, d of ||F - T_d F_hat_phi||_F / ||F||_F``, compared on a
    zero-padded grid so that parts moved out of the box still count (see
    :func:`align_rotation_translation`).  Use it when the particle is smaller
    than its box: the measurement then cannot tell the image from its
    shifted copies.  For a target that fills the disk, shifting moves part
    of it out of the disk, the best shift is about 0 and the error about
    that of ``domain="image"``; it is never larger, and equal when the best
    shift is 0.

    Parameters
    ----------
    true_coef, est_coef : array-like of shape (n_functions,)
        Coefficients of the true image (not all zero) and of the estimate,
        in the real layout of ``basis``.
    basis : FourierBesselBasis
        The basis of both coefficient vectors.
    domain : {"coef", "image"}, default=None
        ``"coef"``: the paper's eq. (19) on the complex coefficients;
        ``"image"``: the relative Frobenius error of the pixel images.
        ``None`` means ``"coef"`` with ``align="rotation"`` and ``"image"``
        with ``align="rotation+translation"``, which has no coefficient form
        (a translated image is not a transform of the coefficients).
    align : {"rotation", "rotation+translation"}, default="rotation"
        What the error ignores: the rotation of the estimate (eq. 19), or
        its rotation and translation.

    Returns
    -------
    error : float
        The aligned relative error, ``>= 0``.

    Raises
    ------
    ValueError
        If ``align`` or ``domain`` is not one of the values above, or
        ``domain="coef"`` with ``align="rotation+translation"``.

    See Also
    --------
    align_rotation : Also returns the aligning angle.
    align_rotation_translation : Also returns the aligning angle and shift.

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

    A Gaussian blob and a copy of it moved by one pixel, expanded in the
    basis, differ by 45% in rotation alone and by the expansion error
    (``~1e-5``) up to a translation:

    >>> basis = FourierBesselBasis(15)
    >>> y, x = np.mgrid[-7:8, -7:8]
    >>> true = basis.expand(np.exp(-(y ** 2 + x ** 2) / 4.5))
    >>> est = basis.expand(np.exp(-(y ** 2 + (x - 1) ** 2) / 4.5))
    >>> bool(relative_error(true, est, basis, domain="image") > 0.4)
    True
    >>> bool(relative_error(true, est, basis, align="rotation+translation") < 1e-3)
    True
    """
    if not (isinstance(align, str) and align in _ALIGNS):
        raise ValueError(f"align must be one of {', '.join(map(repr, _ALIGNS))}, "
                         f"got {align!r}")
    if align == "rotation":
        return align_rotation(true_coef, est_coef, basis, "coef" if domain is None else domain)[1]
    if domain not in (None, "image"):
        raise ValueError("align='rotation+translation' measures the error on the pixel "
                         f"images: domain must be 'image' or None, got {domain!r}")
    return align_rotation_translation(true_coef, est_coef, basis)[2]


def _check_components(coef, weights, name, basis):
    coef = _check_coef(coef, f"{name}_coef", basis.n_functions)
    coef = coef.reshape(1, -1) if coef.ndim == 1 else coef
    if coef.ndim != 2 or len(coef) == 0:
        raise ValueError(f"{name}_coef must have shape (n_components, {basis.n_functions}) "
                         f"with n_components >= 1, got shape {coef.shape}")
    if weights is not None:
        weights = check_array_float(weights, f"{name}_weights", ndim=1)
        if len(weights) != len(coef):
            raise ValueError(f"{name}_weights must have one entry per row of {name}_coef "
                             f"({len(coef)}), got shape {weights.shape}")
    return coef, weights


def component_errors(true_coef, est_coef, basis, *, true_weights=None, est_weights=None,
                     align="rotation", domain=None):
    """Relative errors of the components of a mixture, matched to the truth.

    The components of a fitted mixture (``coef_`` of shape ``(C, p)`` and
    ``weights_`` of :class:`~mtdlearn.ApproxEMEstimator` or
    :class:`~mtdlearn.AutocorrelationEstimator` with ``n_components=C``)
    come in an arbitrary order.  This computes the aligned error of
    :func:`relative_error` for every pair of a true and an estimated
    component, then matches them one to one by the assignment with the
    smallest sum of errors (:func:`scipy.optimize.linear_sum_assignment`).
    With more estimated than true components, some estimated ones are left
    out (``unmatched``); with fewer, some true ones are (index ``-1``,
    error NaN).

    Parameters
    ----------
    true_coef : array-like of shape (n_true, n_functions) or (n_functions,)
        Coefficients of the true components, one per row (a vector is one
        component); none all zero.
    est_coef : array-like of shape (n_est, n_functions) or (n_functions,)
        Coefficients of the estimated components.
    basis : FourierBesselBasis
        The basis of the coefficients.
    true_weights : array-like of shape (n_true,), default=None
        Abundances of the true components; give it with ``est_weights``.
    est_weights : array-like of shape (n_est,), default=None
        Abundances of the estimated components; give it with ``true_weights``.
    align : {"rotation", "rotation+translation"}, default="rotation"
        What each error ignores, as in :func:`relative_error`.
    domain : {"coef", "image"}, default=None
        Where each error is measured, as in :func:`relative_error`.

    Returns
    -------
    result : scipy.optimize.OptimizeResult
        A dict with attribute access, holding:

        - ``assignment``, int ndarray of shape (n_true,): the index of the
          estimated component matched to each true one, ``-1`` if none;
        - ``errors``, ndarray of shape (n_true,): the relative error of each
          true component against its match, NaN if unmatched;
        - ``pairwise``, ndarray of shape (n_true, n_est): every error,
          ``pairwise[i, j] = relative_error(true_coef[i], est_coef[j], ...)``;
        - ``unmatched``, int ndarray: the estimated components matched to no
          true one, in increasing order;
        - ``weight_errors``, ndarray of shape (n_true,): ``|true_weights[i] -
          est_weights[assignment[i]]|``, NaN if unmatched; ``None`` without
          weights.

    Raises
    ------
    ValueError
        If an argument has the wrong shape or non-finite values, a true
        component is zero, only one of the weights is given, or ``align``
        or ``domain`` is invalid.

    See Also
    --------
    relative_error : The error of one component.

    Examples
    --------
    Rotated copies of two targets, in the other order: each true component
    is matched to its copy, with an error at the level of rounding:

    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis, make_target
    >>> from mtdlearn.metrics import component_errors
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> true = np.stack([make_target(basis, random_state=s) for s in (0, 1)])
    >>> est = basis.rotate(true[::-1], 1.0)
    >>> result = component_errors(true, est, basis, true_weights=[0.3, 0.7],
    ...                           est_weights=[0.6, 0.4])
    >>> result.assignment.tolist(), bool(np.all(result.errors < 1e-12))
    ([1, 0], True)
    >>> np.round(result.weight_errors, 12).tolist()
    [0.1, 0.1]
    """
    check_basis(basis)
    if (true_weights is None) != (est_weights is None):
        raise ValueError("true_weights and est_weights must be given together, or neither")
    a, true_weights = _check_components(true_coef, true_weights, "true", basis)
    b, est_weights = _check_components(est_coef, est_weights, "est", basis)
    zero = np.flatnonzero(~np.any(a, axis=1))
    if zero.size:
        raise ValueError(f"true_coef[{zero[0]}] is zero: its relative error is undefined")
    pairwise = np.array([[relative_error(ai, bj, basis, domain=domain, align=align) for bj in b]
                         for ai in a])
    rows, cols = linear_sum_assignment(pairwise)
    assignment = np.full(len(a), -1)
    assignment[rows] = cols
    errors = np.full(len(a), np.nan)
    errors[rows] = pairwise[rows, cols]
    weight_errors = None
    if true_weights is not None:
        weight_errors = np.full(len(a), np.nan)
        weight_errors[rows] = np.abs(true_weights[rows] - est_weights[cols])
    return OptimizeResult(assignment=assignment, errors=errors, pairwise=pairwise,
                          unmatched=np.setdiff1d(np.arange(len(b)), cols),
                          weight_errors=weight_errors)
