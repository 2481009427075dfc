"""The contrast transfer function (CTF) of a cryo-EM micrograph, in RELION's convention.

A transmission electron microscope records a micrograph through a linear,
shift-invariant filter: the CTF, the Fourier transform of the point-spread
function of the (weak phase object) image.  :class:`CTF` holds the
parameters RELION stores for a micrograph (``rlnDefocusU``, ``rlnDefocusV``,
``rlnDefocusAngle``, ``rlnVoltage``, ``rlnSphericalAberration``,
``rlnAmplitudeContrast``, ``rlnPhaseShift``, the pixel size and the
envelope's ``rlnCtfBfactor``) and evaluates the CTF at any spatial
frequency, or on the FFT grid of an array.

Formula (RELION ``src/ctf.h``, written with positive underfocus).  The
electron wavelength, relativistically corrected, for an accelerating
voltage ``V`` in volts is

    ``lambda = 12.2643247 / sqrt(V (1 + 0.978466e-6 V))`` Angstrom.

At a spatial frequency ``k`` (cycles per Angstrom) in direction
``theta = atan2(k_row, k_col)`` (measured from the column/``x`` axis
towards the row/``y`` axis) the defocus is

    ``df(theta) = (U + V) / 2 + (U - V) / 2 * cos(2 (theta - defocus_angle))``,

with ``U = defocus_u`` along ``defocus_angle`` and ``V = defocus_v``
perpendicular to it, and the phase is

    ``chi = pi lambda df k**2 - (pi / 2) Cs lambda**3 k**4 + phase_shift
    + atan(A / sqrt(1 - A**2))``,

``Cs`` in Angstrom (millimetres times ``1e7``), ``A`` the amplitude
contrast (``atan(A / sqrt(1 - A**2)) = asin(A)``).  The CTF is

    ``CTF(k) = sin(chi) * exp(-B k**2 / 4)``.

So ``CTF(0) = A`` (with no phase shift) and, for underfocus, the first lobe
rises from ``A`` towards 1 before the first zero.  RELION writes the same
function as ``-sin(chi')`` with its internally negated defocus
(``chi' = -chi``); ASPIRE's ``CTFFilter`` has the opposite overall sign
(``-A`` at ``k = 0``) and slightly different wavelength constants.
"""

import dataclasses
import math

import numpy as np

from .._validation import check_array_float, check_int, check_real

__all__ = ["CTF", "electron_wavelength", "phase_flip"]


def electron_wavelength(voltage):
    """Relativistic wavelength of electrons accelerated through ``voltage`` kV.

    Parameters
    ----------
    voltage : float
        Accelerating voltage, kV (> 0).

    Returns
    -------
    wavelength : float
        ``12.2643247 / sqrt(V (1 + 0.978466e-6 V))`` Angstrom, ``V`` in volts
        (RELION's constants).

    Examples
    --------
    >>> from mtdlearn.imaging.ctf import electron_wavelength
    >>> round(electron_wavelength(300.0), 7), round(electron_wavelength(200.0), 7)
    (0.0196876, 0.0250795)
    """
    volts = check_real(voltage, "voltage", minimum=0.0, strict=True) * 1e3
    return 12.2643247 / math.sqrt(volts * (1.0 + 0.978466e-6 * volts))


@dataclasses.dataclass(frozen=True)
class CTF:
    """The contrast transfer function of one micrograph (RELION's convention).

    An immutable value: it compares (``==``), hashes and copies by its
    parameters, so it can be an estimator's parameter.  Every numeric
    parameter is stored as a float; ``defocus_v=None`` is stored as
    ``defocus_u``.  Two CTFs are equal when their parameters are, not when
    their functions are (``defocus_angle`` 0 and 180 are different values
    of the same function).  The formula is the module's
    (:mod:`mtdlearn.imaging.ctf`); ``CTF(0) = A`` for no phase shift.

    Parameters
    ----------
    defocus_u : float
        Defocus along ``defocus_angle``, Angstrom, underfocus positive
        (``rlnDefocusU``; >= 0).
    defocus_v : float, default=None
        Defocus perpendicular to it, Angstrom (``rlnDefocusV``; >= 0).
        ``None``: ``defocus_u`` (no astigmatism).
    defocus_angle : float, default=0.0
        Angle of the ``U`` axis from the column (``x``) axis towards the row
        (``y``) axis, degrees (``rlnDefocusAngle``).
    voltage : float, default=300.0
        Accelerating voltage, kV (``rlnVoltage``; > 0).
    spherical_aberration : float, default=2.7
        ``Cs``, mm (``rlnSphericalAberration``; >= 0).
    amplitude_contrast : float, default=0.1
        ``A``, the fraction of amplitude contrast (``rlnAmplitudeContrast``;
        in [0, 1)).
    phase_shift : float, default=0.0
        Extra phase of a phase plate, degrees (``rlnPhaseShift``).
    pixel_size : float, default=1.0
        Angstrom per pixel of the grid :meth:`evaluate` uses (> 0).
    b_factor : float, default=0.0
        ``B`` of the envelope ``exp(-B k**2 / 4)``, square Angstrom
        (``rlnCtfBfactor``; >= 0).

    Attributes
    ----------
    wavelength : float
        The electron wavelength, Angstrom.

    Raises
    ------
    TypeError
        If a parameter is not a real number.
    ValueError
        If a parameter is out of its range (the message names it).

    Examples
    --------
    >>> from mtdlearn.imaging.ctf import CTF
    >>> ctf = CTF(defocus_u=15000.0, defocus_v=14000.0, defocus_angle=30.0,
    ...           pixel_size=1.5)
    >>> ctf
    CTF(defocus_u=15000.0, defocus_v=14000.0, defocus_angle=30.0, voltage=300.0,
        spherical_aberration=2.7, amplitude_contrast=0.1, phase_shift=0.0,
        pixel_size=1.5, b_factor=0.0)
    >>> round(float(ctf.evaluate((64, 64))[0, 0]), 12)  # CTF(0) = A
    0.1
    >>> ctf.evaluate((64, 64), rfft=True).shape
    (64, 33)
    >>> CTF(15000.0) == CTF(15000, defocus_v=15000.0)
    True
    """

    defocus_u: float
    defocus_v: float = None
    defocus_angle: float = 0.0
    voltage: float = 300.0
    spherical_aberration: float = 2.7
    amplitude_contrast: float = 0.1
    phase_shift: float = 0.0
    pixel_size: float = 1.0
    b_factor: float = 0.0

    def __post_init__(self):
        if self.defocus_v is None:
            object.__setattr__(self, "defocus_v", self.defocus_u)
        checks = {
            "defocus_u": dict(minimum=0.0),
            "defocus_v": dict(minimum=0.0),
            "defocus_angle": {},
            "voltage": dict(minimum=0.0, strict=True),
            "spherical_aberration": dict(minimum=0.0),
            "amplitude_contrast": dict(minimum=0.0, maximum=1.0, strict_max=True),
            "phase_shift": {},
            "pixel_size": dict(minimum=0.0, strict=True),
            "b_factor": dict(minimum=0.0),
        }
        for name, bounds in checks.items():
            object.__setattr__(self, name, check_real(getattr(self, name), name, **bounds))

    # ------------------------------------------------------------------
    @property
    def wavelength(self):
        """The electron wavelength, Angstrom (:func:`electron_wavelength`).

        Examples
        --------
        >>> from mtdlearn.imaging.ctf import CTF
        >>> round(CTF(15000.0, voltage=200.0).wavelength, 7)
        0.0250795
        """
        return electron_wavelength(self.voltage)

    def _coefficients(self):
        """``(pi lambda, (pi/2) Cs lambda**3, constant phase)`` of ``chi``."""
        lam = self.wavelength
        cs = self.spherical_aberration * 1e7
        amplitude = self.amplitude_contrast
        phase0 = (math.radians(self.phase_shift)
                  + math.atan(amplitude / math.sqrt(1.0 - amplitude * amplitude)))
        return math.pi * lam, 0.5 * math.pi * cs * lam ** 3, phase0

    def defocus_at(self, angle):
        """Defocus in direction ``angle``: ``df(theta)`` of the formula.

        Parameters
        ----------
        angle : float
            Direction in frequency space, degrees from the column (``x``)
            axis towards the row (``y``) axis.

        Returns
        -------
        defocus : float
            Angstrom, underfocus positive: ``defocus_u`` along
            ``defocus_angle``, ``defocus_v`` perpendicular to it.

        Examples
        --------
        >>> from mtdlearn.imaging.ctf import CTF
        >>> ctf = CTF(15000.0, 13000.0, defocus_angle=20.0)
        >>> ctf.defocus_at(20.0), ctf.defocus_at(110.0), ctf.defocus_at(65.0)
        (15000.0, 13000.0, 14000.0)
        """
        angle = check_real(angle, "angle")
        mean = 0.5 * (self.defocus_u + self.defocus_v)
        half = 0.5 * (self.defocus_u - self.defocus_v)
        cos2 = math.cos(2.0 * math.radians(angle - self.defocus_angle))
        return mean + half * cos2

    def evaluate_frequencies(self, k_row, k_col):
        """The CTF at spatial frequencies given in cycles per Angstrom.

        Parameters
        ----------
        k_row : array_like
            Frequency along the rows (``y``), cycles/Angstrom.
        k_col : array_like
            Frequency along the columns (``x``), cycles/Angstrom; broadcast
            with ``k_row``.

        Returns
        -------
        ctf : ndarray of float64
            ``sin(chi) * exp(-B k**2 / 4)`` at each frequency, of the
            broadcast shape (a numpy float for two scalars).

        Notes
        -----
        ``df(theta) k**2`` is computed without an angle:
        ``cos(2 (theta - a)) k**2 = (k_col**2 - k_row**2) cos(2a)
        + 2 k_row k_col sin(2a)``, which is smooth at ``k = 0``.

        Examples
        --------
        >>> from mtdlearn.imaging.ctf import CTF
        >>> ctf = CTF(10000.0, amplitude_contrast=0.07)
        >>> ctf.evaluate_frequencies([0.0, 0.0], [0.0, 0.01]).round(4)
        array([0.07  , 0.1315])
        """
        k_row = check_array_float(k_row, "k_row")
        k_col = check_array_float(k_col, "k_col")
        try:
            np.broadcast_shapes(k_row.shape, k_col.shape)
        except ValueError:
            raise ValueError(f"k_row and k_col must broadcast together, got shapes "
                             f"{k_row.shape} and {k_col.shape}") from None
        c1, c2, phase0 = self._coefficients()
        mean = 0.5 * (self.defocus_u + self.defocus_v)
        half = 0.5 * (self.defocus_u - self.defocus_v)
        alpha = 2.0 * math.radians(self.defocus_angle)
        rr, cc = k_row * k_row, k_col * k_col
        k2 = rr + cc
        # chi = k2 (pi lam mean - (pi/2) Cs lam^3 k2) + pi lam half (astigmatic term) + chi0,
        # in place: a 4096 x 4096 grid holds three full arrays at a time
        chi = k2 * (-c2)
        chi += c1 * mean
        chi *= k2
        if half != 0.0:
            astig = (cc - rr) * (c1 * half * math.cos(alpha))
            astig += (k_row * (2.0 * c1 * half * math.sin(alpha))) * k_col
            chi += astig
            del astig
        chi += phase0
        ctf = np.sin(chi, out=chi) if isinstance(chi, np.ndarray) else np.sin(chi)
        if self.b_factor != 0.0:
            k2 *= -0.25 * self.b_factor
            ctf *= np.exp(k2, out=k2) if isinstance(k2, np.ndarray) else np.exp(k2)
        return ctf

    def _grid(self, shape, rfft):
        """Row and column frequencies (cycles/Angstrom) of the FFT grid of ``shape``."""
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 2:
            raise ValueError(f"shape must be a pair (n0, n1) of positive integers, "
                             f"got {shape!r}")
        n0 = check_int(shape[0], "shape[0]", minimum=1)
        n1 = check_int(shape[1], "shape[1]", minimum=1)
        k_row = np.fft.fftfreq(n0) / self.pixel_size
        k_col = (np.fft.rfftfreq(n1) if rfft else np.fft.fftfreq(n1)) / self.pixel_size
        return k_row[:, None], k_col[None, :]

    def evaluate(self, shape, *, rfft=False):
        """The CTF on the FFT grid of an array of ``shape`` pixels.

        Parameters
        ----------
        shape : tuple of int
            ``(n0, n1)``: rows and columns of the array, whose pixels are
            ``pixel_size`` Angstrom.
        rfft : bool, default=False
            Return only the columns of ``np.fft.rfft2``'s layout.

        Returns
        -------
        ctf : ndarray of shape (n0, n1) or (n0, n1 // 2 + 1)
            The CTF at the frequencies ``np.fft.fftfreq(n0)`` (rows) and
            ``np.fft.fftfreq(n1)`` (columns; ``np.fft.rfftfreq(n1)`` with
            ``rfft=True``), divided by ``pixel_size``: the order of
            ``np.fft.fft2(image)``, zero frequency at ``[0, 0]``.

        Notes
        -----
        In an even dimension the Nyquist line (row ``n0 // 2``, column
        ``n1 // 2``) holds the two frequencies ``+1/2`` and ``-1/2`` cycles
        per pixel, where an astigmatic CTF differs (``CTF(k_row, k_col) !=
        CTF(k_row, -k_col)``): it gets their mean (all four at a corner).
        The grid is then real-symmetric, ``CTF[-i, -j] = CTF[i, j]`` (the
        transform of a real filter), and the ``rfft`` layout holds exactly
        the first ``n1 // 2 + 1`` columns of the full one, although
        ``np.fft.fftfreq`` labels the Nyquist column ``-1/2`` and
        ``np.fft.rfftfreq`` ``+1/2``.  Without astigmatism both are equal
        and nothing changes.

        Examples
        --------
        >>> import numpy as np
        >>> from mtdlearn.imaging.ctf import CTF
        >>> ctf = CTF(20000.0, pixel_size=2.0)
        >>> image = np.zeros((32, 32)); image[16, 16] = 1.0
        >>> filtered = np.fft.irfft2(np.fft.rfft2(image) * ctf.evaluate((32, 32), rfft=True),
        ...                          s=(32, 32))
        >>> filtered.shape, bool(np.allclose(ctf.evaluate((32, 32))[:, :17],
        ...                                  ctf.evaluate((32, 32), rfft=True)))
        ((32, 32), True)
        """
        k_row, k_col = self._grid(shape, bool(rfft))
        ctf = self.evaluate_frequencies(k_row, k_col)
        if self.defocus_u == self.defocus_v:
            return ctf  # even in each axis: the Nyquist lines need nothing
        n0, n1 = shape
        if n1 % 2 == 0:  # the Nyquist column holds both k_col = +-1/2
            j = n1 // 2
            ctf[:, j] = 0.5 * (ctf[:, j] + self.evaluate_frequencies(k_row[:, 0], -k_col[0, j]))
        if n0 % 2 == 0:  # the Nyquist row holds both k_row = +-1/2
            i = n0 // 2
            other = self.evaluate_frequencies(-k_row[i, 0], k_col[0])
            if n1 % 2 == 0:  # the corner holds all four
                j = n1 // 2
                other[j] = 0.5 * (other[j] + self.evaluate_frequencies(-k_row[i, 0],
                                                                       -k_col[0, j]))
            ctf[i] = 0.5 * (ctf[i] + other)
        return ctf

    def phase_flip_filter(self, shape, rfft=False):
        """The sign of the CTF on the FFT grid: the phase-flipping filter.

        Parameters
        ----------
        shape : tuple of int
            ``(n0, n1)``, as for :meth:`evaluate`.
        rfft : bool, default=False
            ``np.fft.rfft2``'s layout.

        Returns
        -------
        flip : ndarray of float64
            ``+1`` where the CTF is >= 0 (its zeros included), ``-1`` where
            it is negative.  Multiplying an image's transform by it corrects
            the phases and leaves the amplitudes.

        Examples
        --------
        >>> from mtdlearn.imaging.ctf import CTF
        >>> flip = CTF(20000.0, pixel_size=2.0).phase_flip_filter((16, 16))
        >>> sorted(set(flip.ravel().tolist()))
        [-1.0, 1.0]
        """
        ctf = self.evaluate(shape, rfft=rfft)
        return np.where(ctf < 0.0, -1.0, 1.0)

    def first_zero(self, angle=None):
        """Spatial frequency of the CTF's first zero (``k > 0``) along a direction.

        Solved in closed form: ``chi`` is a quadratic in ``x = k**2``,
        ``chi(x) = chi0 + a x - b x**2`` (``a = pi lambda df``, ``b = (pi/2)
        Cs lambda**3``), and the first zero is the smallest ``x > 0`` at
        which it reaches a multiple of ``pi``.  With no phase shift this is
        ``chi = pi``.

        Parameters
        ----------
        angle : float, default=None
            Direction, degrees from the column (``x``) axis towards the row
            (``y``) axis.  ``None``: the mean defocus ``(U + V) / 2``.

        Returns
        -------
        k : float
            The frequency, cycles/Angstrom (may lie beyond Nyquist).

        Raises
        ------
        ValueError
            If the CTF has no zero at ``k > 0`` in that direction
            (``chi`` constant: no defocus and ``Cs = 0``).

        Examples
        --------
        >>> from mtdlearn.imaging.ctf import CTF
        >>> ctf = CTF(15000.0, amplitude_contrast=0.1)
        >>> k = ctf.first_zero()
        >>> round(1.0 / k, 2)  # its period, Angstrom
        17.46
        >>> bool(ctf.evaluate_frequencies(0.0, 0.999 * k) > 0 > ctf.evaluate_frequencies(0.0, 1.001 * k))
        True
        """
        if angle is None:
            defocus = 0.5 * (self.defocus_u + self.defocus_v)
        else:
            defocus = self.defocus_at(angle)
        c1, b, chi0 = self._coefficients()
        a = c1 * defocus
        turns = chi0 / math.pi
        rises = a > 0.0 and (b == 0.0 or chi0 + a * a / (4.0 * b) >= (math.floor(turns) + 1)
                             * math.pi)
        if rises:  # chi climbs to the next multiple of pi: the smaller root
            d = (math.floor(turns) + 1) * math.pi - chi0
            disc = max(a * a - 4.0 * b * d, 0.0)
            x = 2.0 * d / (a + math.sqrt(disc))
        elif b > 0.0:  # chi falls (after its maximum) to a multiple of pi: the larger root
            target = math.floor(turns) if a > 0.0 else math.ceil(turns) - 1
            d = target * math.pi - chi0
            x = (a + math.sqrt(a * a - 4.0 * b * d)) / (2.0 * b)
        else:
            raise ValueError(f"the CTF has no zero at k > 0: its phase is constant (defocus "
                             f"{defocus} A along this direction, spherical_aberration "
                             f"{self.spherical_aberration} mm)")
        return math.sqrt(x)

    def delocalization(self, k_max=None):
        """How far the CTF spreads a point, in pixels: ``lambda max(U, V) k_max / pixel_size``.

        A frequency ``k`` of the image is shifted by ``|d chi / dk| / (2 pi) =
        lambda df k - Cs lambda**3 k**3`` Angstrom; the defocus term bounds it
        (the ``Cs`` term reduces the shift of an underfocused image until
        ``Cs lambda**2 k**2 > 2 df``).  A filtered copy of an ``L x L``
        image therefore spreads about this many pixels beyond each side: the
        margin of the template box of a filtered image formation.

        Parameters
        ----------
        k_max : float, default=None
            Highest frequency kept, cycles/Angstrom (> 0).  ``None``: Nyquist,
            ``1 / (2 pixel_size)``.

        Returns
        -------
        delocalization : float
            Pixels.

        Examples
        --------
        >>> from mtdlearn.imaging.ctf import CTF
        >>> ctf = CTF(20000.0, 15000.0, pixel_size=1.5)
        >>> round(ctf.delocalization(), 2)  # at Nyquist, 1/3 cycles per Angstrom
        87.5
        >>> round(ctf.delocalization(k_max=0.1), 2)
        26.25
        """
        if k_max is None:
            k_max = 0.5 / self.pixel_size
        k_max = check_real(k_max, "k_max", minimum=0.0, strict=True)
        return self.wavelength * max(self.defocus_u, self.defocus_v) * k_max / self.pixel_size

    def with_pixel_size(self, pixel_size):
        """A copy with another pixel size (e.g. after binning).

        Parameters
        ----------
        pixel_size : float
            Angstrom per pixel (> 0).

        Returns
        -------
        ctf : CTF
            The same microscope parameters on another grid.

        Examples
        --------
        >>> from mtdlearn.imaging.ctf import CTF
        >>> CTF(15000.0).with_pixel_size(2.0).pixel_size
        2.0
        """
        return dataclasses.replace(self, pixel_size=pixel_size)


def phase_flip(measurement, ctf):
    """Phase-flip a micrograph by its CTF: the cheap correction users apply before a white-noise fit.

    The micrograph's transform is multiplied by the sign of the CTF
    (:meth:`CTF.phase_flip_filter`): the phases the CTF inverted are set
    right, the amplitudes (and the CTF's zeros) are left as they are.  A
    white-noise fit of the flipped micrograph then recovers the image seen
    through ``|CTF|``, not the image itself.

    Parameters
    ----------
    measurement : array-like of shape (N1, N2)
        The micrograph (never modified).
    ctf : CTF
        Its contrast transfer function.

    Returns
    -------
    flipped : ndarray of shape (N1, N2)
        A new float64 array.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.imaging.ctf import CTF, phase_flip
    >>> X = np.random.default_rng(0).standard_normal((64, 64))
    >>> flipped = phase_flip(X, CTF(15000.0, pixel_size=3.0))
    >>> flipped.shape, bool(np.isclose(np.linalg.norm(flipped), np.linalg.norm(X)))
    ((64, 64), True)
    """
    M = check_array_float(measurement, "measurement", ndim=2)
    if not isinstance(ctf, CTF):
        raise TypeError(f"ctf must be a CTF, got {type(ctf).__name__}")
    return np.fft.irfft2(np.fft.rfft2(M) * ctf.phase_flip_filter(M.shape, rfft=True), s=M.shape)
