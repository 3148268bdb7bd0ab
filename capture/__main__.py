"""``python -m capture`` runs the ``calibd`` command line."""

from capture.cli.main import entry

if __name__ == "__main__":
    entry()
