"""Fault injection on a real library: a damaged index, frames damaged after they were counted, a
misfit file, an unwritable folder, a read-only library, leftovers of killed writes, masters
missing after a crash, a disk that stays full. Each test runs ``calibd`` as a real process (or
in-process where only the library is involved) and asserts: nothing lost, no traceback, the
documented exit code and message, no temporary file left, the cells refilled exactly.

Read-only folders and a full disk are real: a read-only bind mount and a small tmpfs in a user
and mount namespace (``unshare``), so the tests work the same as root and as a user.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from calibd.capture.errors import LibraryError
from calibd.capture.library import checksum
from calibd.capture.library.atomic import AtomicFile
from calibd.capture.library.index import Index
from calibd.capture.library.rescan import move_aside
from calibd.capture.library.rescan import rescan
from tests.support import REPO
from tests.support import assert_library_exact
from tests.support import calibd_subprocess
from tests.support import fits_files
from tests.support import write_config
from tests.support import write_plan

PLAN = """
defaults: {offset: 40}
cooling: {dwell_s: 20, tolerance_c: 0.3}
sets:
  - kind: bias
    gains: [0]
    setpoints_c: [-5]
    count: 4
  - kind: dark
    gains: [0]
    setpoints_c: [-5]
    exposures_s: [20]
    count: 3
"""
PLANNED = {"bias|g0|o40|b1|normal|-5C": 4, "dark|g0|o40|b1|normal|-5C|20s": 3}
TEMP_PATTERNS = ("*.partial", "*.part", "*.json.tmp")


def _calibd(*args: str | Path, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    res = calibd_subprocess(*args, timeout=180)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode in ok, (res.returncode, res.stdout, res.stderr)
    return res


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library where the plan ran to completion with its masters (made once, copied)."""
    base = tmp_path_factory.mktemp("captured")
    config = write_config(base / "calibd.yaml")
    plan = write_plan(base / "plan.yaml", PLAN)
    lib = base / "lib"
    _calibd("run", plan, "--config", config, "--library", lib)
    return base


@pytest.fixture
def work(captured: Path, tmp_path: Path) -> dict[str, Path]:
    """A private copy of the captured library with its configuration and plan."""
    shutil.copytree(captured, tmp_path / "w")
    base = tmp_path / "w"
    return {"config": base / "calibd.yaml", "plan": base / "plan.yaml", "lib": base / "lib"}


def _lib_args(w: dict[str, Path]) -> list[str | Path]:
    return ["--config", w["config"], "--library", w["lib"]]


def _status(w: dict[str, Path]) -> dict[str, Any]:
    res = _calibd("library", "status", *_lib_args(w), "--json")
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def _no_temp_files(lib: Path) -> None:
    left = [p for pattern in TEMP_PATTERNS for p in lib.rglob(pattern)]
    assert not left, left


def _masters(lib: Path) -> list[Path]:
    return sorted(p for p in lib.rglob("Master_*.fits") if ".quarantine" not in p.parts)


def _frame(lib: Path, kind: str = "Bias", seq: int = 2) -> Path:
    return next(p for p in fits_files(lib) if kind in p.parts and p.stem.endswith(f"-{seq:04d}"))


def _namespace(script: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (bash) as root of a new user and mount namespace, where mounts are ours."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces here: {probe.stderr.decode(errors='replace')[:200]}")
    env = {**os.environ, "CALIBD": f"{sys.executable} -m calibd"}
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", "-euc",
                           script], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=env, check=False)


# ----- 1. a damaged index ----------------------------------------------------------------------
def _damage_index(db: Path, how: str) -> None:
    data = bytearray(db.read_bytes())
    if how == "header":
        data[:100] = b"\xa5" * 100
    elif how == "truncated":
        data = data[: len(data) // 2]
    else:  # an inner page: the frames table's b-tree pages
        page = int.from_bytes(data[16:18], "big")
        assert len(data) // page >= 4
        for p in range(1, len(data) // page):  # every page but the schema's: invalid type
            data[p * page: p * page + 8] = b"\x07" * 8
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["header", "truncated", "inner"])
def test_damaged_index_is_moved_aside_and_rebuilt(work: dict[str, Path], how: str) -> None:
    lib = work["lib"]
    _damage_index(lib / "calibd.sqlite", how)
    res = _calibd("library", "status", *_lib_args(work), "--json")
    assert "damaged" in res.stderr and "rebuil" in res.stderr, res.stderr
    assert list(lib.glob("calibd.sqlite.damaged-*")), "the damaged index is kept aside"
    data = json.loads(res.stdout)
    assert data["frames"] == sum(PLANNED.values())
    (run,) = data["runs"]
    assert run["state"] == "complete" and run["done"] == run["planned"]
    res = _calibd("run", work["plan"], *_lib_args(work))
    assert "nothing to do" in res.stdout
    assert_library_exact(lib, PLANNED)


def test_rescan_works_on_a_damaged_index(work: dict[str, Path]) -> None:
    lib = work["lib"]
    _damage_index(lib / "calibd.sqlite", "header")
    res = _calibd("library", "rescan", *_lib_args(work), "--json")
    assert json.loads(res.stdout)["frames"] == sum(PLANNED.values())
    assert list(lib.glob("calibd.sqlite.damaged-*"))
    assert_library_exact(lib, PLANNED)


def _invalidate_darks(w: dict[str, Path]) -> None:
    _calibd("library", "invalidate", "--kind", "darks", "--reason", "dust on the sensor",
            "--library", w["lib"])
    assert _dark_invalid(w)


def _dark_invalid(w: dict[str, Path]) -> bool:
    """The index's journal holds the invalidation (the frames' simulated dates lie ahead of
    the real clock, so status would not yet show it as covering them)."""
    index = Index(w["lib"], readonly=True)
    try:
        return [(i.kind, i.reason) for i in index.invalidations()] == \
            [("dark", "dust on the sensor")]
    finally:
        index.close()


def test_a_rescan_stopped_half_way_puts_the_index_and_its_journal_back(
        work: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the files are read (raised at os.fdopen, the lowest layer): the index as it
    was, its recorded invalidation included, not a half-built one."""
    _invalidate_darks(work)
    before = _status(work)
    real_fdopen = os.fdopen
    opened: list[int] = []

    def interrupted(fd: int, *args: Any, **kwargs: Any) -> Any:
        opened.append(fd)
        if len(opened) == 3:
            os.close(fd)
            raise KeyboardInterrupt
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rescan(work["lib"])
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert len(opened) == 3
    assert not list(work["lib"].glob("calibd.sqlite.rebuilding*"))
    after = _status(work)
    assert after["frames"] == before["frames"] and after["runs"] == before["runs"]
    assert after["masters"] == before["masters"] and _dark_invalid(work)


def test_a_rescan_killed_half_way_leaves_the_index_as_it_was(work: dict[str, Path]) -> None:
    """SIGKILL while the new index is built beside the old: the old one is untouched and in
    use; the next rescan clears the half-built one, and the journal (the invalidation) goes
    on into the new index."""
    _invalidate_darks(work)
    lib = work["lib"]
    before = _status(work)
    half = Index(lib, name="calibd.sqlite.rebuilding")  # what a killed rescan leaves
    half.close()
    (lib / "calibd.sqlite.rebuilding-wal").write_bytes(b"\xa5" * 4096)
    assert _status(work)["frames"] == before["frames"] and _dark_invalid(work)
    _calibd("library", "rescan", "--library", lib)
    assert not list(lib.glob("calibd.sqlite.rebuilding*"))
    assert _dark_invalid(work)
    assert_library_exact(lib, PLANNED)


def _set_card(path: Path, key: str, value: str) -> None:
    """Replace the card ``key`` in place, as another program (or a bad disk) might."""
    raw = bytearray(path.read_bytes())
    at = raw.index(key.ljust(8).encode() + b"=")
    assert at % 80 == 0
    raw[at:at + 80] = f"{key:<8}= {value:>20}".ljust(80).encode()
    path.write_bytes(bytes(raw))


def test_rescan_skips_files_it_cannot_index_and_keeps_the_rest(work: dict[str, Path]) -> None:
    lib = work["lib"]
    frames = sorted(fits_files(lib))
    darks = [p for p in frames if "Darks" in p.parts and "Masters" not in p.parts]
    _set_card(darks[0], "GAIN", "NAN")  # no FITS reader parses it
    _set_card(darks[1], "RUNID", "99999999999999999999999")  # too large for the index
    _set_card(darks[2], "NAXIS1", "1E999")  # a size no image has
    os.mkfifo(darks[0].with_name("fifo.fits"))  # never waited on
    (darks[0].parent / "zero.fits").symlink_to("/dev/zero")
    res = _calibd("library", "rescan", "--library", lib, "--json")
    counts = json.loads(res.stdout)
    assert counts["damaged"] == 5 and counts["frames"] == sum(PLANNED.values()) - 3, counts
    assert "fifo.fits" in res.stderr and "zero.fits" in res.stderr
    _calibd("masters", "list", "--library", lib)


@pytest.mark.parametrize("renames_done", [1, 2])
def test_an_index_moved_aside_half_way_never_leaves_its_log_beside_no_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, renames_done: int) -> None:
    """A power cut between the renames of a damaged index (simulated at os.rename, the lowest
    layer): its write-ahead log must not stay where a new index would replay it."""
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"calibd.sqlite{suffix}").write_bytes(b"\xa5" * 4096)
    real_rename = os.rename
    done: list[str] = []

    def cut_off(src: Any, dst: Any) -> None:
        if len(done) == renames_done:
            raise OSError(errno.EIO, "power cut")
        real_rename(src, dst)
        done.append(Path(src).name)

    monkeypatch.setattr(os, "rename", cut_off)
    with pytest.raises(LibraryError, match="cannot be moved aside"):
        move_aside(tmp_path)
    monkeypatch.setattr(os, "rename", real_rename)
    assert (tmp_path / "calibd.sqlite").exists(), done
    assert not (tmp_path / "calibd.sqlite-wal").exists(), done


def test_damage_found_during_use_is_a_library_error_with_the_way_out(
        work: dict[str, Path]) -> None:
    """Inner pages damaged, the index opened without the start-up check (as the background
    threads do): a located LibraryError that says how to recover, never a sqlite3 error (the
    daemon turns it into a paused camera)."""
    lib = work["lib"]
    _damage_index(lib / "calibd.sqlite", "inner")
    with pytest.raises(LibraryError, match="rescan") as caught:
        index = Index(lib)
        try:
            index.query("SELECT * FROM frames")
            index.query("SELECT * FROM run_cells")
        finally:
            index.close()
    assert "calibd.sqlite" in str(caught.value)
    assert not isinstance(caught.value, sqlite3.Error)


# ----- 2. frames damaged after they were counted -----------------------------------------------
def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _zero_data(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(2 * 2880)
        fh.write(b"\0" * (size - 2 * 2880))


@pytest.mark.parametrize("damage", [_truncate, _zero_data], ids=["truncated", "zeroed"])
def test_run_refills_a_counted_frame_damaged_later(work: dict[str, Path], damage: Any) -> None:
    lib = work["lib"]
    victim = _frame(lib)
    rel = victim.relative_to(lib)
    damage(victim)
    res = _calibd("run", work["plan"], *_lib_args(work))
    assert "nothing to do" not in res.stdout
    assert (lib / ".quarantine" / rel).exists()
    assert_library_exact(lib, PLANNED)
    (run,) = _status(work)["runs"]
    assert run["state"] == "complete" and run["done"] == run["planned"]


def test_masters_build_never_builds_from_what_is_left(work: dict[str, Path]) -> None:
    lib = work["lib"]
    victim = _frame(lib, "Darks", 1)
    _zero_data(victim)
    res = _calibd("masters", "build", "--force", *_lib_args(work), ok=(1,))
    assert "damaged" in res.stdout and "2 of 3 frames" in res.stdout, res.stdout
    assert not victim.exists()
    dark_master = next(p for p in _masters(lib) if "Master_Dark_" in p.name)
    assert fits.getheader(dark_master)["NCOMBINE"] == 3  # the earlier master is kept
    _calibd("run", work["plan"], *_lib_args(work))  # refills the cell and builds its master
    assert_library_exact(lib, PLANNED)
    res = _calibd("masters", "build", *_lib_args(work))
    assert fits.getheader(dark_master)["NCOMBINE"] == 3


def test_every_file_calibd_writes_carries_valid_checksums(work: dict[str, Path]) -> None:
    files = fits_files(work["lib"]) + _masters(work["lib"])
    assert any("BPM" in p.name for p in files) and any("Master_Dark" in p.name for p in files)
    for path in files:
        assert checksum.verify(path, full=True), path
        with fits.open(path, checksum=True) as hdul:
            assert hdul[0].verify_checksum() == 1 and hdul[0].verify_datasum() == 1, path


# ----- 3. a misfit file, an unwritable folder, a read-only library -----------------------------
def test_a_file_of_the_wrong_shape_is_quarantined_not_counted(work: dict[str, Path]) -> None:
    lib = work["lib"]
    model = _frame(lib, "Bias", 1)
    header = fits.getheader(model)
    header["FRAMESEQ"] = 9
    odd = model.with_name(model.name.replace("-0001", "-0009"))
    fits.PrimaryHDU(np.zeros((60, 80), dtype=np.uint16), header=header).writeto(odd)
    res = _calibd("run", work["plan"], *_lib_args(work))
    assert "nothing to do" in res.stdout
    assert not odd.exists() and (lib / ".quarantine" / odd.relative_to(lib)).exists()
    (run,) = _status(work)["runs"]
    assert [c["done"] for c in run["cells"]] == list(PLANNED.values())
    _calibd("masters", "build", "--force", *_lib_args(work))
    assert_library_exact(lib, PLANNED)


def test_quarantine_from_a_read_only_folder_leaves_the_file_and_does_not_count_it(
        work: dict[str, Path]) -> None:
    lib = work["lib"]
    victim = _frame(lib, "Bias", 3)
    _truncate(victim)
    folder = victim.parent
    res = _namespace(f"""
        mount --bind '{folder}' '{folder}'
        mount -o remount,bind,ro '{folder}'
        $CALIBD masters build --force --config '{work["config"]}' --library '{lib}'
        """)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "left in place and not counted" in res.stderr
    assert victim.exists()
    index = Index(lib)
    try:
        rows = index.query("SELECT path FROM frames WHERE path=?",
                           (victim.relative_to(lib).as_posix(),))
    finally:
        index.close()
    assert not rows
    _calibd("run", work["plan"], *_lib_args(work))  # writable again: quarantined, refilled
    assert not victim.exists()
    assert_library_exact(lib, PLANNED)


def test_status_of_a_read_only_library(work: dict[str, Path]) -> None:
    lib = work["lib"]
    res = _namespace(f"""
        mount --bind '{lib}' '{lib}'
        mount -o remount,bind,ro '{lib}'
        $CALIBD library status --json --config '{work["config"]}' --library '{lib}'
        """)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 0, res.stderr
    (run,) = json.loads(res.stdout)["runs"]
    assert run["done"] == sum(PLANNED.values()) and run["state"] == "complete"


# ----- 4. leftovers of killed writes -----------------------------------------------------------
def test_leftovers_of_every_writer_are_removed_but_not_files_being_written(
        work: dict[str, Path]) -> None:
    lib = work["lib"]
    master = _masters(lib)[0]
    frame_dir = _frame(lib).parent
    leftovers = [master.with_name(f".{master.name}.x1y2z3.part"),  # a killed master write
                 master.with_name(f".{master.name}.0badcafe.partial"),
                 frame_dir / ".Bias_g0_r1-0009.fits.partial",
                 lib / ".calibd" / "runs" / "run-1.json.tmp"]
    for p in leftovers:
        p.write_bytes(b"SIMPLE  =                    T")
    with AtomicFile(master.with_name("Master_Other.fits")) as live:  # another writer, alive
        assert live.tmp is not None
        _calibd("run", work["plan"], *_lib_args(work))
        assert live.tmp.exists()
        _calibd("masters", "build", *_lib_args(work))
        assert live.tmp.exists()
    assert not any(p.exists() for p in leftovers)
    _no_temp_files(lib)


def test_a_killed_master_build_leaves_nothing_after_the_next_build(
        work: dict[str, Path]) -> None:
    """SIGKILL while `masters build --force` writes a master (the writer's temporary file
    exists): the next `masters build` removes it and rebuilds exactly."""
    lib = work["lib"]
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-m", "calibd", "masters", "build", "--force",
                                 *map(str, _lib_args(work))], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen = False
        while proc.poll() is None:
            if any(lib.rglob(".Master_*.partial")):
                proc.kill()
                seen = True
                break
        proc.wait(30)
        if seen:
            break
    else:  # pragma: no cover - the master writes were always too quick to catch
        pytest.skip("no master write caught in 20 attempts")
    _calibd("masters", "build", *_lib_args(work))
    _no_temp_files(lib)
    assert all(checksum.verify(p, full=True) for p in _masters(lib))


# ----- 5. masters are part of a complete run ---------------------------------------------------
def test_masters_missing_after_a_crash_are_built_by_the_next_run(work: dict[str, Path]) -> None:
    lib = work["lib"]
    masters = _masters(lib)
    assert masters
    index = Index(lib)
    try:  # the state a crash right after the last frame leaves: no master yet
        with index.tx() as db:
            db.execute("DELETE FROM masters")
    finally:
        index.close()
    for p in masters:
        p.unlink()
    text = _calibd("library", "status", *_lib_args(work)).stdout
    assert "masters missing for 2 cell(s)" in text, text
    res = _calibd("run", work["plan"], *_lib_args(work))
    assert "nothing to do" in res.stdout and "missing masters" in res.stdout, res.stdout
    assert _masters(lib) == masters
    assert _status(work)["runs"][0]["masters_missing"] == 0
    assert_library_exact(lib, PLANNED)


# ----- 6. a disk that stays full ---------------------------------------------------------------
def test_disk_full_twice_is_a_clean_error_and_loses_nothing(tmp_path: Path) -> None:
    config = tmp_path / "calibd.yaml"
    write_config(config)
    config.write_text(config.read_text() + "library: {min_free_mb: 0}\n")
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    mnt, saved = tmp_path / "disk", tmp_path / "saved"
    mnt.mkdir()
    res = _namespace(f"""
        mount -t tmpfs -o size=700k tmpfs '{mnt}'
        set +e
        $CALIBD run '{plan}' --config '{config}' --library '{mnt}/lib' --no-progress \
            2> '{tmp_path}/err1'; echo "first=$?"
        dd if=/dev/zero of='{mnt}/filler' bs=4k 2> /dev/null  # and not a byte left
        $CALIBD run '{plan}' --config '{config}' --library '{mnt}/lib' --no-progress \
            2> '{tmp_path}/err2'; echo "second=$?"
        cp -a '{mnt}/lib' '{saved}'
        """)
    assert res.returncode == 0, res.stderr
    err1, err2 = (tmp_path / "err1").read_text(), (tmp_path / "err2").read_text()
    assert "first=1" in res.stdout and "second=1" in res.stdout, (res.stdout, err1, err2)
    assert "Traceback" not in err1 and "full" in err1, err1
    assert "Traceback" not in err2 and "disk full" in err2, err2
    written = fits_files(saved)
    assert 0 < len(written) < sum(PLANNED.values())
    for path in written:  # nothing counted is damaged
        assert checksum.verify(path, full=True)
    index = Index(saved)
    try:
        assert index.query("SELECT COUNT(*) AS n FROM frames")[0]["n"] == len(written)
    finally:
        index.close()
    _calibd("run", plan, "--config", config, "--library", saved)
    assert_library_exact(saved, PLANNED)
    _no_temp_files(saved)


def test_flock_marks_a_temporary_file_as_being_written(tmp_path: Path) -> None:
    with AtomicFile(tmp_path / "x.fits") as out:
        assert out.tmp is not None and out.fd is not None
        fd = os.open(out.tmp, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert not list(tmp_path.iterdir())
