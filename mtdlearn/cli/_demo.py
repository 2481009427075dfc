"""``mtdlearn demo``: a simulated RELION project through the whole user's path.

The default demo writes a small RELION project (:func:`~mtdlearn.data.project.make_relion_project`:
MRC micrographs of a particle at L = 21, a defocus series, colored noise,
``micrographs_ctf.star``), runs ``mtdlearn fit`` on the STAR file (binned by
2, gold-standard half sets), and prints the error against the truth and the
half-set resolution in Angstrom beside the resolution where the combined
estimate's FRC against the truth falls below 0.5; the fit's
``summary.png`` shows a micrograph, the truth, the estimate and both FRC
curves.  ``mtdlearn demo --paper`` runs the paper's 5 x 5 demo.
"""

import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._files import _bytes_writer, _check_outputs, _png_bytes, _pyplot, _write_files

#: The default demo: project, binning, particle diameter (Angstrom).
PROJECT = dict(n_micrographs=4, size=512, image_size=21, pixel_size=2.0, snr=1.0,
               density=0.08, noise_ratio=2.0)
#: The default seed of ``mtdlearn demo`` (``--seed``); see docs/results.rst,
#: "The demo", for the other seeds.
SEED = 2
BIN = 2.0


def _truth_figures(project, factor):
    """The callback of :func:`~mtdlearn.cli._star.fit_star` that compares with the truth."""
    from scipy import ndimage

    from ..imaging.binning import fourier_crop
    from ..metrics import align_rotation_translation, relative_error
    from ..resolution import fourier_ring_correlation, resolution, resolution_ring

    fine = project.basis.evaluate(project.coef)

    def truth(basis, coef, pixel_size):
        L = basis.image_size
        side = int(round(L * factor))
        c = (fine.shape[0] - 1) / 2
        offset = int(round((L - 1) / 2 * factor - c))
        box = np.zeros((side, side))
        box[offset:offset + fine.shape[0], offset:offset + fine.shape[1]] = fine
        image = fourier_crop(box, factor)[:L, :L]
        ref = basis.expand(image)
        error = relative_error(ref, coef, basis, align="rotation+translation")
        angle, shift = align_rotation_translation(ref, coef, basis)[:2]
        rotated = basis.evaluate(basis.rotate(coef, angle))
        aligned = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(rotated), shift)).real
        frc = fourier_ring_correlation(image, aligned, pixel_size=pixel_size)
        report = {"error": error, "frc": {"correlation": [float(x) for x in frc.correlation],
                                          "frequencies_per_angstrom": frc.frequencies.tolist()},
                  "resolution_at_0.5_angstrom": resolution(frc, 0.5),
                  "resolution_ring_at_0.5": resolution_ring(frc, 0.5)}
        return {"image": image, "aligned": aligned, "frc": frc, "report": report}

    return truth


def demo_relion(args, build_parser):
    """``mtdlearn demo``: simulate a RELION project, fit it from its STAR file, report."""
    from ..data.project import make_relion_project
    from ._star import fit_star

    t_start = time.perf_counter()
    out = Path(args.output_dir)
    seed = SEED if args.seed is None else args.seed
    settings = dict(PROJECT, random_state=seed)
    if args.size is not None:
        settings["size"] = args.size
    if args.snr is not None:
        settings["snr"] = args.snr
    fit_dir = out / "fit"
    star_rel = Path("CtfFind/job003/micrographs_ctf.star")
    if not args.overwrite:
        _check_outputs([out / star_rel, fit_dir / "fit.json"], False)
    print(f"mtdlearn demo: a simulated RELION project in {out}: {settings['n_micrographs']} "
          f"micrographs of {settings['size']}^2 at {settings['pixel_size']} A/px, a particle "
          f"in a {settings['image_size']}-pixel box, defocus 1.0-2.5 um, colored noise, "
          f"SNR {settings['snr']}")
    t0 = time.perf_counter()
    project = make_relion_project(out, overwrite=args.overwrite, **settings)
    print(f"  simulated     {project.truth.n_copies} copies; wrote "
          f"{len(project.micrographs)} MRC files and {project.star} "
          f"({time.perf_counter() - t0:.2f} s)")
    argv = ["fit", str(project.star), "--particle-diameter", f"{project.particle_diameter:g}",
            "--bin", f"{BIN:g}", "--output-dir", str(fit_dir), "--seed", str(seed),
            "--n-jobs", str(args.n_jobs), "--tol", args.tol, "--max-iter",
            str(300 if args.max_iter is None else args.max_iter)]
    if args.overwrite:
        argv.append("--overwrite")
    if args.verbose:
        argv.append("--verbose")
    print("  running       mtdlearn " + " ".join(argv))
    fit_args = build_parser().parse_args(argv)
    report = fit_star(fit_args, truth=_truth_figures(project, BIN))
    half = report["half_sets"]
    truth = report["truth"]
    print(f"  error         {truth['error']:.4f} against the truth (after rotation and "
          "translation, in the fit's box)")
    print(f"  resolution    {half['resolution_angstrom']:.2f} A from the half sets (FRC "
          f"0.143, ring {half['resolution_ring']:.2f}); {truth['resolution_at_0.5_angstrom']:.2f}"
          f" A where the estimate's FRC against the truth falls below 0.5 (ring "
          f"{truth['resolution_ring_at_0.5']:.2f})")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  total         {time.perf_counter() - t_start:.1f} s, peak memory {rss:.0f} MB "
          f"(resident); figure {fit_dir / 'summary.png'}")


def demo_paper(args):
    """``mtdlearn demo --paper``: the paper's 5x5 settings, both estimators."""

    from ..autocorrelation.estimator import AutocorrelationEstimator
    from ..basis.fourier_bessel import FourierBesselBasis
    from ..data.simulate import make_measurement, make_target
    from ..em.estimator import ApproxEMEstimator
    from ..initializers import FixedInitializer
    from ..metrics import relative_error
    from ..plotting import plot_images

    seed = 0 if args.seed is None else args.seed
    max_iter = 100 if args.max_iter is None else args.max_iter
    size = 1000 if args.size is None else args.size
    snr = 5.0 if args.snr is None else args.snr
    figure = "out/demo.png" if args.figure is None else args.figure

    if figure:
        _check_outputs([figure], args.overwrite)
    print(f"mtdlearn demo: the paper's settings (L=5, 10 coefficients, density 0.04, "
          f"SNR {snr}), N={size}, K={args.rotations}")
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=seed)
    t0 = time.perf_counter()
    X, truth = make_measurement(coef, basis, size, density=0.04, snr=snr,
                                random_state=seed)
    t_sim = time.perf_counter() - t0
    print(f"  simulated     {X.shape[0]}x{X.shape[1]} pixels, {truth.n_copies} copies, "
          f"noise variance {truth.noise_variance:.4f} ({t_sim:.2f} s)")
    t0 = time.perf_counter()
    ac = AutocorrelationEstimator(5, basis=basis, noise_variance=truth.noise_variance,
                                  n_init=args.n_init, random_state=seed,
                                  n_jobs=args.n_jobs).fit(X)
    t_ac = time.perf_counter() - t0
    err_ac = relative_error(coef, ac.coef_, basis)
    print(f"  autocorrelation analysis  error {err_ac:.4f}  ({t_ac:.2f} s)")
    t0 = time.perf_counter()
    em = ApproxEMEstimator(5, basis=basis, rotations=args.rotations,
                           noise_variance=truth.noise_variance,
                           initializer=FixedInitializer(ac.coef_, ac.shift_probabilities_),
                           max_iter=max_iter, random_state=seed,
                           n_jobs=args.n_jobs, verbose=args.verbose)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        em.fit(X)
    for w in caught:
        print(f"  warning: {w.message}", file=sys.stderr)
    t_em = time.perf_counter() - t0
    err_em = relative_error(coef, em.coef_, basis)
    print(f"  approximate EM            error {err_em:.4f}  ({t_em:.2f} s, {em.n_iter_} "
          f"iterations, initialized by autocorrelation analysis)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak memory   {rss:.0f} MB (resident)")
    if figure:
        plt = _pyplot()
        if plt is None:
            print("  matplotlib is not installed: no figure written", file=sys.stderr)
            return
        fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
        plot_images(coef, [ac.coef_, em.coef_], basis,
                    labels=["autocorrelation", "approximate EM"], axes=axes)
        _write_files({Path(figure): _bytes_writer(_png_bytes(fig, plt))}, args.overwrite)
        print(f"  figure        {figure}")


