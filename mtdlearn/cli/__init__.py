"""The ``mtdlearn`` command line (``mtdlearn --help``)."""

from .commands import main

__all__ = ["main"]
