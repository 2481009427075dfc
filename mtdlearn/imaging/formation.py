"""Image formation: how an image appears in a measurement.

One object per measurement says how the image, as the pixels of its rotated
copies ``B R(phi) alpha`` on the ``L x L`` grid, appears in that
measurement: the linear map ``H_m`` applied to every copy, the noise it is
seen through, and the support of the formed copy.  Every part of mtdlearn
that models a copy goes through it:

- the E-step's templates (GEMM and FFT kernels, ``score`` and ``predict``):
  ``T_h = C T_l Z H_m F_{phi_k}`` (:meth:`ImageFormation.form`);
- the M-step's normal equations, through the formed evaluation
  ``H_m B R(phi_k)`` (:meth:`ImageFormation.form_columns`), whose transpose
  is the adjoint ``(H_m B R)^T``;
- the model moments of autocorrelation analysis (the same formed evaluation);
- the simulator, which forms each whole measurement
  (:meth:`ImageFormation.form_measurement`) and draws its noise
  (:meth:`ImageFormation.draw_noise`).

:class:`WhiteNoiseFormation` is the paper's model and today's only one: the
copy is the image itself (``H_m`` the identity) in white Gaussian noise of
variance ``sigma**2``.  Its methods return their input unchanged, so a fit
through the seam is bit-identical to one without it.  A filtered formation
(the CTF of each micrograph, a whitening filter for colored noise) is a
convolution; it widens a copy beyond ``L x L`` (the CTF delocalizes it by
about ``lambda * defocus * k_max``), which :meth:`ImageFormation.support`
reports so that the shift operators can take a wider template box.  See
:doc:`/design`, "Image formation".
"""

import numpy as np

from .._validation import check_int

__all__ = ["ImageFormation", "WhiteNoiseFormation", "MicroscopeFormation", "check_formation"]


class ImageFormation:
    """The protocol of image formation: how a copy of the image appears in a measurement.

    A subclass describes one linear, shift-invariant formation ``H`` (the
    same for every copy in its measurement) and the noise of its
    measurement.  Methods act on trailing pixel axes and keep any leading
    batch axes; they never modify their input.

    Attributes
    ----------
    is_identity : bool
        ``True`` when ``H`` is the identity and the noise white: callers may
        then skip the work of forming (the results are the same numbers).

    See Also
    --------
    WhiteNoiseFormation : The paper's formation, and the default.

    Examples
    --------
    >>> from mtdlearn.imaging.formation import ImageFormation, WhiteNoiseFormation
    >>> isinstance(WhiteNoiseFormation(), ImageFormation)
    True
    """

    is_identity = False

    def support(self, image_size):
        """Side of the formed copy of an ``L x L`` image.

        Parameters
        ----------
        image_size : int
            ``L``.

        Returns
        -------
        support : int
            ``L`` for a formation that does not widen the copy; larger for a
            filter whose point-spread function is wider than one pixel.

        Examples
        --------
        >>> from mtdlearn.imaging.formation import WhiteNoiseFormation
        >>> WhiteNoiseFormation().support(21)
        21
        """
        raise NotImplementedError

    def form(self, images):
        """Formed copies ``H F`` of images given as pixels.

        Parameters
        ----------
        images : ndarray of shape (..., L*L)
            Flattened ``L x L`` images (rotated copies of the image).

        Returns
        -------
        formed : ndarray of shape (..., S*S)
            Flattened formed copies, ``S = support(L)``.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.imaging.formation import WhiteNoiseFormation
        >>> WhiteNoiseFormation().form(np.ones((2, 25))).shape
        (2, 25)
        """
        raise NotImplementedError

    def form_adjoint(self, formed):
        """The adjoint ``H^T``: formed copies back to image pixels.

        Parameters
        ----------
        formed : ndarray of shape (..., S*S)
            Flattened arrays on the formed copy's support.

        Returns
        -------
        images : ndarray of shape (..., L*L)
            ``H^T`` applied to each.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.imaging.formation import WhiteNoiseFormation
        >>> WhiteNoiseFormation().form_adjoint(np.ones((2, 25))).shape
        (2, 25)
        """
        raise NotImplementedError

    def form_columns(self, evaluation):
        """``H B R(phi_k)``: the formation applied to every column of an evaluation table.

        Parameters
        ----------
        evaluation : ndarray of shape (K, L*L, p)
            ``B R(phi_k)`` for ``K`` rotations
            (:func:`~mtdlearn.basis.protocol.rotated_evaluation`).

        Returns
        -------
        formed : ndarray of shape (K, S*S, p)
            The linear maps from coefficients to formed copies.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.imaging.formation import WhiteNoiseFormation
        >>> WhiteNoiseFormation().form_columns(np.ones((3, 25, 10))).shape
        (3, 25, 10)
        """
        return np.moveaxis(self.form(np.moveaxis(evaluation, -1, 1)), 1, -1)

    def form_measurement(self, clean):
        """Form a whole noise-free measurement: ``H`` applied to the sum of its copies.

        Parameters
        ----------
        clean : ndarray of shape (N1, N2)
            The sum of the copies of the image, as placed.

        Returns
        -------
        formed : ndarray of shape (N1, N2)
            What the instrument records before noise.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.imaging.formation import WhiteNoiseFormation
        >>> float(WhiteNoiseFormation().form_measurement(np.eye(3)).trace())
        3.0
        """
        raise NotImplementedError

    def draw_noise(self, out, noise_variance, rng):
        """Draw the measurement's noise into ``out``, in place.

        Parameters
        ----------
        out : ndarray of shape (N1, N2)
            Buffer of the measurement, overwritten.
        noise_variance : float
            ``sigma**2``: the noise's mean power per pixel (the paper's SNR
            keeps its meaning for colored noise).
        rng : numpy.random.Generator
            The simulation's generator.

        Returns
        -------
        out : ndarray of shape (N1, N2)
            The same buffer.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.imaging.formation import WhiteNoiseFormation
        >>> noise = WhiteNoiseFormation().draw_noise(np.empty((200, 200)), 4.0,
        ...                                          np.random.default_rng(0))
        >>> bool(abs(noise.var() - 4.0) < 0.1)
        True
        """
        raise NotImplementedError


class WhiteNoiseFormation(ImageFormation):
    """The paper's image formation: each copy is the image, in white Gaussian noise.

    ``H`` is the identity, so a formed copy has the image's own ``L x L``
    support and the noise has the same variance ``sigma**2`` at every pixel
    and frequency (eq. 1).  Every method returns its input (the same
    array), so fits through this formation are bit-identical to the
    paper's model computed directly.

    Attributes
    ----------
    is_identity : bool
        Always ``True``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.formation import WhiteNoiseFormation
    >>> formation = WhiteNoiseFormation()
    >>> images = np.arange(50.0).reshape(2, 25)
    >>> formation.form(images) is images
    True
    """

    is_identity = True

    def support(self, image_size):
        return check_int(image_size, "image_size", minimum=1)

    def form(self, images):
        return images

    def form_adjoint(self, formed):
        return formed

    def form_columns(self, evaluation):
        return evaluation

    def form_measurement(self, clean):
        return clean

    def draw_noise(self, out, noise_variance, rng):
        sigma = np.sqrt(noise_variance)
        for r0 in range(0, out.shape[0], 1024):  # row blocks: no second N^2 temporary
            blk = out[r0:r0 + 1024]
            rng.standard_normal(out=blk)
            blk *= sigma
        return out

    def __repr__(self):
        return "WhiteNoiseFormation()"

    def __eq__(self, other):
        return type(other) is type(self)

    def __hash__(self):
        return hash(type(self))


# the protocol's docstrings describe these methods (their examples use this class)
for _name in ("support", "form", "form_adjoint", "form_columns", "form_measurement",
              "draw_noise"):
    getattr(WhiteNoiseFormation, _name).__doc__ = getattr(ImageFormation, _name).__doc__
del _name


def _filter_grid(image_size):
    """Side of the FFT grid on which a filter's point-spread function is sampled.

    Four times the image and at least 256 pixels: the point-spread function
    of a CTF reaches ``lambda * defocus * k_max`` pixels (22 at 2 um and
    3 A/px), and its samples on an ``M x M`` grid are the continuous ones
    aliased with period ``M``, far beyond that reach.
    """
    return int(max(256, 4 * image_size))


class MicroscopeFormation(ImageFormation):
    """A micrograph's image formation: its CTF, and colored noise seen through whitening.

    The micrograph records ``CTF * (sum of copies) + noise`` (a convolution
    by the CTF's point-spread function; :meth:`form_measurement`), with
    stationary Gaussian noise of power spectrum ``noise_psd``
    (:meth:`draw_noise`).  The fit sees the micrograph whitened
    (:meth:`whiten`: the filter ``W = sqrt(mean S / S)`` keeps the mean
    noise power per pixel), in which the noise is white and a copy is
    ``H F = W * CTF * F`` (:meth:`form`).  So the templates, the M-step's
    normal equations and the likelihood all use ``H`` on whitened data,
    where the paper's white-noise model holds.

    On the ``L x L`` box, ``H`` is the matrix ``G`` of the convolution by
    the point-spread function of ``W CTF`` (sampled on a grid of
    :func:`_filter_grid` pixels), restricted to the box: a copy is
    formed from the image's pixels in the box, and what the filter spreads
    beyond the box is not modelled.  The box must therefore be larger than
    the particle by about the CTF's delocalization
    (:meth:`mtdlearn.imaging.ctf.CTF.delocalization`): give
    ``particle_diameter`` smaller than ``image_size``.

    Parameters
    ----------
    ctf : CTF, default=None
        The micrograph's contrast transfer function
        (:class:`mtdlearn.imaging.ctf.CTF`); ``None``: none (the identity).
    noise_psd : RadialPSD, default=None
        The noise's power spectrum (:class:`mtdlearn.imaging.noise.RadialPSD`),
        whose shape colors the noise and sets the whitening filter;
        ``None``: white noise.

    Attributes
    ----------
    is_identity : bool
        ``True`` when neither a CTF nor a noise spectrum is given.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.ctf import CTF
    >>> from mtdlearn.imaging.formation import MicroscopeFormation
    >>> formation = MicroscopeFormation(CTF(15000.0, pixel_size=3.0))
    >>> formation.form(np.ones((2, 21 * 21))).shape
    (2, 441)
    >>> formation.support(21)
    21
    """

    def __init__(self, ctf=None, noise_psd=None):
        self.ctf = ctf
        self.noise_psd = noise_psd
        self.is_identity = ctf is None and noise_psd is None
        self._matrices = {}

    def transfer(self, shape, rfft=True):
        """The transfer function of ``H = W CTF`` on the FFT grid of ``shape``.

        Parameters
        ----------
        shape : (int, int)
            The grid.
        rfft : bool, default=True
            The ``numpy.fft.rfft2`` layout ``(n0, n1 // 2 + 1)``; else the
            full ``fft2`` layout.

        Returns
        -------
        transfer : ndarray
            Real values of the filter at every frequency.

        Examples
        --------
        >>> from mtdlearn.imaging.formation import MicroscopeFormation
        >>> MicroscopeFormation().transfer((8, 8)).shape
        (8, 5)
        """
        n0, n1 = shape
        out = np.ones((n0, n1 // 2 + 1) if rfft else (n0, n1))
        if self.ctf is not None:
            out = out * self.ctf.evaluate(shape, rfft=rfft)
        if self.noise_psd is not None:
            from .noise import whitening_filter
            out = out * whitening_filter(self.noise_psd, shape, rfft=rfft)
        return out

    def matrix(self, image_size):
        """``G``: the formation on the ``L x L`` box as an ``(L*L, L*L)`` matrix.

        ``form(x) = x @ G.T``.  Cached per ``L``.

        Parameters
        ----------
        image_size : int
            ``L``.

        Returns
        -------
        G : ndarray of shape (L*L, L*L)
            ``G[(i, j), (i', j')] = psf[i - i', j - j']``.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.imaging.formation import MicroscopeFormation
        >>> np.allclose(MicroscopeFormation().matrix(3), np.eye(9))
        True
        """
        L = check_int(image_size, "image_size", minimum=1)
        if L not in self._matrices:
            M = _filter_grid(L)
            psf = np.fft.irfft2(self.transfer((M, M), rfft=True), s=(M, M))
            i, j = np.divmod(np.arange(L * L), L)
            self._matrices[L] = np.ascontiguousarray(
                psf[(i[:, None] - i[None, :]) % M, (j[:, None] - j[None, :]) % M])
        return self._matrices[L]

    def support(self, image_size):
        return check_int(image_size, "image_size", minimum=1)

    def _size(self, n_pixels):
        L = int(round(np.sqrt(n_pixels)))
        if L * L != n_pixels:
            raise ValueError(f"images must be flattened L x L squares, got {n_pixels} pixels")
        return L

    def form(self, images):
        if self.is_identity:
            return images
        images = np.asarray(images)
        return images @ self.matrix(self._size(images.shape[-1])).T

    def form_adjoint(self, formed):
        if self.is_identity:
            return formed
        formed = np.asarray(formed)
        return formed @ self.matrix(self._size(formed.shape[-1]))

    def form_columns(self, evaluation):
        if self.is_identity:
            return evaluation
        K, d, p = evaluation.shape
        G = self.matrix(self._size(d))
        return np.matmul(G, evaluation)

    def form_measurement(self, clean):
        if self.ctf is None:
            return clean
        clean = np.asarray(clean, dtype=np.float64)
        return np.fft.irfft2(np.fft.rfft2(clean) * self.ctf.evaluate(clean.shape, rfft=True),
                             s=clean.shape)

    def draw_noise(self, out, noise_variance, rng):
        if self.noise_psd is None:
            return WHITE_NOISE.draw_noise(out, noise_variance, rng)
        from .noise import draw_colored_noise
        return draw_colored_noise(out, self.noise_psd, noise_variance, rng)

    def whiten(self, measurement):
        """The measurement as the fit sees it: whitened by the noise's spectrum.

        Parameters
        ----------
        measurement : ndarray of shape (N1, N2)
            A recorded micrograph (never modified).

        Returns
        -------
        whitened : ndarray of shape (N1, N2)
            A new float64 array (the measurement itself when the noise is
            white).

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.imaging.formation import MicroscopeFormation
        >>> X = np.ones((4, 4))
        >>> MicroscopeFormation().whiten(X) is X
        True
        """
        if self.noise_psd is None:
            return measurement
        from .noise import whiten
        return whiten(np.asarray(measurement), self.noise_psd)

    def __repr__(self):
        return f"MicroscopeFormation(ctf={self.ctf!r}, noise_psd={self.noise_psd!r})"

    def __eq__(self, other):
        return (type(other) is type(self) and other.ctf == self.ctf
                and other.noise_psd == self.noise_psd)

    def __hash__(self):
        return hash((type(self), self.ctf))


for _name in ("support", "form", "form_adjoint", "form_columns", "form_measurement",
              "draw_noise"):
    getattr(MicroscopeFormation, _name).__doc__ = getattr(ImageFormation, _name).__doc__
del _name


#: The formation of a measurement no one described: the paper's model.
WHITE_NOISE = WhiteNoiseFormation()


def check_formation(formation, name="formation"):
    """Validate an image formation; ``None`` is the paper's white-noise model.

    Parameters
    ----------
    formation : ImageFormation or None
        The formation of a measurement.
    name : str, default="formation"
        The parameter's name, for the error message.

    Returns
    -------
    formation : ImageFormation
        ``formation``, or :class:`WhiteNoiseFormation` for ``None``.

    Raises
    ------
    TypeError
        If ``formation`` does not follow the :class:`ImageFormation` protocol.

    Examples
    --------
    >>> from mtdlearn.imaging.formation import check_formation
    >>> check_formation(None)
    WhiteNoiseFormation()
    """
    if formation is None:
        return WHITE_NOISE
    if not isinstance(formation, ImageFormation):
        raise TypeError(f"{name} must be an ImageFormation (for example "
                        f"WhiteNoiseFormation()) or None; got {type(formation).__name__}")
    return formation
