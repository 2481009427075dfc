"""One place that limits BLAS threads.

The hot loops run many small GEMMs (a few hundred rows by tens of columns);
OpenBLAS's worker threads cost more than they give there, so BLAS runs on
one thread inside them and parallelism comes from joblib/thread pools over
chunks instead.  The controller is built once: scanning the loaded libraries
costs milliseconds per call.
"""

from threadpoolctl import ThreadpoolController

_CONTROLLER = None


def blas_single_thread():
    """Context manager limiting BLAS to one thread."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")
