"""calibd's core: plans, sequencing, cooling, flats, the FITS library, masters and the CLI."""

__version__ = "0.1.0"
