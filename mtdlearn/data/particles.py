"""Particle-like targets: projections of random Gaussian "atoms".

:func:`~mtdlearn.data.simulate.make_target` draws the paper's target, an
image of i.i.d. uniform pixels that fills its whole disk with texture up to
the Nyquist frequency.  A molecule seen in a micrograph is not like that: it
is a compact blob, smaller than its box, with a strong positive mean and a
spectrum that decays smoothly with frequency.  :func:`make_particle` draws
such a target: the 2-D projection of a few dozen to a few thousand Gaussian
"atoms" placed at random in a ball, expanded on the basis like
``make_target``'s images.
"""

import numpy as np

from .._validation import check_bool, check_int, check_random_generator, check_real
from ..basis.protocol import check_basis

__all__ = ["make_particle"]

#: Default diameter of the ball of atoms, as a fraction of the box side ``L``
#: (a box about 1.5 times the particle, as cryo-EM boxes are).
DEFAULT_DIAMETER_FRACTION = 0.65
#: Default number of atoms per cubic pixel of the ball (a fixed density, as
#: a protein's), and the fewest atoms drawn by default.
DEFAULT_ATOM_DENSITY = 0.1
MIN_DEFAULT_ATOMS = 40


def make_particle(basis, diameter=None, *, n_atoms=None, atom_std=1.0, norm=10.0,
                  random_state=None, return_image=False):
    """Draw a compact, particle-like target as basis coefficients.

    The image is the projection along ``z`` of ``n_atoms`` isotropic 3-D
    Gaussian "atoms" whose centres are uniform in a ball of diameter
    ``diameter`` pixels centred on the centre pixel ``(n, n)``, ``n = L //
    2``.  It is expanded on the basis (least squares over the disk,
    ``basis.expand``) and scaled so that the rendered image
    ``basis.evaluate(coef)`` has Frobenius norm ``norm``.

    Parameters
    ----------
    basis : FourierBesselBasis
        The basis to expand on; gives ``L`` (and the disk that bounds
        ``diameter``).
    diameter : float, default=None
        Diameter in pixels of the ball holding the atoms' centres, in
        ``(0, D]`` where ``D = 2 * basis.radius`` is the diameter of the
        basis's disk (``basis.radius=None`` means ``n + 1``, so ``D = L + 1``).
        ``None`` means ``0.65 * min(L, D)``: a particle smaller than its box
        (see Notes).
    n_atoms : int, default=None
        Number of atoms, ``>= 1``.  ``None`` means a fixed density of 0.1
        atoms per cubic pixel of the ball, ``round(0.1 * pi * diameter**3 /
        6)``, and at least 40 (133 atoms at ``L = 21``, 991 at ``L = 41``).
    atom_std : float, default=1.0
        Standard deviation in pixels of each atom's Gaussian, ``> 0``; it
        sets the decay of the spectrum (see Notes).
    norm : float, default=10.0
        Frobenius norm of the rendered image ``basis.evaluate(coef)``, ``> 0``.
    random_state : int, Generator, RandomState or None, default=None
        Seed or generator of the atoms' positions.
    return_image : bool, default=False
        Also return the pixel image before the expansion.

    Returns
    -------
    coef : ndarray of shape (basis.n_functions,)
        Coefficients ``alpha`` of the target.
    image : ndarray of shape (L, L)
        The pixel image of the atoms before the expansion, scaled by the same
        factor as ``coef`` (so ``basis.expand(image)`` is ``coef``).  Only
        returned if ``return_image`` is True.

    Raises
    ------
    TypeError
        If ``diameter``, ``n_atoms``, ``atom_std``, ``norm`` or
        ``return_image`` has the wrong type, or ``basis`` does not follow the
        basis protocol.
    ValueError
        If ``diameter`` is not in ``(0, D]``, ``n_atoms < 1``, ``atom_std``
        or ``norm`` is not a finite number ``> 0``, or the basis sees none
        of the particle (``basis.evaluate(basis.expand(image))`` is zero).

    See Also
    --------
    mtdlearn.data.simulate.make_target : The paper's random-pixel target.

    Notes
    -----
    **The model.**  Atom ``a`` is at ``(x_a, y_a, z_a) = (n, n, 0) + r_a
    u_a``, with ``u_a`` uniform on the unit sphere and ``r_a = (diameter / 2)
    U_a**(1/3)``, ``U_a ~ U[0, 1]`` (uniform in the ball).  Its density is
    the normalized 3-D Gaussian of standard deviation ``s = atom_std``, whose
    integral over ``z`` is the 2-D Gaussian of the same ``s``, so pixel
    ``(i, j)`` (row ``i``, column ``j``) of the image is

    ``image[i, j] = sum_a exp(-((i - y_a)**2 + (j - x_a)**2) / (2 s**2)) /
    (2 pi s**2)``

    (computed as the product of two ``n_atoms x L`` matrices of 1-D
    Gaussians).  The image is positive, concentrated in the disk of radius
    ``diameter / 2`` (up to the atoms' tails, a couple of ``s``), and its
    Fourier transform is the atoms' structure factor times the Gaussian
    envelope ``exp(-2 pi**2 s**2 k**2)`` (``k`` in cycles per pixel): the
    power falls by ``exp(-4 pi**2 s**2 k**2)``: for ``s = 1``, ``9e-2`` at
    ``k = 1/4``, ``1e-2`` at ``1/3`` and ``5e-5`` at Nyquist, ``1/2``, as a protein's
    spectrum falls off, rather than staying flat up to Nyquist.  At low
    frequency the atoms add coherently (power ``~ n_atoms**2``), at high
    frequency incoherently (``~ n_atoms``), which deepens the decay further.

    **The default diameter**, ``0.65 * L`` for the default basis, is a
    particle smaller than its box, as in a micrograph, where a particle is
    boxed with room around it (boxes of about 1.5 times the particle's
    diameter).  The margin, ``0.175 L`` on each side (about ``2 s`` at
    ``L = 11``), keeps the tails of the outermost atoms inside the basis's
    disk, where :meth:`FourierBesselBasis.expand` fits the image.

    **The norm** is that of the rendered image, the one
    :func:`~mtdlearn.data.simulate.make_measurement` places and
    :func:`~mtdlearn.data.simulate.snr_to_noise_variance` measures.
    :func:`~mtdlearn.data.simulate.make_target` instead scales the pixel
    image before the expansion; for these smooth, compact images the two
    differ by about half the squared relative expansion error, ``1e-5``
    (the error is about ``2e-3``, at most ``4e-3``, with the default basis
    at ``L = 11`` and ``21``).

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.data.particles import make_particle
    >>> basis = FourierBesselBasis(11)
    >>> coef, image = make_particle(basis, random_state=0, return_image=True)
    >>> coef.shape, image.shape
    ((78,), (11, 11))
    >>> bool(np.isclose(np.linalg.norm(basis.evaluate(coef)), 10.0))
    True
    >>> bool(image.min() > 0 and image[5, 5] > 10 * image[0, 0])
    True
    """
    basis = check_basis(basis)
    L = int(basis.image_size)
    disk_diameter = _disk_diameter(basis)
    if diameter is None:
        diameter = DEFAULT_DIAMETER_FRACTION * min(L, disk_diameter)
    else:
        diameter = check_real(diameter, "diameter", minimum=0.0, strict=True)
        if diameter > disk_diameter:
            raise ValueError(f"diameter must be <= {disk_diameter:g}, the diameter of the "
                             f"basis's disk (2 * radius), got {diameter:g}")
    if n_atoms is None:
        n_atoms = max(MIN_DEFAULT_ATOMS,
                      round(DEFAULT_ATOM_DENSITY * np.pi * diameter ** 3 / 6))
    else:
        n_atoms = check_int(n_atoms, "n_atoms", minimum=1)
    atom_std = check_real(atom_std, "atom_std", minimum=0.0, strict=True)
    norm = check_real(norm, "norm", minimum=0.0, strict=True)
    check_bool(return_image, "return_image")
    rng = check_random_generator(random_state)

    centres = L // 2 + _positions_in_ball(rng, n_atoms, diameter / 2)
    image = _render_atoms(centres[:, 0], centres[:, 1], atom_std, L)
    coef = basis.expand(image)
    rendered = float(np.linalg.norm(basis.evaluate(coef)))
    if not rendered > 0:
        raise ValueError("the basis sees none of the particle: basis.evaluate("
                         "basis.expand(image)) is zero; check the basis")
    scale = norm / rendered
    coef *= scale
    if return_image:
        return coef, image * scale
    return coef


def _disk_diameter(basis):
    """Diameter in pixels of the basis's disk: ``2 * basis.radius``, with
    ``radius=None`` (or no ``radius``) the FourierBesselBasis default ``n + 1``."""
    radius = getattr(basis, "radius", None)
    if radius is None:
        radius = int(basis.image_size) // 2 + 1
    return 2.0 * float(radius)


def _positions_in_ball(rng, n_points, radius):
    """``(n_points, 3)`` points uniform in the ball of ``radius`` about 0.

    Columns are ``(y, x, z)``: a uniform direction (normalized Gaussian)
    times ``radius * U**(1/3)``.
    """
    direction = rng.standard_normal((n_points, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    r = radius * rng.uniform(0.0, 1.0, size=n_points) ** (1.0 / 3.0)
    return direction * r[:, None]


def _render_atoms(rows, cols, std, size):
    """Sum of normalized 2-D Gaussians of ``std`` at ``(rows, cols)`` on a
    ``size x size`` pixel grid (separable: ``gy.T @ gx``)."""
    grid = np.arange(size, dtype=np.float64)
    gy = np.exp(-0.5 * ((grid[None, :] - rows[:, None]) / std) ** 2)
    gx = np.exp(-0.5 * ((grid[None, :] - cols[:, None]) / std) ** 2)
    return gy.T @ gx / (2.0 * np.pi * std ** 2)
