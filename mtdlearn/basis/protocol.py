"""The basis protocol: what the estimators need of a basis.

Any object with the attributes and methods of :data:`BASIS_PROTOCOL` (with
the meanings of :class:`~mtdlearn.basis.fourier_bessel.FourierBesselBasis`,
its one implementation in mtdlearn) can be passed as ``basis``;
:func:`check_basis` checks it by duck typing, and :func:`rotated_evaluation`
builds the evaluation matrices of rotated coefficients from any such basis.
"""

import numpy as np

__all__ = ["BASIS_PROTOCOL", "check_basis", "rotated_evaluation"]

#: Attributes and methods an estimator uses; any object that has them (with
#: the meanings of :class:`~mtdlearn.FourierBesselBasis`) can serve as a basis.
BASIS_PROTOCOL = ("image_size", "n_functions", "frequencies", "matrix", "evaluate", "expand",
                  "rotate", "rotation_matrices", "get_params")


def check_basis(basis, name="basis"):
    """Check that an object follows the basis protocol (duck typing).

    A basis needs ``image_size`` (``L``), ``n_functions`` (``p``),
    ``frequencies`` (angular frequency of each coefficient), ``matrix``
    (the ``L*L x p`` evaluation matrix), ``evaluate``, ``expand``,
    ``rotate``, ``rotation_matrices`` and ``get_params`` (so that
    :func:`sklearn.base.clone` can copy it); see
    :class:`~mtdlearn.FourierBesselBasis` for their meaning.

    Parameters
    ----------
    basis : object
        The candidate basis.
    name : str, default="basis"
        Name used in error messages.

    Returns
    -------
    basis : object
        ``basis`` itself.

    Raises
    ------
    TypeError
        Naming the missing attributes.

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.basis.protocol import check_basis
    >>> check_basis(FourierBesselBasis(5)).n_functions
    10
    """
    missing = [attr for attr in BASIS_PROTOCOL if not hasattr(basis, attr)]
    if missing:
        raise TypeError(f"{name} must follow the basis protocol (like FourierBesselBasis); "
                        f"{type(basis).__name__} has no {', '.join(missing)}")
    return basis


def rotated_evaluation(basis, angles):
    """Evaluation matrices of the rotated coefficients, ``B R(phi_k)``.

    ``F_{phi_k}.ravel() = rotated_evaluation(basis, angles)[k] @ coef``: the
    pixel image of ``coef`` rotated by ``phi_k``.

    Parameters
    ----------
    basis : basis object
        A basis following the protocol of :func:`check_basis`.
    angles : array-like of shape (K,)
        Rotation angles in radians.

    Returns
    -------
    BR : ndarray of shape (K, L*L, p)
        One evaluation matrix per angle.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.basis.protocol import rotated_evaluation
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = np.arange(1.0, 11.0)
    >>> BR = rotated_evaluation(basis, [0.0, 1.0])
    >>> BR.shape
    (2, 25, 10)
    >>> np.allclose(BR[1] @ coef, basis.evaluate(basis.rotate(coef, 1.0)).ravel())
    True
    """
    # one angle at a time: the (K, p, p) stack of rotation matrices was 570 MB
    # at L = 41, K = 64 (p = 1055), beside the 908 MB result
    angles = np.atleast_1d(np.asarray(angles, dtype=np.float64))
    B = basis.matrix
    out = np.empty(angles.shape + B.shape)
    for index in np.ndindex(angles.shape):
        np.matmul(B, basis.rotation_matrices(angles[index]), out=out[index])  # rotate = R @ coef
    return out
