"""A simulated RELION project: MRC micrographs and ``micrographs_ctf.star``.

:func:`make_relion_project` writes what a user brings from RELION after
motion correction and CTF estimation, from a known particle: the
micrographs (``MotionCorr/job002/Micrographs/mic_000.mrc``, ..., float32
with their voxel size) of :func:`~mtdlearn.make_particle`'s copies, each
filtered by its own CTF (a defocus series) in colored noise, and
``CtfFind/job003/micrographs_ctf.star`` (RELION 3.1 columns, names
relative to the project directory, :func:`~mtdlearn.data.star.write_micrograph_ctfs`).
Needs the optional ``mrcfile`` and ``starfile`` packages.
"""

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..basis.fourier_bessel import FourierBesselBasis
from ..imaging.ctf import CTF
from ..imaging.noise import make_noise_psd
from .particles import _disk_diameter, make_particle
from .simulate import make_measurement
from .star import write_micrograph_ctfs

__all__ = ["RelionProject", "make_relion_project"]

#: Where the files go, relative to the project directory (RELION's job layout).
MICROGRAPH_DIR = "MotionCorr/job002/Micrographs"
STAR_PATH = "CtfFind/job003/micrographs_ctf.star"


class RelionProject(NamedTuple):
    """What :func:`make_relion_project` wrote, and the truth.

    Parameters
    ----------
    star : Path
        ``micrographs_ctf.star``.
    micrographs : list of Path
        The MRC files.
    ctfs : list of CTF
        Each micrograph's CTF.
    basis : FourierBesselBasis
        The basis of the particle (``L x L`` at ``pixel_size``).
    coef : ndarray
        The particle's coefficients.
    truth : MeasurementTruth
        The simulation's truth (positions, angles, noise variance, ...).
    pixel_size : float
        Angstrom per pixel of the micrographs.
    particle_diameter : float
        The particle's diameter, Angstrom: the ball that holds its atoms'
        centres (:func:`~mtdlearn.make_particle`'s ``0.65 L`` pixels) and
        two standard deviations of an atom (1 pixel) on each side.

    Examples
    --------
    >>> import tempfile
    >>> from mtdlearn.data.project import make_relion_project
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     project = make_relion_project(tmp, n_micrographs=2, size=96, random_state=0)
    ...     print(project.star.name, len(project.micrographs), project.pixel_size)
    micrographs_ctf.star 2 2.0
    """

    star: Path
    micrographs: list
    ctfs: list
    basis: FourierBesselBasis
    coef: np.ndarray
    truth: object
    pixel_size: float
    particle_diameter: float


def make_relion_project(directory, *, n_micrographs=4, size=512, image_size=21,
                        pixel_size=2.0, snr=1.0, density=0.08, defocus=(10000.0, 25000.0),
                        noise_ratio=4.0, random_state=None, overwrite=False):
    """Write a simulated RELION project of CTF-filtered micrographs in colored noise.

    Parameters
    ----------
    directory : str or Path
        The project directory (created if missing).
    n_micrographs : int, default=4
        How many micrographs.
    size : int, default=512
        Each micrograph's side, pixels.
    image_size : int, default=21
        The particle's box ``L`` (odd); the particle fills a ball of
        ``0.65 L`` pixels (:func:`~mtdlearn.make_particle`'s default).
    pixel_size : float, default=2.0
        Angstrom per pixel.
    snr : float, default=1.0
        The CTF-free particle's power over the noise's mean power per
        pixel (:func:`~mtdlearn.make_measurement`).
    density : float, default=0.08
        Fraction of the micrographs' area the copies' boxes cover.
    defocus : (float, float), default=(10000.0, 25000.0)
        The defocus series, Angstrom: evenly from the first to the second.
    noise_ratio : float, default=4.0
        Low-frequency over high-frequency noise power
        (:func:`~mtdlearn.imaging.noise.make_noise_psd`).
    random_state : int, Generator, RandomState or None, default=None
        Seeds the particle and the micrographs.
    overwrite : bool, default=False
        Replace existing files; otherwise an existing file is an error
        (raised before anything is written).

    Returns
    -------
    project : RelionProject
        The files written and the truth.

    Raises
    ------
    FileExistsError
        If a file exists and ``overwrite`` is false.

    Examples
    --------
    >>> import tempfile
    >>> from mtdlearn.data.micrograph_star import read_micrograph_star
    >>> from mtdlearn.data.project import make_relion_project
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     project = make_relion_project(tmp, n_micrographs=2, size=128, random_state=0)
    ...     star = read_micrograph_star(project.star, lazy=False)
    ...     print(star.names, star.pixel_size, round(star.ctfs[1].defocus_u))
    ['MotionCorr/job002/Micrographs/mic_000.mrc', 'MotionCorr/job002/Micrographs/mic_001.mrc'] 2.0 25000
    """
    import mrcfile

    directory = Path(directory)
    names = [f"{MICROGRAPH_DIR}/mic_{i:03d}.mrc" for i in range(int(n_micrographs))]
    paths = [directory / name for name in names]
    star = directory / STAR_PATH
    if not overwrite:
        existing = [str(p) for p in paths + [star] if p.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} exists; pass overwrite=True to replace it")
    basis = FourierBesselBasis(image_size)
    rng = np.random.default_rng(random_state)
    coef = make_particle(basis, random_state=rng)
    ctfs = [CTF(float(df), pixel_size=pixel_size)
            for df in np.linspace(defocus[0], defocus[1], int(n_micrographs))]
    X, truth = make_measurement(coef, basis, size, density=density, snr=snr,
                                n_measurements=int(n_micrographs), random_state=rng,
                                ctf=ctfs, noise_psd=make_noise_psd(noise_ratio))
    for path, micrograph in zip(paths, X):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.asarray(micrograph, dtype=np.float32))
            mrc.voxel_size = pixel_size
            # mrcfile stamps the time of creation here: the same seed, the same bytes
            mrc.header.label[0] = "Created by mtdlearn.make_relion_project"
        tmp.replace(path)
    star.parent.mkdir(parents=True, exist_ok=True)
    write_micrograph_ctfs(star, names, ctfs, overwrite=overwrite)
    # the ball of the atoms' centres, and two standard deviations of an atom each side
    diameter = (0.65 * min(basis.image_size, _disk_diameter(basis)) + 4.0) * pixel_size
    return RelionProject(star=star, micrographs=paths, ctfs=ctfs, basis=basis, coef=coef,
                         truth=truth, pixel_size=float(pixel_size),
                         particle_diameter=float(diameter))
