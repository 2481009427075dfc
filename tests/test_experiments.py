"""Tests of mtdlearn.experiments (the paper's trial protocol)."""

import pytest

from mtdlearn.experiments import run_trial, run_trials


def test_run_trial_autocorrelation_start():
    r = run_trial(seed=0, size=150, snr=10, rotations=4, max_iter=20)
    assert 0 <= r["error_em"] < 1 and 0 <= r["error_ac"] < 1
    # the EM's start is part of its cost, and one E-step per iteration plus one
    assert r["time_em"] >= r["time_ac"]
    assert r["time_per_iteration_em"] * (r["n_iter_em"] + 1) <= r["time_em"]
    assert r["size"] == 150 and r["rotations"] == 4


def test_run_trial_random_start_and_ac_only():
    r = run_trial(seed=1, size=120, snr=5, rotations=2, em_init="random", n_init=2,
                  max_iter=5, noise_known=False)
    assert r["n_iter_em"] <= 5
    r = run_trial(seed=1, size=120, snr=5, fit_em=False)
    assert "error_em" not in r and r["error_ac"] >= 0
    with pytest.raises(ValueError, match="em_init"):
        run_trial(seed=1, size=120, snr=5, em_init="truth")


def test_run_trials_in_order_and_reproducible():
    settings = [dict(seed=s, size=100, snr=5, rotations=2, max_iter=5) for s in (3, 4)]
    par = run_trials(settings, n_jobs=2)
    seq = run_trials(settings, n_jobs=1)
    assert [r["seed"] for r in par] == [3, 4]
    for a, b in zip(par, seq):
        assert a["error_em"] == b["error_em"] and a["error_ac"] == b["error_ac"]
