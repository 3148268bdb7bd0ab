"""The web view: its routes and limits over the real API server, then the page in Debian's
headless Chromium (selenium) against a real daemon running a simulated plan: no console errors,
no request leaving the machine, live status, pause/resume with the token and refused without,
phone and desktop layouts, the report, coverage and cooler history."""

from __future__ import annotations

import http.client
import io
import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calibd.capture.daemon import web
from calibd.capture.daemon.api import ApiServer
from calibd.capture.daemon.view_data import THUMB_MAX_PX
from calibd.capture.daemon.view_data import thumbnail_png
from tests.support import DAEMON_TOKEN
from tests.support import LONG_DARKS
from tests.support import QUICK_BIAS
from tests.support import daemon_env
from tests.support import ready
from tests.support import skip_or_fail
from tests.support import wait_for

TOKEN = "web-view-token-0123456789abcdef"


class ViewControl:
    """A daemon double with the web view's data (the routes, not the daemon, are tested here)."""

    def __init__(self) -> None:
        self.frames = 0
        self.master: Path | None = None  # master 1's file

    def status(self) -> dict[str, Any]:
        return {"cameras": {}, "schedules": [], "library": {}}

    def live(self) -> dict[str, Any]:
        return {"daemon": {}, "cameras": {"main": {"state": "running", "run": {
            "frames_done": self.frames, "frames_total": 10}}}}

    def history(self) -> dict[str, list[dict[str, Any]]]:
        return {"main": [{"t": "2026-12-01T00:00:00+00:00", "temperature_c": -10.0}]}

    def library_view(self) -> dict[str, Any]:
        return {"cells": [], "masters": [], "journal": []}

    def report_html(self) -> str:
        return "<!DOCTYPE html><html><body><h1>report</h1></body></html>"

    def thumbnail(self, master_id: int) -> bytes | None:
        return thumbnail_png(self.master) if master_id == 1 and self.master else None

    def start(self, **kwargs: Any) -> str:
        return "ok"

    def pause(self, camera: str) -> str:
        return "ok"

    resume = stop = pause


def get(port: int, path: str, token: str | None = None, host: str = "127.0.0.1"
        ) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


@pytest.fixture
def server() -> Iterator[tuple[ApiServer, ViewControl]]:
    control = ViewControl()
    srv = ApiServer(control, port=0)
    srv.start()
    yield srv, control
    srv.stop()


def test_pages_are_shipped_with_a_strict_policy(server: tuple[ApiServer, ViewControl]) -> None:
    srv, _ = server
    code, headers, body = get(srv.port, "/")
    assert code == 200 and headers.get_content_type() == "text/html"
    assert b'src="/static/app.js"' in body and b"http" not in body.replace(b"http-equiv", b"")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css")):
        code, headers, body = get(srv.port, f"/static/{name}")
        assert code == 200 and headers.get_content_type() == ctype and len(body) > 1000
    for path in ("/static/../api.py", "/static/", "/static/web.py", "/favicon.ico"):
        assert get(srv.port, path)[0] == 404, path
    # The report's body for the page, the whole page alone.
    assert get(srv.port, "/api/v1/report")[2] == b"<h1>report</h1>"
    assert get(srv.port, "/report")[2].startswith(b"<!DOCTYPE html>")
    # DNS rebinding: a foreign Host name gets nothing, pages included.
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/", headers={"Host": "evil.example"})
    assert conn.getresponse().status == 421
    conn.close()


def test_master_thumbnails_are_stretched_pngs(server: tuple[ApiServer, ViewControl],
                                              tmp_path: Path) -> None:
    import matplotlib.image
    import numpy as np
    from astropy.io import fits

    srv, control = server
    ramp = np.tile(np.linspace(100.0, 200.0, 2000, dtype=np.float32), (1200, 1))
    ramp[:, 1000] = np.nan  # a master may hold NaN: drawn, not fatal
    control.master = tmp_path / "master.fits"
    fits.writeto(control.master, ramp)
    code, headers, body = get(srv.port, "/api/v1/masters/1.png")
    assert code == 200 and headers.get_content_type() == "image/png"
    image = matplotlib.image.imread(io.BytesIO(body))
    assert max(image.shape) <= THUMB_MAX_PX and image.shape[1] > image.shape[0]
    assert image[:, :5].mean() < 0.05 and image[:, -5:].mean() > 0.95  # stretched: full range
    assert get(srv.port, "/api/v1/masters/2.png")[0] == 404
    assert get(srv.port, "/api/v1/masters/x.png")[0] == 404
    control.master.write_bytes(b"SIMPLE  = T" + b" " * 100)  # a damaged master
    assert get(srv.port, "/api/v1/masters/1.png")[0] == 422


def test_live_stream_updates_and_is_bounded(server: tuple[ApiServer, ViewControl],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    srv, control = server
    monkeypatch.setattr(web, "STREAM_EVERY_S", 0.05)
    monkeypatch.setattr(web, "STREAM_MAX_S", 3.0)
    conns = []
    try:
        for _ in range(web.MAX_STREAMS):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
            conn.request("GET", "/api/v1/live")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.headers.get_content_type() == "text/event-stream"
            conns.append((conn, resp))
        assert get(srv.port, "/api/v1/live")[0] == 503  # one stream too many
        resp = conns[0][1]
        seen: list[int] = []

        def read() -> None:
            for line in resp:
                if line.startswith(b"data: "):
                    seen.append(json.loads(line[6:])["cameras"]["main"]["run"]["frames_done"])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        for n in range(1, 4):
            time.sleep(0.2)
            control.frames = n
        reader.join(5)  # the stream ends by itself after STREAM_MAX_S
        assert not reader.is_alive()
        assert seen == [0, 1, 2, 3]  # each change once
    finally:
        for conn, _ in conns:
            conn.close()
    wait_for(lambda: get(srv.port, "/api/v1/live")[0] == 200 or None, 10, "a free stream slot")


def test_off_loopback_the_data_needs_the_token() -> None:
    srv = ApiServer(ViewControl(), host="0.0.0.0", port=0, token=TOKEN)
    srv.start()
    try:
        assert get(srv.port, "/")[0] == 200  # the page itself holds no data
        for path in ("/api/v1/live", "/api/v1/history", "/api/v1/library", "/report"):
            assert get(srv.port, path)[0] == 401, path
        assert get(srv.port, "/api/v1/history", TOKEN)[0] == 200
    finally:
        srv.stop()


# -- in a real browser ---------------------------------------------------------------------------

def _browser(tmp_path: Path) -> Any:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        skip_or_fail("chromium", "Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def _state(browser: Any) -> str:
    return str(browser.execute_script(
        "const s = document.querySelector('[data-camera=sim] .state');"
        "return s ? s.textContent : '';"))


def _frames(browser: Any) -> int:
    text = browser.execute_script(
        "const s = document.querySelector('[data-camera=sim] .frames');"
        "return s ? s.textContent : '';")
    return int(text.split("/")[0]) if text and "/" in text else -1


def test_the_page_in_a_headless_browser(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with daemon_env(tmp_path) as env:
        env.write_config(scale=200.0)
        data = yaml.safe_load(env.config.read_text())
        data["masters"] = {"auto": True}  # a master bias for the masters table
        env.config.write_text(yaml.safe_dump(data), encoding="utf-8")
        bias = env.plan("bias.yaml", QUICK_BIAS.replace("count: 2", "count: 3"))
        plan = env.plan("darks.yaml", LONG_DARKS)
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        port = int((env.state / "api.port").read_text())
        for p in (bias, plan):  # one after the other on the camera's queue
            assert env.api("POST", "/api/v1/runs", {"plan": p.name})[0] in (200, 202)
        browser = _browser(tmp_path)
        try:
            base = f"http://127.0.0.1:{port}"
            browser.get(base + "/")
            # Live status: the frame count goes up without reloading.
            first = wait_for(lambda: _frames(browser) if _frames(browser) >= 0 else None, 60,
                             "the first frames on the page")
            wait_for(lambda: _frames(browser) > first, 60, "the frame count to advance")
            assert _state(browser) == "running"
            # Pause without the token: refused, and the run goes on.
            browser.find_element(By.CSS_SELECTOR, "[data-camera=sim] [data-action=pause]").click()
            wait_for(lambda: "refused (HTTP 401)" in browser.find_element(
                By.ID, "message").text, 10, "the refusal")
            assert env.api("GET", "/api/v1/status")[1]["cameras"]["sim"]["state"] == "running"
            # With the token: paused, then resumed.
            browser.find_element(By.ID, "token").send_keys(DAEMON_TOKEN)
            browser.find_element(By.CSS_SELECTOR, "[data-camera=sim] [data-action=pause]").click()
            wait_for(lambda: _state(browser) == "paused", 30, "paused on the page")
            assert env.api("GET", "/api/v1/status")[1]["cameras"]["sim"]["state"] == "paused"
            browser.find_element(By.CSS_SELECTOR,
                                 "[data-camera=sim] [data-action=resume]").click()
            wait_for(lambda: _state(browser) == "running", 30, "running again on the page")
            # Cooler history, coverage grid, journal (refreshed every 15 s), and the report.
            browser.refresh()
            wait_for(lambda: browser.find_elements(By.CSS_SELECTOR,
                                                   "[data-history=sim] polyline"), 30,
                     "the cooler history")
            wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "td.cell"), 30,
                     "the coverage grid")
            wait_for(lambda: browser.execute_script(
                "const i = document.querySelector('img.thumb');"
                "return i && i.complete && i.naturalWidth > 0;"), 30, "a master's thumbnail")
            browser.find_element(By.ID, "load-report").click()
            wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#report-body figure svg"),
                     60, "the report's plots")
            # Layout: desktop has room for the cards; a phone scrolls nothing sideways.
            layout = "return [document.documentElement.scrollWidth, window.innerWidth, " \
                     "getComputedStyle(document.getElementById('camera-list'))" \
                     ".gridTemplateColumns.split(' ').length, " \
                     "document.querySelector('[data-camera=sim]').getBoundingClientRect().right];"
            wide, inner, columns, right = browser.execute_script(layout)
            assert wide <= inner and columns >= 3 and right <= inner
            browser.save_screenshot(str(tmp_path / "desktop.png"))
            browser.set_window_size(390, 844)
            time.sleep(0.5)
            wide, inner, columns, right = browser.execute_script(layout)
            assert inner <= 400 and wide <= inner and columns == 1 and right <= inner
            browser.save_screenshot(str(tmp_path / "phone.png"))
            for shot in ("desktop.png", "phone.png"):  # real PNGs of the page at both widths
                assert (tmp_path / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            # No console errors (but Chromium's note of the refused pause), and nothing asked
            # of any other host.
            refused = f"{base}/api/v1/cameras/sim/pause - Failed to load resource: the server " \
                      "responded with a status of 401"
            logs = browser.get_log("browser")
            assert sum(e["message"].startswith(refused) for e in logs) == 1
            errors = [e for e in logs
                      if e["level"] == "SEVERE" and not e["message"].startswith(refused)]
            assert errors == []
            urls = {json.loads(e["message"])["message"]["params"].get("request", {}).get("url")
                    for e in browser.get_log("performance")
                    if '"Network.requestWillBeSent"' in e["message"]}
            network = {u for u in urls if u and u.split(":", 1)[0] in ("http", "https", "ws",
                                                                     "wss", "ftp")}
            assert base + "/static/app.js" in network
            assert all(u.startswith(base + "/") for u in network), network
        finally:
            browser.quit()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
