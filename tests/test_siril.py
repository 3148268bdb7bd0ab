"""Siril (Debian's ``siril`` 1.0, headless ``siril-cli``) uses calibd's masters as calibd means.

One session per sensor (mono ``small``, colour ``small-colour``, module-scoped): a calibd run of
the simulated camera (bias, darks of 0.01, 1, 30 and 300 s, panel flats in L) builds masters with
Siril's sigma clipping (sample standard deviation, until converged) and the default with-bias
darks; a copy of the library is rebuilt with bias-subtracted darks. Synthetic lights (the
simulator's sensor and optics, a flat sky of 5,000 ADU, no cosmic rays) are calibrated by Siril
through the script ``calibd masters export --to siril --light`` writes, i.e. Siril's stock call
for each convention (``-dark= -flat=``; ``-bias= -dark= -flat=``; colour: ``-cfa -equalize_cfa``,
the script's ``-debayer`` left out to compare the mosaic's pixels). Siril also stacks the raw bias
and 30 s darks itself, for comparison with calibd's masters.

"Expected level" is the sky signal seen through the master flat: 5,000 ADU times the median of
(true response / master flat) times Siril's flat normalisation (the mean of the master flat, which
Siril applies as the ratio of its output to ``(light - dark) / flat``; measured per CFA channel,
as ``-equalize_cfa`` scales each channel).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from astropy.io import fits

from calibd.capture.cli.main import main
from calibd.simulators.optics import OpticalTrain
from calibd.simulators.profiles import get_profile
from calibd.simulators.sensor import Illumination
from calibd.simulators.sensor import SensorModel
from tests.support import skip_or_fail
from tests.support import write_config
from tests.support import write_plan

EXPOSURES = (0.01, 1.0, 30.0, 300.0)
CONVENTIONS = ("with-bias", "bias-subtracted")
LEVEL_ADU = 5000.0
GAIN, OFFSET, SETPOINT = 100, 50, -10.0
N_BIAS, N_DARK, N_FLAT = 20, 20, 12
SIRIL_TIMEOUT_S = 120.0
F64 = npt.NDArray[np.float64]

PLAN = f"""
defaults: {{offset: {OFFSET}}}
cooling: {{dwell_s: 20, tolerance_c: 0.2, frame_tolerance_c: 0.3}}
sets:
  - kind: bias
    gains: [{GAIN}]
    setpoints_c: [{SETPOINT:g}]
    count: {N_BIAS}
  - kind: dark
    gains: [{GAIN}]
    setpoints_c: [{SETPOINT:g}]
    exposures_s: [{", ".join(f"{e:g}" for e in EXPOSURES)}]
    count: {N_DARK}
  - kind: flat
    source: panel
    filters: [L]
    gains: [{GAIN}]
    setpoints_c: [{SETPOINT:g}]
    count: {N_FLAT}
    panel: {{mode: exposure, brightness: 600}}
    dark_flats: {{use_master_bias: true}}
"""


# ---------------------------------------------------------------------- running Siril


@pytest.fixture(scope="module")
def siril_cli() -> str:
    path = shutil.which("siril-cli")
    if path is None:
        skip_or_fail("siril", "siril-cli is not installed (Debian package siril)")
    return path


def run_siril(siril: str, script: Path, workdir: Path) -> str:
    """Run a Siril script headless in ``workdir`` (bounded in time); returns its log, fails the
    test with the log's end when Siril does not finish the script."""
    home = workdir / ".home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache")}
    proc = subprocess.run([siril, "-s", str(script), "-d", str(workdir)], capture_output=True,
                          text=True, timeout=SIRIL_TIMEOUT_S, env=env, check=False,
                          stdin=subprocess.DEVNULL)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Script execution finished successfully" in log, log[-3000:]
    return log


def _corrected(log: str) -> int:
    """The number of pixels Siril's cosmetic correction rewrote, from its log line
    ``N corrected pixels (cold + hot)``: Siril 1.0's ``preprocess`` always corrects, with a dark,
    the pixels of the master dark above 3 sigma (hard-coded; cold pixels off)."""
    found = re.findall(r"(\d+) corrected pixels \(", log)
    assert len(found) == 1, log[-3000:]
    return int(found[0])


def siril_adu(path: Path) -> F64:
    """A Siril output in 16-bit ADU (32-bit float outputs are normalised to [0, 1])."""
    with fits.open(path) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float64)
        floating = hdul[0].header["BITPIX"] < 0
    return data * 65535.0 if floating else data


# ---------------------------------------------------------------------- the session


@dataclass
class Case:
    """One light calibrated by Siril: the inputs as calibd means them, and Siril's output."""

    convention: str
    exposure_s: float
    light: F64
    dark: F64  # the master dark the script used (with the bias in it, whatever the convention)
    flat: F64
    siril: F64
    corrected: int  # pixels Siril's own cosmetic correction rewrote (from its log)


@dataclass
class Session:
    profile: str
    pattern: str | None
    truth: F64  # relative response x vignetting and dust of the light
    dark_rate_e: F64  # e-/s per pixel at the set-point
    e_per_adu: float
    read_noise_adu: float
    bpm: npt.NDArray[np.bool_]
    script: dict[str, str] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)
    stacks: dict[str, tuple[F64, npt.NDArray[np.float32]]] = field(default_factory=dict)


def _config(path: Path, profile: str, convention: str) -> Path:
    write_config(path, flats=True, seed=5, profile=profile)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["masters"] = {"dark_convention": convention,
                       "rejection": {"iterations": 0, "stddev": "sample"}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _calibd(*args: str | Path) -> None:
    assert main(["-q", *map(str, args)]) == 0, args


def _master(lib: Path, folder: str, pattern: str) -> Path:
    (found,) = sorted((lib / "sim" / "Masters" / folder).glob(pattern))
    return found


def _lights(sensor: SensorModel, pattern: npt.NDArray[np.float32], exposure_s: float,
            template: fits.Header, dest: Path) -> list[F64]:
    """Two lights of a flat sky at ``LEVEL_ADU`` written into ``dest`` (16-bit, as a camera
    would), each with the header of a raw dark of that exposure made a light's."""
    header = template.copy()
    for key in ("RUNID", "CELLKEY", "CELLN", "FRAMESEQ", "CALTYPE", "CHECKSUM", "DATASUM",
                "PLANNAME"):
        header.remove(key, ignore_missing=True)
    header["IMAGETYP"] = "Light Frame"
    header["FILTER"] = "L"
    flux = LEVEL_ADU * sensor.e_per_adu16(GAIN) / exposure_s
    dest.mkdir(parents=True)
    out = []
    for i in (1, 2):
        image = sensor.frame(exposure_s=exposure_s, temperature_c=SETPOINT, gain=GAIN,
                             offset=OFFSET, light=Illumination(flux, pattern, source="panel"))
        fits.PrimaryHDU(image, header).writeto(dest / f"light_{i:04d}.fits")
        out.append(image.astype(np.float64))
    return out


@pytest.fixture(scope="module", params=["small", "small-colour"], ids=["mono", "colour"])
def session(request: pytest.FixtureRequest, siril_cli: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    profile_name: str = request.param
    tmp = tmp_path_factory.mktemp(f"siril-{profile_name}")
    plan = write_plan(tmp / "plan.yaml", PLAN)
    libs = {c: tmp / f"lib-{c}" for c in CONVENTIONS}
    _calibd("run", plan, "--config", _config(tmp / "with-bias.yaml", profile_name, "with-bias"),
            "--library", libs["with-bias"])
    shutil.copytree(libs["with-bias"], libs["bias-subtracted"])
    _calibd("masters", "build", "--force", "--config",
            _config(tmp / "bias-subtracted.yaml", profile_name, "bias-subtracted"),
            "--library", libs["bias-subtracted"])

    profile = get_profile(profile_name)
    sensor = SensorModel(dataclasses.replace(profile, cosmic_rate_per_cm2_min=0.0),
                         noise_seed=2024)
    optics = OpticalTrain(profile.width, profile.height, seed=profile.seed + 1).pattern("L")
    bpm_file = _master(libs["with-bias"], "BPM", "*.fits")
    s = Session(profile=profile_name, pattern=profile.bayer,
                truth=sensor.response_map(source="panel").astype(np.float64) * optics,
                dark_rate_e=sensor.dark_rate_map(SETPOINT).astype(np.float64),
                e_per_adu=sensor.e_per_adu16(GAIN),
                read_noise_adu=sensor.read_noise_e(GAIN) / sensor.e_per_adu16(GAIN),
                bpm=fits.getdata(bpm_file) > 0)

    # Siril's own stacks of the raw bias and 30 s darks.
    if True:
        work = tmp / "stacks"
        for kind, glob in (("bias", "Bias/*/*.fits"), ("dark", "Darks/*/30s/*.fits")):
            (work / kind).mkdir(parents=True)
            for f in (libs["with-bias"] / "sim").glob(glob):
                os.link(f, work / kind / f.name)
        script = work / "stack.ssf"
        script.write_text("\n".join([
            "requires 1.0.0", "setext fits", "set32bits",
            "cd bias", "convert bias -out=../process", "cd ../process",
            "stack bias rej s 3 3 -nonorm -out=../stack_bias", "cd ../dark",
            "convert dark -out=../process", "cd ../process",
            "stack dark rej s 3 3 -nonorm -out=../stack_dark", ""]), encoding="utf-8")
        run_siril(siril_cli, script, work)
        for kind, folder, pattern in (("bias", "Bias", "*.fits"),
                                      ("dark", "Darks", "Master_Dark_30s_*.fits")):
            ours = fits.getdata(_master(libs["with-bias"], folder, pattern))
            s.stacks[kind] = (siril_adu(work / f"stack_{kind}.fits"), np.asarray(ours))

    bias = {c: fits.getdata(_master(libs[c], "Bias", "*.fits")).astype(np.float64)
            for c in CONVENTIONS}
    for exposure in EXPOSURES:
        raw_dark = next((libs["with-bias"] / "sim" / "Darks").glob(f"*/{exposure:g}s/*.fits"))
        lights = _lights(sensor, optics, exposure, fits.getheader(raw_dark),
                         tmp / f"lights-{exposure:g}")
        for convention in CONVENTIONS:
            dest = tmp / f"siril-{convention}-{exposure:g}"
            _calibd("masters", "export", dest, "--to", "siril", "--light",
                    tmp / f"lights-{exposure:g}" / "light_0001.fits", "--library",
                    libs[convention], "--config", tmp / f"{convention}.yaml")
            shutil.copytree(tmp / f"lights-{exposure:g}", dest / "lights")
            script = dest / "calibrate_lights.ssf"
            text = script.read_text(encoding="utf-8")
            s.script[f"{convention} {exposure:g}"] = text
            script.write_text(text.replace(" -debayer", ""), encoding="utf-8")
            corrected = _corrected(run_siril(siril_cli, script, dest))
            dark = fits.getdata(_master(libs[convention], "Darks",
                                        f"Master_Dark_{exposure:g}s_*.fits")).astype(np.float64)
            if convention == "bias-subtracted":
                dark = dark + bias[convention]
            flat = fits.getdata(_master(libs[convention], "Flats", "*.fits")).astype(np.float64)
            for i, light in enumerate(lights, start=1):
                out = siril_adu(dest / "process" / f"cal_light_{i:05d}.fits")
                s.cases.append(Case(convention, exposure, light, dark, flat, out, corrected))
    yield s


# ---------------------------------------------------------------------- measures


def channel_masks(s: Session) -> list[npt.NDArray[np.bool_]]:
    """One mask per CFA position (four for a mosaic), or the whole image for mono."""
    shape = s.truth.shape
    if s.pattern is None:
        return [np.ones(shape, dtype=bool)]
    out = []
    for r, c in ((0, 0), (0, 1), (1, 0), (1, 1)):
        m = np.zeros(shape, dtype=bool)
        m[r::2, c::2] = True
        out.append(m)
    return out


def normalisation(case: Case, s: Session) -> F64:
    """Siril's flat normalisation per pixel (constant per CFA position): the median ratio of its
    output to ``(light - dark) / flat``."""
    plain = (case.light - case.dark) / case.flat
    good = ~s.bpm & (plain > 0.25 * LEVEL_ADU)
    norm = np.empty_like(plain)
    for m in channel_masks(s):
        norm[m] = float(np.median(case.siril[m & good] / plain[m & good]))
    return norm


def measure(case: Case, s: Session) -> dict[str, float]:
    norm = normalisation(case, s)
    good = ~s.bpm
    # What the masters say, pixel by pixel (Siril's arithmetic with calibd's meaning).
    meant = (case.light - case.dark) / case.flat * norm
    arithmetic_ok = float(np.mean((np.abs(case.siril - meant) <= 1.0)[good]))
    off = int(np.count_nonzero((np.abs(case.siril - meant) > 1.0) & good))
    # Expected level per pixel position class; flatness from 40 x 40 blocks of good pixels.
    expected = np.empty_like(meant)
    for m in channel_masks(s):
        ratio = s.truth[m & good] / case.flat[m & good]
        expected[m] = LEVEL_ADU * float(np.median(ratio)) * float(np.median(norm[m]))
    rel = case.siril / expected
    level_error = float(np.mean((case.siril - expected)[good]))
    h, w = rel.shape
    blocks = []
    for r0 in range(0, h - 39, 40):
        for c0 in range(0, w - 39, 40):
            sel = good[r0:r0 + 40, c0:c0 + 40]
            blocks.append(float(np.mean(rel[r0:r0 + 40, c0:c0 + 40][sel])))
    flatness = float(np.std(blocks))
    # Expected noise per pixel: the light's shot and read noise, the master dark's share
    # (1/N of its own) and the master flat's (~0.3 % per pixel), through the flat division.
    t = case.exposure_s
    signal_e = LEVEL_ADU * s.e_per_adu * s.truth
    dark_e = s.dark_rate_e * t
    var = (signal_e + dark_e) / s.e_per_adu**2 + s.read_noise_adu**2
    var += (dark_e / s.e_per_adu**2 + s.read_noise_adu**2) * (1 / N_DARK + 1 / N_BIAS)
    var += (LEVEL_ADU * s.truth * 0.003) ** 2
    sigma = np.sqrt(var) / case.flat * norm
    # Pixels Siril's cosmetic correction rewrote (with its neighbours' mean, which a dead
    # neighbour can drag down) are Siril's, not the masters': counted by arithmetic_ok above.
    applied = np.abs(case.siril - meant) <= 1.0
    outliers = (np.abs(case.siril - expected) > 5 * sigma) & good & applied
    worst = float(np.max(np.abs(case.siril - expected) / expected))  # dead pixels: 1 (0 ADU)
    return {"arithmetic_ok": arithmetic_ok, "off": float(off), "worst": worst,
            "level_error": level_error, "flatness": flatness,
            "outliers": float(np.count_nonzero(outliers)), "good": float(np.mean(good))}


# ---------------------------------------------------------------------- tests


def test_the_script_is_sirils_stock_call_for_the_convention(session: Session) -> None:
    for key, text in session.script.items():
        convention = key.split()[0]
        (line,) = [x for x in text.splitlines() if x.startswith("preprocess light ")]
        assert ("-bias=" in line) == (convention == "bias-subtracted"), line
        assert "-dark=" in line and "-flat=" in line, line
        assert ("-cfa -equalize_cfa -debayer" in line) == (session.pattern is not None), line


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("exposure", EXPOSURES)
def test_siril_calibrates_lights_with_calibds_masters(session: Session, convention: str,
                                                      exposure: float) -> None:
    cases = [c for c in session.cases if c.convention == convention and c.exposure_s == exposure]
    assert len(cases) == 2
    for case in cases:
        got = measure(case, session)
        what = f"{session.profile} {convention} {exposure:g} s: {got}"
        # Siril applied the masters as calibd means them, to 1 ADU, on every pixel outside the
        # bad pixel map but those its own cosmetic correction rewrote (it replaces the pixels
        # > 3 sigma in the master dark by their neighbours' mean: calibd's hot pixels, and for
        # the 0.01 s darks the tail of their read noise, 0.1-0.3 % of the pixels; Siril 1.0's
        # preprocess always does this with a dark): at most that many differ ...
        assert got["off"] <= case.corrected, f"{what}; Siril corrected {case.corrected}"
        # ... and from 1 s on that leaves >= 99.9 % of the pixels within 1 ADU.
        assert got["arithmetic_ok"] >= (0.999 if exposure >= 1 else 0.995), what
        # No pixel at all, bad pixels included, is thrown far off: a dead pixel comes out near
        # 0 ADU, a master flat <= 0 would send it to +-65,535.
        assert got["worst"] < 1.5, what
        # The bad pixel map leaves >= 99.7 % of the pixels; on them the light is flat and at
        # the expected level, and no pixel is beyond 5 sigma of it.
        assert got["good"] >= 0.995, what
        assert abs(got["level_error"]) <= 1.0, what
        assert got["flatness"] <= 0.001, what
        assert got["outliers"] == 0, what


def test_sirils_stack_equals_calibds_master(session: Session) -> None:
    for kind, (theirs, ours) in session.stacks.items():
        step = np.spacing(np.abs(ours)).astype(np.float64)
        diff = np.abs(theirs - ours.astype(np.float64))
        within = float(np.mean(diff <= step))
        assert within >= 0.9999, (kind, within, float(diff.max()))
