"""The commands' inputs: glob patterns expanded, files or lazy micrographs, a Dask client."""

import sys

from ._files import _CLIError


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


def _inputs(args):
    """The measurements: memory-mapped files, or lazy micrographs read on the workers."""
    paths = _expand_inputs(args.inputs)
    if _uses_dask(args):
        from ..data.io import read_micrographs

        return read_micrographs(paths)
    return paths


def _uses_dask(args):
    return args.scheduler is not None or args.workers is not None


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
