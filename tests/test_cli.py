"""Tests of the ``mtdlearn`` command line (``simulate``, ``fit`` and ``demo``)."""

import gc
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning

from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_particle
from mtdlearn.cli.commands import _load_model, main
from mtdlearn.data.simulate import make_measurement, make_target


def run(argv):
    """Exit status of the CLI, whether ``main`` returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def assert_one_line_error(err, command):
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mtdlearn {command}: error: ")


def assert_usage_error(err):
    """An argparse error: no traceback, ends with one ``mtdlearn ...: error:`` line."""
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("mtdlearn") and "error:" in last, err


def test_simulate_writes_measurement_and_truth(tmp_path, capsys):
    out = tmp_path / "sub" / "m.npy"
    assert run(["simulate", str(out), "--size", "100", "--snr", "5"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "wrote" in captured.out and "copies" in captured.out
    X = np.load(out)
    assert X.shape == (100, 100) and X.dtype == np.float64
    meta = json.loads((tmp_path / "sub" / "m.truth.json").read_text())
    assert meta["image_size"] == 5 and meta["n_coefficients"] == 10 and meta["snr"] == 5.0
    # the files hold exactly what the library simulates with the same seed
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=0)
    X_lib, truth = make_measurement(coef, basis, 100, density=0.04, snr=5.0, random_state=0)
    assert_array_equal(X, X_lib)
    assert_array_equal(meta["coef"], coef)
    assert_array_equal(meta["positions"], truth.positions)
    assert_array_equal(meta["angles"], truth.angles)
    assert meta["noise_variance"] == truth.noise_variance
    assert meta["density"] == truth.density


def test_simulate_options(tmp_path, capsys):
    out = tmp_path / "m.npy"
    args = ["simulate", str(out), "--size", "60", "--image-size", "7",
            "--n-coefficients", "6", "--density", "0.02", "--seed", "3"]
    assert run(args) == 0
    meta = json.loads((tmp_path / "m.truth.json").read_text())
    assert meta["image_size"] == 7 and meta["n_coefficients"] == 6
    assert meta["snr"] is None and meta["noise_variance"] == 0.0
    X = np.load(out)
    # noise-free: zero away from the copies
    assert X.shape == (60, 60) and np.count_nonzero(X) <= len(meta["angles"]) * 49


@pytest.mark.parametrize("extra, match", [
    (["--size", "2"], "size"),
    (["--snr", "-1"], "snr"),
    (["--snr", "nan"], "snr"),
    (["--density", "1.5"], "density"),
    (["--image-size", "4"], "image[-_]size"),
    (["--n-coefficients", "0"], "n[-_]coefficients"),
    (["--seed", "-3"], "seed|random_state"),
])
def test_simulate_bad_values(tmp_path, capsys, extra, match):
    out = tmp_path / "m.npy"
    assert run(["simulate", str(out), "--size", "50"] + extra) != 0
    err = capsys.readouterr().err
    assert_usage_error(err)
    assert re.search(match, err.strip().splitlines()[-1])
    assert not out.exists()


def test_simulate_size_too_small_is_one_line(tmp_path, capsys):
    assert run(["simulate", str(tmp_path / "m.npy"), "--size", "2"]) != 0
    err = capsys.readouterr().err
    assert_one_line_error(err, "simulate")
    assert "size" in err


def test_simulate_output_must_be_npy(tmp_path, capsys):
    out = tmp_path / "m.txt"
    assert run(["simulate", str(out), "--size", "100", "--snr", "5"]) != 0
    err = capsys.readouterr().err
    assert_one_line_error(err, "simulate")
    assert "must end in .npy" in err
    assert list(tmp_path.iterdir()) == []


def test_simulate_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run(["simulate", str(blocker / "m.npy"), "--size", "50"]) != 0
    assert_one_line_error(capsys.readouterr().err, "simulate")


def test_argparse_errors_exit_2(capsys):
    for argv in (["simulate"], ["simulate", "m.npy", "--size", "abc"], ["bogus"], []):
        assert run(argv) == 2
        assert_usage_error(capsys.readouterr().err)


def test_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # anything the demo writes lands here
    assert run(["demo", "--paper", "--size", "200"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert re.search(r"200 ?x ?200", captured.out)
    assert "copies" in captured.out


def test_help(capsys):
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "simulate" in out and "demo" in out
    assert run(["simulate", "--help"]) == 0
    assert "--snr" in capsys.readouterr().out


def test_module_entry_point(tmp_path):
    # `python -m mtdlearn` exits non-zero with one line on stderr, no traceback
    result = subprocess.run(
        [sys.executable, "-m", "mtdlearn", "simulate", str(tmp_path / "m.txt"), "--size", "20"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "simulate")


# ---------------------------------------------------------------------------
# fit
@pytest.fixture(scope="module")
def measurement_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "m.npy"
    assert main(["simulate", str(path), "--size", "150", "--snr", "10", "--seed", "1"]) == 0
    return path


@pytest.mark.parametrize("estimator", ["em", "autocorrelation"])
def test_fit_writes_estimate_params_and_png(tmp_path, capsys, measurement_file, estimator):
    before = measurement_file.read_bytes()
    out = tmp_path / "res"
    argv = ["fit", str(measurement_file), "--output-dir", str(out), "--estimator", estimator,
            "--rotations", "4", "--max-iter", "5", "--n-init", "2"]
    assert run(argv) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert measurement_file.read_bytes() == before            # input never modified
    image = np.load(out / "estimate.npy")
    coef = np.load(out / "coef.npy")
    assert image.shape == (5, 5) and coef.shape == (10,)
    params = json.loads((out / "params.json").read_text())
    assert params["n_patches"] == (150 // 5) ** 2
    assert np.allclose(params["coef"], coef)
    assert len(params["shift_probabilities"]) == 10
    assert (out / "estimate.png").stat().st_size > 0
    if estimator == "em":
        assert "[ApproxEM] iter 1" in captured.out                # per-iteration lines
        assert "log_likelihood" in params
        assert params["estimator_params"]["tol"] == "auto" and params["tol"] == 1e-6
        # the statistical rule's ratio at the stop (None: not measured)
        rest = params["remaining_change"]   # 5 iterations: the rule may not stop yet
        assert rest is None or rest >= 0
        assert not params["converged"] or rest <= 0.3
        # refinement="auto"'s test: the median MAP posterior, a probability
        assert 0 <= params["rotation_concentration"] <= 1
    else:
        assert "cost" in params


def test_fit_quiet_and_autocorrelation_init(tmp_path, capsys, measurement_file):
    out = tmp_path / "res"
    assert run(["fit", str(measurement_file), "--output-dir", str(out), "--quiet",
                "--init", "autocorrelation", "--rotations", "4", "--max-iter", "3"]) == 0
    captured = capsys.readouterr()
    assert "[ApproxEM]" not in captured.out and "fitted ApproxEMEstimator" in captured.out


def test_fit_reads_mrc(tmp_path, capsys):
    mrcfile = pytest.importorskip("mrcfile")
    basis = FourierBesselBasis(5, n_coefficients=10)
    X, _ = make_measurement(make_target(basis, random_state=0), basis, 100, snr=10,
                            random_state=0)
    path = tmp_path / "micrograph.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(X.astype(np.float32))
    before = path.read_bytes(), path.stat().st_mtime_ns
    out = tmp_path / "res"
    assert run(["fit", str(path), "--output-dir", str(out), "--estimator", "autocorrelation",
                "--quiet"]) == 0
    assert json.loads((out / "params.json").read_text())["n_patches"] == 400
    for estimator in ("em", "autocorrelation"):  # EM too, which reads the patches per chunk
        assert run(["fit", str(path), "--output-dir", str(tmp_path / estimator),
                    "--estimator", estimator, "--rotations", "2", "--max-iter", "2",
                    "--quiet"]) == 0
    gc.collect()
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before   # never written
    assert "Traceback" not in capsys.readouterr().err


def _write(path, content):
    path.write_bytes(content)
    return path


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npy(path, arr, allow_pickle=False):
    np.save(path, arr, allow_pickle=allow_pickle)
    return path


_GOOD = np.random.default_rng(0).normal(size=(30, 30))
_NAN = _GOOD.copy()
_NAN[5, 5] = np.nan


@pytest.mark.parametrize("make_input, match", [
    (lambda d: d / "missing.npy", "not found"),
    (lambda d: (d / "m.txt").write_text("x") and d / "m.txt", "unsupported"),
    (lambda d: _npy(d / "bad.npy", _NAN), "must contain only finite"),
    (lambda d: np.save(d / "tiny.npy", np.zeros((3, 3))) or d / "tiny.npy", "smaller"),
    (lambda d: _write(d / "junk.npy", b"not numpy"), "cannot read .*no NumPy header"),
    (lambda d: _write(d / "empty.npy", b""), "cannot read .*the file is empty"),
    (lambda d: _write(d / "cut.npy", _npy_bytes(_GOOD)[:-64]),
     "cannot read .*expected a complete file"),
    (lambda d: _npy(d / "obj.npy", np.array([[{}]], dtype=object), allow_pickle=True),
     "pickled Python objects"),
    (lambda d: _npy(d / "vector.npy", np.ones(100)), r"shape \(100,\); expected a 2-D"),
    (lambda d: _npy(d / "four.npy", np.ones((2, 2, 10, 10))), "shape .2, 2, 10, 10.; expected"),
    (lambda d: _npy(d / "text.npy", np.array([["a"] * 10] * 10)), "dtype <U1; expected"),
], ids=["missing", "suffix", "nan", "small", "junk", "empty", "truncated", "pickled",
        "1-D", "4-D", "strings"])
def test_fit_bad_inputs_one_line(tmp_path, capsys, make_input, match):
    path = make_input(tmp_path)
    listing = sorted(os.listdir(tmp_path))
    before = path.read_bytes() if path.exists() else None
    assert run(["fit", str(path), "--output-dir", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "fit")
    assert re.search(match, err)
    assert path.name in err                                  # the message names the file
    assert sorted(os.listdir(tmp_path)) == listing           # nothing partial written
    if before is not None:
        assert path.read_bytes() == before


def test_fit_bad_mrc_one_line(tmp_path, capsys):
    pytest.importorskip("mrcfile")
    for name, content in [("empty.mrc", b""), ("zeros.mrc", b"\0" * 2000),
                          ("junk.mrc", np.random.default_rng(0).bytes(3000))]:
        path = _write(tmp_path / name, content)
        assert run(["fit", str(path), "--output-dir", str(tmp_path / "res")]) == 2
        err = capsys.readouterr().err
        assert_one_line_error(err, "fit")
        assert name in err and "expected" in err
        assert path.read_bytes() == content
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("extra", [["--rotations", "0"], ["--noise-variance", "-1"],
                                   ["--estimator", "mcmc"], ["--n-init", "x"],
                                   ["--tol", "-1"], ["--tol", "fast"]])
def test_fit_bad_arguments(tmp_path, capsys, measurement_file, extra):
    assert run(["fit", str(measurement_file), "--output-dir", str(tmp_path)] + extra) == 2
    err = capsys.readouterr().err
    assert_usage_error(err)
    assert len(err.strip().splitlines()) == 1


def test_fit_refuses_to_overwrite_input(tmp_path, capsys):
    path = tmp_path / "coef.npy"
    np.save(path, np.zeros((40, 40)))
    assert run(["fit", str(path), "--output-dir", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err, "fit")


def test_demo_reports_both_estimators_and_writes_figure(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    assert run(["demo", "--paper", "--size", "300", "--rotations", "4", "--max-iter", "10",
                "--n-init", "1", "--figure", "fig/demo.png"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"autocorrelation analysis\s+error \d\.\d{4}", out)
    assert re.search(r"approximate EM\s+error \d\.\d{4}", out)
    assert "peak memory" in out
    assert (tmp_path / "fig" / "demo.png").stat().st_size > 0


# ---------------------------------------------------------------------------
# outputs: never replaced without --overwrite, never half-written
def _snapshot(directory):
    """Every file under ``directory`` with its bytes and mtime."""
    return {p.relative_to(directory): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("existing", ["m.npy", "m.truth.json"])
def test_simulate_refuses_to_overwrite(tmp_path, capsys, existing):
    (tmp_path / existing).write_bytes(b"precious")
    before = _snapshot(tmp_path)
    assert run(["simulate", str(tmp_path / "m.npy"), "--size", "50"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "simulate")
    assert f"{existing} exists; pass --overwrite to replace it" in err
    assert _snapshot(tmp_path) == before                     # neither file written


def test_simulate_overwrite_replaces_both_files(tmp_path, capsys):
    out = tmp_path / "m.npy"
    assert run(["simulate", str(out), "--size", "50", "--seed", "1"]) == 0
    first = np.load(out)
    assert run(["simulate", str(out), "--size", "60", "--seed", "2", "--overwrite"]) == 0
    assert np.load(out).shape == (60, 60) and first.shape == (50, 50)
    assert json.loads((tmp_path / "m.truth.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy", "m.truth.json"]
    capsys.readouterr()


def test_outputs_are_written_whole_or_not_at_all(tmp_path, capsys, monkeypatch):
    """A failure while writing (here: the disk fills up half-way through the
    .npy) leaves neither a partial output nor a temporary file, and an
    existing file replaced with --overwrite is intact."""
    out = tmp_path / "m.npy"
    out.write_bytes(b"old measurement")
    before = _snapshot(tmp_path)
    real_save = np.save

    def save_then_fail(fh, arr, **kwargs):
        real_save(fh, arr[: len(arr) // 2], **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", save_then_fail)
    assert run(["simulate", str(out), "--size", "50", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "simulate")
    assert "No space left on device" in err
    assert _snapshot(tmp_path) == before


def _must_not_run(*args, **kwargs):
    raise AssertionError("the command should have stopped before this")


def test_fit_refuses_existing_outputs_before_fitting(tmp_path, capsys, monkeypatch,
                                                     measurement_file):
    import mtdlearn.base

    monkeypatch.setattr(mtdlearn.base.BaseMTDEstimator, "fit", _must_not_run)
    out = tmp_path / "res"
    out.mkdir()
    (out / "params.json").write_text("{}")
    before = _snapshot(tmp_path)
    assert run(["fit", str(measurement_file), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "fit")
    assert "params.json exists; pass --overwrite to replace it" in err
    assert _snapshot(tmp_path) == before


def test_fit_overwrite_replaces_outputs_but_never_inputs(tmp_path, capsys, measurement_file):
    out = tmp_path / "res"
    argv = ["fit", str(measurement_file), "--output-dir", str(out), "--quiet",
            "--rotations", "2", "--max-iter", "2", "--n-jobs", "1"]
    assert run(argv) == 0
    assert run(argv) == 2                                    # second run: outputs exist
    assert "exists" in capsys.readouterr().err
    assert run(argv + ["--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["coef.npy", "estimate.npy", "estimate.png", "params.json"]
    capsys.readouterr()
    # an input inside the output directory is refused even with --overwrite
    inp = out / "coef.npy"
    np.save(inp, np.random.default_rng(0).normal(size=(40, 40)))
    before = _snapshot(tmp_path)
    assert run(["fit", str(inp), "--output-dir", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "fit")
    assert "coef.npy is an input file" in err
    assert _snapshot(tmp_path) == before


def test_fit_output_dir_is_a_file(tmp_path, capsys, measurement_file):
    blocker = tmp_path / "res"
    blocker.write_text("not a directory")
    assert run(["fit", str(measurement_file), "--output-dir", str(blocker)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert blocker.read_text() == "not a directory"


def test_demo_refuses_to_overwrite_figure_up_front(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fig = tmp_path / "out" / "demo.png"
    fig.parent.mkdir()
    fig.write_bytes(b"old figure")
    import mtdlearn.data.simulate

    monkeypatch.setattr(mtdlearn.data.simulate, "make_measurement", _must_not_run)
    assert run(["demo", "--paper", "--size", "100"]) == 2    # before simulating anything
    err = capsys.readouterr().err
    assert_one_line_error(err, "demo")
    assert "demo.png exists; pass --overwrite" in err
    assert fig.read_bytes() == b"old figure"


def test_fit_defaults(tmp_path, capsys, measurement_file):
    """`mtdlearn fit` starts the EM from autocorrelation analysis on all cores
    by default; --init random and --n-jobs 1 choose otherwise."""
    from mtdlearn.cli.commands import _build_parser

    args = _build_parser().parse_args(["fit", "m.npy"])
    # None: autocorrelation for .npy/.mrc inputs (checked below), the estimator's for STAR
    assert args.init is None and args.n_jobs == -1 and not args.overwrite
    args = _build_parser().parse_args(["fit", "m.npy", "--init", "random", "--n-jobs", "1"])
    assert args.init == "random" and args.n_jobs == 1
    assert run(["fit", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "autocorrelation analysis of the data (the default for .npy/.mrc inputs;" in text
    assert "default -1: all cores" in text and "--overwrite" in text
    out = tmp_path / "res"
    assert run(["fit", str(measurement_file), "--output-dir", str(out), "--quiet",
                "--rotations", "2", "--max-iter", "2"]) == 0
    used = json.loads((out / "params.json").read_text())["estimator_params"]
    assert used["initializer"].startswith("AutocorrelationInitializer(")
    assert used["n_jobs"] == -1
    capsys.readouterr()


def _micrographs(tmp_path, n=2, size=100):
    mrcfile = pytest.importorskip("mrcfile")
    basis = FourierBesselBasis(5, n_coefficients=10)
    X, _ = make_measurement(make_target(basis, random_state=0), basis, size, snr=10,
                            n_measurements=n, random_state=0)
    for i, M in enumerate(X):
        mrcfile.new(str(tmp_path / f"mic{i}.mrc"), M.astype(np.float32)).close()
    return str(tmp_path / "mic*.mrc")


def test_fit_glob_then_predict_writes_star(tmp_path, capsys):
    starfile = pytest.importorskip("starfile")
    pattern = _micrographs(tmp_path)
    out = tmp_path / "out"
    assert main(["fit", pattern, "--max-iter", "3", "--rotations", "4", "--quiet",
                 "--output-dir", str(out), "--n-jobs", "1"]) == 0
    assert "on 2 file(s)" in capsys.readouterr().out
    star = tmp_path / "picks.star"
    assert main(["predict", pattern, "--model", str(out / "params.json"),
                 "--output", str(star)]) == 0
    picks = starfile.read(star)
    assert set(picks["rlnMicrographName"]) <= {"mic0.mrc", "mic1.mrc"} and len(picks) > 0
    # never replaced without --overwrite
    assert main(["predict", pattern, "--model", str(out / "params.json"),
                 "--output", str(star)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["predict", pattern, "--model", str(out / "coef.npy"),
                 "--output", str(tmp_path / "x.star")]) == 2
    assert "params.json" in capsys.readouterr().err
    # predict searches the grid the fit searched: refinement="auto" made K = 1 into 2
    assert main(["fit", pattern, "--max-iter", "1", "--rotations", "1", "--quiet",
                 "--output-dir", str(tmp_path / "k1"), "--n-jobs", "1"]) == 0
    model = _load_model(tmp_path / "k1" / "params.json")
    assert json.loads((tmp_path / "k1" / "params.json").read_text())["n_rotations"] == 2
    assert model.angles_.tolist() == [0.0, np.pi]
    assert main(["fit", str(tmp_path / "none*.mrc"), "--output-dir", str(out)]) == 2
    assert "no file matches" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predict_names_the_sections_of_a_stack(tmp_path, capsys):
    """In memory as on Dask, a 3-D file is one micrograph per section, named name@j:
    one STAR file per section, and the combined file names each section."""
    starfile = pytest.importorskip("starfile")
    basis = FourierBesselBasis(5, n_coefficients=10)
    X, _ = make_measurement(make_target(basis, random_state=0), basis, 100, snr=10,
                            n_measurements=3, random_state=0)
    np.save(tmp_path / "single.npy", X[0])
    np.save(tmp_path / "stack.npy", X[1:])          # a (2, 100, 100) stack
    inputs = [str(tmp_path / "single.npy"), str(tmp_path / "stack.npy")]
    model = str(tmp_path / "fit" / "params.json")
    assert main(["fit", *inputs, "--max-iter", "2", "--rotations", "4", "--init", "random",
                 "--quiet", "--n-jobs", "1", "--output-dir", str(tmp_path / "fit")]) == 0
    assert main(["predict", *inputs, "--model", model,
                 "--output-dir", str(tmp_path / "per")]) == 0
    assert sorted(os.listdir(tmp_path / "per")) == ["single_picks.star", "stack_0_picks.star",
                                                    "stack_1_picks.star"]
    assert main(["predict", *inputs, "--model", model,
                 "--output", str(tmp_path / "all.star")]) == 0
    combined = starfile.read(tmp_path / "all.star")
    assert set(combined["rlnMicrographName"]) == {"single.npy", "stack.npy@0", "stack.npy@1"}
    for name, file in (("stack.npy@1", "stack_1_picks.star"), ("single.npy", "single_picks.star")):
        part = starfile.read(tmp_path / "per" / file)
        mine = combined[combined["rlnMicrographName"] == name].reset_index(drop=True)
        assert part.equals(mine) and len(part) > 0
    capsys.readouterr()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_and_predict_on_a_local_dask_cluster(tmp_path, capsys):
    pytest.importorskip("distributed")
    pattern = _micrographs(tmp_path)
    args = ["--max-iter", "2", "--rotations", "4", "--init", "random", "--n-jobs", "1"]
    assert main(["fit", pattern, *args, "--output-dir", str(tmp_path / "a")]) == 0
    assert main(["fit", pattern, *args, "--output-dir", str(tmp_path / "b"),
                 "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert "dask: 1 worker(s)" in captured.err
    assert re.search(r"\[ApproxEM\] iter 2 ", captured.out)  # a progress line per iteration
    a = json.loads((tmp_path / "a" / "params.json").read_text())
    b = json.loads((tmp_path / "b" / "params.json").read_text())
    assert a["coef"] == b["coef"] and a["log_likelihood"] == b["log_likelihood"]
    assert main(["predict", pattern, "--model", str(tmp_path / "a" / "params.json"),
                 "--output", str(tmp_path / "a.star")]) == 0
    assert main(["predict", pattern, "--model", str(tmp_path / "a" / "params.json"),
                 "--output", str(tmp_path / "b.star"), "--workers", "1"]) == 0
    strip = lambda p: p.read_text().split("\n", 1)[1]  # noqa: E731 (the header has a time)
    assert strip(tmp_path / "a.star") == strip(tmp_path / "b.star")
    # one STAR file per micrograph, written as each micrograph's picks arrive
    starfile = pytest.importorskip("starfile")
    for d, extra in (("per", []), ("per-dask", ["--workers", "1"])):
        assert main(["predict", pattern, "--model", str(tmp_path / "a" / "params.json"),
                     "--output-dir", str(tmp_path / d), *extra]) == 0
        assert sorted(os.listdir(tmp_path / d)) == ["mic0_picks.star", "mic1_picks.star"]
    assert "2 STAR file(s)" in capsys.readouterr().out
    for name in ("mic0_picks.star", "mic1_picks.star"):
        assert strip(tmp_path / "per" / name) == strip(tmp_path / "per-dask" / name)
    combined = starfile.read(tmp_path / "a.star")
    parts = [starfile.read(tmp_path / "per" / f"mic{i}_picks.star") for i in range(2)]
    assert sum(len(p) for p in parts) == len(combined) > 0
    for i, part in enumerate(parts):
        mine = combined[combined["rlnMicrographName"] == f"mic{i}.mrc"].reset_index(drop=True)
        assert part.equals(mine)
    before = (tmp_path / "per" / "mic0_picks.star").read_bytes()
    assert main(["predict", pattern, "--model", str(tmp_path / "a" / "params.json"),
                 "--output-dir", str(tmp_path / "per")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "per" / "mic0_picks.star").read_bytes() == before
    assert main(["predict", pattern, "--model", str(tmp_path / "a" / "params.json"),
                 "--output-dir", str(tmp_path / "per"), "--overwrite"]) == 0
    assert main(["predict", pattern, "--model", str(tmp_path / "a" / "params.json"),
                 "--output-dir", str(tmp_path / "per"), "--output", "x.star"]) == 2
    assert "not allowed with" in capsys.readouterr().err
    assert main(["fit", pattern, "--workers", "1", "--scheduler", "tcp://127.0.0.1:1",
                 "--output-dir", str(tmp_path / "c")]) == 2
    assert "not both" in capsys.readouterr().err



# ---------------------------------------------------------------------------
# the RELION user's path: a micrograph STAR file in, MRC, fit.json, picks out

@pytest.fixture(scope="module")
def relion_project(tmp_path_factory):
    pytest.importorskip("mrcfile")
    pytest.importorskip("starfile")
    from mtdlearn.data.project import make_relion_project

    return make_relion_project(tmp_path_factory.mktemp("project"), n_micrographs=4, size=192,
                               snr=5.0, random_state=0)


def _file_states(paths):
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


@pytest.fixture(scope="module")
def star_fit(relion_project, tmp_path_factory):
    """``mtdlearn fit micrographs_ctf.star`` once (binned by 2, half sets), outputs read back."""
    out = tmp_path_factory.mktemp("star_fit") / "fit"
    inputs = [relion_project.star] + relion_project.micrographs
    before = _file_states(inputs)
    status = run(["fit", str(relion_project.star), "--particle-diameter",
                  str(relion_project.particle_diameter), "--bin", "2", "--output-dir",
                  str(out), "--tol", "1e-3", "--max-iter", "30", "--n-jobs", "1",
                  "--quiet"])
    assert status == 0
    assert _file_states(inputs) == before       # no input file is ever modified
    return out


def test_star_fit_writes_mrc_with_voxel_size(star_fit, relion_project):
    import mrcfile

    report = json.loads((star_fit / "fit.json").read_text())
    L = report["model"]["image_size"]
    # 35.3 A at 4 A/px = 8.8 px, + 4 px of margin: the smallest odd box is 13
    assert report["pixel_size"] == pytest.approx(4.0) and report["bin"] == 2.0
    assert report["particle_diameter_px"] == pytest.approx(
        relion_project.particle_diameter / 4.0)
    assert L == 13
    for name in ("estimate.mrc", "half1.mrc", "half2.mrc"):
        with mrcfile.open(star_fit / name) as mrc:
            assert mrc.data.shape == (L, L) and mrc.data.dtype == np.float32
            assert float(mrc.voxel_size.x) == pytest.approx(4.0)
    with mrcfile.open(star_fit / "estimate.mrc") as mrc:
        image = np.array(mrc.data, dtype=np.float64)
    # the combined estimate is the model fit.json holds, on the pixel grid
    from mtdlearn.cli._model import estimator_from_model

    est = estimator_from_model(report["model"])
    assert_allclose_f32(image, est.basis_.evaluate(est.coef_))
    assert (star_fit / "summary.png").stat().st_size > 0


def assert_allclose_f32(a, b):
    """Equal to float32 rounding (the MRC file's precision)."""
    np.testing.assert_allclose(a, b, rtol=0, atol=2 * np.finfo(np.float32).eps
                               * max(1.0, float(np.max(np.abs(b)))))


def test_star_fit_reports_half_sets_and_resolution(star_fit, relion_project):
    report = json.loads((star_fit / "fit.json").read_text())
    half = report["half_sets"]
    names = sorted(sum(half["halves"], []))
    assert names == sorted(str(p.relative_to(relion_project.star.parents[2]))
                           for p in relion_project.micrographs)
    assert {len(h) for h in half["halves"]} == {2}
    assert len(report["fits"]) == 2 and all(f["n_patches"] > 0 for f in report["fits"])
    frc = half["frc"]
    L = report["model"]["image_size"]
    assert len(frc["correlation"]) == L // 2 + 1
    # ring 0 is one number per image (the mean), so its correlation is +-1
    assert abs(frc["correlation"][0]) == pytest.approx(1.0)
    # the resolution is in Angstrom, between the first ring and Nyquist at 4 A/px
    assert 2 * 4.0 <= half["resolution_angstrom"] <= L * 4.0
    assert half["threshold"] == 0.143
    assert report["ctf"] is not None and len(report["ctf"]) == 4
    assert report["ctf"][0]["pixel_size"] == pytest.approx(4.0)
    # the posterior predictive check of the combined model on all micrographs
    check = report["fit_check"]
    assert check["n_patches"] == sum(f["n_patches"] for f in report["fits"])
    assert check["n_simulated"] >= 2000 and check["level"] == 0.01
    assert check["passed"] == (not (check["statistic"] > 3 and check["distance"] > 0.02))
    assert 0 < check["distance"] <= 1 and 0 < check["p_value"] <= 1
    assert 0 <= check["n_outlier_patches"] == round(check["outlier_fraction"]
                                                     * check["n_patches"])


def test_star_fit_picks_in_original_pixels(star_fit, relion_project):
    import starfile

    report = json.loads((star_fit / "fit.json").read_text())
    picks = sorted((star_fit / "picks").glob("*_picks.star"))
    assert [p.name for p in picks] == [f"mic_{i:03d}_picks.star" for i in range(4)]
    table = starfile.read(picks[0])
    assert len(table) > 0
    assert set(table["rlnMicrographName"]) == {
        "MotionCorr/job002/Micrographs/mic_000.mrc"}
    # coordinates in the 192-pixel micrographs, not the 96-pixel binned ones: the
    # centre of a box at row r is (r + (L-1)/2) * 2, where a copy cut by the
    # micrograph's edge has -(L-1) <= r (its centre up to (L-1)/2 binned
    # pixels outside)
    L = report["model"]["image_size"]
    x = table["rlnCoordinateX"].to_numpy()
    assert np.all(x >= -(L - 1)) and np.all(x <= 192 + (L - 1))
    assert np.allclose(np.mod(x / 2 - (L - 1) / 2, 1.0), 0.0)
    assert x.max() > 96
    assert report["n_picks"] == sum(len(starfile.read(p)) for p in picks)


def test_star_predict_reads_fit_json(star_fit, relion_project, tmp_path, capsys):
    import starfile

    out = tmp_path / "picks"
    assert run(["predict", str(relion_project.star), "--model", str(star_fit / "fit.json"),
                "--output-dir", str(out)]) == 0
    assert "STAR file(s)" in capsys.readouterr().out
    for written in sorted(out.glob("*_picks.star")):
        again = starfile.read(written)
        fitted = starfile.read(star_fit / "picks" / written.name)
        # the same model on the same binned micrographs and CTFs: the same picks
        np.testing.assert_allclose(again["rlnCoordinateX"], fitted["rlnCoordinateX"])
        np.testing.assert_allclose(again["rlnAutopickFigureOfMerit"],
                                   fitted["rlnAutopickFigureOfMerit"], rtol=1e-6)


def test_star_fit_refuses_bad_arguments(relion_project, tmp_path, capsys, measurement_file):
    star = str(relion_project.star)
    cases = [
        (["fit", star, "--output-dir", str(tmp_path / "a")], "--particle-diameter"),
        (["fit", star, "--particle-diameter", "30", "--pixel-size", "1",
          "--output-dir", str(tmp_path / "b")], "finer"),
        (["fit", star, "--particle-diameter", "30", "--bin", "2", "--pixel-size", "4",
          "--output-dir", str(tmp_path / "c")], "not both"),
        (["fit", star, "--particle-diameter", "100", "--image-size", "11",
          "--output-dir", str(tmp_path / "d")], "more than the box"),
        (["fit", star, "--particle-diameter", "30", "--n-components", "2",
          "--output-dir", str(tmp_path / "e")], "--no-half-sets"),
        (["fit", str(measurement_file), "--particle-diameter", "30",
          "--output-dir", str(tmp_path / "f")], "STAR file input"),
        (["fit", str(measurement_file), "--no-half-sets",
          "--output-dir", str(tmp_path / "f")], "STAR file input"),
        (["fit", str(measurement_file), "--defocus-groups", "2",
          "--output-dir", str(tmp_path / "f")], "STAR file input"),
        (["fit", str(measurement_file), "--subtract-background",
          "--output-dir", str(tmp_path / "f")], "STAR file input"),
        (["fit", star, "--particle-diameter", "30", "--defocus-groups", "5",
          "--output-dir", str(tmp_path / "f")], "at most the number of micrographs (4)"),
        (["fit", star, "--particle-diameter", "30", "--defocus-groups", "2", "--noise",
          "auto", "--output-dir", str(tmp_path / "f")], "colored or white"),
        (["fit", star, "--particle-diameter", "30", "--defocus-groups", "2", "--noise",
          "residual", "--output-dir", str(tmp_path / "f")], "colored or white"),
    ]
    for argv, message in cases:
        assert run(argv) == 2, argv
        err = capsys.readouterr().err
        assert_one_line_error(err, "fit")
        assert message in err, (argv, err)
    assert not any((tmp_path / d).exists() for d in "abcdef")


def test_star_fit_in_defocus_groups(relion_project, tmp_path):
    # four micrographs in two groups: each half set holds one of each group,
    # and the fit runs through two formations instead of four
    out = tmp_path / "fit"
    assert run(["fit", str(relion_project.star), "--particle-diameter",
                str(relion_project.particle_diameter), "--bin", "2", "--defocus-groups", "2",
                "--output-dir", str(out), "--tol", "1e-3", "--max-iter", "10", "--n-jobs",
                "1", "--quiet"]) == 0
    report = json.loads((out / "fit.json").read_text())
    assert report["defocus_groups"] == 2
    assert len(report["fits"]) == 2 and (out / "estimate.mrc").exists()
    # fit.json keeps each micrograph's own CTF, for predict
    assert len({c["defocus_u"] for c in report["ctf"]}) == 4


def test_star_fit_autocorrelation_start_sees_the_ctfs(relion_project, tmp_path, monkeypatch):
    # --init autocorrelation on a STAR input: the moments are fitted through the
    # micrographs' CTFs (one model table per defocus group), not as white-noise data
    import mtdlearn.autocorrelation.estimator as ac_module

    seen = []
    original = ac_module.formed_autocorrelations

    def spy(X, L, formations, *args, **kwargs):
        seen.append({f.ctf for f in formations})
        return original(X, L, formations, *args, **kwargs)

    monkeypatch.setattr(ac_module, "formed_autocorrelations", spy)
    out = tmp_path / "fit"
    assert run(["fit", str(relion_project.star), "--particle-diameter",
                str(relion_project.particle_diameter), "--bin", "2", "--defocus-groups", "2",
                "--init", "autocorrelation", "--output-dir", str(out), "--max-iter", "3",
                "--n-jobs", "1", "--quiet"]) == 0
    assert len(seen) == 2                                   # one per half set
    assert all(len(ctfs) == 2 and None not in ctfs for ctfs in seen)
    assert (out / "estimate.mrc").exists()


def test_star_without_ctf_columns_needs_no_ctf(relion_project, tmp_path, capsys):
    import starfile

    blocks = starfile.read(relion_project.star, always_dict=True)
    mics = blocks["micrographs"].drop(columns=["rlnDefocusU", "rlnDefocusV",
                                               "rlnDefocusAngle"])
    star = relion_project.star.parent / "no_ctf.star"
    starfile.write({"optics": blocks["optics"], "micrographs": mics}, star)
    argv = ["fit", str(star), "--particle-diameter", "35", "--bin", "2", "--max-iter", "3",
            "--tol", "1e-2", "--n-jobs", "1", "--quiet", "--no-half-sets"]
    assert run(argv + ["--output-dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "fit")
    assert "CTF" in err and "--no-ctf" in err
    assert run(argv + ["--output-dir", str(tmp_path / "c"), "--no-ctf",
                       "--defocus-groups", "2"]) == 2
    assert "drop --no-ctf" in capsys.readouterr().err
    assert run(argv + ["--output-dir", str(tmp_path / "b"), "--no-ctf"]) == 0
    report = json.loads((tmp_path / "b" / "fit.json").read_text())
    assert report["ctf"] is None and "half_sets" not in report
    assert len(report["fits"]) == 1
    fit = report["fits"][0]   # the grid searched, and refinement="auto"'s last test
    assert fit["n_rotations"] >= 16 and 0 <= fit["rotation_concentration"] <= 1


def test_star_fit_noise_residual_and_predict_pick_alike(relion_project, tmp_path):
    # predict --model keeps the first fit's parameters, which pick the copies
    # whose residual gives each micrograph's spectrum: the fit's own picks
    import starfile

    out = tmp_path / "fit"
    assert run(["fit", str(relion_project.star), "--particle-diameter",
                str(relion_project.particle_diameter), "--bin", "2", "--no-half-sets",
                "--noise", "residual", "--max-iter", "3", "--tol", "1e-2", "--n-jobs", "1",
                "--quiet", "--output-dir", str(out)]) == 0
    model = json.loads((out / "fit.json").read_text())["model"]
    assert model["noise"] == "residual"
    assert len(model["residual_picker"]["coef"]) == len(model["coef"])
    picks = tmp_path / "picks"
    assert run(["predict", str(relion_project.star), "--model", str(out / "fit.json"),
                "--output-dir", str(picks)]) == 0
    written = sorted(picks.glob("*_picks.star"))
    assert len(written) == 4
    for path in written:
        again, fitted = starfile.read(path), starfile.read(out / "picks" / path.name)
        np.testing.assert_allclose(again["rlnAutopickFigureOfMerit"],
                                   fitted["rlnAutopickFigureOfMerit"], rtol=1e-6)


def test_a_residual_models_picks_survive_fit_json():
    # the first fit's parameters pick the copies whose residual gives the
    # spectra; fit.json keeps them, and without them the picks differ
    from mtdlearn.cli._model import estimator_from_model, model_dict
    from mtdlearn.imaging.shifts import density_to_shift_probabilities
    from mtdlearn.initializers import FixedInitializer

    basis = FourierBesselBasis(11)
    coef = make_particle(basis, random_state=0)
    X, truth = make_measurement(coef, basis, 384, density=0.08, snr=100.0, random_state=0)
    init = FixedInitializer(coef, density_to_shift_probabilities(0.08, 11),
                            truth.noise_variance)
    est = ApproxEMEstimator(11, basis=basis, rotations=32, initializer=init, max_iter=1,
                            noise="residual", random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(X)
    model = json.loads(json.dumps(model_dict(est, "residual", 1.0, 1.0, 1.0, None)))
    again = estimator_from_model(model)
    for a, b in zip(again._residual_picker, est._residual_picker):
        assert_array_equal(a, b)
    expected = est.predict(X)
    assert_array_equal(again.predict(X), expected)
    del model["residual_picker"]
    assert not np.array_equal(estimator_from_model(model).predict(X)["probability"],
                              expected["probability"])


def test_star_fit_subtracts_the_background_and_predict_does_too(relion_project, tmp_path,
                                                               capsys):
    import starfile

    from mtdlearn.cli._star import subtract_backgrounds
    from mtdlearn.imaging.background import subtract_background

    out = tmp_path / "fit"
    argv = ["fit", str(relion_project.star), "--particle-diameter",
            str(relion_project.particle_diameter), "--bin", "2", "--no-half-sets",
            "--max-iter", "3", "--tol", "1e-2", "--n-jobs", "1", "--quiet"]
    assert run(argv + ["--output-dir", str(out), "--subtract-background", "5"]) == 0
    report = json.loads((out / "fit.json").read_text())
    assert report["model"]["subtract_background"] == 5
    # predict applies the fit's correction: the same model on the same
    # corrected micrographs gives the fit's own picks
    picks = tmp_path / "picks"
    assert run(["predict", str(relion_project.star), "--model", str(out / "fit.json"),
                "--output-dir", str(picks)]) == 0
    for written in sorted(picks.glob("*_picks.star")):
        again, fitted = starfile.read(written), starfile.read(out / "picks" / written.name)
        np.testing.assert_allclose(again["rlnAutopickFigureOfMerit"],
                                   fitted["rlnAutopickFigureOfMerit"], rtol=1e-6)
    # the flag alone means a window of 15; an even window is refused
    assert run(argv + ["--output-dir", str(tmp_path / "b"), "--max-iter", "0",
                       "--subtract-background"]) == 0
    report = json.loads((tmp_path / "b" / "fit.json").read_text())
    assert report["model"]["subtract_background"] == 15
    assert run(argv + ["--output-dir", str(tmp_path / "c"), "--subtract-background",
                       "4"]) == 2
    assert "odd" in capsys.readouterr().err
    # a Dask micrograph is corrected lazily, to the same values
    da = pytest.importorskip("dask.array")
    x = np.random.default_rng(0).normal(size=(60, 50)).astype(np.float32)
    lazy, eager = subtract_backgrounds([da.from_array(x, chunks=(20, 25)), x], 5, 3)
    assert eager.dtype == np.float32
    np.testing.assert_array_equal(lazy.compute(), subtract_background(x, 5, window=3))
    np.testing.assert_array_equal(eager, subtract_background(x, 5, window=3))


def test_star_fit_half_sets_need_two_micrographs(tmp_path, capsys):
    pytest.importorskip("mrcfile")
    from mtdlearn.data.project import make_relion_project

    project = make_relion_project(tmp_path / "p", n_micrographs=1, size=96, random_state=1)
    assert run(["fit", str(project.star), "--particle-diameter", "35",
                "--output-dir", str(tmp_path / "fit")]) == 2
    err = capsys.readouterr().err
    assert "at least 2 micrographs" in err and "--no-half-sets" in err


def test_demo_runs_the_relion_path(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert run(["demo", "--output-dir", str(out), "--size", "160", "--snr", "10",
                "--n-jobs", "1", "--tol", "1e-3"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"error\s+\d\.\d{4} against the truth", text)
    assert re.search(r"resolution\s+\d+\.\d\d A from the half sets", text)
    report = json.loads((out / "fit" / "fit.json").read_text())
    assert {"error", "resolution_at_0.5_angstrom", "frc"} <= set(report["truth"])
    assert (out / "fit" / "summary.png").stat().st_size > 0
    assert (out / "CtfFind" / "job003" / "micrographs_ctf.star").is_file()
    # a second run refuses to replace the project without --overwrite
    assert run(["demo", "--output-dir", str(out), "--size", "160"]) == 2
    assert "exists" in capsys.readouterr().err
