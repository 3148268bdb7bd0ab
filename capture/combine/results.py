"""What a combination reports: counts, inputs, exclusions, and the FITS provenance cards."""

from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from calibd.capture.textsafe import shown

from .kernels import CombineMethod
from .rejection import Rejection

F32 = npt.NDArray[np.float32]


def card_text(text: str) -> str:
    """``text`` as a FITS card may hold it: printable ASCII (others escaped, :func:`shown`),
    at most 200 characters (astropy continues a long HISTORY on further cards)."""
    return shown(text, 200).encode("ascii", "backslashreplace").decode("ascii")


@dataclass(frozen=True)
class CombineStats:
    """What a combination did (everything but the image itself)."""

    ncombine: int
    shape: tuple[int, int]
    used_paths: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]
    rejected_low: int
    rejected_high: int
    method: CombineMethod
    rejection: Rejection
    engine: str

    @property
    def rejected_fraction(self) -> float:
        """Rejected samples / all samples (0..1)."""
        total = self.ncombine * self.shape[0] * self.shape[1]
        return (self.rejected_low + self.rejected_high) / total if total else 0.0

    def header_cards(self) -> list[tuple[str, Any, str]]:
        """FITS provenance cards ``(keyword, value, comment)``, HISTORY lines last.

        ``NCOMBINE``, ``COMBMETH``, ``REJMETH`` always; the method's parameters (``REJLOW`` /
        ``REJHIGH`` are sigma thresholds, frame counts or percentiles depending on the method;
        ``REJITER``, ``REJCENT``, ``REJSPRD``, ``REJSTD``); the outcome (``REJNLOW``,
        ``REJNHIGH``, ``REJFRAC``); one HISTORY line per input and per excluded file.
        """
        r = self.rejection
        cards: list[tuple[str, Any, str]] = [
            ("NCOMBINE", self.ncombine, "number of frames combined"),
            ("COMBMETH", self.method.upper(), "combination of the kept samples"),
            ("REJMETH", r.method.upper(), "pixel rejection method"),
        ]
        if r.method in ("sigma", "winsorized"):
            cards += [
                ("REJLOW", r.sigma_low, "[sigma] lower rejection threshold"),
                ("REJHIGH", r.sigma_high, "[sigma] upper rejection threshold"),
                ("REJITER", r.max_passes, "clipping passes (0 = until converged)"),
            ]
            if r.method == "sigma":
                cards += [
                    ("REJCENT", r.center.upper(), "centre of the clipping"),
                    ("REJSPRD", "MAD_STD" if r.spread == "mad" else "STD", "spread estimator"),
                ]
                if r.spread == "std":
                    note = "std divides by N (POPULATION) or N-1 (SAMPLE)"
                    cards.append(("REJSTD", r.stddev.upper(), note))
        elif r.method == "minmax":
            cards += [
                ("REJLOW", r.n_low, "lowest samples dropped per pixel"),
                ("REJHIGH", r.n_high, "highest samples dropped per pixel"),
            ]
        elif r.method == "percentile":
            cards += [
                ("REJLOW", r.percentile_low, "[%] keep samples above this percentile"),
                ("REJHIGH", r.percentile_high, "[%] keep samples below this percentile"),
            ]
        cards += [
            ("REJNLOW", self.rejected_low, "samples rejected low"),
            ("REJNHIGH", self.rejected_high, "samples rejected high"),
            ("REJFRAC", round(self.rejected_fraction, 8), "fraction of samples rejected"),
            ("HISTORY", f"calibd: {self.method} of {self.ncombine} frames, {r.describe()}", ""),
        ]
        cards += [("HISTORY", card_text(f"input: {os.path.basename(p)}"), "")
                  for p in self.used_paths]
        cards += [("HISTORY", card_text(f"excluded: {os.path.basename(p)}: {why}"), "")
                  for p, why in self.excluded]
        return cards

    def apply_to(self, header: fits.Header) -> fits.Header:
        """Append :meth:`header_cards` to ``header`` (replacing keywords already present)."""
        for key, value, comment in self.header_cards():
            if key == "HISTORY":
                header.add_history(value)
            else:
                header[key] = (value, comment)
        return header


@dataclass(frozen=True)
class CombineResult(CombineStats):
    """:class:`CombineStats` plus the combined image (float32, rows x columns)."""

    data: F32 = field(repr=False)
