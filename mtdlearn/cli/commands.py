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
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._files import (_bytes_writer, _check_outputs, _CLIError, _image_png, _npy_writer,
                         _png_bytes, _positive_float, _positive_int, _pyplot, _text_writer,
                         _tolerance, _write_files)

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
    init = AutocorrelationInitializer() if args.init == "autocorrelation" else RandomInitializer()
    return ApproxEMEstimator(basis.image_size, basis=basis, rotations=args.rotations,
                             initializer=init, n_init=args.n_init,
                             noise_variance=args.noise_variance, max_iter=args.max_iter,
                             tol=args.tol, n_jobs=args.n_jobs, random_state=args.seed,
                             verbose=verbose)


def _cmd_fit(args):
    from ..basis.fourier_bessel import FourierBesselBasis

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
        "tol": est.tol_,                   # the tolerance used ("auto" resolved)
        "seconds": elapsed,
        "estimator_params": {k: (v if isinstance(v, (int, float, str, bool, type(None)))
                                 else repr(v)) for k, v in est.get_params(deep=False).items()},
    }
    if hasattr(est, "log_likelihood_history_"):
        params["log_likelihood"] = est.log_likelihood_history_[-1]
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


def _expand_inputs(inputs):
    """Quoted glob patterns expanded (sorted); plain names kept as given."""
    import glob

    paths = []
    for item in inputs:
        if glob.has_magic(item):
            found = sorted(glob.glob(item))
            if not found:
                raise _CLIError(f"no file matches {item!r}")
            paths.extend(found)
        else:
            paths.append(item)
    return paths


def _uses_dask(args):
    return args.scheduler is not None or args.workers is not None


def _inputs(args):
    """The measurements: memory-mapped files, or lazy micrographs read on the workers."""
    paths = _expand_inputs(args.inputs)
    if _uses_dask(args):
        from ..data.io import read_micrographs

        return read_micrographs(paths)
    return paths


class _dask_client:
    """``--scheduler ADDRESS`` or ``--workers N``: a Dask client while the job runs."""

    def __init__(self, args):
        self.args = args
        self.stack = []

    def __enter__(self):
        args = self.args
        if not _uses_dask(args):
            return None
        if args.scheduler is not None and args.workers is not None:
            raise _CLIError("give --scheduler or --workers, not both")
        try:
            from distributed import Client
        except ImportError:
            raise _CLIError("--scheduler and --workers need Dask: "
                            "pip install 'mtdlearn[dask]'") from None
        if args.scheduler is not None:
            client = Client(args.scheduler, timeout="30s")
        else:
            from ..data._dask import local_cluster

            cluster = local_cluster(args.workers)
            self.stack.append(cluster)
            client = Client(cluster)
        self.stack.append(client)
        print(f"dask: {len(client.scheduler_info()['workers'])} worker(s) at "
              f"{client.scheduler.address}", file=sys.stderr)
        return client

    def __exit__(self, *exc):
        while self.stack:
            self.stack.pop().close()
        return False


def _load_model(path):
    """An estimator with the parameters that ``mtdlearn fit`` wrote to params.json."""
    from ..basis.fourier_bessel import FourierBesselBasis
    from ..em.estimator import ApproxEMEstimator
    from ..imaging.shifts import shift_probabilities_to_density
    from ..basis.rotations import check_rotation_grid

    try:
        params = json.loads(Path(path).read_text())
        L, p = int(params["image_size"]), int(params["n_coefficients"])
        # the grid the fit searched; files of before 2026-12-06 hold only the parameter
        rotations = int(params.get("n_rotations",
                                   params["estimator_params"].get("rotations", 16)))
        est = ApproxEMEstimator(L, basis=FourierBesselBasis(L, n_coefficients=p),
                                rotations=rotations)
        est.basis_ = est.basis
        est.rotations_, est.angles_ = check_rotation_grid(rotations)
        est.coef_ = np.asarray(params["coef"], dtype=np.float64)
        est.shift_probabilities_ = np.asarray(params["shift_probabilities"], dtype=np.float64)
        est.noise_variance_ = float(params["noise_variance"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _CLIError(f"cannot read a fitted model from {path} ({exc}); expected the "
                        "params.json that 'mtdlearn fit' writes") from None
    est.density_ = shift_probabilities_to_density(est.shift_probabilities_)
    return est


def _cmd_predict(args):
    from ..data.io import micrograph_names
    from ..data.star import picks_table, star_paths, write_star, write_star_per_micrograph

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


def _cmd_demo(args):
    import resource

    from ..autocorrelation.estimator import AutocorrelationEstimator
    from ..basis.fourier_bessel import FourierBesselBasis
    from ..data.simulate import make_measurement, make_target
    from ..em.estimator import ApproxEMEstimator
    from ..initializers import FixedInitializer
    from ..metrics import relative_error

    if args.figure:
        _check_outputs([args.figure], args.overwrite)
    print(f"mtdlearn demo: the paper's settings (L=5, 10 coefficients, density 0.04, "
          f"SNR {args.snr}), N={args.size}, K={args.rotations}")
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=args.seed)
    t0 = time.perf_counter()
    X, truth = make_measurement(coef, basis, args.size, density=0.04, snr=args.snr,
                                random_state=args.seed)
    t_sim = time.perf_counter() - t0
    print(f"  simulated     {X.shape[0]}x{X.shape[1]} pixels, {truth.n_copies} copies, "
          f"noise variance {truth.noise_variance:.4f} ({t_sim:.2f} s)")
    t0 = time.perf_counter()
    ac = AutocorrelationEstimator(5, basis=basis, noise_variance=truth.noise_variance,
                                  n_init=args.n_init, random_state=args.seed,
                                  n_jobs=args.n_jobs).fit(X)
    t_ac = time.perf_counter() - t0
    err_ac = relative_error(coef, ac.coef_, basis)
    print(f"  autocorrelation analysis  error {err_ac:.4f}  ({t_ac:.2f} s)")
    t0 = time.perf_counter()
    em = ApproxEMEstimator(5, basis=basis, rotations=args.rotations,
                           noise_variance=truth.noise_variance,
                           initializer=FixedInitializer(ac.coef_, ac.shift_probabilities_),
                           max_iter=args.max_iter, random_state=args.seed,
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
    if args.figure:
        plt = _pyplot()
        if plt is None:
            print("  matplotlib is not installed: no figure written", file=sys.stderr)
            return
        from ..plotting import plot_images

        fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
        plot_images(coef, [ac.coef_, em.coef_], basis,
                    labels=["autocorrelation", "approximate EM"], axes=axes)
        _write_files({Path(args.figure): _bytes_writer(_png_bytes(fig, plt))}, args.overwrite)
        print(f"  figure        {args.figure}")


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

    p = sub.add_parser("demo", help="simulate at the paper's settings, fit both estimators",
                       description="Simulate a measurement at the paper's settings (L=5, 10 "
                                   "coefficients, density 0.04), fit autocorrelation analysis "
                                   "and the approximate EM initialized from it, print errors, "
                                   "timings and peak memory, and write a figure.")
    p.add_argument("--size", type=_positive_int, default=1000,
                   help="measurement side N (default 1000)")
    p.add_argument("--snr", type=_positive_float, default=5.0, help="SNR (default 5)")
    p.add_argument("--rotations", type=_positive_int, default=16,
                   help="EM rotation grid K (default 16)")
    p.add_argument("--n-init", type=_positive_int, default=3,
                   help="autocorrelation random starts (default 3)")
    p.add_argument("--max-iter", type=_positive_int, default=100,
                   help="EM iterations at most (default 100)")
    p.add_argument("--n-jobs", type=int, default=-1, help="threads (default -1: all cores)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--figure", default="out/demo.png",
                   help="figure path (default out/demo.png; '' for none)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the figure if it exists (default: refuse)")
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
    p.add_argument("inputs", nargs="+", help="measurement files (.npy or .mrc)")
    p.add_argument("--output-dir", default="mtdlearn-fit", help="output directory "
                   "(default ./mtdlearn-fit)")
    p.add_argument("--estimator", choices=["em", "autocorrelation"], default="em",
                   help="approximate EM (default) or autocorrelation analysis")
    p.add_argument("--init", choices=["autocorrelation", "random"], default="autocorrelation",
                   help="EM start: autocorrelation analysis of the data (default) or a "
                        "random image")
    p.add_argument("--image-size", type=_positive_int, default=5, help="image side L (default 5)")
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
                        "the fit stops, or 'auto' (default): 4e-8 per pixel, 1e-6 at L = 5")
    p.add_argument("--n-jobs", type=int, default=-1,
                   help="threads (default -1: all cores; 1 for one)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs in --output-dir (default: refuse; input "
                        "files are never replaced)")
    p.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="save the state of the fit to PATH (.npz) after every iteration; "
                        "running the same command again resumes from it (default: none)")
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
    p.add_argument("inputs", nargs="+", help="micrographs (.npy or .mrc; quoted globs ok)")
    p.add_argument("--model", required=True, help="params.json written by 'mtdlearn fit'")
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
