"""Steerable Fourier-Bessel basis (Dirichlet-Laplacian eigenfunctions on a disk).

Conventions (:doc:`/design`, "Conventions"; pinned by the tests):

* The image is ``L x L`` with ``L = 2n + 1``; pixel ``(i, j)`` sits at
  ``x = j - n``, ``y = i - n``, ``r = sqrt(x**2 + y**2) / radius``,
  ``theta = atan2(y, x)``.  The default ``radius`` is ``n + 1``.
* Real functions ``J_nu(lambda_{nu,q} r)`` for ``nu = 0`` and the pairs
  ``J_nu(lambda_{nu,q} r) cos(nu theta)``, ``J_nu(lambda_{nu,q} r) sin(nu theta)``
  for ``nu > 0``; zero where ``r >= 1``.  Functions are ordered by
  ``lambda_{nu,q}``, a pair as (cos, sin).
* Rotation ``F_phi(r, theta) = F(r, theta + phi)`` acts on every (cos, sin)
  pair of frequency ``nu`` as a 2 x 2 rotation by ``nu * phi``.
* The paper's complex coefficients ``alpha_{nu,q}`` (eq. 2-3) multiply
  ``J_|nu|(lambda r) exp(i nu theta)``, ``nu = -nu_max..nu_max``.
"""

import threading

import numpy as np

from ._fourier_bessel import (_FULL_PINV_MAX_FUNCTIONS, _apply_least_squares,
                              _check_pixel_count, _choose_functions, _evaluate_at,
                              _from_complex, _function_tables, _least_squares_factors,
                              _pixel_coordinates, _rotate_pairs, _to_complex)
from .._validation import check_array_float

__all__ = ["FourierBesselBasis"]

class FourierBesselBasis:
    """Steerable Fourier-Bessel basis of ``L x L`` images on a disk.

    Dirichlet-Laplacian eigenfunctions ``J_nu(lambda_{nu,q} r / radius)`` times
    ``{1, cos(nu theta), sin(nu theta)}`` (paper eq. 2, real form), sampled on
    the pixel grid.  The coefficient vector is real; ``to_complex`` gives the
    paper's complex coefficients.

    Parameters
    ----------
    image_size : int
        Side ``L = 2n + 1`` of the image, odd and at least 3.
    n_coefficients : int, default=None
        Keep the first ``n_coefficients`` functions in order of ``lambda``
        among the candidates ``nu < nu_max``, ``q <= Q`` (:doc:`/design`, "Conventions");
        a cos/sin pair is never split, so the count may be one more.
    bandlimit : float, default=None
        Keep every ``(nu, q)`` with ``lambda_{nu,q} <= bandlimit`` (eq. 2).
        At most one of ``n_coefficients`` and ``bandlimit`` may be given; if
        neither is, see Notes for the default.
    radius : float, default=None
        Disk radius in pixels; ``None`` means ``n + 1``.

    Attributes
    ----------
    n_functions : int
        Number of real basis functions ``p``.
    frequencies : ndarray of shape (p,)
        Angular frequency ``nu`` of each function.
    radial_indices : ndarray of shape (p,)
        Radial index ``q`` (1-based) of each function.
    roots : ndarray of shape (p,)
        Bessel root ``lambda_{nu,q}`` of each function.
    kinds : ndarray of shape (p,)
        ``0`` for ``nu = 0``, ``1`` for cos, ``2`` for sin.
    max_frequency : int
        Largest angular frequency ``nu_max`` kept.
    mask : ndarray of shape (L, L), dtype bool
        Pixels strictly inside the disk (``r / radius < 1``); :meth:`expand`
        fits only these.

    Notes
    -----
    **Default functions** (neither ``n_coefficients`` nor ``bandlimit``):

    * ``image_size <= 9``: every candidate of the ``n_coefficients`` rule
      (the paper's code): 1, 10, 27 and 60 functions for L = 3, 5, 7, 9.
    * ``image_size >= 11``: the Nyquist band limit, ``bandlimit = pi *
      radius``, the truncation of ASPIRE's ``FBBasis2D``.
      ``J_nu(lambda r / radius)`` oscillates at most ``lambda / (2 pi
      radius)`` times per pixel, so ``lambda <= pi * radius`` keeps what the
      pixel grid resolves (half a period per pixel).  By Weyl's law about
      ``(pi**2 / 4) radius**2 - (pi / 2) radius`` functions pass: a fraction
      ``pi / 4`` of the ``pi radius**2`` pixels in the disk (78, 281, 1055
      and 2633 functions for L = 11, 21, 41, 65).  The paper's rule is not
      used there: it keeps every ``nu < nu_max`` with ``q <= Q``, more
      functions than are independent on the pixels (L = 11: 105 functions
      of rank 101; L = 13: 162 functions for 145 pixels).

    The functions are well conditioned on the pixels:
    ``np.linalg.cond(matrix[mask.ravel()])`` is 1.0, 2.7, 14.4, 19.1 for
    L = 3, 5, 7, 9, then 5.2, 12.1, 14.5, 20.0 for L = 11, 21, 41, 65, and at
    most 21.1 (L = 45) for every odd L up to 65.  It grows like
    ``sqrt(lambda_max / lambda_min)``, the spread of the functions' norms;
    with unit-norm columns it stays below 2.6 for L >= 11.  The default is
    designed for ``radius <= n + 1``; with a larger radius the disk leaves
    the image, and ``bandlimit`` should be chosen explicitly.

    **Projection.** :meth:`expand` is least squares over the pixels inside
    the disk, factored once, on the first call.  Up to 128 functions this is
    ``np.linalg.pinv`` of the disk's matrix, as in earlier versions (fitted
    results at the paper's sizes stay bit for bit).  Larger bases use the
    symmetry: the pixel set is symmetric under ``x -> -x`` and ``y -> -y``,
    each function is even or odd under both, so the problem splits into four
    independent ones of a quarter of the size each (QR, or SVD if a block is
    numerically rank deficient).  The evaluation matrix too is built on
    first use, with ``J_nu`` evaluated once per distinct pixel radius and
    ``(nu, q)``, or, when there are more distinct radii than that takes
    Chebyshev points (the defaults from L = 25 on), at the Chebyshev points
    only and interpolated, within 1e-14 of ``scipy.special.jv``.  Neither is
    pickled: a pickle holds the parameters only.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> basis.n_functions
    10
    >>> basis.evaluate(basis.rotate(np.ones(10), 0.3)).shape
    (5, 5)
    >>> big = FourierBesselBasis(65)  # lambda <= 33 pi: 2633 functions, 3405 pixels
    >>> bool(big.n_functions < big.mask.sum())
    True
    """

    def __init__(self, image_size, n_coefficients=None, bandlimit=None, radius=None):
        self.image_size = image_size
        self.n_coefficients = n_coefficients
        self.bandlimit = bandlimit
        self.radius = radius
        self._build()

    # -- scikit-learn style parameter handling, so GridSearchCV can tune
    #    ``basis__n_coefficients``.
    def get_params(self, deep=True):
        """Get the parameters of this basis (scikit-learn convention).

        Parameters
        ----------
        deep : bool, default=True
            Ignored (the basis holds no nested estimators); present for
            scikit-learn compatibility.

        Returns
        -------
        params : dict
            ``image_size``, ``n_coefficients``, ``bandlimit`` and ``radius``.

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> FourierBesselBasis(5, n_coefficients=10).get_params()
        {'image_size': 5, 'n_coefficients': 10, 'bandlimit': None, 'radius': None}
        """
        return {
            "image_size": self.image_size,
            "n_coefficients": self.n_coefficients,
            "bandlimit": self.bandlimit,
            "radius": self.radius,
        }

    def set_params(self, **params):
        """Set parameters and rebuild the basis tables.

        On an invalid value the basis is left as it was and the error is
        raised.  This is what lets ``GridSearchCV`` tune
        ``basis__n_coefficients`` of an estimator.

        Parameters
        ----------
        **params : dict
            New values of ``image_size``, ``n_coefficients``, ``bandlimit``
            or ``radius``.

        Returns
        -------
        self : FourierBesselBasis
            This basis, rebuilt.

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> basis.set_params(n_coefficients=6).n_functions
        6
        """
        valid = self.get_params()
        for key in params:
            if key not in valid:
                raise ValueError(
                    f"invalid parameter {key!r} for FourierBesselBasis; "
                    f"valid parameters are {sorted(valid)}"
                )
        try:
            for key, value in params.items():
                setattr(self, key, value)
            self._build()
        except Exception:
            for key, value in valid.items():
                setattr(self, key, value)
            self._build()
            raise
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v is not None
                         or k == "image_size")
        return f"FourierBesselBasis({args})"

    def __eq__(self, other):
        return type(other) is type(self) and self.get_params() == other.get_params()

    def __hash__(self):
        return hash(tuple(self.get_params().items()))

    def __getstate__(self):
        return self.get_params()

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build()

    def _build(self):
        """Validate the parameters and choose the functions (cheap).

        The evaluation matrix and the least-squares factors are computed on
        first use (:attr:`matrix`, :meth:`expand`) and cached.
        """
        L, n, radius, mask, n_inside, max_count, nu, q, roots = _choose_functions(
            self.image_size, self.n_coefficients, self.bandlimit, self.radius)
        self._L, self._n, self._radius = L, n, radius
        self.frequencies, self.radial_indices, self.roots, self.kinds = _function_tables(
            nu, q, roots)
        self.n_functions = int(self.frequencies.size)
        self.max_frequency = int(self.frequencies.max()) if self.n_functions else 0
        # index of cos / sin members of pairs, and of nu = 0 functions
        self._cos = np.flatnonzero(self.kinds == 1)
        self._sin = self._cos + 1
        self._zero = np.flatnonzero(self.kinds == 0)

        self.mask = mask
        _check_pixel_count(self.n_functions, n_inside, max_count, radius)
        # computed on first use, once even if threads ask together; never
        # pickled (__getstate__ keeps the parameters only)
        self._matrix = None
        self._projector = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------
    @property
    def matrix(self):
        """Evaluation matrix ``B`` of shape ``(L*L, p)``.

        Column ``j`` is basis function ``j`` sampled on the pixel grid
        (row-major), so ``image.ravel() = matrix @ coef``.  Computed on first
        access and cached.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> basis.matrix.shape
        (25, 10)
        >>> coef = np.arange(1.0, 11.0)
        >>> np.allclose(basis.matrix @ coef, basis.evaluate(coef).ravel())
        True
        """
        with self._lock:
            if self._matrix is None:
                x, y = _pixel_coordinates(self._L, self._n)
                self._matrix = self._eval_points(x.ravel(), y.ravel())
        return self._matrix

    def _eval_points(self, x, y):
        """Every basis function at the points ``(x, y)`` (1-D), shape ``(len(x), p)``
        (:func:`~mtdlearn.basis._fourier_bessel._evaluate_at`)."""
        return _evaluate_at(x, y, self._radius, self.frequencies, self.roots, self.kinds)

    def _least_squares(self):
        """The factored least-squares problem of :meth:`expand`, cached.

        ``pinv(matrix[mask.ravel()])`` for small bases, else the reflection
        blocks of :func:`_least_squares_factors` (see
        ``_FULL_PINV_MAX_FUNCTIONS``).
        """
        with self._lock:
            if self._projector is None:
                self._projector = _least_squares_factors(
                    self.matrix, self.mask, self._n, self.frequencies, self.kinds,
                    whole=self.n_functions <= _FULL_PINV_MAX_FUNCTIONS)
        return self._projector

    def _check_coef(self, coef, name="coef"):
        coef = check_array_float(coef, name, min_ndim=1)
        if coef.shape[-1] != self.n_functions:
            raise ValueError(
                f"{name} must have last dimension n_functions={self.n_functions}, "
                f"got shape {coef.shape}"
            )
        return coef

    def evaluate(self, coef):
        """Compute the pixel images of coefficient vectors.

        ``F[i, j] = sum_k coef[k] psi_k(x_j, y_i)`` on the pixel grid (the
        real form of the paper's eq. 2); pixels outside the disk are zero.

        Parameters
        ----------
        coef : array-like of shape (..., p)
            Coefficients; any leading batch shape.

        Returns
        -------
        images : ndarray of shape (..., L, L)
            The images, with the batch shape of ``coef``.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> basis.evaluate(np.ones((3, 10))).shape
        (3, 5, 5)
        """
        coef = self._check_coef(coef)
        out = coef @ self.matrix.T
        return out.reshape(coef.shape[:-1] + (self._L, self._L))

    def evaluate_t(self, images):
        """Apply the adjoint of :meth:`evaluate` to images.

        ``evaluate_t(images) = images.ravel() @ matrix``, so that
        ``<evaluate(coef), images> = <coef, evaluate_t(images)>``.  This is
        not the least-squares expansion (see :meth:`expand`).

        Parameters
        ----------
        images : array-like of shape (..., L, L)
            Images; any leading batch shape.

        Returns
        -------
        coef : ndarray of shape (..., p)
            ``B^T`` applied to each flattened image.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> rng = np.random.default_rng(0)
        >>> coef, images = rng.standard_normal(10), rng.standard_normal((5, 5))
        >>> bool(np.isclose(np.vdot(basis.evaluate(coef), images),
        ...                 coef @ basis.evaluate_t(images)))
        True
        """
        images = self._check_images(images)
        return images.reshape(images.shape[:-2] + (-1,)) @ self.matrix

    def evaluate_points(self, coef, x, y):
        """Evaluate the continuous expansion at arbitrary points.

        Parameters
        ----------
        coef : array-like of shape (p,)
            Coefficients of one image.
        x, y : array-like
            Finite coordinates in pixels relative to the centre (``x`` along
            columns, ``y`` along rows), broadcast together.  Points at
            ``hypot(x, y) >= radius`` give zero.

        Returns
        -------
        values : ndarray of the broadcast shape of ``x`` and ``y``
            The expansion ``sum_k coef[k] psi_k(x, y)``.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> coef = np.arange(1.0, 11.0)
        >>> values = basis.evaluate_points(coef, [0.0, 1.0], 0.0)
        >>> np.allclose(values, basis.evaluate(coef)[2, 2:4])  # pixels (2, 2), (2, 3)
        True
        """
        coef = self._check_coef(coef)
        if coef.ndim != 1:
            raise ValueError(f"coef must be one-dimensional here, got shape {coef.shape}")
        x = check_array_float(x, "x")
        y = check_array_float(y, "y")
        try:
            x, y = np.broadcast_arrays(x, y)
        except ValueError:
            raise ValueError(f"x and y must broadcast together, got shapes {x.shape} and "
                             f"{y.shape}") from None
        vals = self._eval_points(x.ravel(), y.ravel()) @ coef
        return vals.reshape(x.shape)

    def _check_images(self, images, name="images"):
        images = check_array_float(images, name, min_ndim=2)
        if images.shape[-2:] != (self._L, self._L):
            raise ValueError(
                f"{name} must end with shape ({self._L}, {self._L}), got {images.shape}"
            )
        return images

    def expand(self, images):
        """Compute the least-squares coefficients of images.

        Minimizes ``||evaluate(coef) - image||`` over the pixels inside the
        disk (``mask``); pixels outside it are ignored.  ``expand`` inverts
        :meth:`evaluate` exactly.

        Parameters
        ----------
        images : array-like of shape (..., L, L)
            Images; any leading batch shape.

        Returns
        -------
        coef : ndarray of shape (..., p)
            Least-squares coefficients of each image.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> coef = np.arange(1.0, 11.0)
        >>> np.allclose(basis.expand(basis.evaluate(coef)), coef)
        True
        """
        images = self._check_images(images)
        blocks = self._least_squares()
        return _apply_least_squares(images[..., self.mask], blocks, self.n_functions)

    def rotate(self, coef, angles):
        """Rotate coefficients: those of the image rotated by ``angles``.

        ``F_phi(r, theta) = F(r, theta + phi)``: each (cos, sin) pair of
        frequency ``nu`` is rotated by ``nu * phi``.

        This is the paper's eq. (3) in real form: the complex coefficient
        ``alpha_{nu,q}`` is multiplied by ``exp(i nu phi)``.

        Parameters
        ----------
        coef : array-like of shape (..., p)
            Coefficients; any leading batch shape.
        angles : float or array-like
            Rotation angles ``phi`` in radians, broadcast against
            ``coef.shape[:-1]``.

        Returns
        -------
        coef_rotated : ndarray of shape ``broadcast(coef.shape[:-1], angles.shape) + (p,)``
            Coefficients of the rotated images.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> coef = np.arange(1.0, 11.0)
        >>> basis.rotate(coef, [0.0, np.pi / 2, np.pi]).shape
        (3, 10)
        >>> np.allclose(basis.rotate(coef, 2 * np.pi), coef)
        True
        """
        coef = self._check_coef(coef)
        angles = check_array_float(angles, "angles", min_ndim=0)
        shape = np.broadcast_shapes(coef.shape[:-1], angles.shape)
        out = np.array(np.broadcast_to(coef, shape + (self.n_functions,)), dtype=np.float64)
        return _rotate_pairs(out, angles, self._cos, self._sin, self.frequencies[self._cos])

    def rotation_matrices(self, angles):
        """Compute the rotation matrices ``R(phi)`` of the coefficients.

        ``rotate(coef, phi) = R(phi) @ coef = coef @ R(phi).T``: block
        diagonal, with a 2 x 2 rotation by ``nu * phi`` on every (cos, sin)
        pair and ``1`` on every ``nu = 0`` function.

        Parameters
        ----------
        angles : float or array-like
            Rotation angles ``phi`` in radians.

        Returns
        -------
        matrices : ndarray of shape ``angles.shape + (p, p)``
            One ``p x p`` orthogonal matrix per angle.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> R = basis.rotation_matrices([0.3, 1.0])
        >>> R.shape
        (2, 10, 10)
        >>> coef = np.arange(1.0, 11.0)
        >>> np.allclose(R[0] @ coef, basis.rotate(coef, 0.3))
        True
        """
        angles = check_array_float(angles, "angles", min_ndim=0)
        eye = np.eye(self.n_functions)
        return np.swapaxes(self.rotate(eye, angles[..., None]), -1, -2)

    # -- the paper's complex coefficients --------------------------------
    @property
    def complex_frequencies(self):
        """Signed frequency ``nu`` of each complex coefficient, shape ``(p,)``.

        Entry ``k`` of :meth:`to_complex`'s output is ``alpha_{nu,q}`` with
        ``nu = complex_frequencies[k]``: ``+nu`` at a cos position, ``-nu`` at
        a sin position, ``0`` for ``nu = 0`` functions.

        Examples
        --------
        >>> from mtdlearn import FourierBesselBasis
        >>> FourierBesselBasis(5, n_coefficients=10).complex_frequencies
        array([ 0,  1, -1,  2, -2,  0,  1, -1,  2, -2])
        """
        nu = self.frequencies.copy()
        nu[self._sin] *= -1
        return nu

    def to_complex(self, coef):
        """The paper's complex coefficients ``alpha_{nu,q}`` (eq. 2-3).

        ``f = sum alpha_{nu,q} J_|nu|(lambda r) exp(i nu theta)``.  The output
        has the layout of ``coef``: a ``nu = 0`` function gives ``alpha_{0,q}``;
        a (cos, sin) pair ``(a, b)`` gives ``(alpha_{nu,q}, alpha_{-nu,q}) =
        ((a - i b) / 2, (a + i b) / 2)``.  ``complex_frequencies`` gives the
        signed ``nu`` of each entry.  Rotation by ``phi`` multiplies
        ``alpha_{nu,q}`` by ``exp(i nu phi)`` (eq. 3).

        Parameters
        ----------
        coef : array-like of shape (..., p)
            Real coefficients; any leading batch shape.

        Returns
        -------
        alpha : ndarray of shape (..., p), complex
            The paper's complex coefficients, in the layout of ``coef``.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> coef = np.arange(1.0, 11.0)
        >>> basis.to_complex(coef)[:3]
        array([1.+0.j , 1.-1.5j, 1.+1.5j])
        >>> phi = 0.7
        >>> np.allclose(basis.to_complex(basis.rotate(coef, phi)),
        ...             basis.to_complex(coef) * np.exp(1j * basis.complex_frequencies * phi))
        True
        """
        return _to_complex(self._check_coef(coef), self._cos, self._sin)

    def from_complex(self, z):
        """Convert the paper's complex coefficients back to real ones.

        The inverse of :meth:`to_complex`.  The input should describe a real
        image (``alpha_{-nu,q} = conj(alpha_{nu,q})``); otherwise it is
        projected onto the real images.

        Parameters
        ----------
        z : array-like of shape (..., p), complex
            Complex coefficients in the layout of :meth:`to_complex`.

        Returns
        -------
        coef : ndarray of shape (..., p)
            Real coefficients: ``a = Re(z_nu + z_-nu)``,
            ``b = Re(i (z_nu - z_-nu))`` for each (cos, sin) pair.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn import FourierBesselBasis
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> coef = np.arange(1.0, 11.0)
        >>> np.allclose(basis.from_complex(basis.to_complex(coef)), coef)
        True
        """
        z = np.asarray(z)
        if z.shape[-1:] != (self.n_functions,):
            raise ValueError(
                f"z must have last dimension n_functions={self.n_functions}, got shape {z.shape}"
            )
        if not np.all(np.isfinite(z)):
            raise ValueError("z must contain only finite values")
        return _from_complex(z, self._cos, self._sin)
