"""The ``calibd`` command line (see :mod:`capture.cli.main`)."""

from calibd.capture.cli.main import entry as main

__all__ = ["main"]
