"""The RELION user's path: ``mtdlearn fit micrographs_ctf.star`` and ``predict`` on it.

A micrograph STAR file (RELION 3.1+, with its optics table) gives the
micrographs, their CTFs and the pixel size
(:func:`~mtdlearn.data.micrograph_star.read_micrograph_star`).  Sizes are
in Angstrom: ``--particle-diameter`` sets the box ``L`` (the smallest odd
side that holds the particle and :data:`CTF_MARGIN` pixels, the room the
CTF's spread needs), ``--pixel-size`` or ``--bin`` bins the micrographs by
Fourier cropping (:mod:`mtdlearn.imaging.binning`) with the CTFs' pixel
size adjusted (the noise spectrum is estimated from the binned
micrographs).  By default the fit is gold-standard
(:func:`~mtdlearn.half_sets.fit_half_sets`): two halves of the micrographs
fitted independently, their Fourier ring correlation and the resolution
at 0.143 in Angstrom.  Outputs: ``estimate.mrc`` (and ``half1.mrc``,
``half2.mrc``) with the voxel size, ``fit.json`` (every parameter and
figure; ``predict --model`` reads it), ``summary.png`` and one STAR file
of picks per micrograph in the original micrographs' pixels.
"""

import dataclasses
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._cluster import _dask_client
from ._model import model_dict
from ._files import (_bytes_writer, _check_outputs, _CLIError, _png_bytes, _pyplot,
                     _text_writer, _write_files)

#: Pixels added to the particle's diameter for the box: 2 per side, measured
#: (docs/results.rst, "Micrographs from a microscope").
CTF_MARGIN = 4


def is_star(inputs):
    """Whether the command's inputs are one micrograph STAR file."""
    return len(inputs) == 1 and str(inputs[0]).lower().endswith(".star")


def star_only(args, options, flags=()):
    """Options that only a STAR input takes are an error on other inputs."""
    for name in list(options) + list(flags):
        value = getattr(args, name, None)
        if (value is not None) if name in options else bool(value):
            option = "--" + name.replace("_", "-")
            if value is False:
                option = "--no-" + name.replace("_", "-")
            raise _CLIError(f"{option} applies to a micrograph STAR file input "
                            "(micrographs_ctf.star) only")


def box_for(diameter_px, margin):
    """The smallest odd box side holding ``diameter_px`` pixels and ``margin`` more."""
    side = int(math.ceil(diameter_px + margin - 1e-9))
    return side if side % 2 else side + 1


def _bin_factor(args, pixel_size):
    """The binning factor from ``--bin`` or ``--pixel-size`` (1 without them)."""
    if args.bin is not None and args.pixel_size is not None:
        raise _CLIError("give --bin or --pixel-size, not both")
    if args.bin is not None:
        if args.bin < 1:
            raise _CLIError(f"--bin must be >= 1 (binning only shrinks), got {args.bin}")
        return float(args.bin)
    if args.pixel_size is not None:
        if pixel_size is None:
            raise _CLIError("--pixel-size needs the micrographs' pixel size, which the STAR "
                            "file does not give (no data_optics pixel size)")
        if args.pixel_size < pixel_size:
            raise _CLIError(f"--pixel-size {args.pixel_size} A is finer than the micrographs' "
                            f"{pixel_size} A; binning only makes pixels larger")
        return float(args.pixel_size) / pixel_size
    return 1.0


class StarData:
    """The micrographs of a STAR file, binned, with their CTFs (binned too)."""

    def __init__(self, args, lazy):
        from ..data.micrograph_star import read_micrograph_star
        from ..imaging.binning import bin_ctf, binned_shape, effective_factor, fourier_crop

        star = read_micrograph_star(args.inputs[0], project_dir=args.project_dir,
                                    ctf=not args.no_ctf, lazy=lazy)
        self.star = star
        self.names = list(star.names)
        self.original_pixel_size = star.pixel_size
        self.factor = _bin_factor(args, star.pixel_size)
        if self.factor == 1.0:
            self.X = list(star.micrographs)
            self.scales = [(1.0, 1.0)] * len(self.X)
            self.ctfs = star.ctfs
            self.pixel_size = star.pixel_size
            return
        from ..data.io import read_measurement

        self.X, self.scales, ctfs = [], [], []
        for i, (path, micrograph) in enumerate(zip(star.paths, star.micrographs)):
            source = micrograph if lazy else read_measurement(path)
            shape = tuple(source.shape[-2:])
            new = binned_shape(shape, self.factor)
            self.scales.append((shape[0] / new[0], shape[1] / new[1]))
            self.X.append(fourier_crop(source, self.factor))
            if star.ctfs is not None:
                ctfs.append(bin_ctf(star.ctfs[i], effective_factor(shape, self.factor)))
        self.ctfs = ctfs if star.ctfs is not None else None
        self.pixel_size = (None if star.pixel_size is None
                           else star.pixel_size * effective_factor(shape, self.factor))


def subtract_backgrounds(micrographs, image_size, window):
    """Each micrograph minus its background (``imaging.background``); Dask stays lazy."""
    from ..imaging.background import subtract_background

    out = []
    for x in micrographs:
        if isinstance(x, (str, Path)):      # unbinned and not lazy: the file's path
            from ..data.io import read_measurement

            x = np.asarray(read_measurement(x))
        if isinstance(x, np.ndarray):
            out.append(subtract_background(x, image_size, window=window))
        else:                           # a Dask array: one block per micrograph
            dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
            out.append(x.rechunk(x.shape).map_blocks(subtract_background, image_size,
                                                     window=window, dtype=dtype))
    return out


def box_and_diameter(args, pixel_size):
    """``(L, particle_diameter in pixels or None)`` from the arguments."""
    if args.particle_diameter is None:
        if args.image_size is None:
            raise _CLIError("a STAR input needs --particle-diameter (Angstrom) or "
                            "--image-size (pixels of the fitted micrographs)")
        return args.image_size, None
    if pixel_size is None:
        raise _CLIError("--particle-diameter is in Angstrom and the STAR file gives no "
                        "pixel size; give --image-size in pixels instead")
    diameter = args.particle_diameter / pixel_size
    L = args.image_size if args.image_size is not None else box_for(diameter, CTF_MARGIN)
    if diameter > L:
        raise _CLIError(f"--particle-diameter {args.particle_diameter} A is {diameter:.1f} "
                        f"pixels, more than the box --image-size {L}")
    return L, diameter


def _estimator(args, L, diameter, ctfs, noise):
    from ..em.estimator import ApproxEMEstimator

    init = None
    if args.init == "autocorrelation":
        from ..autocorrelation.estimator import AutocorrelationInitializer

        init = AutocorrelationInitializer(n_jobs=args.n_jobs)
    elif args.init == "random":
        from ..initializers import RandomInitializer

        init = RandomInitializer()
    return ApproxEMEstimator(L, particle_diameter=diameter, rotations=args.rotations,
                             initializer=init, n_init=args.n_init, max_iter=args.max_iter,
                             tol=args.tol, ctf=ctfs, noise=noise,
                             n_components=args.n_components, n_jobs=args.n_jobs,
                             random_state=args.seed, verbose=1 if args.verbose else 0)


def _defocus_groups(args, data, noise):
    """The estimator's ``ctf`` and ``noise``: the micrographs', or their defocus groups'."""
    G = args.defocus_groups
    if G is None:
        return data.ctfs, noise
    from ..imaging.groups import defocus_groups
    from ..imaging.noise import estimate_noise_psd

    if data.ctfs is None:
        raise _CLIError("--defocus-groups groups the micrographs' CTFs: drop --no-ctf")
    if G > len(data.X):
        raise _CLIError(f"--defocus-groups must be at most the number of micrographs "
                        f"({len(data.X)}), got {G}")
    if noise in ("auto", "residual"):
        raise _CLIError("--defocus-groups takes --noise colored or white (a group shares "
                        "one noise spectrum)")
    try:
        psds = ([estimate_noise_psd(np.asarray(x)) for x in data.X] if noise == "colored"
                else None)
    except ValueError as exc:
        raise _CLIError(f"--defocus-groups with --noise colored: {exc}") from None
    _, ctfs, group_psds = defocus_groups(data.ctfs, G, psds)
    return ctfs, (noise if psds is None else group_psds)


def _mrc_bytes(image, voxel_size):
    """An MRC file of ``image`` (float32) with its voxel size, as bytes."""
    import tempfile

    try:
        import mrcfile
    except ImportError:
        raise _CLIError("writing .mrc files needs the 'mrcfile' package: pip install "
                        "'mtdlearn[mrc]'") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.mrc"
        with mrcfile.new(path) as mrc:
            mrc.set_data(np.asarray(image, dtype=np.float32))
            mrc.voxel_size = 1.0 if voxel_size is None else float(voxel_size)
        return path.read_bytes()


def _frc_dict(frc):
    return {"frequencies_per_angstrom": frc.frequencies.tolist(),
            "correlation": [None if not np.isfinite(c) else float(c) for c in frc.correlation],
            "n_pixels": frc.n_pixels.tolist(), "pixel_size": frc.pixel_size}


def summary_figure(micrograph, images, labels, frcs, pixel_size, title):
    """PNG bytes: a micrograph, images, and FRC curves ``(label, frc, threshold)``."""
    plt = _pyplot()
    if plt is None:
        return None
    n = 1 + len(images) + (1 if frcs else 0)
    fig, axes = plt.subplots(1, n, figsize=(3.1 * n, 3.3))
    axes = np.atleast_1d(axes)
    m = np.asarray(micrograph, dtype=np.float64)
    side = min(m.shape[0], m.shape[1], 256)
    axes[0].imshow(m[:side, :side], cmap="gray")
    axes[0].set_title(f"micrograph ({side}x{side} px of {m.shape[0]}x{m.shape[1]})",
                      fontsize=8)
    for ax, image, label in zip(axes[1:], images, labels):
        ax.imshow(image, cmap="gray")
        ax.set_title(label, fontsize=8)
    for ax in axes[:1 + len(images)]:
        ax.set_xticks([])
        ax.set_yticks([])
    if frcs:
        ax = axes[-1]
        for label, frc, threshold in frcs:
            line, = ax.plot(frc.frequencies, frc.correlation, marker="o", ms=3, label=label)
            ax.axhline(threshold, color=line.get_color(), lw=0.8, ls="--")
        ax.set_xlabel("spatial frequency (1/A)" if pixel_size else "frequency (1/px)",
                      fontsize=8)
        ax.set_ylabel("FRC", fontsize=8)
        ax.set_ylim(-0.2, 1.05)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    return _png_bytes(fig, plt)


def fit_star(args, truth=None):
    """``mtdlearn fit micrographs_ctf.star``: fit, write every output, return ``fit.json``'s dict.

    ``truth`` (the demo's) is ``callback(est_basis, coef, pixel_size) ->
    dict`` of figures against the truth, added to ``fit.json`` and the
    figure.
    """
    from importlib.metadata import version

    from ..data.star import picks_table, star_paths, write_star
    from ..half_sets import combined_estimator, fit_half_sets
    from ..progress import ProgressBar

    if args.half_sets is None:
        args.half_sets = True
    if args.half_sets and args.n_components > 1:
        raise _CLIError("half sets with --n-components > 1 are not supported yet; add "
                        "--no-half-sets")
    lazy = args.scheduler is not None or args.workers is not None
    data = StarData(args, lazy=lazy)
    L, diameter = box_and_diameter(args, data.pixel_size)
    if args.subtract_background is not None:
        data.X = subtract_backgrounds(data.X, L, args.subtract_background)
    noise = args.noise or "colored"
    ctfs, noise_model = _defocus_groups(args, data, noise)
    est = _estimator(args, L, diameter, ctfs, noise_model)
    if args.half_sets and len(data.X) < 2:
        raise _CLIError(f"half sets need at least 2 micrographs; the STAR file lists "
                        f"{len(data.X)}: add --no-half-sets")
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise _CLIError(f"output-dir {out} is not a directory")
    targets = {name: out / name for name in ("estimate.mrc", "fit.json", "summary.png")}
    if args.half_sets:
        targets.update({name: out / name for name in ("half1.mrc", "half2.mrc")})
    picks_dir = out / "picks"
    pick_paths = star_paths(data.names, picks_dir)
    inputs = [args.inputs[0]] + [str(p) for p in data.star.paths]
    _check_outputs(list(targets.values()) + list(pick_paths), args.overwrite, inputs=inputs)

    print(f"mtdlearn fit: {len(data.X)} micrograph(s) from {args.inputs[0]}"
          + (f", pixel size {data.original_pixel_size:g} A" if data.original_pixel_size
             else "")
          + (f", binned by {data.factor:g} to {data.pixel_size:.4g} A" if data.factor != 1
             else "")
          + f"; box L={L}" + (f", particle diameter {diameter:.2f} px" if diameter else "")
          + ("" if data.ctfs is None else ", CTFs from the STAR file")
          + (f" in {args.defocus_groups} defocus groups" if args.defocus_groups else "")
          + f", noise {noise!r}" + (", gold-standard half sets" if args.half_sets else ""),
          file=sys.stderr)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, _dask_client(args), \
            ProgressBar(disable=True if args.quiet else None):
        warnings.simplefilter("always")
        if args.half_sets:
            result = fit_half_sets(est, data.X, random_state=args.seed,
                                   pixel_size=data.pixel_size or 1.0)
            model = combined_estimator(result, est)
            coef, image = result.coef, result.image
        else:
            model = est.fit(data.X)
            result = None
            coef, image = model.coef_, model.image_
        fit_seconds = time.perf_counter() - t0
        detections = list(model.predict_per_measurement(data.X))
        check = model.check_fit(data.X, random_state=args.seed)
    # one pick per copy: a copy reported by several patches is written once
    tables = [picks_table(det, L, data.names, data.scales[i]) for i, det in detections]
    elapsed = time.perf_counter() - t0
    warned = [str(w.message) for w in caught]
    if not check.passed:
        warned.append("check_fit: " + check.summary() + "; see --subtract-background "
                      "and --n-components")
    for message in warned:
        print(f"warning: {message}", file=sys.stderr)

    report = {
        "mtdlearn_version": version("mtdlearn"),
        "seed": args.seed,
        "star": str(args.inputs[0]),
        "micrographs": data.names,
        "project_dir": str(Path(data.star.paths[0]).parent) if data.star.paths else None,
        "original_pixel_size": data.original_pixel_size,
        "bin": data.factor,
        "pixel_size": data.pixel_size,
        "particle_diameter_angstrom": args.particle_diameter,
        "particle_diameter_px": diameter,
        "defocus_groups": args.defocus_groups,
        "ctf": None if data.ctfs is None else [dataclasses.asdict(c) for c in data.ctfs],
        "model": model_dict(model, noise, data.pixel_size, data.factor,
                            data.original_pixel_size, args.subtract_background),
        "estimator": type(est).__name__,
        "estimator_params": {k: (v if isinstance(v, (int, float, str, bool, type(None)))
                                 else repr(v)) for k, v in est.get_params(deep=False).items()
                             if k not in ("ctf", "noise")},
        "converged": bool(model.converged_),
        "warnings": warned,
        "fit_seconds": fit_seconds,
        "seconds": elapsed,
        "n_picks": int(sum(len(t) for t in tables)),
        # does the model explain the micrographs (likelihood.goodness)
        "fit_check": {"distance": check.distance, "statistic": check.statistic,
                      "p_value": check.p_value, "passed": check.passed,
                      "level": check.level, "outlier_fraction": check.outlier_fraction,
                      "n_outlier_patches": int(check.outliers.sum()),
                      "n_patches": check.n_patches, "n_simulated": check.n_simulated},
    }
    fits = result.estimators if result is not None else (model,)
    report["fits"] = [{"n_iter": int(f.n_iter_), "n_e_steps": int(getattr(f, "n_e_steps_", 0)),
                       "converged": bool(f.converged_), "n_patches": int(f.n_patches_),
                       "log_likelihood": float(f.log_likelihood_history_[-1]),
                       "density": float(f.density_),
                       "noise_variance": float(f.noise_variance_),
                       "n_rotations": len(f.angles_),
                       # refinement="auto"'s last test (None: not run)
                       "rotation_concentration": getattr(f, "rotation_concentration_", None),
                       "degenerate": getattr(f, "degenerate_", None)} for f in fits]
    frcs = []
    if result is not None:
        report["half_sets"] = {
            "halves": [[data.names[i] for i in h] for h in result.halves],
            "angle_degrees": math.degrees(result.angle),
            "threshold": result.threshold,
            "resolution_angstrom": result.resolution,
            "resolution_ring": result.resolution_ring,
            "frc": _frc_dict(result.frc),
        }
        frcs.append(("half sets", result.frc, result.threshold))
    images, labels = [image], ["estimate" + (" (half sets combined)" if result else "")]
    if truth is not None:
        extra = truth(model.basis_, coef, data.pixel_size or 1.0)
        report["truth"] = extra["report"]
        images = [extra["image"], extra["aligned"]]
        labels = ["truth (binned)", labels[0] + ",\naligned to the truth"]
        frcs.append(("estimate vs truth", extra["frc"], 0.5))

    writers = {targets["estimate.mrc"]: _bytes_writer(_mrc_bytes(image, data.pixel_size)),
               targets["fit.json"]: _text_writer(json.dumps(report, indent=1))}
    if result is not None:
        half1, half2 = result.estimators
        basis = half1.basis_
        second = basis.evaluate(basis.rotate(half2.coef_, result.angle))
        writers[targets["half1.mrc"]] = _bytes_writer(_mrc_bytes(half1.image_, data.pixel_size))
        writers[targets["half2.mrc"]] = _bytes_writer(_mrc_bytes(second, data.pixel_size))
    first = data.X[0]
    if isinstance(first, (str, Path)):   # unbinned, not lazy: the file's path
        from ..data.io import read_measurement

        first = read_measurement(first)
    title = (f"{len(data.X)} micrographs, L={L}, {data.pixel_size or 1:.3g} A/px"
             + (f"; half-set resolution {result.resolution:.1f} A (FRC 0.143)" if result
                else ""))
    png = summary_figure(np.asarray(first), images, labels, frcs, data.pixel_size, title)
    if png is None:
        print(f"matplotlib is not installed: {targets['summary.png']} not written "
              "(pip install mtdlearn[plot])", file=sys.stderr)
    else:
        writers[targets["summary.png"]] = _bytes_writer(png)
    _write_files(writers, args.overwrite)
    picks_dir.mkdir(parents=True, exist_ok=True)
    for table, path in zip(tables, pick_paths):
        write_star(table, path, overwrite=args.overwrite)
    print(f"fitted {len(data.X)} micrograph(s) in {elapsed:.1f} s: density "
          f"{model.density_:.4f}, noise variance {model.noise_variance_:.4g}"
          + (f"; half-set resolution {result.resolution:.2f} A at FRC {result.threshold}"
             if result else "")
          + f"; check_fit {'passed' if check.passed else 'FAILED'} (distance "
            f"{100 * check.distance:.1f} %, statistic {check.statistic:.2f})"
          + f"; wrote {', '.join(str(p) for p in writers)} and {len(pick_paths)} STAR "
          f"file(s) of picks in {picks_dir}")
    return report


def predict_star(args, est, model):
    """``mtdlearn predict micrographs_ctf.star --model fit.json``: ``est`` is the
    estimator of fit.json's ``model`` (:func:`~mtdlearn.cli._model.estimator_from_model`)."""
    from ..data.star import picks_table, star_paths, write_star

    args.bin, args.pixel_size = None, None
    if model.get("bin", 1.0) != 1.0:
        args.bin = float(model["bin"])
    lazy = args.scheduler is not None or args.workers is not None
    data = StarData(args, lazy=lazy)
    if model.get("subtract_background") is not None:     # as the fit did
        data.X = subtract_backgrounds(data.X, est.image_size, model["subtract_background"])
    if data.ctfs is not None:
        est.set_params(ctf=data.ctfs)
    out_dir = Path(args.output_dir or "picks")
    paths = star_paths(data.names, out_dir)
    inputs = [args.inputs[0]] + [str(p) for p in data.star.paths]
    _check_outputs(paths, args.overwrite, inputs=inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with _dask_client(args):
        for (i, det), path in zip(est.predict_per_measurement(data.X), paths):
            write_star(picks_table(det, est.image_size, data.names, data.scales[i]), path,
                       overwrite=args.overwrite)
    print(f"{len(paths)} STAR file(s) in {time.perf_counter() - t0:.2f} s; wrote "
          f"{out_dir}/*_picks.star")
