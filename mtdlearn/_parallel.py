"""Where mtdlearn runs in parallel: BLAS limits, ``n_jobs``, one ordered map.

Every parallel loop of the package goes through :func:`ordered_map`: a map
over a fixed list of tasks whose results come back in task order, so the
caller's reduction (a sum of sufficient statistics or of moments) is done
in the same order whatever the number of workers.  The task list itself is
fixed by the caller from the data and the chunk size, never from
``n_jobs``.  Hence results do not depend on ``n_jobs``, to the last bit.

BLAS runs on one thread inside the tasks: their GEMMs are small (a few
hundred rows by tens of columns), and OpenBLAS's worker threads cost more
than they give there (measured: 3.4 s against 0.6 s per E-step at
N = 1000, K = 16); parallelism comes from the threads over tasks instead.

This module is the one place where another executor (Dask) plugs in.
:func:`thread_map` is the same ordered map for many small maps in a row
(a cost evaluated hundreds of times): one pool of threads kept open.
"""

import contextlib
from concurrent.futures import ThreadPoolExecutor

from joblib import Parallel, delayed, effective_n_jobs
from sklearn.utils import gen_batches
from threadpoolctl import ThreadpoolController

from ._validation import check_int

__all__ = ["blas_single_thread", "check_n_jobs", "resolve_n_jobs", "ordered_map",
           "task_ranges", "thread_map", "tree_reduce"]

_CONTROLLER = None


def blas_single_thread():
    """Context manager limiting BLAS to one thread.

    The controller is built once: scanning the loaded libraries costs
    milliseconds per call.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def check_n_jobs(n_jobs, name="n_jobs"):
    """Validate ``n_jobs``: ``None`` or a non-zero integer (scikit-learn's convention)."""
    if n_jobs is None:
        return None
    n = check_int(n_jobs, name)
    if n == 0:
        raise ValueError(f"{name} must be a non-zero integer or None, got 0")
    return n


def resolve_n_jobs(n_jobs):
    """Number of workers for ``n_jobs`` (``None`` is 1, ``-1`` all CPUs, ``-2`` all but one).

    Follows :func:`joblib.effective_n_jobs`, so an active
    ``joblib.parallel_config`` is honoured.
    """
    return int(effective_n_jobs(check_n_jobs(n_jobs)))


def task_ranges(n, step, block):
    """Fixed partition of ``0..n-1`` into tasks of ``block`` chunks of ``step`` items.

    It depends on the chunk size only, never on ``n_jobs``.
    """
    if n == 0:
        return []
    return [(b.start, b.stop) for b in gen_batches(n, step * block)]


def ordered_map(func, tasks, n_jobs=None, limit_blas=True, verbose=0):
    """Yield ``func(*task)`` for every task, in task order.

    Runs on ``n_jobs`` joblib workers (threads unless a
    ``joblib.parallel_config`` says otherwise), serially when there is one
    worker or one task.  With ``limit_blas`` BLAS is single-threaded
    meanwhile.
    """
    tasks = list(tasks)
    n_workers = resolve_n_jobs(n_jobs)
    with blas_single_thread() if limit_blas else contextlib.nullcontext():
        if n_workers == 1 or len(tasks) <= 1:
            for task in tasks:
                yield func(*task)
            return
        yield from Parallel(n_jobs=n_workers, prefer="threads", return_as="generator",
                            verbose=verbose)(delayed(func)(*task) for task in tasks)


def _serial_map(func, tasks):
    return [func(*task) for task in tasks]


@contextlib.contextmanager
def thread_map(n_jobs=None):
    """Context manager yielding ``map(func, tasks)``: :func:`ordered_map` on a kept pool.

    ``map(func, tasks)`` returns the list of ``func(*task)`` in task order,
    computed on ``n_jobs`` threads (serially for one), with BLAS
    single-threaded meanwhile.  The threads live as long as the context:
    joblib dispatches a map in about 10 ms (measured, two threads, eight
    trivial tasks; 0.3 ms with this pool), too much for a cost of tens of
    milliseconds evaluated hundreds of times.  Always threads, whatever
    ``joblib.parallel_config`` says of the backend (its ``n_jobs`` is
    honoured); as with :func:`ordered_map`, the caller fixes the tasks
    independently of ``n_jobs`` and reduces in task order.

    Parameters
    ----------
    n_jobs : int, default=None
        Number of threads (scikit-learn's convention; ``None`` is 1).

    Yields
    ------
    map : callable
        ``map(func, tasks)``, ``tasks`` a sequence of argument tuples.

    Examples
    --------
    >>> from mtdlearn._parallel import thread_map
    >>> with thread_map(2) as tmap:
    ...     tmap(pow, [(2, 3), (3, 2)])
    [8, 9]
    """
    n_workers = resolve_n_jobs(n_jobs)
    with blas_single_thread():
        if n_workers == 1:
            yield _serial_map
            return
        with ThreadPoolExecutor(n_workers) as pool:
            def tmap(func, tasks):
                return list(pool.map(lambda task: func(*task), list(tasks)))

            yield tmap


def tree_reduce(items, pair):
    """Reduce ``items`` with ``pair(a, b)`` along a fixed binary tree.

    Level by level, neighbours are paired in order (``pair(x0, x1)``,
    ``pair(x2, x3)``, ...; an odd last item moves up unpaired) until one
    item is left.  The tree depends on the number of items only, so the
    result is the same, bit for bit, wherever the pairs are computed: in
    memory, or as tasks on a Dask cluster (``pair`` a ``dask.delayed``
    function and the items its results), where no process ever holds more
    than two items.  Its depth is ``ceil(log2(n))``.

    Parameters
    ----------
    items : iterable
        At least one item.
    pair : callable
        ``pair(a, b)``, the combination of two neighbours (``a`` first).

    Returns
    -------
    total : object
        The reduced item (the item itself when there is one).

    Examples
    --------
    >>> from mtdlearn._parallel import tree_reduce
    >>> tree_reduce(["a", "b", "c", "d", "e"], lambda a, b: f"({a}{b})")
    '(((ab)(cd))e)'
    """
    items = list(items)
    if not items:
        raise ValueError("tree_reduce needs at least one item")
    while len(items) > 1:
        paired = [pair(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]
        if len(items) % 2:
            paired.append(items[-1])
        items = paired
    return items[0]
