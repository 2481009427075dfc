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

__all__ = ["ImageFormation", "WhiteNoiseFormation", "check_formation"]


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
