"""Tests of mtdlearn.imaging.groups: defocus groups and the mean of noise spectra."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mtdlearn.imaging.ctf import CTF
from mtdlearn.imaging.groups import defocus_groups, mean_psd
from mtdlearn.imaging.noise import RadialPSD


@settings(max_examples=40, deadline=None)
@given(defocus=st.lists(st.floats(5000.0, 40000.0), min_size=1, max_size=30),
       data=st.data())
def test_groups_are_runs_of_consecutive_defocus_and_take_a_members_ctf(defocus, data):
    ctfs = [CTF(d, pixel_size=2.0) for d in defocus]
    n_groups = data.draw(st.integers(1, len(ctfs)))
    labels, grouped, psds = defocus_groups(ctfs, n_groups)
    assert psds is None and len(grouped) == len(ctfs)
    # every group is used, sizes differ by at most one
    sizes = np.bincount(labels, minlength=n_groups)
    assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1
    # groups are ordered by defocus: no group's defocus range overlaps the next's
    d = np.asarray(defocus)
    for g in range(n_groups - 1):
        assert d[labels == g].max() <= d[labels == g + 1].min()
    for g in range(n_groups):
        members = np.flatnonzero(labels == g)
        shared = {grouped[i] for i in members}
        assert len(shared) == 1          # one CTF per group, a member's own
        assert shared.pop() in {ctfs[i] for i in members}
    # one group per micrograph keeps every CTF
    assert defocus_groups(ctfs, len(ctfs))[1] == ctfs


def test_group_spectrum_is_the_members_mean():
    f = [0.0, 0.25, 0.5]
    psds = [RadialPSD(f, [4.0, 2.0, 1.0], errors=[0.4, 0.2, 0.1]),
            RadialPSD(f, [2.0, 2.0, 1.0], errors=[0.4, 0.2, 0.1]),
            RadialPSD(f, [9.0, 3.0, 1.0], errors=[0.9, 0.3, 0.1])]
    ctfs = [CTF(10000.0), CTF(11000.0), CTF(30000.0)]
    labels, grouped, grouped_psds = defocus_groups(ctfs, 2, psds)
    assert labels.tolist() == [0, 0, 1]
    np.testing.assert_allclose(grouped_psds[0].values, [3.0, 2.0, 1.0], rtol=1e-15)
    # the standard error of a mean of two independent estimates
    np.testing.assert_allclose(grouped_psds[0].errors, np.sqrt(2) * np.r_[0.4, 0.2, 0.1] / 2,
                               rtol=1e-15)
    assert grouped_psds[0] is grouped_psds[1] and grouped_psds[2] == psds[2]
    assert mean_psd([psds[0]]) == psds[0]
    assert mean_psd([psds[0], RadialPSD(f, [1.0, 1.0, 1.0])]).errors is None


@pytest.mark.parametrize("call, error, message", [
    (lambda: defocus_groups([CTF(1e4)] * 3, 0), ValueError, r"^n_groups must be an integer in \[1, 3\]"),
    (lambda: defocus_groups([CTF(1e4)] * 3, 4), ValueError, r"^n_groups must be an integer in \[1, 3\]"),
    (lambda: defocus_groups([CTF(1e4)] * 3, 2.0), ValueError, r"^n_groups must be an integer"),
    (lambda: defocus_groups([CTF(1e4)] * 3, True), ValueError, r"^n_groups must be an integer"),
    (lambda: defocus_groups(CTF(1e4), 1), TypeError, r"^ctfs must be a sequence of CTF"),
    (lambda: defocus_groups([CTF(1e4), "x"], 1), TypeError, r"^ctfs must be a sequence of CTF"),
    (lambda: defocus_groups([CTF(1e4)] * 2, 1, [RadialPSD([0.0], [1.0])]), ValueError,
     r"^noise_psds must have one entry per CTF \(2\); got 1"),
    (lambda: mean_psd([]), TypeError, r"^psds must be a non-empty sequence of RadialPSD"),
    (lambda: mean_psd([RadialPSD([0.0], [1.0]), RadialPSD([0.1], [1.0])]), ValueError,
     r"^psds must share their frequency bins"),
])
def test_bad_arguments_name_what_was_expected(call, error, message):
    with pytest.raises(error, match=message):
        call()
