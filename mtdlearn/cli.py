"""Command line: ``mtdlearn demo``, ``mtdlearn simulate``."""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]


class _CLIError(Exception):
    """An error reported as one line on stderr with a non-zero exit."""


def _cmd_simulate(args):
    from .basis import FourierBesselBasis
    from .datasets import make_measurement, make_target

    basis = FourierBesselBasis(args.image_size, n_coefficients=args.n_coefficients)
    coef = make_target(basis, random_state=args.seed)
    X, truth = make_measurement(coef, basis, args.size, density=args.density, snr=args.snr,
                                random_state=args.seed)
    out = Path(args.output)
    if out.suffix != ".npy":
        raise _CLIError(f"--output must end in .npy, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, X)
    meta = {
        "image_size": basis.image_size,
        "n_coefficients": basis.n_functions,
        "coef": coef.tolist(),
        "noise_variance": truth.noise_variance,
        "density": truth.density,
        "snr": args.snr,
        "positions": truth.positions.tolist(),
        "angles": truth.angles.tolist(),
    }
    truth_path = out.with_suffix(".truth.json")
    truth_path.write_text(json.dumps(meta))
    print(f"wrote {out} ({X.shape[0]}x{X.shape[1]}) and {truth_path}: "
          f"{truth.n_copies} copies, density {truth.density:.4f}, "
          f"noise variance {truth.noise_variance:.4g}")


def _cmd_demo(args):
    from .basis import FourierBesselBasis
    from .datasets import make_measurement, make_target

    t0 = time.perf_counter()
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=args.seed)
    X, truth = make_measurement(coef, basis, args.size, density=0.04, snr=args.snr,
                                random_state=args.seed)
    elapsed = time.perf_counter() - t0
    print("mtdlearn demo: simulated measurement at the paper's settings")
    print(f"  measurement      {X.shape[0]} x {X.shape[1]} pixels")
    print(f"  target           L={basis.image_size}, {basis.n_functions} Fourier-Bessel coefficients")
    print(f"  copies           {truth.n_copies} (density {truth.density:.4f})")
    print(f"  SNR              {args.snr}  (noise variance {truth.noise_variance:.4f})")
    print(f"  mean / std       {X.mean():.4f} / {X.std():.4f}")
    print(f"  time             {elapsed:.2f} s")


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="mtdlearn",
        description="Two-dimensional multi-target detection: simulate measurements and "
                    "recover the target image.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="simulate at the paper's settings and report",
                       description="Simulate a measurement at the paper's settings "
                                   "(L=5, 10 coefficients, density 0.04) and report.")
    p.add_argument("--size", type=int, default=1000, help="measurement side N (default 1000)")
    p.add_argument("--snr", type=float, default=5.0, help="signal-to-noise ratio (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("simulate", help="write a simulated measurement and its ground truth",
                       description="Write a simulated measurement (.npy) and its ground "
                                   "truth (.truth.json).")
    p.add_argument("output", help="output .npy path")
    p.add_argument("--size", type=int, default=1000, help="measurement side N (default 1000)")
    p.add_argument("--image-size", type=int, default=5, help="image side L (default 5)")
    p.add_argument("--n-coefficients", type=int, default=10,
                   help="number of basis coefficients (default 10)")
    p.add_argument("--density", type=float, default=0.04, help="density gamma (default 0.04)")
    p.add_argument("--snr", type=float, default=None, help="SNR (default: no noise)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_simulate)
    return parser


def main(argv=None):
    """Entry point of the ``mtdlearn`` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (_CLIError, ValueError, TypeError, OSError, ImportError) as exc:
        print(f"mtdlearn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
