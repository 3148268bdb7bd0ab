"""``python -m calibd.capture`` runs the ``calibd`` command line (as ``python -m calibd`` does)."""

from calibd.capture.cli.main import entry

if __name__ == "__main__":
    entry()
