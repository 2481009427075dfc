"""Tests of mtdlearn._parallel: n_jobs, the fixed task partition, the ordered map."""

import os
import threading

import joblib
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtdlearn._parallel import (check_n_jobs, ordered_map, resolve_n_jobs, task_ranges,
                                thread_map, tree_reduce)


def test_resolve_n_jobs_follows_scikit_learn():
    cpus = joblib.cpu_count()
    assert resolve_n_jobs(None) == 1
    assert resolve_n_jobs(1) == 1
    assert resolve_n_jobs(3) == 3
    assert resolve_n_jobs(-1) == cpus
    assert resolve_n_jobs(-2) == max(1, cpus - 1)
    with joblib.parallel_config(n_jobs=2):
        assert resolve_n_jobs(None) == 2        # an active joblib config is honoured


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (1.5, TypeError), ("2", TypeError),
                                      (True, TypeError)])
def test_check_n_jobs_names_the_argument(bad, exc):
    with pytest.raises(exc, match="n_jobs"):
        check_n_jobs(bad)


@pytest.mark.parametrize("n, step, block", [(0, 3, 2), (1, 3, 2), (17, 3, 2), (18, 3, 2),
                                            (100, 7, 8)])
def test_task_ranges_partition_in_order(n, step, block):
    ranges = task_ranges(n, step, block)
    covered = [i for a, b in ranges for i in range(a, b)]
    assert covered == list(range(n))
    assert all(b - a == step * block for a, b in ranges[:-1])


@pytest.mark.parametrize("n_jobs", [None, 1, 2, -1])
def test_ordered_map_keeps_task_order(n_jobs):
    tasks = [(i, i + 1) for i in range(20)]
    seen = []

    def func(a, b):
        seen.append(threading.get_ident())
        return a * 10 + b

    assert list(ordered_map(func, tasks, n_jobs)) == [a * 10 + b for a, b in tasks]
    assert len(seen) == 20
    if os.cpu_count() == 1 or n_jobs in (None, 1):
        assert set(seen) == {threading.get_ident()}       # serial: in this thread


@pytest.mark.parametrize("n_jobs", [None, 1, 2])
def test_thread_map_keeps_task_order_across_maps(n_jobs):
    """One pool serves many maps; each returns its results in task order."""
    seen = set()

    def func(a, b):
        seen.add(threading.get_ident())
        return a * 10 + b

    with thread_map(n_jobs) as tmap:
        for n in (0, 1, 7, 20):
            tasks = [(i, i + 1) for i in range(n)]
            assert tmap(func, tasks) == [a * 10 + b for a, b in tasks]
    if n_jobs in (None, 1):
        assert seen == {threading.get_ident()}       # serial: in this thread
    with pytest.raises(ValueError, match="n_jobs"):
        with thread_map(0):
            pass


@given(st.lists(st.text(max_size=3), min_size=1, max_size=40))
def test_tree_reduce_keeps_the_order(items):
    """With an associative, non-commutative pair (concatenation) the tree gives
    the in-order result: neighbours are always paired left to right."""
    assert tree_reduce(items, lambda a, b: a + b) == "".join(items)


@given(st.integers(1, 70))
def test_tree_reduce_is_a_balanced_tree_fixed_by_the_count(n):
    """Each item is paired ceil(log2(n)) times at most, and the nesting depends
    on ``n`` only (what makes the distributed and in-memory sums the same bits)."""
    depth = tree_reduce([0] * n, lambda a, b: max(a, b) + 1)
    assert depth == (n - 1).bit_length()
    shape = tree_reduce([(i,) for i in range(n)], lambda a, b: (a, b))
    assert shape == tree_reduce([(i,) for i in range(n)], lambda a, b: (a, b))


def test_tree_reduce_needs_an_item():
    with pytest.raises(ValueError, match="at least one item"):
        tree_reduce([], lambda a, b: a)
