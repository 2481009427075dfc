"""Fits on a Dask cluster: the same results as in memory, data that stays on the workers.

One real ``distributed.LocalCluster`` (two single-thread worker processes,
loopback only) is shared by the module.  No warning of distributed needs a
filter here, the killed worker included (checked with the project's
``filterwarnings = ["error"]``); the only filter is for our own
ConvergenceWarning, as the fits stop after a few iterations on purpose.
"""

import os
import threading

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
mrcfile = pytest.importorskip("mrcfile")

import dask  # noqa: E402
import joblib  # noqa: E402

from mtdlearn import (ApproxEMEstimator, AutocorrelationEstimator,  # noqa: E402
                      FourierBesselBasis, make_measurement, make_target)
from mtdlearn.data._dask import NO_HTTP_PORT, as_dask_source  # noqa: E402
from mtdlearn.autocorrelation.estimator import AutocorrelationInitializer  # noqa: E402
from mtdlearn.checkpoint import FitCheckpoint, hash_measurements  # noqa: E402
from mtdlearn.data.io import read_micrographs  # noqa: E402
from mtdlearn.data.star import picks_table  # noqa: E402
from mtdlearn.data.measurements import check_measurements  # noqa: E402
from mtdlearn.data.patches import as_patch_source  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

L = 5
BASIS = FourierBesselBasis(L, n_coefficients=10)
CLIENT_PID = os.getpid()


def _data():
    X, _ = make_measurement(make_target(BASIS, random_state=0), BASIS, 120, snr=10,
                            n_measurements=3, random_state=0)
    # sizes differ, and are not multiples of L
    return [X[0], np.ascontiguousarray(X[1][:101, :113]), X[2]]


def _em(**kw):
    params = dict(basis=BASIS, rotations=4, max_iter=4, random_state=0)
    params.update(kw)
    return ApproxEMEstimator(L, **params)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1",
                                  scheduler_kwargs=NO_HTTP_PORT) as cluster:
        with distributed.Client(cluster) as c:
            yield c


@pytest.fixture(scope="module")
def mrc_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("micrographs")
    paths = []
    for i, M in enumerate(_data()):
        path = folder / f"mic{i:02d}.mrc"
        mrcfile.new(str(path), M.astype(np.float32)).close()
        paths.append(path)
    return paths


def _assert_same_fit(a, b):
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.shift_probabilities_, b.shift_probabilities_)
    assert a.noise_variance_ == b.noise_variance_
    assert a.log_likelihood_history_ == b.log_likelihood_history_


def test_em_on_cluster_equals_in_memory(client, mrc_paths):
    micrographs = read_micrographs(str(mrc_paths[0].parent / "mic*.mrc"))
    assert micrographs.names == ["mic00.mrc", "mic01.mrc", "mic02.mrc"]
    expected = _em().fit(mrc_paths)
    fitted = _em().fit(micrographs)
    _assert_same_fit(fitted, expected)  # bit-identical, not only close
    np.testing.assert_array_equal(fitted.predict(micrographs), expected.predict(mrc_paths))
    # one micrograph's detections at a time, found on its worker: the same rows
    groups = list(fitted.predict_per_measurement(micrographs))
    assert [i for i, _ in groups] == [0, 1, 2]
    np.testing.assert_array_equal(np.concatenate([g for _, g in groups]),
                                  expected.predict(mrc_paths))
    np.testing.assert_array_equal(fitted.score_samples(micrographs),
                                  expected.score_samples(mrc_paths))
    assert fitted.score(micrographs) == expected.score(mrc_paths)
    # the picks for cryo-EM tools: one row per occurrence, named after its file
    picks = picks_table(fitted.predict(micrographs), L, micrographs.names)
    assert len(picks) > 0
    assert set(picks["rlnMicrographName"]) <= set(micrographs.names)
    assert picks.equals(picks_table(expected.predict(mrc_paths), L,
                                    [p.name for p in mrc_paths]))


def test_em_through_ctfs_and_colored_noise_on_cluster_equals_in_memory(client):
    # each micrograph through its own CTF, whitened by its own estimated
    # spectrum on its worker: the same bits as in memory
    from mtdlearn.imaging.ctf import CTF
    from mtdlearn.imaging.noise import make_noise_psd

    ctfs = [CTF(8000.0, pixel_size=3.0), CTF(20000.0, pixel_size=3.0)]
    X, _ = make_measurement(make_target(BASIS, random_state=0), BASIS, 160, snr=10,
                            n_measurements=2, random_state=0, ctf=ctfs,
                            noise_psd=make_noise_psd(4.0))
    kw = dict(ctf=ctfs, noise="colored", max_iter=3)
    expected = _em(**kw).fit(X)
    fitted = _em(**kw).fit([da.from_array(M, chunks=(64, 64)) for M in X])
    _assert_same_fit(fitted, expected)
    assert expected.noise_psds_ is not None and fitted.noise_psds_ == expected.noise_psds_
    dask_X = [da.from_array(M) for M in X]
    np.testing.assert_array_equal(fitted.predict(dask_X), expected.predict(X))
    assert fitted.score(dask_X) == expected.score(X)


def test_mixture_through_ctfs_on_cluster_equals_in_memory(client):
    # two kinds of particle (n_components=2), each micrograph through its own
    # CTF: the same bits as in memory, picks with their kinds, per-kind proba
    from mtdlearn.imaging.ctf import CTF

    ctfs = [CTF(8000.0, pixel_size=3.0), CTF(20000.0, pixel_size=3.0)]
    kinds = np.stack([make_target(BASIS, random_state=0), make_target(BASIS, random_state=1)])
    X, _ = make_measurement(kinds, BASIS, 160, density=0.08, snr=10, n_measurements=2,
                            random_state=0, ctf=ctfs)
    kw = dict(ctf=ctfs, n_components=2, max_iter=3)
    expected = _em(**kw).fit(X)
    fitted = _em(**kw).fit([da.from_array(M, chunks=(64, 64)) for M in X])
    _assert_same_fit(fitted, expected)
    np.testing.assert_array_equal(fitted.weights_, expected.weights_)
    dask_X = [da.from_array(M) for M in X]
    np.testing.assert_array_equal(fitted.predict(dask_X), expected.predict(X))
    np.testing.assert_array_equal(fitted.predict_proba(dask_X), expected.predict_proba(X))
    assert expected.predict_proba(X).shape == (2 * 32 * 32, 2)


def test_autocorrelations_on_cluster_equal_in_memory(client, mrc_paths):
    micrographs = read_micrographs(mrc_paths)
    kw = dict(basis=BASIS, max_iter=10, random_state=0)
    expected = AutocorrelationEstimator(L, **kw).fit(mrc_paths)
    fitted = AutocorrelationEstimator(L, **kw).fit(micrographs)
    for u, v in zip(fitted.autocorrelations_, expected.autocorrelations_):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(fitted.coef_, expected.coef_)
    # a third moment on a subset of shifts splits by micrograph too
    kw["shift_radius"] = 2.5
    sub = AutocorrelationEstimator(L, **kw).fit(micrographs).autocorrelations_
    for u, v in zip(sub, AutocorrelationEstimator(L, **kw).fit(mrc_paths).autocorrelations_):
        np.testing.assert_array_equal(u, v)
    assert sub[2].shape == (8, 8)
    # and the EM's autocorrelation start
    init = AutocorrelationInitializer(max_iter=10)
    _assert_same_fit(_em(initializer=init, max_iter=2).fit(micrographs),
                     _em(initializer=init, max_iter=2).fit(mrc_paths))


def test_fft_estep_on_cluster_equals_in_memory(client, monkeypatch):
    """At L = 13 the cost model picks the FFT E-step, on the workers as in memory."""
    from mtdlearn.em import _state   # where the E-step's kernels are chosen
    from mtdlearn.likelihood.fft_estep import choose_estep

    L13 = 13
    assert choose_estep(L13, 4, np.float32) == choose_estep(L13, 4, np.float64) == "fft"
    basis = FourierBesselBasis(L13, n_coefficients=12)
    X, _ = make_measurement(make_target(basis, random_state=1), basis, 80, snr=5,
                            density=0.1, n_measurements=3, random_state=1)
    X = [X[0], np.ascontiguousarray(X[1][:67, :75]), X[2]]  # not multiples of L
    calls = []
    fft = _state.estep_statistics_fft

    def counted(data, *args, **kwargs):
        calls.append(data.distributed)
        return fft(data, *args, **kwargs)

    monkeypatch.setattr(_state, "estep_statistics_fft", counted)
    kw = dict(basis=basis, rotations=4, max_iter=2, random_state=0)
    expected = ApproxEMEstimator(L13, **kw).fit(X)
    fitted = ApproxEMEstimator(L13, **kw).fit([da.from_array(M) for M in X])
    assert False in calls and True in calls   # the FFT E-step ran on both
    assert all(calls[len(calls) // 2:]) and not any(calls[:len(calls) // 2])
    _assert_same_fit(fitted, expected)  # bit-identical, not only close
    # predict and score_samples take the FFT kernel too, on the workers as in memory
    dask_X = [da.from_array(M) for M in X]
    assert np.array_equal(fitted.predict(dask_X), expected.predict(X))
    assert np.array_equal(fitted.score_samples(dask_X), expected.score_samples(X))


def test_incremental_em_on_cluster(client, monkeypatch):
    """Incremental EM on a cluster: its blocks are whole micrographs, each block's
    E-step on the workers; the fit is the in-memory one with the same blocks, to
    the last bit, and ends at batch EM's fixed point."""
    from mtdlearn.em import _incremental

    monkeypatch.setattr(_incremental, "_BLOCK_PATCHES", 500)   # 1592 patches: 3 blocks
    blocks, choose = [], _incremental.blocks
    monkeypatch.setattr(_incremental, "blocks", lambda data: blocks.append(choose(data))
                        or blocks[-1])
    X = _data()
    fitted = _em(acceleration="incremental", max_iter=10).fit([da.from_array(M) for M in X])
    assert blocks == [[(0, 576), (576, 1016), (1016, 1592)]]   # the three micrographs
    monkeypatch.setattr(_incremental, "blocks", lambda data: blocks[0])
    _assert_same_fit(fitted, _em(acceleration="incremental", max_iter=10).fit(X))
    from mtdlearn.likelihood.statistics import _distributed_subset
    with pytest.raises(ValueError, match="subset must hold whole measurements"):
        _distributed_subset(as_dask_source([da.from_array(M) for M in X], L), (0, 100))
    # these blocks, run to convergence (in memory: the same fit), end at batch EM's
    kw = dict(max_iter=500, tol=1e-10, dtype=np.float64)
    incremental = _em(acceleration="incremental", **kw).fit(X)
    batch = _em(**kw).fit(X)
    assert incremental.converged_ and batch.converged_
    assert abs(incremental.lower_bound_ - batch.lower_bound_) < 1e-7


def test_auto_dtype_chooses_as_in_memory(client):
    """dtype='auto' starts in float64 when float32 logits would cancel; it judges by
    the whole data's mean square in memory as on the cluster.  Here the first 4225
    patches are bright (above the threshold alone) and the rest dim (the whole is
    below it): the same choice, float32, on both."""
    from types import SimpleNamespace

    from mtdlearn.em._precision import _FLOAT32_MAX_ERROR, float32_resolution

    rng = np.random.default_rng(0)
    X = [30.0 * rng.standard_normal((325, 325)), rng.standard_normal((325, 325))]
    state = SimpleNamespace(noise_variance=1.0)
    in_memory = float32_resolution(as_patch_source(X, L), state)
    on_cluster = float32_resolution(as_dask_source([da.from_array(M) for M in X], L), state)
    assert in_memory == on_cluster < _FLOAT32_MAX_ERROR
    fitted = _em(noise_variance=1.0, max_iter=0).fit([da.from_array(M) for M in X])
    _assert_same_fit(fitted, _em(noise_variance=1.0, max_iter=0).fit(X))  # same precision


def test_refinement_test_sees_the_same_patches_on_the_cluster(client, monkeypatch):
    """refinement="auto"'s test looks at the first 2000 patches: across the
    micrographs' boundaries in memory, micrograph by micrograph on the
    workers, the same patches and the same median."""
    from mtdlearn.em import _refinement
    from mtdlearn.em._state import _EMData
    from mtdlearn.imaging.shifts import density_to_shift_probabilities
    from mtdlearn.initializers import InitialState
    from mtdlearn.likelihood.hypotheses import HypothesisSpace

    X = _data()   # 576, 100 and 576 patches
    space = HypothesisSpace(BASIS, np.arange(8) * np.pi / 4)
    state = InitialState(make_target(BASIS, random_state=0),
                         density_to_shift_probabilities(0.04, L), 0.1)
    est = _em()
    for n in (700, 5000):   # within the third micrograph; all of them
        monkeypatch.setattr(_refinement, "_N_PATCHES", n)
        shares = [_refinement.concentration(est, _EMData(source, space, False), state, 1)
                  for source in (as_patch_source(X, L),
                                 as_dask_source([da.from_array(M) for M in X], L))]
        assert shares[0] == shares[1] > 0


def test_detections_of_any_range_equal_in_memory(client):
    """estep_detections of a range of patches: on the workers, each
    micrograph over its own part of the range (cut or whole), with the same
    detections as in memory, in global indices."""
    from mtdlearn.imaging.shifts import density_to_shift_probabilities
    from mtdlearn.likelihood.hypotheses import HypothesisSpace
    from mtdlearn.likelihood.posteriors import build_per_patch_model, estep_detections

    X = _data()   # 576, 100 and 576 patches: offsets 0, 576, 676, 1252
    space = HypothesisSpace(BASIS, np.arange(8) * np.pi / 4)
    model = build_per_patch_model(make_target(BASIS, random_state=0),
                                  density_to_shift_probabilities(0.04, L), 0.1, space)
    memory = as_patch_source(X, L)
    cluster = as_dask_source([da.from_array(M) for M in X], L)
    for subset in [(0, 1252), (0, 700), (100, 200), (576, 676), (500, 1000), (600, 650),
                   (575, 677)]:
        expected = estep_detections(memory, model, subset)
        got = estep_detections(cluster, model, subset)
        assert len(expected[0]) > 0, subset
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_allclose(got[2], expected[2], rtol=1e-12)
    with pytest.raises(ValueError, match="subset must be a range"):
        estep_detections(cluster, model, (10, 5000))


def _guarded(M):
    def load():
        if os.getpid() == CLIENT_PID:
            raise AssertionError("the client process read the pixels")
        return M
    return da.from_delayed(dask.delayed(load, pure=True)(), shape=M.shape, dtype=M.dtype)


def test_client_never_reads_the_pixels(client):
    X = _data()
    fitted = _em(max_iter=2).fit([_guarded(M) for M in X])
    _assert_same_fit(fitted, _em(max_iter=2).fit(X))
    fitted.predict([_guarded(M) for M in X])


def test_client_receives_one_total_per_reduction(client, monkeypatch):
    """What a fit gathers per micrograph is a few bytes (value checks, maxima,
    digests); the statistics, moments and histograms, whose size does not
    shrink with the data, are reduced on the workers (map_reduce) and reach
    the client once.  So the client's memory does not grow with the number
    of micrographs."""
    import pickle

    from mtdlearn.data._dask import DaskPatchData

    gathered, reduced = [], []
    map_blocks, map_reduce = DaskPatchData.map_blocks, DaskPatchData.map_reduce

    def spy_blocks(self, func, *args, **kwargs):
        parts = map_blocks(self, func, *args, **kwargs)
        gathered.append((getattr(func, "__name__", func), len(parts),
                         max(len(pickle.dumps(p)) for p in parts)))
        return parts

    def spy_reduce(self, func, pair, *args, **kwargs):
        reduced.append(getattr(func, "__name__", func))
        return map_reduce(self, func, pair, *args, **kwargs)

    monkeypatch.setattr(DaskPatchData, "map_blocks", spy_blocks)
    monkeypatch.setattr(DaskPatchData, "map_reduce", spy_reduce)
    X = _data()
    _em(max_iter=2, initializer=AutocorrelationInitializer()).fit(
        [da.from_array(M) for M in X])
    # refinement="auto"'s test gathers the detections (index, hypothesis,
    # posterior: 24 bytes) among at most 2000 patches (_refinement._N_PATCHES),
    # whatever the number of micrographs
    tested = [g for g in gathered if g[0] == "_block_detections"]
    assert tested and sum(size for *_, size in tested) < 24 * 2000 + 1024 * len(tested)
    assert all(n == len(X) and size < 1024 for name, n, size in gathered
               if name != "_block_detections"), gathered
    assert {"_block_first_pass", "_block_scan", "_block_band_sums",
            "_block_statistics"} <= set(reduced), reduced


class _Interrupt(Exception):
    pass


def test_checkpoint_resumes_on_cluster(client, mrc_paths, tmp_path, monkeypatch):
    expected = _em().fit(read_micrographs(mrc_paths))
    path = tmp_path / "fit.npz"
    save = FitCheckpoint.save
    count = [0]

    def failing_save(self, where):   # the fit is killed before its third save
        count[0] += 1
        if count[0] > 2:
            raise _Interrupt
        return save(self, where)

    with monkeypatch.context() as m:
        m.setattr(FitCheckpoint, "save", failing_save)
        with pytest.raises(_Interrupt):
            _em().fit(read_micrographs(mrc_paths), checkpoint=path)
    assert FitCheckpoint.load(path).current.n_iter == 2
    resumed = _em().fit(read_micrographs(mrc_paths), checkpoint=path)
    _assert_same_fit(resumed, expected)
    # the fingerprint is the in-memory one: the finished file serves the same files read
    # in memory, and the client never reads the pixels to compute it
    source = as_dask_source(read_micrographs(mrc_paths), L)
    assert source.memoize(hash_measurements) == hash_measurements(
        check_measurements(mrc_paths, L))
    _assert_same_fit(_em().fit(mrc_paths, checkpoint=path), expected)
    _em(max_iter=1).fit([_guarded(M) for M in _data()], checkpoint=tmp_path / "guarded.npz")
    # a micrograph changed by one pixel is another data set: refused, file untouched
    changed = tmp_path / "changed"
    changed.mkdir()
    for i, src in enumerate(mrc_paths):
        with mrcfile.open(src) as mrc:
            M = mrc.data.copy()
        if i == 1:
            M[3, 4] += 1
        mrcfile.new(str(changed / src.name), M).close()
    before = path.read_bytes()
    with pytest.raises(ValueError, match="written by a fit on other measurements"):
        _em().fit(read_micrographs(str(changed / "*.mrc")), checkpoint=path)
    assert path.read_bytes() == before


def test_iter_blocks_hands_over_one_result_at_a_time(client, monkeypatch):
    shapes = [M.shape for M in _data()]
    results = as_dask_source([da.from_array(M) for M in _data()], L).iter_blocks(np.shape)
    assert next(results) == shapes[0]
    assert list(results) == shapes[1:]
    import mtdlearn.data._dask as dask_module
    monkeypatch.setattr(dask_module, "active_client", lambda: None)  # dask's scheduler
    source = as_dask_source([da.from_array(M) for M in _data()], L)
    assert list(source.iter_blocks(np.shape)) == shapes


def test_check_measurements_refuses_to_gather():
    class Lazy:
        __dask_graph__ = None

        def __array__(self, *args, **kwargs):
            raise AssertionError("gathered")

    with pytest.raises(TypeError, match="dask arrays"):
        check_measurements(Lazy(), L)
    with pytest.raises(TypeError, match="dask arrays"):
        check_measurements([np.ones((10, 10)), da.ones((10, 10))], L)


def test_bad_values_found_by_the_workers(client):
    X = _data()
    bad = X[1].copy()
    bad[7, 9] = np.nan
    with pytest.raises(ValueError, match=r"X\[1\] must contain only finite values"):
        _em().fit([da.from_array(M) for M in (X[0], bad)])
    with pytest.raises(ValueError, match="is constant"):
        _em().fit(da.zeros((2, 20, 20), chunks=(1, 20, 20)))
    with pytest.raises(ValueError, match="smaller than one 5x5 patch"):
        _em().fit(da.ones((4, 20)))


def test_without_a_cluster_uses_the_default_scheduler():
    X = _data()
    with dask.config.set(scheduler="threads"):
        stack = da.from_array(np.stack([M[:100, :100] for M in X]), chunks=(1, 50, 50))
        fitted = _em().fit(stack)
    _assert_same_fit(fitted, _em().fit([M[:100, :100] for M in X]))


def test_worker_killed_mid_fit(client, mrc_paths):
    expected = _em(max_iter=4).fit(mrc_paths)
    micrographs = read_micrographs(mrc_paths)
    killed = threading.Event()

    class KillAfterFirstIteration(ApproxEMEstimator):
        def _m_step(self, prepared, state, stats):
            if not killed.is_set():
                killed.set()
                # the worker that holds the first micrograph's block dies
                who = client.who_has()
                addresses = {a for keys in who.values() for a in keys}
                addr = sorted(addresses)[0]
                try:
                    client.run(os._exit, 1, workers=[addr])
                except Exception:  # the connection dies with the worker
                    pass
            return super()._m_step(prepared, state, stats)

    before = set(client.scheduler_info()["workers"])
    est = KillAfterFirstIteration(L, basis=BASIS, rotations=4, max_iter=4, random_state=0)
    fitted = est.fit(micrographs)
    assert killed.is_set()
    _assert_same_fit(fitted, expected)
    client.wait_for_workers(2, timeout=60)
    # the nanny restarted the dead worker: a new address
    assert set(client.scheduler_info()["workers"]) != before


def test_restarts_with_joblib_dask_backend(client):
    X = _data()
    expected = _em(n_init=2, max_iter=2).fit(X)
    with distributed.get_task_stream(client) as stream:
        with joblib.parallel_config(backend="dask"):
            fitted = _em(n_init=2, max_iter=2).fit(X)
    assert len(stream.data) >= 2  # the starts ran as cluster tasks
    _assert_same_fit(fitted, expected)
    # dask input: the starts run in turn, their E-steps on the workers
    with joblib.parallel_config(backend="dask"):
        fitted = _em(n_init=2, max_iter=2).fit([da.from_array(M) for M in X])
    _assert_same_fit(fitted, expected)


def test_import_mtdlearn_does_not_import_dask():
    import subprocess
    import sys

    code = ("import sys, mtdlearn, mtdlearn.data.io, mtdlearn.cli.commands; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed', 'starfile')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_unaligned_block_is_realigned_before_use():
    """A block deserialized at an odd byte offset reaches the kernel aligned, same values."""
    from mtdlearn.data._dask import _block_apply

    M = np.random.default_rng(0).standard_normal((7, 9))
    buf = np.zeros(M.nbytes + 1, dtype=np.uint8)
    unaligned = buf[1:].view(np.float64).reshape(M.shape)
    unaligned[...] = M
    assert not unaligned.flags.aligned
    seen = _block_apply(unaligned, lambda b, k: (b.flags.aligned, b * k), (2.0,), {})
    assert seen[0]
    np.testing.assert_array_equal(seen[1], 2.0 * M)
    # an aligned block is passed through as it is (no copy)
    assert _block_apply(M, lambda b: b, (), {}) is M


def test_reductions_on_the_workers_equal_in_memory(client):
    """map_reduce pairs the micrographs' results along the in-memory tree, and
    every pass of the quartile's radix selection runs on the workers (forced
    to several passes here): the same values, to the last bit."""
    from mtdlearn._parallel import tree_reduce
    from mtdlearn.initializers import (_block_first_pass, _block_scan, _energy_blocks,
                                       _order_statistics, _pair_first_passes, data_statistics)

    X = _data()
    data = as_dask_source([da.from_array(M) for M in X], L)
    # the first pass: blocks' sums (in order), patch count, first-digit counts
    moments, n, first = data.map_reduce(_block_first_pass, _pair_first_passes, L, 16, 2**22)
    expected = tree_reduce([_block_first_pass(M, L, 16, 2**22) for M in X], _pair_first_passes)
    assert moments == expected[0] and n == expected[1]
    np.testing.assert_array_equal(first, expected[2])

    def scan(per_values, pair, *args):
        return data.map_reduce(_block_scan, pair, L, 16, 2**22, per_values, pair, *args)

    values = np.sort(np.concatenate([e for M in X for e in _energy_blocks(M, L, 16, 2**22)]))
    assert values.size == n
    for rank in (0, n // 4, n - 1):
        # max_collect=0: digit counts pass after pass, then the extremes
        got = _order_statistics(scan, n, rank, first, max_collect=0)
        assert got == (values[rank], values[min(rank + 1, n - 1)])
    assert data.memoize(data_statistics, L) == data_statistics(X, L)


def test_local_cluster_workers_run_without_the_profiler():
    """--workers starts workers without Dask's statistical profiler and with slow
    event-loop ticks (_dask.QUIET_WORKERS), the settings the benchmark measured."""
    distributed = pytest.importorskip("distributed")
    from mtdlearn.data._dask import QUIET_WORKERS, local_cluster

    with local_cluster(1) as cluster, distributed.Client(cluster) as client:
        import dask

        seen = client.run(lambda: {k: dask.config.get(k) for k in QUIET_WORKERS})
        assert list(seen.values()) == [QUIET_WORKERS]
    assert dask.config.get("distributed.worker.profile.enabled") is True  # not changed here


def test_progress_bar_counts_blocks_and_changes_nothing(client):
    import io

    from mtdlearn.progress import ProgressBar

    X = [da.from_array(M, chunks=M.shape) for M in _data()]
    plain = _em().fit(X)
    out = io.StringIO()
    with ProgressBar(file=out, disable=False):
        shown = _em().fit(X)
    _assert_same_fit(plain, shown)
    text = out.getvalue()
    assert "blocks" in text and "/3 [" in text   # a bar over the 3 micrographs


class _FlakyClient:
    """A client whose broadcast fails as a dying worker makes it fail, ``fails`` times."""

    def __init__(self, fails):
        self.fails, self.calls = fails, 0

    def scatter(self, data, broadcast, hash):
        from distributed.comm.core import CommClosedError

        assert broadcast and not hash
        self.calls += 1
        if self.calls <= self.fails:
            raise CommClosedError("in <TCP (closed) ConnectionPool.scatter>: Stream is closed")
        return [f"future of {d!r}" for d in data]


def test_broadcast_is_tried_again_when_a_worker_dies_during_it(monkeypatch):
    # dask/distributed#3149: a worker that dies during a broadcast makes
    # scatter raise; the arguments go out again to the workers left
    from distributed.comm.core import CommClosedError
    from mtdlearn.data import _dask

    monkeypatch.setattr(_dask, "_SCATTER_WAIT", 0.0)
    client = _FlakyClient(fails=_dask._SCATTER_ATTEMPTS - 1)
    assert _dask.broadcast(client, [1, 2]) == ["future of 1", "future of 2"]
    assert client.calls == _dask._SCATTER_ATTEMPTS
    client = _FlakyClient(fails=_dask._SCATTER_ATTEMPTS)   # a cluster that keeps failing
    with pytest.raises(CommClosedError):
        _dask.broadcast(client, [1])
    assert client.calls == _dask._SCATTER_ATTEMPTS
