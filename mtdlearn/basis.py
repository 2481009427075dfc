"""Steerable Fourier-Bessel basis (Dirichlet-Laplacian eigenfunctions on a disk).

Conventions (``DESIGN.md`` §2, pinned by the tests):

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

import numpy as np
from scipy import special

from ._validation import check_array_float, check_int, check_real

__all__ = ["FourierBesselBasis"]


def _bessel_roots(nu, count):
    """First ``count`` positive roots of ``J_nu``."""
    if count <= 0:
        return np.empty(0)
    return special.jn_zeros(int(nu), int(count))


def _select_by_count(n, n_coefficients):
    """Pairs (nu, q) chosen by the ``n_coefficients`` rule of DESIGN.md §2."""
    # Q: number of roots of J_0 that are <= pi * n.
    count = 1
    while _bessel_roots(0, count + 1)[-1] <= np.pi * n:
        count += 1
    roots0 = _bessel_roots(0, count)
    n_roots = int(np.sum(roots0 <= np.pi * n))
    if n_roots == 0:
        raise ValueError("image_size is too small to hold any basis function")
    threshold = roots0[n_roots - 1]
    # nu = 0 is always a candidate (its first root is lambda_{0,1} <= threshold);
    # starting the search at 0 would give no candidate at all for L = 3.
    nu_max = 1
    while _bessel_roots(nu_max, 1)[0] < threshold:
        nu_max += 1
    candidates = []
    for nu in range(nu_max):
        for q, lam in enumerate(_bessel_roots(nu, n_roots), start=1):
            candidates.append((lam, nu, q))
    candidates.sort()
    chosen, total = [], 0
    for lam, nu, q in candidates:
        if n_coefficients is not None and total >= n_coefficients:
            break
        chosen.append((nu, q, lam))
        total += 1 if nu == 0 else 2
    return chosen


def _select_by_bandlimit(bandlimit):
    chosen = []
    nu = 0
    while True:
        roots = []
        q = 1
        while True:
            lam = _bessel_roots(nu, q)[-1]
            if lam > bandlimit:
                break
            roots.append((nu, q, lam))
            q += 1
        if not roots:
            break
        chosen.extend(roots)
        nu += 1
    chosen.sort(key=lambda t: (t[2], t[0], t[1]))
    return chosen


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
        among the candidates ``nu < nu_max``, ``q <= Q`` (DESIGN.md §2);
        a cos/sin pair is never split, so the count may be one more.
    bandlimit : float, default=None
        Keep every ``(nu, q)`` with ``lambda_{nu,q} <= bandlimit`` (eq. 2).
        At most one of ``n_coefficients`` and ``bandlimit`` may be given; if
        neither is, every candidate of the ``n_coefficients`` rule is kept.
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

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> basis.n_functions
    10
    >>> basis.evaluate(basis.rotate(np.ones(10), 0.3)).shape
    (5, 5)
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
        """Parameters of this basis, as a dict (scikit-learn convention)."""
        return {
            "image_size": self.image_size,
            "n_coefficients": self.n_coefficients,
            "bandlimit": self.bandlimit,
            "radius": self.radius,
        }

    def set_params(self, **params):
        """Set parameters and rebuild the basis tables; returns ``self``.

        On an invalid value the basis is left as it was."""
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
        L = check_int(self.image_size, "image_size", minimum=3)
        if L % 2 == 0:
            raise ValueError(f"image_size must be odd (L = 2n + 1), got {L}")
        n = L // 2
        if self.n_coefficients is not None and self.bandlimit is not None:
            raise ValueError("give at most one of n_coefficients and bandlimit, not both")
        if self.radius is None:
            radius = float(n + 1)
        else:
            radius = check_real(self.radius, "radius", minimum=0.0, strict=True)
        if self.bandlimit is not None:
            lam = check_real(self.bandlimit, "bandlimit", minimum=0.0, strict=True)
            chosen = _select_by_bandlimit(lam)
            if not chosen:
                raise ValueError(
                    f"bandlimit={lam} is below the first root of J_0 (2.405): no function kept"
                )
        else:
            m = None
            if self.n_coefficients is not None:
                m = check_int(self.n_coefficients, "n_coefficients", minimum=1)
            chosen = _select_by_count(n, m)
            available = sum(1 if nu == 0 else 2 for nu, _, _ in chosen)
            if m is not None and available < m:
                raise ValueError(
                    f"n_coefficients={m} exceeds the {available} candidate functions of "
                    f"image_size={L} (nu < nu_max, q <= Q; DESIGN.md §2); use bandlimit "
                    "for more"
                )
        self._L, self._n, self._radius = L, n, radius

        freqs, qs, lams, kinds = [], [], [], []
        for nu, q, lam in chosen:
            if nu == 0:
                freqs.append(0); qs.append(q); lams.append(lam); kinds.append(0)
            else:
                freqs += [nu, nu]; qs += [q, q]; lams += [lam, lam]; kinds += [1, 2]
        self.frequencies = np.asarray(freqs, dtype=np.int64)
        self.radial_indices = np.asarray(qs, dtype=np.int64)
        self.roots = np.asarray(lams, dtype=np.float64)
        self.kinds = np.asarray(kinds, dtype=np.int64)
        self.n_functions = int(self.frequencies.size)
        self.max_frequency = int(self.frequencies.max()) if self.n_functions else 0
        # index of cos / sin members of pairs, and of nu = 0 functions
        self._cos = np.flatnonzero(self.kinds == 1)
        self._sin = self._cos + 1
        self._zero = np.flatnonzero(self.kinds == 0)

        idx = np.arange(L, dtype=np.float64) - n
        y, x = np.meshgrid(idx, idx, indexing="ij")
        self._matrix = self._eval_points(x.ravel(), y.ravel())  # (L*L, p)
        r = np.hypot(x, y).ravel() / radius
        self.mask = (r < 1).reshape(L, L)
        inside = self._matrix[self.mask.ravel()]
        if inside.shape[0] < self.n_functions:
            raise ValueError(
                f"{self.n_functions} basis functions but only {inside.shape[0]} pixels inside "
                f"the disk of radius {radius}: lower bandlimit/n_coefficients or enlarge "
                "image_size"
            )
        # least-squares projector onto the span, computed once (stable: SVD).
        self._pinv = np.linalg.pinv(inside)  # (p, n_inside)

    # ------------------------------------------------------------------
    @property
    def matrix(self):
        """Evaluation matrix of shape ``(L*L, p)``: image.ravel() = matrix @ coef."""
        return self._matrix

    def _eval_points(self, x, y):
        r = np.hypot(x, y) / self._radius
        theta = np.arctan2(y, x)
        radial = special.jv(self.frequencies[None, :], self.roots[None, :] * r[:, None])
        angular = np.ones_like(radial)
        nu_theta = self.frequencies[None, :] * theta[:, None]
        angular = np.where(self.kinds == 1, np.cos(nu_theta), angular)
        angular = np.where(self.kinds == 2, np.sin(nu_theta), angular)
        out = radial * angular
        out[r >= 1] = 0.0
        return out

    def _check_coef(self, coef, name="coef"):
        coef = check_array_float(coef, name, min_ndim=1)
        if coef.shape[-1] != self.n_functions:
            raise ValueError(
                f"{name} must have last dimension n_functions={self.n_functions}, "
                f"got shape {coef.shape}"
            )
        return coef

    def evaluate(self, coef):
        """Images from coefficients.

        Parameters
        ----------
        coef : array-like of shape (..., p)

        Returns
        -------
        images : ndarray of shape (..., L, L)
        """
        coef = self._check_coef(coef)
        out = coef @ self._matrix.T
        return out.reshape(coef.shape[:-1] + (self._L, self._L))

    def evaluate_t(self, images):
        """Adjoint of :meth:`evaluate`: ``(..., L, L)`` images to ``(..., p)``."""
        images = self._check_images(images)
        return images.reshape(images.shape[:-2] + (-1,)) @ self._matrix

    def evaluate_points(self, coef, x, y):
        """Evaluate the continuous expansion at arbitrary points.

        Parameters
        ----------
        coef : array-like of shape (p,)
        x, y : array-like
            Coordinates in pixels relative to the centre (``x`` along columns,
            ``y`` along rows), broadcast together.

        Returns
        -------
        values : ndarray of the broadcast shape of ``x`` and ``y``
        """
        coef = self._check_coef(coef)
        if coef.ndim != 1:
            raise ValueError(f"coef must be one-dimensional here, got shape {coef.shape}")
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
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
        """Least-squares coefficients of images (pixels inside the disk).

        Parameters
        ----------
        images : array-like of shape (..., L, L)

        Returns
        -------
        coef : ndarray of shape (..., p)
        """
        images = self._check_images(images)
        inside = images[..., self.mask]
        return inside @ self._pinv.T

    def rotate(self, coef, angles):
        """Coefficients of the image rotated by ``angles``.

        ``F_phi(r, theta) = F(r, theta + phi)``: each (cos, sin) pair of
        frequency ``nu`` is rotated by ``nu * phi``.

        Parameters
        ----------
        coef : array-like of shape (..., p)
        angles : float or array-like
            Broadcast against ``coef.shape[:-1]``.

        Returns
        -------
        coef_rotated : ndarray of shape ``broadcast(coef.shape[:-1], angles.shape) + (p,)``
        """
        coef = self._check_coef(coef)
        angles = check_array_float(angles, "angles", min_ndim=0)
        shape = np.broadcast_shapes(coef.shape[:-1], angles.shape)
        out = np.array(np.broadcast_to(coef, shape + (self.n_functions,)), dtype=np.float64)
        a = out[..., self._cos]
        b = out[..., self._sin]
        phase = angles[..., None] * self.frequencies[self._cos]
        c, s = np.cos(phase), np.sin(phase)
        out[..., self._cos] = a * c + b * s
        out[..., self._sin] = b * c - a * s
        return out

    def rotation_matrices(self, angles):
        """Matrices ``R(phi)`` with ``rotate(coef, phi) = coef @ R(phi).T``.

        Returns an array of shape ``angles.shape + (p, p)``.
        """
        angles = check_array_float(angles, "angles", min_ndim=0)
        eye = np.eye(self.n_functions)
        return np.swapaxes(self.rotate(eye, angles[..., None]), -1, -2)

    # -- the paper's complex coefficients --------------------------------
    @property
    def complex_frequencies(self):
        """Signed frequency of each complex coefficient (see :meth:`to_complex`)."""
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
        ``alpha_{nu,q}`` by ``exp(i nu phi)``.
        """
        coef = self._check_coef(coef)
        z = coef.astype(np.complex128)
        a, b = coef[..., self._cos], coef[..., self._sin]
        z[..., self._cos] = (a - 1j * b) / 2
        z[..., self._sin] = (a + 1j * b) / 2
        return z

    def from_complex(self, z):
        """Inverse of :meth:`to_complex`; the imaginary part must be consistent
        with a real image (``alpha_{-nu} = conj(alpha_nu)``) and is otherwise
        projected onto it."""
        z = np.asarray(z)
        if z.shape[-1:] != (self.n_functions,):
            raise ValueError(
                f"z must have last dimension n_functions={self.n_functions}, got shape {z.shape}"
            )
        if not np.all(np.isfinite(z)):
            raise ValueError("z must contain only finite values")
        out = np.real(z).astype(np.float64)
        zp, zm = z[..., self._cos], z[..., self._sin]
        out[..., self._cos] = np.real(zp + zm)
        out[..., self._sin] = np.real(1j * (zp - zm))
        return out

