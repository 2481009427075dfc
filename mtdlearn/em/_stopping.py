"""The statistical stopping rule of ``tol="auto"``: stop when the change
still to come in the image, projected from the EM's rate of convergence, is
small against the image's statistical uncertainty.

**The change still to come.**  Near its fixed point ``x*`` the EM map
contracts by a factor ``lambda`` per step (the fraction of missing
information), so from a point ``x0`` whose EM step moves the coefficients
by ``r`` the coefficients still move by ``|r| / (1 - lambda)`` in all.
Inside each SQUAREM cycle there are two EM steps, ``x1 = F(x0)`` and ``x2 =
F(x1)``, and ``lambda`` is the ratio of their coefficient steps (for plain
EM, of consecutive iterations' steps).  One ratio underestimates the rate
while faster directions still dominate the step, so the rule takes the
largest of the last :data:`_N_RATES` and needs two.  The projection is made
from the cycle's start; SQUAREM's extrapolation ends the cycle nearer.

**The uncertainty.**  Were the hypotheses (rotation, shift) of every patch
known, the coefficients' covariance would be ``sigma**2 A^-1``, ``A`` the
M-step's normal matrix (``sum_h W_h A_h^T A_h``, through the measurements'
CTFs where there are some; decomposed once per test, from the cycle's last
M-step): the complete-data information, whose standard
error is ``s = sqrt(sigma**2 tr A^-1)`` (summed over the coefficients).
The hypotheses are missing, so the observed information is smaller and the
estimate's own standard error larger (along the direction that contracts by
``lambda``, by ``1 / sqrt(1 - lambda)``: Louis, 1982): ``s`` is a lower
bound, and the rule is cautious in it as in the rate.  (Measuring the
change in ``s / sqrt(1 - lambda)`` instead stopped too early: the
slowest direction's uncertainty is not the image's, see :doc:`/results`.)
A rate that does not shrink the step (a direction the data hardly
determine, or steps at float64's rounding) counts as :data:`_MAX_RATE`.

**Up to a rotation.**  The data determine the image only up to an in-plane
rotation, but on a grid of ``K`` rotations the likelihood is not quite
invariant: the EM can turn the image slowly toward the grid's best phase,
a gain in likelihood that moves no rotation-aligned error.  At SNR 500
(``L = 5``, ``N = 1000``, 64 rotations) 90-100 % of the norm of the late
steps was that turn, at rates near 1, so the rule ran on for cycles after
the image had stopped changing (:doc:`/results`, "Refinement driven by the
data").  Steps and rates are therefore measured with each image's rotation
tangent projected out (:func:`rotation_tangents`, at the cycle's start).

The rule stops once the projected change is at most :data:`_SHARE` times
``s``; ``remaining_change_`` reports the ratio.  It applies to the phase
that runs to ``tol`` (the finest grid, the chosen basis, the mixture), in
float64; in the float32 phase of ``dtype="auto"`` it only decides when to
switch to float64.  An explicit float ``tol`` keeps the gain-per-patch
rule.
"""

import numpy as np

#: The rule stops when the projected change of the coefficients is at most
#: this many of their complete-data standard errors.
_SHARE = 0.3

#: The rate is the largest of this many latest ratios (and needs two).
_N_RATES = 3

#: ... and at most this: a step that does not shrink counts as contracting
#: by 1e-4 per step (its observed information 1e-4 of the complete data's).
_MAX_RATE = 1.0 - 1e-4

#: Half the angle (radians) of the central difference of ``basis.rotate``
#: that gives the rotation tangent (relative error ``(nu h)**2 / 6``).
_ROTATION_STEP = 1e-5


def reset(run):
    """Forget the plain EM's last step: the objective changed (precision,
    re-centring)."""
    run.last_coef = None
    run.last_step = None


def rotation_tangents(basis, coef):
    """Unit tangents of each image's in-plane rotation at ``coef``.

    Parameters
    ----------
    basis : basis object
        Its ``rotate``.
    coef : ndarray of shape (p,) or (C, p)
        The coefficients (one row per component).

    Returns
    -------
    tangents : ndarray of shape (C, p)
        ``d/dphi rotate(coef, phi)`` at 0, normalized; a zero row for an
        image with no angular dependence (``nu = 0`` only, or zero).

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.em._stopping import rotation_tangents
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> t = rotation_tangents(basis, np.arange(1.0, 11.0))
    >>> t.shape, bool(np.isclose(np.linalg.norm(t), 1.0))
    ((1, 10), True)
    """
    c = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    h = _ROTATION_STEP
    t = (basis.rotate(c, h) - basis.rotate(c, -h)) / (2.0 * h)
    norm = np.linalg.norm(t, axis=1, keepdims=True)
    # below 1e-8 of the image: rounding, not a rotation
    keep = norm > 1e-8 * np.maximum(np.linalg.norm(c, axis=1, keepdims=True), np.finfo(float).tiny)
    return np.where(keep, t / np.where(keep, norm, 1.0), 0.0)


def without_rotation(x, tangents):
    """``x`` (the coefficients' part, flattened) with each component's
    rotation tangent projected out (``tangents`` ``None``: ``x``)."""
    if tangents is None:
        return x
    y = np.reshape(x, tangents.shape)
    return np.ravel(y - np.sum(y * tangents, axis=1, keepdims=True) * tangents)


def _tangents(run, coef):
    return None if run.basis is None else rotation_tangents(run.basis, coef)


def record_squarem(run, r, v, p, coef=None):
    """After a SQUAREM cycle from ``x0`` (coefficients ``coef``): ``r = x1 -
    x0`` and ``v = x2 - 2 x1 + x0`` in its coordinates, whose first ``p``
    are the coefficients; measured without the rotation (``run.basis``)."""
    tangents = None if coef is None else _tangents(run, coef)
    rc, second = without_rotation(r[:p], tangents), without_rotation(r[:p] + v[:p], tangents)
    step = float(np.linalg.norm(rc))
    _record(run, step, float(np.linalg.norm(second)) / step if step > 0 else 0.0)


def record_plain(run, coef):
    """After a plain EM iteration that ended at ``coef``."""
    coef = np.ravel(np.asarray(coef, dtype=np.float64))
    previous, run.last_coef = run.last_coef, coef
    if previous is None:
        return
    step = float(np.linalg.norm(without_rotation(coef - previous, _tangents(run, coef))))
    before, run.last_step = run.last_step, step
    if before is not None and before > 0:
        _record(run, step, step / before)


def projected(step, rate):
    """The change still to come after a step of norm ``step`` that
    contracts by ``rate`` (at most :data:`_MAX_RATE`): ``step / (1 - rate)``."""
    return step / (1.0 - min(rate, _MAX_RATE))


def trace_pinv(A, rcond=None):
    """``tr(A^+)`` of a symmetric positive semi-definite ``A`` over its
    eigenvalues above ``rcond`` (default: ``p`` eps) times the largest."""
    lam = np.linalg.eigvalsh(A)
    cut = lam[-1] * (len(lam) * np.finfo(np.float64).eps if rcond is None else rcond)
    kept = lam[lam > max(cut, 0.0)]
    return float(np.sum(1.0 / kept)) if kept.size else np.inf


def standard_error(normal):
    """``sigma sqrt(sum_c tr A_c^+)`` from ``(A_c list, rcond, sigma**2)`` of
    an M-step (``None``: none yet, ``inf``)."""
    if normal is None:
        return np.inf
    matrices, rcond, sigma2 = normal
    return float(np.sqrt(sigma2 * sum(trace_pinv(A, rcond) for A in matrices)))


def _record(run, step, rate):
    run.rates = (run.rates + [rate])[-_N_RATES:]
    if len(run.rates) < 2:
        run.remaining = np.inf
        return
    change, se = projected(step, max(run.rates)), standard_error(run.normal)
    run.remaining = change / se if np.isfinite(change) and 0 < se < np.inf else np.inf


def describe(remaining):
    """The verbose line's words for the value ``tol="auto"`` tests: the
    projected change still to come, in standard errors (``inf``: not
    measured yet, as after a change of precision; ``-inf``: a phase ends)."""
    return (f"remaining change {remaining:.3e} SE" if np.isfinite(remaining) else
            "remaining change n/a (not measured yet)" if remaining > 0 else
            "remaining change n/a (phase ends)")
