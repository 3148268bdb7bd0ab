"""combine_files / combine_to_fits on real FITS files: read paths, bad input, atomic output."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from calibd.capture.combine import FrameReadError
from calibd.capture.combine import FrameSource
from calibd.capture.combine import MasterWriter
from calibd.capture.combine import Rejection
from calibd.capture.combine import combine_arrays
from calibd.capture.combine import combine_files
from calibd.capture.combine import combine_to_fits
from calibd.capture.combine import write_master
from calibd.capture.combine.kernels import numba_available
from calibd.capture.library import checksum

ENGINES = [
    pytest.param("numba", marks=pytest.mark.skipif(not numba_available(), reason="no numba")),
    "numpy",
]
SHAPE = (37, 53)  # rows, columns: odd sizes exercise partial bands and tiles


def frames(n: int = 9, seed: int = 0, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.rint(rng.normal(1200.0, 6.0, (n, *shape)))
    hits = rng.random((n, *shape)) < 0.02
    x[hits] = rng.uniform(5000, 60000, hits.sum()).round()
    x[0, 0, 0], x[1, 0, 0] = 0, 65535  # extremes of the uint16 range
    return x.astype(np.uint16)


def write_frames(directory: Path, data: np.ndarray, kind: str = "u16") -> list[Path]:
    paths = []
    for i, frame in enumerate(data):
        path = directory / f"frame_{i:02d}.fits"
        if kind == "u16":
            hdul = fits.HDUList([fits.PrimaryHDU(frame)])  # BITPIX 16, BZERO 32768
        elif kind == "f32":
            hdul = fits.HDUList([fits.PrimaryHDU(frame.astype(np.float32))])
        elif kind == "i32":
            hdul = fits.HDUList([fits.PrimaryHDU(frame.astype(np.int32))])
        elif kind == "scaled":  # int16 with BSCALE 2, BZERO 1000: exact for even values
            hdu = fits.PrimaryHDU(((frame.astype(np.int64) // 2) * 2).astype(np.float64))
            hdu.scale("int16", bscale=2.0, bzero=1000.0)
            hdul = fits.HDUList([hdu])
        elif kind == "compressed":
            hdul = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(frame)])
        else:
            raise AssertionError(kind)
        hdul[0].header["IMAGETYP"] = "Bias Frame"
        hdul.writeto(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["u16", "f32", "i32", "compressed"])
def test_every_read_path_gives_the_same_master(tmp_path: Path, engine: str, kind: str) -> None:
    data = frames()
    paths = write_frames(tmp_path, data, kind)
    assert FrameSource(paths[0]).kind == {"u16": "u16", "compressed": "astropy"}.get(kind, "raw")
    result = combine_files(paths, engine=engine, memory_budget_bytes=1)  # type: ignore[arg-type]
    expected = combine_arrays(data, engine="numpy")
    np.testing.assert_array_equal(result.data, expected.data)
    assert (result.rejected_low, result.rejected_high) == (
        expected.rejected_low,
        expected.rejected_high,
    )
    assert result.ncombine == 9 and result.used_paths == tuple(str(p) for p in paths)
    assert result.excluded == () and result.data.dtype == np.float32


def test_scaled_integer_files(tmp_path: Path) -> None:
    data = frames()
    paths = write_frames(tmp_path, data, "scaled")
    assert fits.getheader(paths[0])["BSCALE"] == 2.0
    want = ((data.astype(np.int64) // 2) * 2).astype(np.float32)
    np.testing.assert_array_equal(combine_files(paths).data, combine_arrays(want).data)


def test_frame_source_reads_rows_and_raw_bytes(tmp_path: Path) -> None:
    data = frames(3)
    (path,) = write_frames(tmp_path, data[:1])
    with FrameSource(path) as src:
        assert src.shape == SHAPE and src.fast_u16 and src.header["IMAGETYP"] == "Bias Frame"
        out = np.empty((5, SHAPE[1]), np.float32)
        src.read_rows(3, 8, out, np.empty(5 * SHAPE[1] * 8, np.uint8))
        np.testing.assert_array_equal(out, data[0, 3:8])
        raw = np.empty(5 * SHAPE[1], np.uint16)
        src.read_raw_rows(3, 8, raw)
        decoded = raw.view(">i2").astype(np.int64) + 32768
        np.testing.assert_array_equal(decoded.reshape(5, -1), data[0, 3:8])
        with pytest.raises(ValueError):
            src.read_rows(30, 40, out, np.empty(10, np.uint8))


@pytest.mark.parametrize("engine", ENGINES)
def test_band_size_and_threads_do_not_change_the_result(tmp_path: Path, engine: str) -> None:
    paths = write_frames(tmp_path, frames(7))
    ref = combine_files(paths, engine=engine, threads=1)  # type: ignore[arg-type]
    for budget, threads in ((1, 1), (1, 3), (10_000, 2), (10**9, 2)):
        got = combine_files(paths, engine=engine, memory_budget_bytes=budget, threads=threads)  # type: ignore[arg-type]
        np.testing.assert_array_equal(got.data, ref.data)
        assert got.rejected_high == ref.rejected_high


def test_shape_mismatch_names_the_odd_file(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, frames(5))
    odd = tmp_path / "odd.fits"
    fits.PrimaryHDU(np.zeros((SHAPE[0], SHAPE[1] + 1), np.uint16)).writeto(odd)
    with pytest.raises(ValueError) as err:
        combine_files([*paths[:2], odd, *paths[2:]])
    message = str(err.value)
    assert str(odd) in message and "54x37" in message and "53x37" in message
    assert str(paths[0]) in message  # an example of the majority shape


def test_corrupt_and_truncated_files_are_excluded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = frames(6)
    paths = write_frames(tmp_path, data)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(paths[0].read_bytes()[:4000])  # header + part of the data
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"not a FITS file at all " * 200)
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((2, *SHAPE), np.uint16)).writeto(cube)
    missing = tmp_path / "missing.fits"
    with caplog.at_level(logging.WARNING, logger="calibd.capture.combine"):
        result = combine_files([truncated, *paths, garbage, cube, missing])
    excluded = dict(result.excluded)
    assert set(excluded) == {str(truncated), str(garbage), str(cube), str(missing)}
    assert "truncated" in excluded[str(truncated)]
    assert "3-D" in excluded[str(cube)]
    for bad in excluded:
        assert any(
            bad in rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING
        )
    np.testing.assert_array_equal(result.data, combine_arrays(data).data)
    assert result.ncombine == 6
    for key, value, _ in result.header_cards():
        if key == "HISTORY" and "excluded" in value:
            break
    else:
        raise AssertionError("no HISTORY line for the excluded files")


def test_too_few_usable_frames_is_an_error_naming_the_exclusions(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, frames(3))
    paths[2].write_bytes(paths[2].read_bytes()[:3000])
    with pytest.raises(ValueError, match=r"at least 3 frame.*only 2 usable.*frame_02\.fits"):
        combine_files(paths)
    with pytest.raises(ValueError, match="no frames"):
        combine_files([])
    # min/max with 1 + 1 dropped still works on the two... no: needs 3
    with pytest.raises(ValueError, match="at least 3"):
        combine_files(paths[:2], rejection=Rejection("minmax"))


def test_truncated_compressed_file_is_excluded(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, frames(4), "compressed")
    paths[3].write_bytes(paths[3].read_bytes()[:-3000])
    result = combine_files(paths)
    assert [p for p, _ in result.excluded] == [str(paths[3])] and result.ncombine == 3


@pytest.mark.parametrize("engine", ENGINES)
def test_subtract_and_scales(tmp_path: Path, engine: str) -> None:
    data = frames(5)
    paths = write_frames(tmp_path, data)
    rng = np.random.default_rng(1)
    dark = rng.normal(100, 3, SHAPE).astype(np.float32)
    scales = rng.uniform(0.5, 1.5, 5)
    got = combine_files(paths, subtract=dark, scales=scales, engine=engine)  # type: ignore[arg-type]
    want = (data.astype(np.float32) - dark) * scales.astype(np.float32)[:, None, None]
    np.testing.assert_array_equal(got.data, combine_arrays(want, engine="numpy").data)
    with pytest.raises(ValueError, match="scale"):
        combine_files(paths, scales=[1.0, 2.0])
    with pytest.raises(ValueError, match="subtract"):
        combine_files(paths, subtract=np.zeros((3, 3)))
    # scales are per *input* path: an excluded frame's factor is dropped with it
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"x" * 100)
    got2 = combine_files(
        [paths[0], bad, *paths[1:]], scales=[scales[0], 99.0, *scales[1:]], subtract=dark
    )
    np.testing.assert_array_equal(got2.data, got.data)


def test_progress_is_reported_up_to_one(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, frames(4))
    seen: list[float] = []
    combine_files(paths, memory_budget_bytes=1, threads=2, progress=seen.append)
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == 1.0


def test_combine_arrays_takes_the_same_options_as_combine_files() -> None:
    seen: list[float] = []
    combine_arrays(frames(4), memory_budget_bytes=1, threads=2, progress=seen.append)
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == 1.0


def test_an_unknown_option_raises_type_error_before_any_output(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, frames(3))
    out = tmp_path / "master.fits"
    options = {"methd": "median"}  # misspelt, passed as an untyped caller would
    with pytest.raises(TypeError, match="methd"):
        combine_to_fits(paths, out, **options)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="methd"):
        combine_arrays(frames(3), **options)  # type: ignore[arg-type]
    assert not out.exists()


def test_combine_to_fits_writes_a_float32_master_with_provenance(tmp_path: Path) -> None:
    data = frames(8)
    paths = write_frames(tmp_path, data)
    out = tmp_path / "Master_Bias.fits"
    header = fits.Header()
    header["IMAGETYP"] = "Master Bias"
    header["BZERO"] = 32768  # structural keywords of the caller's header are dropped
    stats = combine_to_fits(
        paths, out, header=header, rejection=Rejection(sigma_low=4), memory_budget_bytes=1
    )
    with fits.open(out) as hdul:
        hdul.verify("exception")
        hdu = hdul[0]
        assert hdu.header["BITPIX"] == -32 and "BZERO" not in hdu.header
        assert hdu.data.dtype.kind == "f" and hdu.data.shape == SHAPE
        np.testing.assert_array_equal(
            hdu.data, combine_arrays(data, rejection=Rejection(sigma_low=4)).data
        )
        h = hdu.header
        assert h["IMAGETYP"] == "Master Bias" and h["NCOMBINE"] == 8
        assert (h["COMBMETH"], h["REJMETH"], h["REJLOW"], h["REJHIGH"]) == (
            "MEAN",
            "SIGMA",
            4.0,
            3.0,
        )
        assert (h["REJITER"], h["REJCENT"], h["REJSPRD"]) == (1, "MEDIAN", "STD")
        assert h["REJNHIGH"] == stats.rejected_high > 0
        assert h["REJFRAC"] == pytest.approx(stats.rejected_fraction)
        history = str(h["HISTORY"])
        assert all(p.name in history for p in paths)
    assert os.path.getsize(out) % 2880 == 0
    assert checksum.verify(out, full=True)  # DATASUM summed while the bands were written
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_streamed_master_checksums_hold_whatever_order_rows_come_in(tmp_path: Path) -> None:
    image = np.random.default_rng(5).normal(100, 30, (11, 7)).astype(np.float32)
    out = tmp_path / "m.fits"
    with MasterWriter(out, image.shape, None) as writer:
        writer.write_rows(6, image[6:])  # out of order, and row 5 written twice ...
        writer.write_rows(3, image[3:6] + 1)
        writer.write_rows(3, image[3:6])  # ... the second time with the final values
        writer.write_rows(0, image[:3].reshape(-1))
        writer.commit()
    with fits.open(out, checksum=True) as hdul:
        np.testing.assert_array_equal(hdul[0].data, image)
    assert checksum.verify(out, full=True)
    partial = tmp_path / "partial.fits"
    with MasterWriter(partial, image.shape, None) as writer:
        writer.write_rows(2, image[2:9])  # rows never written stay zero
        writer.commit()
    assert checksum.verify(partial, full=True)


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    data = frames(4).astype(np.float32)
    paths = write_frames(tmp_path, data, "f32")
    # NaNs late in one frame: found mid-stream, after earlier bands were written
    with fits.open(paths[2], mode="update") as hdul:
        hdul[0].data[-1, -1] = np.nan
    out = tmp_path / "master.fits"
    out.write_bytes(b"previous master")
    with pytest.raises(FrameReadError, match="non-finite"):
        combine_to_fits(paths, out, memory_budget_bytes=1)
    assert out.read_bytes() == b"previous master"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(p.name for p in paths), "master.fits"]
    )
    with pytest.raises(FileNotFoundError):
        combine_to_fits(paths[:2] + paths[3:], tmp_path / "no" / "such" / "dir.fits")


def test_write_master_is_atomic_and_round_trips(tmp_path: Path) -> None:
    image = np.random.default_rng(2).normal(0, 1, (20, 31)).astype(np.float32)
    header = fits.Header()
    header["IMAGETYP"] = "Master Dark"
    header.add_history("made by a test")
    path = write_master(tmp_path / "m.fits", image, header)
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul[0].data, image)
        assert hdul[0].header["IMAGETYP"] == "Master Dark"
        assert "made by a test" in str(hdul[0].header["HISTORY"])
    with pytest.raises(ValueError, match="2-D"):
        write_master(tmp_path / "x.fits", np.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.fits"]


@pytest.mark.parametrize("engine", ENGINES)
def test_matches_ccdproc_on_files(tmp_path: Path, engine: str) -> None:
    import ccdproc

    data = frames(12, seed=5)
    paths = write_frames(tmp_path, data)
    ref = ccdproc.combine(
        [str(p) for p in paths],
        method="average",
        sigma_clip=True,
        sigma_clip_low_thresh=3,
        sigma_clip_high_thresh=3,
        sigma_clip_func=np.ma.median,
        sigma_clip_dev_func=np.ma.std,
        mem_limit=1e9,
        unit="adu",
    )
    ours = combine_files(paths, engine=engine)  # type: ignore[arg-type]
    ref_data = np.asarray(ref.data, dtype=np.float64)
    step = np.spacing(np.abs(ref_data).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(ours.data - ref_data) <= step)


def test_masters_combine_on_hostile_headers_and_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Frames other programs wrote: a card no FITS reader parses is named (exit 2, no
    traceback); a value FITS cannot hold is left out of the master; a file name with an
    escape sequence or outside ASCII is shown escaped and cannot break the master's header."""
    from tests.support import run_cli

    paths = write_frames(tmp_path, frames(4))
    for p in paths:
        with fits.open(p, mode="update") as hdul:
            hdul[0].header["GAIN"] = 100
            hdul[0].header["EGAIN"] = 1.5

    def set_card(path: Path, key: str, value: str) -> None:
        raw = bytearray(path.read_bytes())
        at = raw.index(key.ljust(8).encode() + b"=")
        raw[at:at + 80] = f"{key:<8}= {value:>20}".ljust(80).encode()
        path.write_bytes(bytes(raw))

    nan_gain = tmp_path / "nan_gain.fits"
    nan_gain.write_bytes(paths[3].read_bytes())
    set_card(nan_gain, "GAIN", "NAN")
    res = run_cli(capsys, "masters", "combine", "-o", tmp_path / "m1.fits", *paths[:3], nan_gain)
    assert res.code == 2 and "nan_gain.fits: GAIN: cannot be read" in res.err, res.err
    assert not (tmp_path / "m1.fits").exists()

    set_card(paths[0], "EGAIN", "1E999")
    evil = tmp_path / "x\x1b[31mEVIL\x07.fits"
    evil.write_bytes(b"garbage" * 500)
    accented = tmp_path / "dark_é.fits"
    accented.write_bytes(paths[1].read_bytes())
    res = run_cli(capsys, "masters", "combine", "-o", tmp_path / "m2.fits", paths[0], accented,
                  paths[2], evil)
    assert res.code == 0, res.err
    assert "\x1b" not in res.out + res.err, res.err
    assert "x\\x1b[31mEVIL\\x07.fits" in res.out
    assert "not copied to the master: EGAIN = inf" in res.err
    header = fits.getheader(tmp_path / "m2.fits")
    assert header["NCOMBINE"] == 3 and "EGAIN" not in header and header["GAIN"] == 100
    history = [str(h) for h in header["HISTORY"]]
    assert "input: dark_\\xe9.fits" in history
    assert any(h.startswith("excluded: x\\x1b[31mEVIL\\x07.fits") for h in history)
