"""Discretizations of the rotation group searched by the EM (paper eq. 8).

Protocol: a rotation grid is an object with ``get_angles()`` returning a
1-D float array of angles in radians, and ``get_params`` / ``set_params`` for
scikit-learn's parameter handling.  The EM puts the uniform prior ``1/K`` on
the ``K`` angles (eq. 12).
"""

from numbers import Integral

import numpy as np

from ._validation import check_int

__all__ = ["UniformRotationGrid", "check_rotation_grid"]


class UniformRotationGrid:
    """``K`` equispaced rotations ``k * 2 pi / K``, ``k = 0..K-1`` (eq. 8).

    The EM's rotation search space ``Phi`` of eq. (8), with the uniform
    prior ``1/K`` of eq. (12).  An estimator's ``rotations=K`` is shorthand
    for ``UniformRotationGrid(K)``.

    Parameters
    ----------
    n_rotations : int, default=16
        ``K``, the number of rotations searched.

    Examples
    --------
    >>> from mtdlearn.rotations import UniformRotationGrid
    >>> UniformRotationGrid(4).get_angles()
    array([0.        , 1.57079633, 3.14159265, 4.71238898])
    """

    def __init__(self, n_rotations=16):
        self.n_rotations = n_rotations

    def get_params(self, deep=True):
        """Get the parameters of this grid (scikit-learn convention).

        Parameters
        ----------
        deep : bool, default=True
            Ignored (the grid holds no nested estimators); present for
            scikit-learn compatibility.

        Returns
        -------
        params : dict
            ``{"n_rotations": K}``.

        Examples
        --------
        >>> from mtdlearn.rotations import UniformRotationGrid
        >>> UniformRotationGrid(8).get_params()
        {'n_rotations': 8}
        """
        return {"n_rotations": self.n_rotations}

    def set_params(self, **params):
        """Set the parameters of this grid (scikit-learn convention).

        Parameters
        ----------
        **params : dict
            New value of ``n_rotations``; any other key raises ``ValueError``.

        Returns
        -------
        self : UniformRotationGrid
            This grid.

        Examples
        --------
        >>> from mtdlearn.rotations import UniformRotationGrid
        >>> UniformRotationGrid(8).set_params(n_rotations=4)
        UniformRotationGrid(n_rotations=4)
        """
        for key, value in params.items():
            if key != "n_rotations":
                raise ValueError(f"invalid parameter {key!r} for UniformRotationGrid; "
                                 "valid parameters are ['n_rotations']")
            self.n_rotations = value
        return self

    def get_angles(self):
        """Return the ``K`` angles ``phi_k = 2 pi k / K`` of eq. (8).

        Returns
        -------
        angles : ndarray of shape (K,)
            Angles in radians, in ``[0, 2 pi)``, increasing.

        Examples
        --------
        >>> from mtdlearn.rotations import UniformRotationGrid
        >>> UniformRotationGrid(2).get_angles()
        array([0.        , 3.14159265])
        """
        K = check_int(self.n_rotations, "n_rotations", minimum=1)
        return 2 * np.pi * np.arange(K) / K

    def __repr__(self):
        return f"UniformRotationGrid(n_rotations={self.n_rotations!r})"

    def __eq__(self, other):
        return type(other) is type(self) and other.n_rotations == self.n_rotations

    def __hash__(self):
        return hash(("UniformRotationGrid", self.n_rotations))


def check_rotation_grid(rotations, name="rotations"):
    """Validate a rotation grid parameter and get its angles.

    An int ``K`` becomes ``UniformRotationGrid(K)``; a grid object (anything
    with ``get_angles()``) is returned as is after checking its angles.

    Parameters
    ----------
    rotations : int or rotation grid
        ``K >= 1``, or an object whose ``get_angles()`` returns a non-empty
        1-D array of finite angles in radians.
    name : str, default="rotations"
        Name used in error messages.

    Returns
    -------
    grid : rotation grid
        The grid object (the given one, or a new ``UniformRotationGrid``).
    angles : ndarray of shape (K,)
        ``grid.get_angles()`` as float64.

    Examples
    --------
    >>> from mtdlearn.rotations import check_rotation_grid
    >>> grid, angles = check_rotation_grid(4)
    >>> grid, angles.shape
    (UniformRotationGrid(n_rotations=4), (4,))
    """
    if isinstance(rotations, Integral) and not isinstance(rotations, bool):
        check_int(rotations, name, minimum=1)
        grid = UniformRotationGrid(int(rotations))
    elif hasattr(rotations, "get_angles"):
        grid = rotations
    else:
        raise TypeError(f"{name} must be an int K >= 1 or an object with get_angles(), "
                        f"got {type(rotations).__name__}")
    angles = np.asarray(grid.get_angles(), dtype=np.float64)
    if angles.ndim != 1 or angles.size == 0 or not np.all(np.isfinite(angles)):
        raise ValueError(f"{name}.get_angles() must return a non-empty 1-D array of finite "
                         f"angles, got {angles!r}")
    return grid, angles
