"""Tests of mtdlearn.checkpoint: the file, the fingerprints, and fits that are
interrupted and resumed (in-process, and ``mtdlearn fit --checkpoint`` killed
with SIGKILL: that command-line test lives here, beside the feature it tests)."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from mtdlearn import (ApproxEMEstimator, AutocorrelationEstimator, FixedInitializer,
                      FourierBesselBasis, make_measurement, make_target)
from mtdlearn.checkpoint import FitCheckpoint, StartRecord, hash_measurements, hash_params

L = 5


@pytest.fixture(scope="module")
def problem():
    basis = FourierBesselBasis(L, n_coefficients=10)
    X, truth = make_measurement(make_target(basis, random_state=0), basis, 100, snr=10,
                                random_state=0)
    return basis, X


def _fit(est, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, **kwargs)


def _assert_same_fit(a, b):
    for name in ("coef_", "shift_probabilities_", "image_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("noise_variance_", "density_", "n_iter_", "converged_", "n_patches_"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("log_likelihood_history_", "lower_bound_", "cost_"):
        if hasattr(a, name):
            assert getattr(a, name) == getattr(b, name), name


class _Interrupt(Exception):
    pass


def _interrupt_after(monkeypatch, n_saves):
    """Make the ``n_saves + 1``-th save raise, as if the fit were killed before it."""
    save = FitCheckpoint.save
    count = [0]

    def failing_save(self, path):
        count[0] += 1
        if count[0] > n_saves:
            raise _Interrupt
        return save(self, path)

    monkeypatch.setattr(FitCheckpoint, "save", failing_save)
    return count


# ---------------------------------------------------------------------------
# the file
def test_save_load_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    records = [StartRecord(rng.normal(size=10), rng.dirichlet(np.ones(100)).reshape(10, 10),
                           0.1 + i / 3, 7 + i, list(rng.normal(size=8 + i)), -1 / 3, bool(i))
               for i in range(3)]
    ckpt = FitCheckpoint("ApproxEMEstimator", "a" * 64, "b" * 64, [5, 6, 7], 400,
                         starts=records[:2], current=records[2])
    path = ckpt.save(tmp_path / "fit.npz")
    assert sorted(os.listdir(tmp_path)) == ["fit.npz"]  # no temporary left behind
    loaded = FitCheckpoint.load(path)
    assert (loaded.estimator, loaded.params_hash, loaded.data_hash, loaded.seeds,
            loaded.n_patches) == ("ApproxEMEstimator", "a" * 64, "b" * 64, [5, 6, 7], 400)
    assert not loaded.complete and loaded.n_iter == 9
    for a, b in zip(loaded.starts + [loaded.current], records):
        np.testing.assert_array_equal(a.coef, b.coef)
        np.testing.assert_array_equal(a.shift_probabilities, b.shift_probabilities)
        assert a._meta() == b._meta()  # floats exactly: JSON keeps repr
    # a plain .npz holding readable JSON, no pickle
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("meta.json"))["format"] == "mtdlearn.FitCheckpoint"
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["coef_2.npy"], records[2].coef)


def test_load_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint .*missing.npz not found"):
        FitCheckpoint.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    (tmp_path / "text.npz").write_text("hello")
    for name in ("other.npz", "text.npz"):
        with pytest.raises(ValueError, match="is not a readable mtdlearn checkpoint"):
            FitCheckpoint.load(tmp_path / name)


def test_hash_measurements_detects_any_change(tmp_path):
    rng = np.random.default_rng(0)
    M = rng.normal(size=(40, 30))
    h = hash_measurements([M])
    assert h == hash_measurements([M.copy()])
    assert h == hash_measurements([np.asfortranarray(M)])
    np.save(tmp_path / "m.npy", M)
    assert h == hash_measurements([np.load(tmp_path / "m.npy", mmap_mode="r")])
    assert h == hash_measurements([M], block_bytes=100)  # blocks do not matter
    M2 = M.copy()
    M2[39, 29] = np.nextafter(M2[39, 29], np.inf)  # one ulp of the last pixel
    others = [[M2], [M.astype(np.float32)], [M.reshape(30, 40)], [M[:, :20], M[:, 20:]],
              [M, M], [M[::-1]]]
    digests = {h} | {hash_measurements(o) for o in others}
    assert len(digests) == len(others) + 1
    # the split a Dask source runs: each measurement on its worker, combined in order
    per_block, combine = hash_measurements.blockwise
    assert combine([per_block(M), per_block(M2)]) == hash_measurements([M, M2])
    assert combine([per_block(M2), per_block(M)]) != hash_measurements([M, M2])


def test_hash_params_covers_the_settings_that_change_results():
    basis = FourierBesselBasis(L, n_coefficients=10)
    base = ApproxEMEstimator(L, basis=basis, random_state=0)
    h = hash_params(base)
    assert h == hash_params(ApproxEMEstimator(L, basis=FourierBesselBasis(L, n_coefficients=10),
                                              random_state=0, n_jobs=2, verbose=3))
    variants = [dict(tol=1e-5), dict(max_iter=99), dict(rotations=8), dict(random_state=1),
                dict(dtype=np.float32), dict(working_memory=64),
                dict(basis=FourierBesselBasis(L, n_coefficients=6)),
                dict(initializer=FixedInitializer(np.ones(10))),
                dict(random_state=np.random.default_rng(0))]
    digests = {h} | {hash_params(ApproxEMEstimator(L, **{"basis": basis, "random_state": 0,
                                                         **v})) for v in variants}
    assert len(digests) == len(variants) + 1
    one, other = np.ones(10), np.ones(10)
    other[3] = 2
    assert (hash_params(base.set_params(initializer=FixedInitializer(one)))
            != hash_params(base.set_params(initializer=FixedInitializer(other))))
    assert hash_params(base, extra=[1.0]) != hash_params(base, extra=[2.0])
    # a nested object's n_jobs changes no result either
    from mtdlearn import AutocorrelationInitializer

    assert (hash_params(base.set_params(initializer=AutocorrelationInitializer(n_jobs=2)))
            == hash_params(base.set_params(initializer=AutocorrelationInitializer())))


# ---------------------------------------------------------------------------
# fits that are interrupted and resumed
EM = dict(rotations=4, max_iter=12, tol=0.0, n_init=2, random_state=0)


@pytest.mark.parametrize("n_saves", [0, 3, 12, 13, 15])
def test_interrupted_em_resumes_bit_identically(problem, tmp_path, monkeypatch, n_saves):
    # 12 iterations per start: saves 1-12 are start 0's iterations, 13 its end,
    # 14-25 start 1's iterations
    basis, X = problem
    reference = _fit(ApproxEMEstimator(L, basis=basis, **EM), X)
    path = tmp_path / "fit.npz"
    count = _interrupt_after(monkeypatch, n_saves)
    with pytest.raises(_Interrupt):
        _fit(ApproxEMEstimator(L, basis=basis, **EM), X, checkpoint=path)
    monkeypatch.undo()
    if n_saves:
        ckpt = FitCheckpoint.load(path)
        assert len(ckpt.starts) == (n_saves >= 13)
        assert ckpt.n_iter == {13: 12, 15: 2}.get(n_saves, n_saves)
    assert count[0] == n_saves + 1
    count = _interrupt_after(monkeypatch, 10**6)  # counts the saves
    resumed = _fit(ApproxEMEstimator(L, basis=basis, n_jobs=2, **EM), X, checkpoint=path)
    monkeypatch.undo()
    _assert_same_fit(resumed, reference)
    assert count[0] == 26 - n_saves  # it went on from where it stopped
    assert FitCheckpoint.load(path).complete
    # a complete checkpoint gives the result at once
    again = _fit(ApproxEMEstimator(L, basis=basis, **EM), X, checkpoint=path)
    _assert_same_fit(again, reference)


def test_resume_after_the_converging_iteration_stops_there(problem, tmp_path, monkeypatch):
    basis, X = problem
    params = dict(rotations=4, max_iter=500, tol=1e-4, random_state=0)
    reference = _fit(ApproxEMEstimator(L, basis=basis, **params), X)
    assert reference.converged_ and 2 < reference.n_iter_ < 500
    path = tmp_path / "fit.npz"
    # killed after saving the converging iteration, before saving the end of the start
    _interrupt_after(monkeypatch, reference.n_iter_)
    with pytest.raises(_Interrupt):
        _fit(ApproxEMEstimator(L, basis=basis, **params), X, checkpoint=path)
    monkeypatch.undo()
    assert FitCheckpoint.load(path).n_iter == reference.n_iter_
    _assert_same_fit(_fit(ApproxEMEstimator(L, basis=basis, **params), X, checkpoint=path),
                     reference)


def test_interrupted_autocorrelation_keeps_finished_starts(problem, tmp_path, monkeypatch):
    basis, X = problem
    params = dict(rotations=4, n_init=3, random_state=0)
    reference = _fit(AutocorrelationEstimator(L, basis=basis, **params), X)
    path = tmp_path / "fit.npz"
    _interrupt_after(monkeypatch, 2)  # two starts finished
    with pytest.raises(_Interrupt):
        _fit(AutocorrelationEstimator(L, basis=basis, **params), X, checkpoint=path)
    monkeypatch.undo()
    assert len(FitCheckpoint.load(path).starts) == 2
    resumed = _fit(AutocorrelationEstimator(L, basis=basis, **params), X, checkpoint=path)
    _assert_same_fit(resumed, reference)
    np.testing.assert_array_equal(resumed.autocorrelations_[2], reference.autocorrelations_[2])


def test_checkpoint_of_other_data_or_settings_is_refused(problem, tmp_path):
    basis, X = problem
    path = tmp_path / "fit.npz"
    _fit(ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=2, random_state=0), X,
         checkpoint=path)
    before = path.read_bytes()
    X2 = X.copy()
    X2[50, 50] += 1e-9
    with pytest.raises(ValueError, match="checkpoint .*fit.npz was written by a fit on other "
                                         "measurements .* delete it or give another"):
        ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=2, random_state=0).fit(
            X2, checkpoint=path)
    for other in (dict(max_iter=3), dict(rotations=8), dict(random_state=1),
                  dict(basis=FourierBesselBasis(L, n_coefficients=6))):
        est = ApproxEMEstimator(L, **{**dict(basis=basis, rotations=4, max_iter=2,
                                             random_state=0), **other})
        with pytest.raises(ValueError, match="written by a fit with other settings"):
            est.fit(X, checkpoint=path)
    with pytest.raises(ValueError, match="written by ApproxEMEstimator, not by "
                                         "AutocorrelationEstimator"):
        AutocorrelationEstimator(L, basis=basis).fit(X, checkpoint=path)
    assert path.read_bytes() == before  # a refused checkpoint is left alone


def test_checkpoint_argument_is_checked(problem, tmp_path):
    basis, X = problem
    est = ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=2)
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        est.fit(X, checkpoint=3)
    with pytest.raises(FileNotFoundError, match="checkpoint .* directory .* does not exist"):
        est.fit(X, checkpoint=tmp_path / "no" / "fit.npz")
    with pytest.raises(ValueError, match="is a directory"):
        est.fit(X, checkpoint=tmp_path)


def test_warm_start_continues_from_a_restored_checkpoint(problem, tmp_path, monkeypatch):
    # a checkpoint can also be continued by warm_start, e.g. with other settings;
    # the same iterates as the uninterrupted fit only for the plain EM, whose
    # state is the parameters alone (SQUAREM and dtype='auto' carry a step
    # bound and a precision that a warm start begins afresh)
    basis, X = problem
    plain = dict(acceleration=None, dtype=np.float64)
    reference = _fit(ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=10, tol=0.0,
                                       random_state=0, **plain), X)
    path = tmp_path / "fit.npz"
    _interrupt_after(monkeypatch, 4)
    with pytest.raises(_Interrupt):
        _fit(ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=10, tol=0.0,
                               random_state=0, **plain), X, checkpoint=path)
    monkeypatch.undo()
    est = ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=6, tol=0.0,
                            warm_start=True, **plain)
    FitCheckpoint.load(path).restore(est)
    assert est.n_iter_ == 4 and est.log_likelihood_history_ == \
        reference.log_likelihood_history_[:5]
    assert np.isfinite(est.score(X))
    _fit(est, X)  # 6 more iterations: where the uninterrupted fit ended (up to
    # rounding: a warm start renormalizes rho, a resumed checkpoint does not)
    np.testing.assert_allclose(est.coef_, reference.coef_, rtol=1e-10)
    np.testing.assert_allclose(est.shift_probabilities_, reference.shift_probabilities_,
                               rtol=1e-10, atol=1e-15)
    # warm-start fits checkpoint too; their starting state is part of the settings
    _fit(est, X, checkpoint=tmp_path / "warm.npz")
    with pytest.raises(ValueError, match="other settings"):
        est.fit(X, checkpoint=tmp_path / "warm.npz")  # it starts elsewhere now
    with pytest.raises(ValueError, match="cannot restore it into AutocorrelationEstimator"):
        FitCheckpoint.load(path).restore(AutocorrelationEstimator(L, basis=basis))


# ---------------------------------------------------------------------------
# the command line, killed and run again
def _wait_for(predicate, timeout, proc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def test_cli_fit_killed_and_rerun_gives_the_uninterrupted_result(tmp_path, capsys):
    from mtdlearn.cli.commands import main

    basis = FourierBesselBasis(L, n_coefficients=10)
    X, _ = make_measurement(make_target(basis, random_state=0), basis, 300, snr=5,
                            random_state=0)
    np.save(tmp_path / "m.npy", X)
    ckpt = tmp_path / "state" / "fit.npz"
    args = ["fit", str(tmp_path / "m.npy"), "--rotations", "4", "--max-iter", "40",
            "--tol", "0", "--checkpoint", str(ckpt)]
    # the test session runs BLAS on one thread: so does the killed process
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mtdlearn", *args, "--output-dir",
                             str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def mid_fit():
            try:
                return FitCheckpoint.load(ckpt).n_iter >= 2
            except (FileNotFoundError, ValueError):
                return False
        reached = _wait_for(mid_fit, 120, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert reached, "the fit ended (or never reached iteration 2) before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    state = FitCheckpoint.load(ckpt)
    assert 2 <= state.n_iter < 40 and not state.complete
    assert not (tmp_path / "killed" / "estimate.npy").exists()
    # the same command again resumes; compare with a fit that was never stopped
    capsys.readouterr()
    assert main([*args, "--output-dir", str(tmp_path / "resumed")]) == 0
    out = capsys.readouterr().out
    assert f"[ApproxEM] resumed after iter {state.n_iter} " in out
    assert f"[ApproxEM] iter {state.n_iter} " not in out
    assert FitCheckpoint.load(ckpt).complete
    assert main([a for a in args if a not in ("--checkpoint", str(ckpt))]
                + ["--output-dir", str(tmp_path / "straight")]) == 0
    for name in ("estimate.npy", "coef.npy"):
        assert np.array_equal(np.load(tmp_path / "resumed" / name),
                              np.load(tmp_path / "straight" / name)), name
    resumed, straight = (json.loads((tmp_path / d / "params.json").read_text())
                         for d in ("resumed", "straight"))
    assert resumed["n_iter"] == straight["n_iter"] == 40
    assert resumed["log_likelihood"] == straight["log_likelihood"]
    # a checkpoint of other settings is refused with a one-line error
    capsys.readouterr()
    assert main([*args, "--rotations", "8", "--output-dir", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtdlearn fit: error: checkpoint ") and "other settings" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("kwargs, what", [(dict(refinement=2), "refinement"),
                                          (dict(acceleration="incremental"), "incremental")])
def test_variants_without_checkpoint_support_refuse_it(problem, tmp_path, kwargs, what):
    basis, X = problem
    path = tmp_path / "fit.npz"
    with pytest.raises(ValueError, match=f"checkpoint is not supported with .*{what}"):
        ApproxEMEstimator(L, basis=basis, rotations=4, max_iter=2, **kwargs).fit(
            X, checkpoint=path)
    assert not path.exists()


def test_checkpointed_fit_stays_on_its_first_grid(tmp_path):
    """refinement="auto" is not checkpointed (fit's docstring, --checkpoint's
    help): where the fit without a checkpoint doubles the grid (SNR 500, the
    posteriors pin the angles), the checkpointed one keeps its 16 rotations,
    and says so in rotations_ and angles_."""
    basis = FourierBesselBasis(L, n_coefficients=10)
    coef = make_target(basis, random_state=0)
    X, truth = make_measurement(coef, basis, 300, density=0.04, snr=500.0, random_state=0)
    kw = dict(basis=basis, noise_variance=truth.noise_variance, random_state=0,
              initializer=FixedInitializer(coef))
    refined = _fit(ApproxEMEstimator(L, **kw), X)
    kept = _fit(ApproxEMEstimator(L, **kw), X, checkpoint=tmp_path / "fit.npz")
    assert len(refined.angles_) > 16 and refined.coarse_n_iter_ > 0
    assert len(kept.angles_) == 16 and kept.rotations_.n_rotations == 16
    assert not hasattr(kept, "coarse_n_iter_") and not hasattr(kept, "rotation_concentration_")


@pytest.mark.parametrize("n_saves", [3, 13])
def test_interrupted_mixture_resumes_bit_identically(tmp_path, monkeypatch, n_saves):
    # two kinds from a start with one row per kind: the abundances are saved
    # with each iteration and each finished start, and resume to the bit
    basis = FourierBesselBasis(L, n_coefficients=10)
    kinds = np.stack([make_target(basis, random_state=0), make_target(basis, random_state=1)])
    X, _ = make_measurement(kinds, basis, 120, density=0.08, snr=10, random_state=0)
    start = FixedInitializer(kinds + 0.3)
    kw = dict(EM, basis=basis, n_components=2, initializer=start)
    reference = _fit(ApproxEMEstimator(L, **kw), X)
    path = tmp_path / "fit.npz"
    _interrupt_after(monkeypatch, n_saves)
    with pytest.raises(_Interrupt):
        _fit(ApproxEMEstimator(L, **kw), X, checkpoint=path)
    monkeypatch.undo()
    resumed = _fit(ApproxEMEstimator(L, **kw), X, checkpoint=path)
    _assert_same_fit(resumed, reference)
    np.testing.assert_array_equal(resumed.weights_, reference.weights_)
    assert not np.allclose(reference.weights_, 0.5)    # the abundances did move
    restored = FitCheckpoint.load(path).restore(ApproxEMEstimator(L, **kw))
    np.testing.assert_array_equal(restored.weights_, reference.weights_)
    # the default start fits one image first: a phase a checkpoint does not hold
    with pytest.raises(ValueError, match="n_components=2 and a one-image start"):
        ApproxEMEstimator(L, basis=basis, n_components=2).fit(X, checkpoint=tmp_path / "b.npz")
