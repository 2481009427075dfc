"""Command line: ``mtdlearn demo``, ``simulate``, ``fit`` and ``predict``.

``fit`` and ``predict`` take file names or quoted glob patterns
(``'data/*.mrc'``); with ``--scheduler tcp://host:8786`` (an existing Dask
cluster) or ``--workers N`` (a local cluster of N single-thread worker
processes) the micrographs are read by the Dask workers
(:func:`mtdlearn.data.io.read_micrographs`) and the E-step runs there.

Every command has ``--help``.  Bad arguments and unreadable files give a
one-line error on stderr and exit status 2, never a traceback.

Files the commands write: an existing file is never replaced unless
``--overwrite`` is given (an input file never is), every output is checked
before any work starts, and each is written to a temporary file in its own
directory, then moved into place (``os.replace``), so that no output is ever
left half-written.
"""

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

from ._cluster import _dask_client, _expand_inputs, _inputs
from ._files import (_bytes_writer, _check_outputs, _CLIError, _image_png, _npy_writer,
                     _odd_window, _positive_float, _positive_int, _text_writer, _tolerance,
                     _write_files)

__all__ = ["main"]


def _cmd_simulate(args):
    from ..basis.fourier_bessel import FourierBesselBasis
    from ..data.simulate import make_measurement, make_target

    out = Path(args.output)
    if out.suffix != ".npy":
        raise _CLIError(f"output must end in .npy, got {out}")
    truth_path = out.with_suffix(".truth.json")
    _check_outputs([out, truth_path], args.overwrite)
    basis = FourierBesselBasis(args.image_size, n_coefficients=args.n_coefficients)
    coef = make_target(basis, random_state=args.seed)
    X, truth = make_measurement(coef, basis, args.size, density=args.density, snr=args.snr,
                                n_measurements=args.n_measurements, random_state=args.seed)
    meta = {
        "image_size": basis.image_size,
        "n_coefficients": basis.n_functions,
        "coef": coef.tolist(),
        "snr": args.snr,
        "noise_variance": truth.noise_variance,
        "density": truth.density,
        "positions": truth.positions.tolist(),
        "angles": truth.angles.tolist(),
        "measurement": truth.measurement.tolist(),
        "seed": args.seed,
    }
    _write_files({out: _npy_writer(X), truth_path: _text_writer(json.dumps(meta))},
                 args.overwrite)
    print(f"wrote {out} (shape {X.shape}) and {truth_path}: {truth.n_copies} copies, "
          f"density {truth.density:.4f}, noise variance {truth.noise_variance:.4g}")


def _make_estimator(args, basis, verbose):
    from ..autocorrelation.estimator import AutocorrelationEstimator, AutocorrelationInitializer
    from ..em.estimator import ApproxEMEstimator
    from ..initializers import RandomInitializer

    if args.estimator == "autocorrelation":
        return AutocorrelationEstimator(basis.image_size, basis=basis, n_init=args.n_init,
                                        noise_variance=args.noise_variance,
                                        random_state=args.seed, n_jobs=args.n_jobs,
                                        verbose=verbose)
    init = (AutocorrelationInitializer(n_jobs=args.n_jobs) if args.init == "autocorrelation"
            else RandomInitializer())
    return ApproxEMEstimator(basis.image_size, basis=basis, rotations=args.rotations,
                             initializer=init, n_init=args.n_init,
                             noise_variance=args.noise_variance, max_iter=args.max_iter,
                             tol=args.tol, n_jobs=args.n_jobs, random_state=args.seed,
                             verbose=verbose)


def _cmd_fit(args):
    from ..basis.fourier_bessel import FourierBesselBasis
    from . import _star

    if _star.is_star(args.inputs):
        if args.estimator != "em":
            raise _CLIError("a STAR input is fitted by the EM (--estimator em)")
        _star.fit_star(args)
        return
    _star.star_only(args, ["particle_diameter", "pixel_size", "bin", "project_dir", "noise",
                      "half_sets", "defocus_groups", "subtract_background"],
                    flags=["no_ctf"])
    if args.n_components != 1:
        raise _CLIError("--n-components is supported for STAR inputs only (for now)")
    args.image_size = 5 if args.image_size is None else args.image_size
    args.init = args.init or "autocorrelation"
    basis = FourierBesselBasis(args.image_size, n_coefficients=args.n_coefficients)
    est = _make_estimator(args, basis, verbose=0 if args.quiet else 1)
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise _CLIError(f"output-dir {out} is not a directory")
    targets = [out / "estimate.npy", out / "coef.npy", out / "params.json",
               out / "estimate.png"]
    inputs = _expand_inputs(args.inputs)
    _check_outputs(targets, args.overwrite, inputs=inputs)
    if args.checkpoint is not None:
        if Path(args.checkpoint).resolve() in {Path(p).resolve() for p in inputs}:
            raise _CLIError("--checkpoint would overwrite an input file; choose another path")
        Path(args.checkpoint).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, _dask_client(args):
        warnings.simplefilter("always")
        # .npy and .mrc memory-mapped read-only, or on Dask
        est.fit(_inputs(args), checkpoint=args.checkpoint)
    elapsed = time.perf_counter() - t0
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    params = {
        "estimator": type(est).__name__,
        "inputs": [str(p) for p in _expand_inputs(args.inputs)],
        "image_size": basis.image_size,
        "n_coefficients": basis.n_functions,
        "coef": est.coef_.tolist(),
        "density": est.density_,
        "noise_variance": est.noise_variance_,
        "shift_probabilities": est.shift_probabilities_.tolist(),
        "n_iter": est.n_iter_,
        "converged": est.converged_,
        "n_patches": est.n_patches_,
        "n_rotations": len(est.angles_),   # the grid searched (refinement may refine it)
        "tol": est.tol_,                   # the gain per patch ("auto" resolved)
        "seconds": elapsed,
        "estimator_params": {k: (v if isinstance(v, (int, float, str, bool, type(None)))
                                 else repr(v)) for k, v in est.get_params(deep=False).items()},
    }
    if hasattr(est, "log_likelihood_history_"):
        params["log_likelihood"] = est.log_likelihood_history_[-1]
        # tol="auto": the image's projected change in standard errors (None: not measured)
        rest = float(getattr(est, "remaining_change_", math.inf))
        params["remaining_change"] = rest if math.isfinite(rest) else None
        # refinement="auto"'s last test of the rotation grid (None: not run)
        params["rotation_concentration"] = getattr(est, "rotation_concentration_", None)
    if hasattr(est, "cost_"):
        params["cost"] = est.cost_
    writers = {targets[0]: _npy_writer(est.image_), targets[1]: _npy_writer(est.coef_),
               targets[2]: _text_writer(json.dumps(params, indent=1))}
    png = _image_png(est.image_,
                     f"{type(est).__name__}\nL={basis.image_size}, {basis.n_functions} coef.")
    if png is None:
        print(f"matplotlib is not installed: {targets[3]} not written "
              "(pip install mtdlearn[plot])", file=sys.stderr)
    else:
        writers[targets[3]] = _bytes_writer(png)
    _write_files(writers, args.overwrite)
    print(f"fitted {type(est).__name__} on {len(_expand_inputs(args.inputs))} file(s), "
          f"{est.n_patches_} patches in {elapsed:.2f} s: density {est.density_:.4f}, "
          f"noise variance {est.noise_variance_:.4g}; wrote "
          + ", ".join(str(p) for p in writers))


def _cmd_demo(args):
    from . import _demo

    if args.paper:
        _demo.demo_paper(args)
    else:
        _demo.demo_relion(args, _build_parser)


def _load_model(path):
    """An estimator with the model that ``mtdlearn fit`` wrote: params.json or fit.json."""
    from ._model import estimator_from_model

    try:
        params = json.loads(Path(path).read_text())
        if "model" in params:   # fit.json of a STAR fit
            return estimator_from_model(params["model"])
        # the grid the fit searched; files of before 2026-12-06 hold only the parameter
        rotations = int(params.get("n_rotations",
                                   params["estimator_params"].get("rotations", 16)))
        return estimator_from_model({
            "basis": {"image_size": int(params["image_size"]),
                      "n_coefficients": int(params["n_coefficients"])},
            "n_rotations": rotations, "coef": params["coef"],
            "shift_probabilities": params["shift_probabilities"],
            "noise_variance": params["noise_variance"]})
    except (KeyError, TypeError, ValueError) as exc:
        raise _CLIError(f"cannot read a fitted model from {path} ({exc}); expected the "
                        "params.json that 'mtdlearn fit' writes") from None


def _cmd_predict(args):
    from ..data.io import micrograph_names
    from ..data.star import picks_table, star_paths, write_star, write_star_per_micrograph
    from . import _star
    from ._model import estimator_from_model

    if _star.is_star(args.inputs):
        if args.output is not None:
            raise _CLIError("a STAR input writes one STAR file per micrograph: give "
                            "--output-dir, not --output")
        try:
            model = json.loads(Path(args.model).read_text())["model"]
            est = estimator_from_model(model)
        except (KeyError, TypeError, ValueError):
            raise _CLIError(f"cannot read a fitted model from {args.model}; expected the "
                            "fit.json that 'mtdlearn fit micrographs_ctf.star' writes") from None
        _star.predict_star(args, est, model)
        return
    _star.star_only(args, ["project_dir"], flags=["no_ctf"])
    est = _load_model(args.model)
    inputs = _expand_inputs(args.inputs)
    out = Path(args.output or "picks.star")
    if args.output_dir is None:
        _check_outputs([out], args.overwrite, inputs=inputs)
    t0 = time.perf_counter()
    with _dask_client(args):
        X = _inputs(args)
        # one name per micrograph, a stack's sections included (name@j), as on Dask
        names = getattr(X, "names", None) or micrograph_names(X)
        if args.output_dir is not None:   # one file per micrograph, as each is done
            _check_outputs(star_paths(names, args.output_dir), args.overwrite, inputs=inputs)
            paths = write_star_per_micrograph(est.predict_per_measurement(X), est.image_size,
                                              args.output_dir, names, args.overwrite)
            print(f"{len(paths)} STAR file(s) in {time.perf_counter() - t0:.2f} s; wrote "
                  f"{args.output_dir}/*_picks.star")
            return
        detections = est.predict(X)
    picks = picks_table(detections, est.image_size, names)
    write_star(picks, out, overwrite=args.overwrite)
    print(f"{len(picks)} picks in {len(names)} micrograph(s) in "
          f"{time.perf_counter() - t0:.2f} s; wrote {out}")


# ---------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``mtdlearn CMD: error: ...``)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _build_parser():
    parser = _Parser(
        prog="mtdlearn",
        description="Two-dimensional multi-target detection: simulate measurements and "
                    "recover the target image by approximate EM or autocorrelation analysis.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="simulate a RELION project, fit it from its STAR file",
                       description="Write a simulated RELION project (MRC micrographs of a "
                                   "particle in a 21-pixel box at 2 A/px, a defocus series, "
                                   "colored noise, micrographs_ctf.star) to --output-dir, "
                                   "run 'mtdlearn fit' on its STAR file (binned by 2, "
                                   "gold-standard half sets) and print the error against "
                                   "the truth, the half-set resolution in Angstrom and the "
                                   "resolution where the estimate's FRC against the truth "
                                   "falls below 0.5; the fit's summary.png shows a "
                                   "micrograph, the truth, the estimate and the FRC curves.  "
                                   "--paper runs the paper's demo instead (L=5, 10 "
                                   "coefficients, density 0.04: autocorrelation analysis "
                                   "and the approximate EM initialized from it).")
    p.add_argument("--paper", action="store_true",
                   help="the paper's 5x5 demo (autocorrelation analysis, then EM)")
    p.add_argument("--output-dir", default="out/demo",
                   help="the project and the fit (default out/demo)")
    p.add_argument("--size", type=_positive_int, default=None,
                   help="micrograph side N (default 512; --paper: 1000)")
    p.add_argument("--snr", type=_positive_float, default=None,
                   help="SNR (default 1; --paper: 5)")
    p.add_argument("--tol", default="1e-4",
                   help="EM tolerance of the fit (default 1e-4 per patch; 'auto' for the "
                        "estimator's default)")
    p.add_argument("--rotations", type=_positive_int, default=16,
                   help="--paper: EM rotation grid K (default 16)")
    p.add_argument("--n-init", type=_positive_int, default=3,
                   help="--paper: autocorrelation random starts (default 3)")
    p.add_argument("--max-iter", type=_positive_int, default=None,
                   help="EM iterations at most (default 300; --paper: 100)")
    p.add_argument("--n-jobs", type=int, default=-1, help="threads (default -1: all cores)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (default 2; --paper: 0)")
    p.add_argument("--figure", default=None,
                   help="--paper: figure path (default out/demo.png; '' for none)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs if they exist (default: refuse)")
    p.add_argument("--verbose", type=int, default=0, help="EM verbosity (default 0)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("simulate", help="write a simulated measurement and its ground truth",
                       description="Write a simulated measurement (.npy) and its ground truth "
                                   "(.truth.json beside it).  Existing files are not "
                                   "replaced unless --overwrite is given.")
    p.add_argument("output", help="output .npy path")
    p.add_argument("--size", type=_positive_int, default=1000,
                   help="measurement side N (default 1000)")
    p.add_argument("--n-measurements", type=_positive_int, default=None,
                   help="write a stack of this many measurements")
    p.add_argument("--image-size", type=_positive_int, default=5, help="image side L (default 5)")
    p.add_argument("--n-coefficients", type=_positive_int, default=10,
                   help="basis coefficients (default 10)")
    p.add_argument("--density", type=float, default=0.04, help="density gamma (default 0.04)")
    p.add_argument("--snr", type=_positive_float, default=None, help="SNR (default: no noise)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the .npy and .truth.json files if they exist "
                        "(default: refuse)")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("fit", help="estimate the image from measurements (.npy or .mrc)",
                       description="Fit an estimator to one or more measurements (.npy, or "
                                   ".mrc micrographs via the mrcfile package) and write "
                                   "estimate.npy (image), coef.npy, params.json and "
                                   "estimate.png to the output directory.  Input files are "
                                   "opened read-only and never overwritten; existing "
                                   "outputs are not replaced unless --overwrite is given.  "
                                   "By default the EM starts from autocorrelation analysis "
                                   "and uses all cores.")
    p.add_argument("inputs", nargs="+", help="measurement files (.npy or .mrc), or one "
                   "RELION 3.1+ micrograph STAR file (micrographs_ctf.star)")
    p.add_argument("--output-dir", default="mtdlearn-fit", help="output directory "
                   "(default ./mtdlearn-fit)")
    p.add_argument("--estimator", choices=["em", "autocorrelation"], default="em",
                   help="approximate EM (default) or autocorrelation analysis")
    p.add_argument("--init", choices=["autocorrelation", "random"], default=None,
                   help="EM start: autocorrelation analysis of the data (the default for "
                        ".npy/.mrc inputs; for a STAR input, through its micrographs' CTFs) "
                        "or a random image (a STAR input's default is the estimator's: a "
                        "random image, a white-noise phase first)")
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="image side L, odd (default 5; for a STAR input, from "
                        "--particle-diameter)")
    p.add_argument("--n-coefficients", type=_positive_int, default=10,
                   help="basis coefficients (default 10)")
    p.add_argument("--rotations", type=_positive_int, default=16,
                   help="EM rotation grid K (default 16)")
    p.add_argument("--noise-variance", type=_positive_float, default=None,
                   help="fixed noise variance (default: estimate it)")
    p.add_argument("--n-init", type=_positive_int, default=1, help="random starts (default 1)")
    p.add_argument("--max-iter", type=int, default=100, help="EM iterations (default 100)")
    p.add_argument("--tol", type=_tolerance, default="auto",
                   help="EM tolerance: gain of the log-likelihood per patch below which "
                        "the fit stops, or 'auto' (default): stop when the image's "
                        "projected change is below 0.3 of its standard error")
    p.add_argument("--n-jobs", type=int, default=-1,
                   help="threads (default -1: all cores; 1 for one)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs in --output-dir (default: refuse; input "
                        "files are never replaced)")
    p.add_argument("--quiet", action="store_true",
                   help="no per-iteration lines (STAR input: no progress bar)")
    p.add_argument("--verbose", action="store_true",
                   help="STAR input: per-iteration lines beside the progress bar")
    p.add_argument("--n-components", type=_positive_int, default=1,
                   help="STAR input: kinds of particle C (default 1; picks get "
                        "rlnClassNumber; needs --no-half-sets)")
    _add_star_arguments(p)
    p.add_argument("--half-sets", action=argparse.BooleanOptionalAction, default=None,
                   help="STAR input: fit two halves of the micrographs independently and "
                        "report their FRC and the resolution at 0.143 in Angstrom (default: "
                        "on; --no-half-sets fits all micrographs once)")
    p.add_argument("--particle-diameter", type=_positive_float, default=None,
                   metavar="ANGSTROM",
                   help="STAR input: the particle's diameter in Angstrom; the box L is the "
                        "smallest odd side holding it and 4 more pixels (the CTF's spread)")
    p.add_argument("--noise", choices=["white", "colored", "auto", "residual"], default=None,
                   help="STAR input: noise model (default colored: each micrograph's "
                        "spectrum estimated and whitened; residual: fit under auto, then "
                        "again with the spectra of what the fitted copies leave)")
    p.add_argument("--subtract-background", type=_odd_window, nargs="?", const=15,
                   default=None, metavar="WINDOW",
                   help="STAR input: remove each micrograph's slowly varying background "
                        "(a carbon edge, uneven ice) before the fit: a median of "
                        "L x L patch medians over WINDOW x WINDOW patches (odd; default "
                        "15), relative to the micrograph's median level; 'predict "
                        "--model' then does the same (default: off)")
    p.add_argument("--defocus-groups", type=_positive_int, default=None, metavar="G",
                   help="STAR input: fit G groups of micrographs of consecutive defocus, "
                        "each through its median member's CTF and its members' mean noise "
                        "spectrum (cost per iteration grows with G, not the micrographs; "
                        "default: each micrograph its own)")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="save the state of the fit to PATH (.npz) after every iteration; "
                        "running the same command again resumes from it; the EM then "
                        "stays on its first rotation grid (no refinement) (default: none)")
    _add_dask_arguments(p)
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("predict", help="pick the occurrences and write them as a RELION "
                                       "STAR file",
                       description="Find the maximum-a-posteriori occurrence in every patch "
                                   "of the micrographs under the model that 'mtdlearn fit' "
                                   "wrote (params.json) and write one row per occurrence "
                                   "as a RELION STAR file (rlnMicrographName, "
                                   "rlnCoordinateX/Y: centre in pixels, rlnAnglePsi in "
                                   "degrees, rlnAutopickFigureOfMerit: posterior "
                                   "probability).  Needs the starfile package "
                                   "(pip install 'mtdlearn[star]').")
    p.add_argument("inputs", nargs="+", help="micrographs (.npy or .mrc; quoted globs ok), "
                   "or one micrograph STAR file (with --output-dir)")
    p.add_argument("--model", required=True, help="params.json (or fit.json, for a STAR "
                   "input) written by 'mtdlearn fit'")
    _add_star_arguments(p, binning=False)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--output", default=None, help="STAR file (default picks.star)")
    where.add_argument("--output-dir", default=None, metavar="DIR",
                       help="write DIR/<micrograph stem>_picks.star per micrograph, each "
                            "when its picks are found (memory holds one micrograph's)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing STAR files (default: refuse)")
    _add_dask_arguments(p)
    p.set_defaults(func=_cmd_predict)
    return parser


def _add_star_arguments(p, binning=True):
    p.add_argument("--no-ctf", action="store_true",
                   help="STAR input: fit without CTFs (the STAR file then needs no CTF "
                        "columns)")
    p.add_argument("--project-dir", default=None, metavar="DIR",
                   help="STAR input: the RELION project directory the micrograph names are "
                        "relative to (default: found from the STAR file's directory up)")
    if binning:
        p.add_argument("--pixel-size", type=_positive_float, default=None,
                       metavar="ANGSTROM", help="STAR input: bin the micrographs (Fourier "
                       "cropping) to this pixel size")
        p.add_argument("--bin", type=_positive_float, default=None, metavar="K",
                       help="STAR input: bin the micrographs by K >= 1 (Fourier cropping)")


def _add_dask_arguments(p):
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on an existing Dask cluster (e.g. tcp://host:8786)")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="run on a local Dask cluster of N single-thread worker processes")


def main(argv=None):
    """Run the ``mtdlearn`` command line (``demo``, ``simulate``, ``fit``, ``predict``).

    The entry point of the ``mtdlearn`` console script and of
    ``python -m mtdlearn``.  Errors are reported as one line on stderr, never
    as a traceback.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    status : int
        Exit status: ``0`` on success, ``2`` on a usage error or a failure
        (bad input, unreadable file, ...), ``130`` when interrupted.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> from mtdlearn.cli.commands import main
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     status = main(["simulate", os.path.join(tmp, "m.npy"), "--size", "60",
    ...                    "--snr", "5"])
    wrote .../m.npy (shape (60, 60)) and .../m.truth.json: ... copies, density ...
    >>> status
    0
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed usage and a one-line error
        return int(exc.code or 0)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print(f"mtdlearn {args.command}: interrupted", file=sys.stderr)
        return 130
    except (_CLIError, ValueError, TypeError, OSError, ImportError, MemoryError,
            ArithmeticError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"mtdlearn {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
