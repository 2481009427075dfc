"""How an image appears in a measurement: shifts into a patch, image formation.

:mod:`~mtdlearn.imaging.shifts` holds the shift operators ``C T_l Z`` of
eq. (6-7) and the shift distribution ``rho``; :mod:`~mtdlearn.imaging.formation`
the image formation of each measurement (the identity with white noise in
the paper's model), the seam through which the E-step's templates, the
M-step's adjoint, the model moments and the simulator all pass, with the
microscope's formation (:class:`~mtdlearn.imaging.formation.MicroscopeFormation`)
built from :mod:`~mtdlearn.imaging.ctf` (RELION's CTF) and
:mod:`~mtdlearn.imaging.noise` (noise spectra, whitening);
:mod:`~mtdlearn.imaging.binning` bins micrographs by Fourier cropping, with
their CTFs and noise spectra; :mod:`~mtdlearn.imaging.background` removes a
micrograph's slowly varying background (a carbon edge, uneven ice).
"""
