"""Measurements on a Dask cluster: a patch source whose blocks are micrographs.

:class:`DaskPatchData` is the distributed counterpart of
:class:`~mtdlearn.data.patches.PatchData`.  Each measurement is one block (a
whole micrograph), loaded by the task that first needs it (from its file
when the arrays come from :func:`mtdlearn.data.io.read_micrographs`) and, when a
``distributed.Client`` is active, persisted in worker memory across the
iterations.  The E-step (:func:`mtdlearn.likelihood.statistics.estep_statistics`)
and the per-data quantities (:meth:`DaskPatchData.memoize`) call
:meth:`DaskPatchData.map_blocks`: one task per block, on the worker that
holds it, with the small model sent once per call.  Results of a few bytes
per micrograph come back to the client in block order; the others (the
E-step's statistics, the moments' raw sums, histograms) are paired by
tasks on the workers along a fixed binary tree (:meth:`DaskPatchData.map_reduce`,
the tree the in-memory sums follow too), so the result is the in-memory one
to the last bit and the client receives one total, whatever the number of
micrographs.  The detections
of ``predict`` go through :meth:`DaskPatchData.iter_blocks`, which hands
them to the client one micrograph at a time.

Nothing here runs at ``import mtdlearn``: dask is imported inside the
functions (it is the optional extra ``mtdlearn[dask]``).  The client never
reads the pixels: shapes come from the arrays' metadata, and the values are
checked (finite, not constant) by one task per block.
"""

import time

import numpy as np

from .. import progress
from .._parallel import tree_reduce
from .measurements import _scan_values
from .patches import PatchData

__all__ = ["is_dask_input", "DaskPatchData", "as_dask_source", "active_client", "local_cluster",
           "QUIET_WORKERS", "NO_HTTP_PORT"]


def _is_dask_array(x):
    return hasattr(x, "__dask_graph__") and hasattr(x, "chunks") and hasattr(x, "shape")


def is_dask_input(X):
    """Whether ``X`` is a dask array, a list of them, or a :class:`DaskPatchData`."""
    if isinstance(X, DaskPatchData) or _is_dask_array(X):
        return True
    return (isinstance(X, (list, tuple)) and len(X) > 0
            and any(_is_dask_array(item) for item in X))


def active_client():
    """The active ``distributed.Client``, or ``None`` (dask's default scheduler then)."""
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - dask without distributed
        return None
    try:
        return get_client()
    except ValueError:
        return None


#: A broadcast of a call's arguments is tried this many times: a worker that
#: dies during it makes ``scatter`` raise (``CommClosedError``, an
#: ``OSError``; dask/distributed#3149), and the next try, after
#: :data:`_SCATTER_WAIT` seconds for the scheduler to drop it, goes to the
#: workers it still has.
_SCATTER_ATTEMPTS = 3
_SCATTER_WAIT = 1.0


def broadcast(client, data):
    """``client.scatter(data, broadcast=True, hash=False)``, tried again (at
    most :data:`_SCATTER_ATTEMPTS` times in all) when a worker dies during it."""
    for attempt in range(1, _SCATTER_ATTEMPTS + 1):
        try:
            return client.scatter(data, broadcast=True, hash=False)
        except OSError:
            if attempt == _SCATTER_ATTEMPTS:
                raise
            time.sleep(_SCATTER_WAIT)


def _block_apply(block, func, args, kwargs):
    # A block that arrived from another process can sit at any byte offset
    # of its message frame (measured: addresses 5 and 6 mod 64); NumPy then
    # takes its unaligned loops, which round sums differently on some CPUs
    # (AVX-512), and the result would no longer equal the in-memory one.
    # Re-align it (one copy, only then).
    if isinstance(block, np.ndarray) and not block.flags.aligned:
        block = np.require(block, requirements="A")
    return func(block, *args, **kwargs)


class DaskPatchData(PatchData):
    """The patches of micrographs held as dask arrays, one block per micrograph.

    Parameters
    ----------
    arrays : list of dask.array.Array of shape (N1, N2)
        The micrographs (sizes may differ).  They are rechunked to one
        chunk each; build them so that a task reads its micrograph (see
        :func:`mtdlearn.data.io.read_micrographs`), never from client memory, so
        that a lost worker's blocks can be recomputed.
    image_size : int
        Patch side ``L``.
    names : list of str, default=None
        The micrographs' names (file names), for the picks.

    Attributes
    ----------
    names : list of str or None
        As given.
    """

    distributed = True

    def __init__(self, arrays, image_size, names=None):
        super().__init__(list(arrays), image_size)
        self.names = names
        self._state = {"blocks": None, "client": None, "checked": False}
        self._taken = None   # (parent, indices) of a view from take()

    def with_image_size(self, image_size):
        if image_size == self.image_size:
            return self
        view = DaskPatchData(self.measurements, image_size, self.names)
        view._memo = {}  # patch-side dependent quantities are keyed by L anyway
        view._state = self._state
        view._taken = self._taken
        return view

    def take(self, indices):
        """The micrographs ``indices`` (in that order), as a source sharing these blocks.

        The view's tasks run on the blocks persisted for ``self`` (nothing is
        loaded again); its values count as checked when ``self``'s are.
        Used for the E-step of a subset of whole micrographs (the blocks of
        incremental EM).

        Parameters
        ----------
        indices : sequence of int
            Micrograph indices.

        Returns
        -------
        view : DaskPatchData
        """
        indices = [int(i) for i in indices]
        names = None if self.names is None else [self.names[i] for i in indices]
        view = DaskPatchData([self.measurements[i] for i in indices], self.image_size, names)
        view._state = {"blocks": None, "client": None, "checked": self._state["checked"]}
        view._taken = (self, indices)
        return view

    def get(self, start, stop, dtype=None, out=None):
        raise NotImplementedError("the patches of a DaskPatchData live on the workers: "
                                  "use map_blocks")

    def _blocks(self):
        """One ``Delayed`` per micrograph; persisted on the workers when a client is active."""
        if self._taken is not None:   # a view from take(): the parent's blocks
            parent, indices = self._taken
            blocks = parent._blocks()
            return [blocks[i] for i in indices]
        client = active_client()
        st = self._state
        if st["blocks"] is None or st["client"] is not client:
            blocks = [a.rechunk(a.shape).to_delayed().ravel()[0] for a in self.measurements]
            if client is not None:
                # computed by tasks on the workers and kept there; the client
                # holds futures, so the scheduler recomputes a lost block
                blocks = client.persist(blocks)
            st["blocks"], st["client"] = blocks, client
        return st["blocks"]

    def _block_tasks(self, func, args, kwargs):
        """One delayed ``func(block_i, *args, **kwargs)`` per micrograph, and the
        active client (``None``: dask's default scheduler).  With a client the
        (small) arguments go to every worker once per call."""
        import dask

        blocks = self._blocks()
        client = active_client()
        if client is not None:
            args, kwargs = broadcast(client, [args, kwargs])
        return [dask.delayed(_block_apply, pure=False)(b, func, args, kwargs)
                for b in blocks], client

    def map_blocks(self, func, *args, **kwargs):
        """``[func(block_i, *args, **kwargs) for each micrograph]``, on the workers, in order.

        ``block_i`` is the micrograph as a NumPy array (its file dtype).  The
        arguments (a model: small) are sent to the workers once per call.
        """
        import dask

        tasks, client = self._block_tasks(func, args, kwargs)
        if client is not None:
            return client.gather(client.compute(tasks))
        return list(dask.compute(*tasks))

    def map_reduce(self, func, pair, *args, **kwargs):
        """``tree_reduce([func(block_i, *args, **kwargs) ...], pair)``, on the workers.

        Each micrograph's ``func`` runs where the micrograph lives; the
        results are then paired by tasks along the fixed tree of
        :func:`mtdlearn._parallel.tree_reduce`, so that only the total comes
        to the client.  For results whose size does not shrink with the data
        (the E-step's sufficient statistics, histograms): gathering one per
        micrograph would make the client's memory grow with the number of
        micrographs.  The same tree in memory gives the same bits.
        ``func`` and ``pair`` must be module-level functions (they are
        pickled).
        """
        import dask

        tasks, client = self._block_tasks(func, args, kwargs)
        bar = progress.blocks(len(tasks)) if client is not None else None
        if bar is not None:   # count the blocks as they finish; the same tree after
            from distributed import as_completed

            tasks = client.compute(tasks)
            for _ in as_completed(tasks):
                bar.update(1)
            bar.close()
        root = tree_reduce(tasks, dask.delayed(pair, pure=False))
        if client is not None:
            return client.compute(root).result()
        return root.compute()

    def iter_blocks(self, func, *args, **kwargs):
        """Yield ``func(block_i, *args, **kwargs)`` for each micrograph, in order.

        As :meth:`map_blocks` (every task submitted at once, on the workers),
        but the results come to the client one at a time, each when the
        consumer asks for it; a result not yet asked for stays on its
        worker.  For results that grow with the data (detections), so that
        the client holds one micrograph's at a time.
        """
        tasks, client = self._block_tasks(func, args, kwargs)
        if client is None:
            for task in tasks:
                yield task.compute()
            return
        futures = client.compute(tasks)
        for i in range(len(futures)):
            future, futures[i] = futures[i], None   # released once handed over
            yield future.result()
            del future

    def check(self, name="X"):
        """Check every micrograph's values on the workers (once): finite, not constant."""
        if self._state["checked"]:
            return self
        results = self.map_blocks(_scan_values_any)
        for i, (finite, constant) in enumerate(results):
            label = name if len(results) == 1 else f"{name}[{i}]"
            if self.names is not None:
                label += f" ({self.names[i]})"
            if not finite:
                raise ValueError(f"{label} must contain only finite values (found NaN or inf)")
            if constant is not None:
                raise ValueError(f"{label} is constant (all values equal {constant!r}): it "
                                 "holds no signal or noise to fit")
        self._state["checked"] = True
        return self

    def memoize(self, func, *args, n_jobs=None, **kwargs):
        """Compute ``func`` of the data once, block by block on the workers.

        ``func`` must declare how it splits, in ``func.blockwise``, one of:

        * ``(per_block, combine)``: ``per_block(block, *args, **kwargs)`` runs
          on each micrograph and ``combine(parts, *args, **kwargs)`` reduces
          the results (in block order) on the client; for results of a few
          bytes per micrograph;
        * ``(per_block, combine, pair)``: the per-block results are reduced
          on the workers by ``pair`` (:meth:`map_reduce`) and ``combine``
          gets ``[total]``; the client's memory does not grow with the
          number of micrographs;
        * a callable ``blockwise(data, *args, **kwargs)`` given this source,
          for computations of several passes (it calls :meth:`map_reduce`).

        ``n_jobs`` is ignored: the parallelism is the cluster's.
        """
        key = (func, args, tuple(sorted(kwargs.items())))
        if key not in self._memo:
            split = getattr(func, "blockwise", None)
            if split is None:
                raise TypeError(f"{getattr(func, '__name__', func)!r} cannot run on a "
                                "DaskPatchData: it declares no blockwise split")
            if callable(split):
                self._memo[key] = split(self, *args, **kwargs)
            elif len(split) == 3:
                per_block, combine, pair = split
                total = self.map_reduce(per_block, pair, *args, **kwargs)
                self._memo[key] = combine([total], *args, **kwargs)
            else:
                per_block, combine = split
                parts = self.map_blocks(per_block, *args, **kwargs)
                self._memo[key] = combine(parts, *args, **kwargs)
        return self._memo[key]


def _scan_values_any(block):
    finite, constant = _scan_values(np.asarray(block))
    return bool(finite), constant


def as_dask_source(X, image_size, name="X"):
    """Validate dask input into a :class:`DaskPatchData` (shapes from metadata).

    Parameters
    ----------
    X : dask.array.Array of shape (N1, N2) or (n, N1, N2), a list of them, or DaskPatchData
        The micrographs.
    image_size : int
        Patch side ``L``.
    name : str, default="X"
        Name used in error messages.

    Returns
    -------
    data : DaskPatchData
        Its values checked on the workers.
    """
    if isinstance(X, DaskPatchData):
        for i, M in enumerate(X.measurements):
            if min(M.shape) < image_size:
                raise ValueError(f"{name}[{i}] of shape {M.shape} is smaller than one "
                                 f"{image_size}x{image_size} patch")
        return X.with_image_size(image_size).check(name)
    names = getattr(X, "names", None)
    if not isinstance(X, (list, tuple)) and X.ndim not in (2, 3):
        raise ValueError(f"{name} must be one measurement (N1, N2), a stack (n, N1, N2) or a "
                         f"sequence of 2-D arrays; got an array of shape {X.shape}")
    items = list(X) if isinstance(X, (list, tuple)) or X.ndim == 3 else [X]
    arrays = []
    for i, a in enumerate(items):
        label = name if len(items) == 1 else f"{name}[{i}]"
        if not _is_dask_array(a):
            raise TypeError(f"{label} must be a dask array like the other items, got "
                            f"{type(a).__name__}")
        dt = np.dtype(a.dtype)
        if dt == object or not np.issubdtype(dt, np.number):
            raise TypeError(f"{label} must be numeric, got dtype {dt}")
        if np.issubdtype(dt, np.complexfloating):
            raise TypeError(f"{label} must be real-valued, got dtype {dt}")
        if a.ndim == 3:
            arrays.extend(a[j] for j in range(a.shape[0]))
            continue
        if a.ndim != 2:
            raise ValueError(f"{label} must be a 2-D measurement, got shape {a.shape}")
        arrays.append(a)
    for i, a in enumerate(arrays):
        if any(np.isnan(s) for s in a.shape):
            raise ValueError(f"{name}[{i}] has an unknown shape {a.shape}: compute its "
                             "chunk sizes first (x.compute_chunk_sizes())")
        if min(a.shape) < image_size:
            label = name if len(arrays) == 1 else f"{name}[{i}]"
            raise ValueError(f"{label} of shape {a.shape} is smaller than one "
                             f"{image_size}x{image_size} patch")
    return DaskPatchData(arrays, image_size, names).check(name)


#: Dask settings of the local cluster of ``mtdlearn fit --workers``: no statistical profiler
#: (it samples the running task's stack every 10 ms, for a dashboard this
#: cluster does not start) and event-loop health checks every second instead
#: of every 20 ms.  A worker with one core shares it with its event loop;
#: measured (32 micrographs of 2048^2, L = 5, K = 16, one core): 57.5 s per
#: iteration with Dask's defaults, 53.4 s with these, 44.3 s in process.
QUIET_WORKERS = {"distributed.worker.profile.enabled": False,
                 "distributed.admin.tick.interval": "1s"}


#: Scheduler options of a ``LocalCluster`` without dashboard whose HTTP server
#: (health checks, metrics) takes a free port: with ``dashboard_address=None``
#: alone it asks for 8787 and warns when another cluster holds it.
NO_HTTP_PORT = {"dashboard": False, "dashboard_address": ":0"}


def local_cluster(n_workers):
    """Start the local Dask cluster of ``mtdlearn fit --workers``.

    Parameters
    ----------
    n_workers : int
        Worker processes, one thread each.

    Returns
    -------
    cluster : distributed.LocalCluster
        Its workers set as :data:`QUIET_WORKERS` (the caller's Dask settings
        are left as they were); no dashboard.
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set(QUIET_WORKERS):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            dashboard_address=None, scheduler_kwargs=NO_HTTP_PORT)
