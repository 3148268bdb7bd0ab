"""``calibd plan from-lights``: lights written by other programs, read from their documented
header and file-name conventions, grouped, matched against the library, and the plan for what
is missing — exactly that and nothing more.

Conventions the corpus follows (sources):

* N.I.N.A.: ``IMAGETYP='LIGHT'``, ``EXPOSURE`` and ``EXPTIME`` (s), ``GAIN`` (the camera's gain;
  ``EGAIN`` is e-/ADU: bitbucket.org/Isbeorn/nina pull request 181), ``OFFSET``, ``XBINNING``,
  ``READOUTM``, ``SET-TEMP`` (NaN when no cooler set-point: nina issue 219), ``CCD-TEMP``,
  ``FILTER``, ``INSTRUME``, ``BAYERPAT``; file pattern tokens ``$$DATETIME$$``, ``$$FILTER$$``,
  ``$$EXPOSURETIME$$``, ``$$FRAMENR$$`` (N.I.N.A. path tokens, docs.rs ravensky-astro
  NINA_PathTokens.csv). XISF: ``<FITSKeyword name= value= comment=/>`` in the XML header,
  strings quoted since N.I.N.A. 3 (nina issue 1284) and unquoted before.
* Ekos/INDI: ``IMAGETYP='Light Frame'``, ``EXPTIME``, ``CCD-TEMP`` only (no set-point keyword),
  ``XBINNING``/``YBINNING``, ``GAIN``/``OFFSET``, ``FILTER``, ``INSTRUME``, ``BAYERPAT`` (INDI CCD
  header, api.kde.org indiccd; indi-3rdparty issue 522); Ekos names ``M31_Light_Ha_300_secs_…``.
* SharpCap: identified by ``SWCREATE`` (pypi.org azotea-fits, which normalises SharpCap's
  headers); the keywords here (``EXPTIME``, ``GAIN``, ``OFFSET``, ``CCD-TEMP``, ``SET-TEMP``,
  ``XBINNING``, ``INSTRUME``) are the common ASCOM/MaxIm set — the SharpCap 4.1 manual
  (docs.sharpcap.co.uk, Controlling Cameras) names the settings, not the exact cards, so this
  light is the least verified of the corpus.
* ASIAIR: settings in the file name, ``Light_M31_300.0s_Bin1_2600MM_gain100_20240105-221033_
  -10.0C_0001.fit`` (ASIAIR file naming as documented at astroguide.starlust.de, "File Naming
  and Folder Structure": ``MasterFlat_Stack20_50.0ms_Bin1_2600MC_filter-NoFilter_gain100_
  20250221_1.6C.xisf``).
* APT and MaxIm/SBIG style: ``EXPOSURE``, ``SET-TEMP``, ``CCD-TEMP``, ``XBINNING``, ``IMAGETYP=
  'Light Frame'`` (the SBIG/MaxIm keyword set, e.g. the header in iceinspace.com.au thread 31377;
  APT's user guide, astrophotography.app, for its CCD/CMOS mode; its file names are not parsed).
* Sequence Generator Pro: ``CCDXBIN``, ``TEMPERAT`` (cooler temperature), ``EXPOSURE``,
  ``IMAGETYP='LIGHT'`` (help.sequencegeneratorpro.com, Data Stored in the FITS Header).
* calibd's own: ``CAMERAID``, ``CAMNAME``, ``GAIN``, ``OFFSET``, ``READOUTM``, ``SET-TEMP``,
  ``EXPTIME``, ``FILTER`` (docs/architecture.md, FITS conventions).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calibd.capture.library.headermap import master_row
from calibd.capture.library.index import Index
from calibd.capture.plans.load import load_plan
from calibd.capture.plans.model import BiasSet
from calibd.capture.plans.model import DarkSet
from calibd.capture.plans.model import FlatSet
from tests.support import fits_light
from tests.support import run_cli
from tests.support import write_config

CAM = "ZWO ASI2600MM Pro"
W, H = 6, 4  # stored (binned) pixels: tiny images, the header is what counts


def xisf_light(path: Path, cards: dict[str, Any], *, quoted: bool = True,
               extra: str = "") -> Path:
    """An XISF file: signature, header length, reserved, XML header, then (fake) pixels."""
    def val(v: Any) -> str:
        if isinstance(v, str):
            return f"'{v}'" if quoted else v
        return str(v)
    kws = "".join(f'<FITSKeyword name="{k}" value="{val(v)}" comment=""/>'
                  for k, v in cards.items())
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>{extra}<xisf version="1.0" '
           f'xmlns="http://www.pixinsight.com/xisf"><Image geometry="{W}:{H}:1" '
           f'sampleFormat="UInt16" location="attachment:4096:{W * H * 2}">{kws}</Image></xisf>')
    data = xml.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"XISF0100" + struct.pack("<I", len(data)) + b"\0" * 4 + data
                     + b"\xff" * (W * H * 2))
    return path


def add_master(index: Index, kind: str, *, instrument: str = CAM, gain: int, offset: int = 50,
               setpoint: float = -10.0, exposure: float = 0.001, filt: str | None = None,
               bias_sub: bool = False, days_old: float = 1.0,
               n: list[int] = [0]) -> None:  # noqa: B006 - a counter
    """A master row made from a header in calibd's master conventions, through the one
    header <-> index mapping, taken ``days_old`` days ago."""
    n[0] += 1
    date = (datetime.now(UTC) - timedelta(days=days_old)).strftime("%Y-%m-%dT%H:%M:%S")
    h = {"IMAGETYP": f"Master {kind.capitalize()}", "INSTRUME": instrument, "CAMNAME": "cam",
         "GAIN": gain, "OFFSET": offset, "XBINNING": 1, "SET-TEMP": setpoint,
         "EXPTIME": exposure, "DATE-OBS": date, "NAXIS1": W, "NAXIS2": H,
         "SRCCELL": f"{kind}|{n[0]}"}
    if filt:
        h["FILTER"] = filt
    if bias_sub:
        h.update(BIASSUB=True, BIASMSTR="Master_Bias.fits")
    index.upsert_master(master_row(h, path=f"Masters/{kind}-{n[0]}.fits", inputs_digest=None))


def from_lights(capsys: pytest.CaptureFixture[str], *args: str | Path) -> dict[str, Any]:
    res = run_cli(capsys, "-q", "plan", "from-lights", *args, "--json")
    assert res.code == 0, res.err
    data: dict[str, Any] = json.loads(res.out)
    return data


def plan_cells(path: Path) -> dict[str, int]:
    """Cells of a written plan, expanded from the schema model (not through calibd's
    resolver): kind|gain|offset|bin|set-point|exposure-or-filter -> count."""
    plan, _ = load_plan(path)
    out: dict[str, int] = {}
    for s in plan.sets:
        for g in s.gains:
            for o in s.offsets or [None]:
                for b in s.binnings or [1]:
                    for sp in s.setpoints_c:
                        if isinstance(s, DarkSet):
                            tails = [f"{e:g}s" for e in s.exposures_s]
                        elif isinstance(s, FlatSet):
                            tails = list(s.filters)
                        else:
                            assert isinstance(s, BiasSet)
                            tails = [""]
                        for t in tails:
                            key = f"{s.kind}|{g}|{o}|{b}|{sp:g}|{t}"
                            assert key not in out, f"{key} planned twice"
                            out[key] = s.count
    return out


# ------------------------------------------------------------------ the programs' corpus
def corpus(folder: Path) -> dict[str, Path]:
    """One light per program, all gain 100, offset 50, bin 1, -10 °C, 300 s, Ha, one camera;
    plus two N.I.N.A. lights at 120 s and 600 s and an Ekos light through OIII."""
    common = {"INSTRUME": CAM}
    files = {
        "nina": fits_light(folder / "NINA" / "2024-01-05_22-10-33_Ha_-10.00_300.00s_0001.fits",
                           {**common, "IMAGETYP": "LIGHT", "EXPOSURE": 300.0, "EXPTIME": 300.0,
                            "GAIN": 100, "OFFSET": 50, "XBINNING": 1, "YBINNING": 1,
                            "SET-TEMP": -10.0, "CCD-TEMP": -9.9, "FILTER": "Ha",
                            "DATE-OBS": "2024-01-05T22:10:33.120"}),
        "nina_xisf": xisf_light(folder / "NINA" / "2024-01-05_22-20-33_Ha_-10.00_300.00s_0002"
                                ".xisf", {**common, "IMAGETYP": "LIGHT", "EXPOSURE": 300.0,
                                          "GAIN": 100, "OFFSET": 50, "XBINNING": 1,
                                          "SET-TEMP": -10.0, "FILTER": "Ha",
                                          "DATE-OBS": "2024-01-05T22:20:33"}),
        "nina_xisf_v2": xisf_light(folder / "NINA" / "old_0003.xisf",
                                   {**common, "IMAGETYP": "LIGHT", "EXPOSURE": 300.0,
                                    "GAIN": 100, "OFFSET": 50, "XBINNING": 1,
                                    "SET-TEMP": -10.0, "FILTER": "Ha"}, quoted=False),
        "ekos": fits_light(folder / "Ekos" / "M31_Light_Ha_300_secs_2024-01-05T22-30-00_001"
                           ".fits", {**common, "IMAGETYP": "Light Frame", "EXPTIME": 300.0,
                                     "CCD-TEMP": -10.2, "XBINNING": 1, "YBINNING": 1,
                                     "GAIN": 100, "OFFSET": 50, "FILTER": "Ha",
                                     "BAYERPAT": "RGGB"}),
        "sharpcap": fits_light(folder / "SharpCap" / "22_40_00.fits",
                               {**common, "SWCREATE": "SharpCap", "EXPTIME": 300.0,
                                "GAIN": 100, "OFFSET": 50,
                                "SET-TEMP": -10.0, "CCD-TEMP": -10.1, "XBINNING": 1,
                                "FILTER": "Ha"}),
        # ASIAIR: the settings are in the name; this header carries none of them.
        "asiair": fits_light(folder / "ASIAIR" / "Light_M31_300.0s_Bin1_2600MM_gain100_"
                             "offset50_filter-Ha_20240105-225000_-10.0C_0001.fit",
                             {**common}),
        "apt": fits_light(folder / "APT" / "L_0001_M31.fit",
                          {**common, "IMAGETYP": "Light Frame", "EXPOSURE": 300.0,
                           "SET-TEMP": -10.0, "CCD-TEMP": -10.0, "XBINNING": 1, "GAIN": 100,
                           "OFFSET": 50, "FILTER": "Ha"}),
        "sgp": fits_light(folder / "SGP" / "M31_Ha_frame1.fits",
                          {**common, "IMAGETYP": "LIGHT", "EXPOSURE": 300.0, "CCDXBIN": 1,
                           "CCDYBIN": 1, "TEMPERAT": -9.8, "GAIN": 100, "OFFSET": 50,
                           "FILTER": "Ha"}),
        "calibd": fits_light(folder / "calibd" / "light.fits",
                             {"IMAGETYP": "Light Frame", "INSTRUME": CAM, "CAMNAME": "main",
                              "EXPTIME": 300.0, "GAIN": 100, "OFFSET": 50, "XBINNING": 1,
                              "READOUTM": None, "SET-TEMP": -10.0, "FILTER": "Ha"}),
        "nina_120": fits_light(folder / "NINA" / "2024-01-06_01-00-00_Ha_-10.00_120.00s_0001"
                               ".fits", {**common, "IMAGETYP": "LIGHT", "EXPTIME": 120.0,
                                         "GAIN": 100, "OFFSET": 50, "XBINNING": 1,
                                         "SET-TEMP": -10.0, "FILTER": "Ha"}),
        "nina_600": fits_light(folder / "NINA" / "2024-01-06_02-00-00_Ha_-10.00_600.00s_0001"
                               ".fits", {**common, "IMAGETYP": "LIGHT", "EXPTIME": 600.0,
                                         "GAIN": 100, "OFFSET": 50, "XBINNING": 1,
                                         "SET-TEMP": -10.0, "FILTER": "Ha"}),
        "ekos_oiii": fits_light(folder / "Ekos" / "M31_Light_OIII_300_secs_2024-01-06T03-00-00"
                                "_001.fits", {**common, "IMAGETYP": "Light Frame",
                                              "EXPTIME": 300.0, "CCD-TEMP": -9.7,
                                              "XBINNING": 1, "GAIN": 100, "OFFSET": 50,
                                              "FILTER": "OIII"}),
    }
    return files


def test_corpus_of_each_programs_lights_is_grouped_and_matched(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lights = tmp_path / "lights"
    files = corpus(lights)
    lib = tmp_path / "lib"
    index = Index(lib)
    add_master(index, "bias", gain=100)  # exact
    add_master(index, "dark", gain=100, exposure=300.0, setpoint=-10.6, bias_sub=True)
    add_master(index, "flat", gain=0, filt="Ha")  # another gain: the documented fallback
    add_master(index, "flat", gain=100, filt="OIII", days_old=400)  # past the policy's 30 days
    index.close()
    before = {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
              for p in files.values()}
    out = tmp_path / "need.yaml"
    config = write_config(tmp_path / "c.yaml")  # a library of bias-subtracted darks
    config.write_text(config.read_text(encoding="utf-8") +
                      "masters: {dark_convention: bias-subtracted}\n", encoding="utf-8")
    data = from_lights(capsys, lights, "--library", lib, "-o", out, "--config", config)

    assert data["files"] == len(files) and data["lights"] == len(files), data["problems"]
    by = {(g["exposure_s"], g["filter"]): g for g in data["groups"]}
    assert set(by) == {(300.0, "Ha"), (120.0, "Ha"), (600.0, "Ha"), (300.0, "OIII")}
    main = by[(300.0, "Ha")]
    assert main["lights"] == 9  # every program's 300 s Ha light in one group
    assert (main["camera"], main["gain"], main["offset"], main["binning"],
            main["setpoint_c"]) == (CAM, 100, 50, 1, -10.0)
    cov = {k: v["coverage"] for k, v in main["masters"].items()}
    assert cov["bias"] == "exact" and cov["dark"] == "within tolerance" \
        and cov["flat"] == "fallback", cov
    assert by[(120.0, "Ha")]["masters"]["dark"]["coverage"] == "fallback"  # scaled 300 s
    assert by[(600.0, "Ha")]["masters"]["dark"]["coverage"] == "missing"
    oiii = by[(300.0, "OIII")]["masters"]["flat"]
    assert oiii["coverage"] == "stale" and "expired: 400 days old" in oiii["stale"]
    # INDI writes no set-point: derived from CCD-TEMP, and said so.
    notes = {Path(n["file"]).name: n["notes"] for n in data["notes"]}
    assert any("rounded to -10" in n for n in notes[files["ekos"].name])
    # The plan: exactly the 600 s dark and the (stale) OIII flat.
    assert plan_cells(out) == {"dark|100|50|1|-10|600s": 20, "flat|100|50|1|-10|OIII": 25}
    assert [c["kind"] for c in data["plans"][0]["cells"]] == ["dark", "flat"]
    assert data["plans"][0]["wall_s"] >= 20 * 600 and data["plans"][0]["disk_bytes"] > 0
    # Lights are read, never modified.
    after = {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
             for p in files.values()}
    assert after == before


# ------------------------------------------------------------------ hostile and unclear input
def test_contradictory_unknown_and_hostile_lights_are_reported_per_file(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = tmp_path / "lights"
    base = {"INSTRUME": CAM, "IMAGETYP": "LIGHT", "GAIN": 100, "OFFSET": 50, "XBINNING": 1,
            "SET-TEMP": -10.0, "FILTER": "L"}
    good = fits_light(d / "good.fits", {**base, "EXPTIME": 60.0})
    bad = {
        "exp_clash.fits": fits_light(d / "exp_clash.fits",
                                     {**base, "EXPTIME": 300.0, "EXPOSURE": 120.0}),
        "name_clash": fits_light(d / "Light_M1_60.0s_Bin1_gain200_0001.fits",
                                 {**base, "EXPTIME": 60.0}),
        "no_exposure.fits": fits_light(d / "no_exposure.fits", {**base}),
        "escape.fits": fits_light(d / "escape.fits", {**base, "EXPTIME": 60.0,
                                                      "FILTER": "LZZZZ"}),
        "binning.fits": fits_light(d / "binning.fits", {**base, "EXPTIME": 60.0,
                                                        "YBINNING": 2}),
    }
    # Not valid FITS for astropy either: written by hand (an ANSI escape in a card).
    esc = d / "escape.fits"
    esc.write_bytes(esc.read_bytes().replace(b"LZZZZ", b"L\x1b[2J"))
    (d / "noend.fits").write_bytes(b"SIMPLE  =                    T" .ljust(80) * 36 * 70)
    (d / "short.fits").write_bytes(b"SIMPLE  =                    T".ljust(80) * 3)
    bomb = ('<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>')
    xisf_light(d / "bomb.xisf", {"EXPTIME": 60.0}, extra=bomb)
    (d / "huge.xisf").write_bytes(b"XISF0100" + struct.pack("<I", 2**31) + b"\0" * 4)
    os.mkfifo(d / "fifo.fits")
    fits_light(d / "dark.fits", {**base, "IMAGETYP": "Dark Frame", "EXPTIME": 60.0})

    res = run_cli(capsys, "-q", "plan", "from-lights", d, "--library", tmp_path / "lib",
                  "--json")
    assert res.code == 0, res.err
    assert "\x1b" not in res.out and "\x1b" not in res.err
    data = json.loads(res.out)
    problems = {Path(p["file"]).name: " ".join(p["problems"]) for p in data["problems"]}
    assert "contradictory exposure" in problems["exp_clash.fits"]
    assert "contradictory gain" in problems[bad["name_clash"].name]
    assert "unknown exposure" in problems["no_exposure.fits"]
    assert "FILTER is malformed" in problems["escape.fits"]
    assert "unequal binning" in problems["binning.fits"]
    assert "no END card" in problems["noend.fits"]
    assert "ends inside" in problems["short.fits"]
    assert "DOCTYPE" in problems["bomb.xisf"]
    assert "XISF header of" in problems["huge.xisf"]
    assert "not a regular file" in problems["fifo.fits"]
    assert [Path(s["file"]).name for s in data["skipped"]] == ["dark.fits"]
    # Only the good light is grouped and planned.
    assert data["lights"] == 1 and [g["lights"] for g in data["groups"]] == [1]
    assert data["plans"][0]["cells"] and all(
        "60" in c["key"] or c["kind"] in ("bias", "flat") for c in data["plans"][0]["cells"])
    assert good.is_file()
    text = run_cli(capsys, "-q", "plan", "from-lights", d, "--library", tmp_path / "lib")
    assert text.code == 0 and "\x1b" not in text.out and "escape.fits" in text.out
    missing = run_cli(capsys, "plan", "from-lights", tmp_path / "nope")
    assert missing.code == 2 and "no such folder" in missing.err


# ------------------------------------------------------------------ 200 lights, 3 cameras
CAMERAS = ("ZWO ASI2600MM Pro", "QHY268M", "ZWO ASI294MM Pro")
GAINS = (0, 100, 200, 300)
EXPOSURES = (10.0, 30.0, 60.0, 120.0, 180.0, 300.0)
FILTERS = ("L", "R", "G", "B", "Ha")


def _write_light(folder: Path, i: int, cam: int, gain: int, exp: float, filt: str) -> None:
    """Camera 0 in N.I.N.A.'s keywords, camera 1 in INDI's (sensor temperature only),
    camera 2 as ASIAIR (settings in the file name, the camera in the header)."""
    if cam == 0:
        fits_light(folder / f"nina_{i:04d}.fits",
                   {"INSTRUME": CAMERAS[0], "IMAGETYP": "LIGHT", "EXPOSURE": exp,
                    "EXPTIME": exp, "GAIN": gain, "OFFSET": 50, "XBINNING": 1,
                    "SET-TEMP": -10.0, "FILTER": filt})
    elif cam == 1:
        fits_light(folder / f"M31_Light_{filt}_{exp:g}_secs_{i:04d}.fits",
                   {"INSTRUME": CAMERAS[1], "IMAGETYP": "Light Frame", "EXPTIME": exp,
                    "CCD-TEMP": -10.3 + (i % 3) * 0.2, "GAIN": gain, "OFFSET": 50,
                    "XBINNING": 1, "FILTER": filt})
    else:
        fits_light(folder / f"Light_M31_{exp:.1f}s_Bin1_294MM_gain{gain}_offset50_"
                   f"filter-{filt}_20240105-221033_-10.0C_{i:04d}.fit",
                   {"INSTRUME": CAMERAS[2]})


def test_two_hundred_lights_yield_exactly_the_missing_cells(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lights = tmp_path / "lights"
    made = []
    for i in range(200):
        cam, gain = i % 3, GAINS[(i // 3) % 4]
        exp, filt = EXPOSURES[(i * 7 + i // 3) % 6], FILTERS[(i * 3 + i // 12) % 5]
        _write_light(lights, i, cam, gain, exp, filt)
        made.append((cam, gain, exp, filt))
    assert {m[0] for m in made} == {0, 1, 2} and {m[1] for m in made} == set(GAINS)
    assert {m[2] for m in made} == set(EXPOSURES) and {m[3] for m in made} == set(FILTERS)

    lib = tmp_path / "lib"
    index = Index(lib)
    for g in (0, 100):  # camera 0 has its bias at gains 0 and 100
        add_master(index, "bias", instrument=CAMERAS[0], gain=g)
    for e in EXPOSURES:  # camera 1 has every dark at gain 100
        add_master(index, "dark", instrument=CAMERAS[1], gain=100, exposure=e)
    for f in ("L", "R"):  # camera 2 has L and R flats (at gain 0: any gain will do)
        add_master(index, "flat", instrument=CAMERAS[2], gain=0, filt=f)
    index.close()

    # What must be planned, derived from what was written and what the library holds.
    want: dict[str, dict[str, int]] = {c: {} for c in CAMERAS}
    for cam, gain, exp, filt in made:
        cells = want[CAMERAS[cam]]
        if not (cam == 0 and gain in (0, 100)):
            cells[f"bias|{gain}|50|1|-10|"] = 50
        if not (cam == 1 and gain == 100):
            cells[f"dark|{gain}|50|1|-10|{exp:g}s"] = 20
        if not (cam == 2 and filt in ("L", "R")):
            cells[f"flat|{gain}|50|1|-10|{filt}"] = 25

    out = tmp_path / "plans" / "need.yaml"
    out.parent.mkdir()
    data = from_lights(capsys, lights, "--library", lib, "-o", out)
    assert data["files"] == 200 and data["lights"] == 200, data["problems"]
    assert sum(g["lights"] for g in data["groups"]) == 200
    assert len(data["groups"]) == len(set(made))
    got = {p["camera"]: plan_cells(Path(p["file"])) for p in data["plans"]}
    assert got == want
    assert sorted(os.listdir(out.parent)) == sorted(
        f"need-{c.replace(' ', '-')}.yaml" for c in CAMERAS)
    for p in data["plans"]:
        cells = want[p["camera"]]
        assert p["frames"] == sum(cells.values()) and len(p["cells"]) == len(cells)
        darks = sum(float(k.split("|")[-1][:-1]) * n for k, n in cells.items()
                    if k.startswith("dark"))
        assert p["exposure_s"] >= darks and p["wall_s"] > p["exposure_s"]
        assert p["disk_bytes"] >= p["frames"] * W * H * 2


@pytest.mark.parametrize(("cards", "height", "expected"), [
    # N.I.N.A. + an ASCOM camera: SensorType's name and the camera's BayerOffsetX beside it.
    ({"BAYERPAT": "RGGB", "XBAYROFF": 1, "YBAYROFF": 0, "ROWORDER": "TOP-DOWN"}, H, "GRBG"),
    ({"BAYERPAT": "RGGB", "XBAYROFF": 0, "YBAYROFF": 1}, H, "GBRG"),
    # A BOTTOM-UP file of even height starts on the other row (Siril's reading).
    ({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}, 64, "GBRG"),
    ({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}, 63, "RGGB"),
    ({"BAYERPAT": "CMYG"}, H, "CMYG"),
])
def test_a_lights_bayer_phase_folds_in_the_offsets_and_row_order(
        tmp_path: Path, cards: dict[str, Any], height: int, expected: str) -> None:
    from calibd.capture.lights.conventions import read_light
    from calibd.capture.lights.headers import read_header

    path = fits_light(tmp_path / "light.fits", {"IMAGETYP": "LIGHT", "EXPTIME": 60.0, **cards},
                      shape=(height, W))
    assert read_light(path, read_header(path)).bayer == expected


@pytest.mark.parametrize("layout", ["compressed", "extension", "compressed .fz",
                                    "extension, no EXTEND card"])
def test_a_light_whose_image_is_in_an_extension_is_read_from_that_header(
        tmp_path: Path, layout: str) -> None:
    """N.I.N.A.'s compressed FITS and fpack's .fz keep the image and its keywords in a
    tile-compressed extension after an empty primary HDU; some programs write an IMAGE
    extension. Its keywords win; the size is the image's, not the table's."""
    from astropy.io import fits

    from calibd.capture.lights.conventions import read_light_file
    from calibd.capture.lights.survey import light_files

    header = fits.Header()
    for key, value in {"IMAGETYP": "LIGHT", "INSTRUME": CAM, "EXPTIME": 120.0, "GAIN": 100,
                       "OFFSET": 50, "SET-TEMP": -10.0, "FILTER": "Ha"}.items():
        header[key] = value
    image = np.zeros((H * 5, W * 7), dtype=np.uint16)
    hdu = fits.ImageHDU(image, header) if layout == "extension" else \
        fits.CompImageHDU(image, header)
    primary = fits.PrimaryHDU()
    primary.header["FILTER"] = "L"  # the extension's value wins
    path = tmp_path / "lights" / ("light.fz" if layout.endswith(".fz") else "light.fits")
    path.parent.mkdir()
    fits.HDUList([primary, hdu]).writeto(path)
    if layout.endswith("no EXTEND card"):  # optional in FITS; astropy always writes it
        raw = bytearray(path.read_bytes())
        at = raw.index(b"EXTEND  =")
        assert at % 80 == 0
        raw[at:at + 80] = b" " * 80
        path.write_bytes(bytes(raw))
    frame = read_light_file(path)
    assert frame.usable, frame.problems
    assert (frame.exposure_s, frame.gain, frame.offset, frame.setpoint_c, frame.filter) == \
        (120.0, 100, 50, -10.0, "Ha")
    assert (frame.width, frame.height) == (W * 7, H * 5)
    assert light_files([tmp_path / "lights"]) == ([path], False)


def test_an_absurd_image_size_is_not_believed(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    """NAXIS1 = 1.0E308 (a float where FITS wants a whole number): the size is unknown, the
    plan's disk estimate does not overflow."""
    light = fits_light(tmp_path / "lights" / "huge.fits",
                       {"INSTRUME": CAM, "IMAGETYP": "LIGHT", "EXPTIME": 60.0, "GAIN": 100,
                        "OFFSET": 50, "SET-TEMP": -10.0, "FILTER": "L"})
    raw = bytearray(light.read_bytes())
    at = raw.index(b"NAXIS1  =")
    raw[at:at + 80] = "NAXIS1  =              1.0E308".ljust(80).encode()
    light.write_bytes(bytes(raw))
    res = run_cli(capsys, "-q", "plan", "from-lights", tmp_path / "lights", "--library",
                  tmp_path / "lib", "--json")
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert data["lights"] == 1 and data["plans"], data
