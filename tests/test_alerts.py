"""Notifications against real local endpoints: SMTP (aiosmtpd), a JSON webhook and an ntfy-style
HTTP receiver, Debian's mosquitto (restarted under the publisher), and a real daemon run."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from calibd.capture.config import NotificationsConfig
from calibd.capture.daemon.alerts import KINDS
from calibd.capture.daemon.alerts import AlertHub
from calibd.capture.daemon.alerts import MqttPublisher
from calibd.capture.daemon.alerts import hub_from_config
from tests.support import QUICK_BIAS
from tests.support import HttpReceiver
from tests.support import Mosquitto
from tests.support import SmtpReceiver
from tests.support import daemon_env
from tests.support import free_port
from tests.support import library_runs
from tests.support import ready
from tests.support import wait_for


class FakeTime:
    """Clock seconds the test advances (the rate window without waiting an hour)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_each_kind_arrives_once_by_mail_webhook_and_ntfy(caplog: pytest.LogCaptureFixture) -> None:
    smtp, http = SmtpReceiver(), HttpReceiver()
    dead = free_port()  # nothing listens: a failing target with a secret in its URL
    config = NotificationsConfig.model_validate({"targets": [
        {"url": f"mailto://127.0.0.1:{smtp.port}?from=calibd@example.org&to=me@example.org"
                "&mode=insecure"},
        {"url": f"json://127.0.0.1:{http.port}/hook"},
        {"url": f"ntfy://127.0.0.1:{http.port}/calibd", "events": ["run_failed", "disk_low"]},
        {"url": f"json://user:hunter2secret@127.0.0.1:{dead}/x", "events": ["disk_low"]},
    ], "timeout_s": 3})
    hub = hub_from_config(config)
    assert hub is not None
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(2):  # the second round repeats every alert: deduplicated
                for kind in KINDS:
                    hub.emit(kind, f"title {kind}", f"message of {kind}", "cam1")
            wait_for(lambda: len(smtp.messages) >= len(KINDS) and
                     len(http.json_posts("/hook")) >= len(KINDS) and hub.failed >= 1, 30,
                     "every alert at every target")
            time.sleep(0.5)  # anything sent twice would arrive now
        subjects = sorted(str(m["Subject"]) for m in smtp.messages)
        assert subjects == sorted(f"title {k}" for k in KINDS)
        hooks = http.json_posts("/hook")
        assert sorted(h["title"] for h in hooks) == sorted(f"title {k}" for k in KINDS)
        assert all(h["message"] == f"cam1: message of {h['title'][6:]}" for h in hooks)
        ntfy = http.json_posts("/")
        assert sorted(n["title"] for n in ntfy) == ["title disk_low", "title run_failed"]
        assert all(n["topic"] == "calibd" for n in ntfy)
        assert hub.failed == 1  # the dead target took only disk_low
        assert "notification target 4 (json)" in caplog.text
        assert "hunter2secret" not in caplog.text
    finally:
        hub.stop()
        smtp.close()
        http.close()


def test_rate_limit_holds_and_sends_a_digest() -> None:
    http = HttpReceiver()
    clock = FakeTime()
    config = NotificationsConfig.model_validate({"targets": [
        {"url": f"json://127.0.0.1:{http.port}/hook"}], "rate_count": 2,
        "rate_window_s": 600})
    hub = hub_from_config(config, monotonic=clock)
    assert hub is not None
    try:
        # A flapping camera: ten different failures within a minute.
        sent = [hub.emit("run_failed", "failed", f"attempt {i}", "cam") for i in range(10)]
        assert sent == [True, True] + [False] * 8
        assert hub.emit("run_finished", "done", "other kinds have their own budget", "cam")
        clock.t += 300
        hub.flush_digests()  # the window has not opened yet: nothing more
        wait_for(lambda: len(http.json_posts("/hook")) >= 3, 10, "three alerts")
        time.sleep(0.3)
        assert len(http.json_posts("/hook")) == 3
        clock.t += 301
        hub.flush_digests()
        wait_for(lambda: len(http.json_posts("/hook")) >= 4, 10, "the digest")
        digest = http.json_posts("/hook")[-1]
        assert digest["title"].startswith("8 more")
        assert "8 run_failed alert(s)" in digest["message"]
        assert "attempt 9" in digest["message"] and "attempt 4" not in digest["message"]
        hub.flush_digests()  # sent once
        time.sleep(0.3)
        assert len(http.json_posts("/hook")) == 4
    finally:
        hub.stop()
        http.close()


def _subscribe(port: int, topic: str) -> tuple[Any, list[tuple[str, bytes, bool]]]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[tuple[str, bytes, bool]] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{time.monotonic_ns()}")
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload, bool(m.retain)))
    client.on_connect = lambda c, u, f, r, p=None: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, codes, p=None: subscribed.set()
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    # Events are not retained: one published before the broker has the subscription is not
    # this subscriber's to see, so return only once the broker acknowledged it.
    wait_for(subscribed.is_set, 10, f"the subscription to {topic}")
    return client, got


def test_mqtt_state_events_and_a_broker_restart(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    broker.start()
    pub = MqttPublisher("127.0.0.1", broker.port, client_id="calibd-test")
    hub = AlertHub([pub], dedup_s=0)
    subs: list[Any] = []
    try:
        pub.connect()
        hub.start()
        wait_for(lambda: pub.connected, 10, "the publisher's connection")
        sub, got = _subscribe(broker.port, "#")
        subs.append(sub)
        pub.publish_state("cam1", {"state": "running", "temperature_c": -10.0,
                                   "progress_pct": 25.0})
        hub.emit("run_failed", "failed", "first", "cam1")
        wait_for(lambda: any(t == "calibd/event" for t, _, _ in got), 10, "the first event")
        discovery = [json.loads(p) for t, p, _ in got if t.startswith("homeassistant/sensor/")]
        assert {d["state_topic"] for d in discovery} >= {"calibd/cam1/temperature_c",
                                                         "calibd/cam1/state"}
        assert any(d.get("unit_of_measurement") == "°C" for d in discovery)

        broker.stop()  # the broker goes away (no persistence: retained state is lost)
        wait_for(lambda: not pub.connected, 10, "the lost connection")
        hub.emit("cooler_unsettled", "cooler", "while the broker was away", "cam1")
        pub.publish_state("cam1", {"state": "paused", "temperature_c": -9.5})
        time.sleep(0.3)
        broker.start()
        wait_for(lambda: pub.connected and pub.connections == 2, 40, "the reconnection")
        sub2, got2 = _subscribe(broker.port, "calibd/#")
        subs.append(sub2)
        wait_for(lambda: any(t == "calibd/cam1/temperature_c" for t, _, _ in got2), 10,
                 "the retained state again")
        retained = {t: p.decode() for t, p, r in got2 if r}
        assert retained["calibd/cam1/state"] == "paused"
        assert retained["calibd/cam1/temperature_c"] == "-9.5"
        assert retained["calibd/cam1/progress_pct"] == "25.0"
        assert retained["calibd/status"] == "online"
        # The event queued while the broker was away went out once, to the first subscriber
        # only after it reconnected too; count on a fresh subscriber with one more event.
        hub.emit("run_finished", "done", "after the restart", "cam1")
        wait_for(lambda: any(t == "calibd/event" for t, _, _ in got2), 10, "the last event")
        time.sleep(0.5)
        events = [json.loads(p) for t, p, _ in got2 if t == "calibd/event"]
        assert [e["message"] for e in events] == ["after the restart"]
        all_events = [json.loads(p)["message"] for t, p, _ in got if t == "calibd/event"]
        assert all_events.count("first") == 1
    finally:
        hub.stop()
        for s in subs:
            s.loop_stop()
            s.disconnect()
        broker.stop()


def test_a_daemon_run_notifies_its_end_once(tmp_path: Path) -> None:
    http = HttpReceiver()
    try:
        with daemon_env(tmp_path) as env:
            env.write_config()
            data = yaml.safe_load(env.config.read_text())
            data["daemon"]["notifications"] = {"targets": [
                {"url": f"json://127.0.0.1:{http.port}/hook"}]}
            env.config.write_text(yaml.safe_dump(data), encoding="utf-8")
            plan = env.plan("bias.yaml", QUICK_BIAS)
            proc = env.start()
            wait_for(lambda: ready(env), 30, "READY=1")
            code, body = env.api("POST", "/api/v1/runs", {"plan": plan.name})
            assert code in (200, 202), body
            wait_for(lambda: any(r["state"] == "complete" for r in library_runs(env.library)),
                     60, "the run")
            wait_for(lambda: http.json_posts("/hook"), 10, "the notification")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        titles = [h["title"] for h in http.json_posts("/hook")]
        assert titles == ["bias.yaml complete", "calibd stopping"], titles
    finally:
        http.close()


class _Host:
    """What a camera worker needs of the daemon, recording nothing but the clock."""

    def __init__(self, root: Path) -> None:
        from calibd.capture.config import default_config
        from calibd.drivers.clock import RealClock

        self.clock = RealClock()
        self.root = root
        self.config = default_config()

    def config_snapshot(self) -> tuple[Any, None]:
        return self.config, None

    def library_root(self) -> Path:
        return self.root

    def run_started(self, request: Any) -> None:
        pass

    def run_finished(self, request: Any, keep_for_resume: bool, complete: bool) -> None:
        pass

    def camera_faulted(self, camera: str, reason: str) -> None:
        pass


@pytest.mark.parametrize(("raised", "kind"), [
    ("flat L: ALARM: the shutter did not close: timed out", "observatory_alarm"),
    ("5 frames in a row rejected", "run_failed"),
])
def test_how_a_run_ends_picks_the_alert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        raised: str, kind: str) -> None:
    from types import SimpleNamespace

    from calibd.capture.daemon import worker as worker_module
    from calibd.capture.errors import RunPaused

    def run_prepared(*args: Any, **kwargs: Any) -> None:
        raise RunPaused(raised)

    monkeypatch.setattr(worker_module, "prepare", lambda *a, **k: SimpleNamespace(
        setup=SimpleNamespace(disconnect=lambda: None)))
    monkeypatch.setattr(worker_module, "run_prepared", run_prepared)
    alerts: list[tuple[str, str, str, str]] = []
    host = _Host(tmp_path)
    worker = worker_module.CameraWorker("cam", host, on_alert=lambda *a: alerts.append(a))
    worker.start()
    try:
        worker.submit(worker_module.RunRequest("cam", tmp_path / "p.yaml", "api",
                                               host.clock.now()))
        wait_for(lambda: alerts, 10, "the alert")
    finally:
        worker.shutdown()
        worker.join(5)
    assert [(a[0], a[1], a[3]) for a in alerts] == [(kind, "cam", raised)]
