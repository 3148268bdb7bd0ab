"""``python -m calibd`` runs the ``calibd`` command line."""

from calibd.capture.cli.main import entry

if __name__ == "__main__":
    entry()
