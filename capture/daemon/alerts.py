"""Notifications: what happened to the daemon, sent by e-mail, webhooks, ntfy… and MQTT.

An :class:`Alert` (a kind from :data:`KINDS`, a camera, a title and a message) is handed to
:meth:`AlertHub.emit`, which never blocks: it drops a duplicate (same kind, camera and message
within ``dedup_s``), holds back everything of a kind beyond ``rate_count`` per ``rate_window_s``
(clock seconds; what was held back is counted and sent as one digest when the window opens
again), and queues the rest (bounded; the oldest is dropped when full) for one sending thread.
That thread sends each alert to every target whose ``events`` list takes its kind:

* Apprise URLs (``mailto://``, ``json://``, ``ntfy://``, ``pover://``, ``tgram://``…), each
  call bounded by ``timeout_s`` (Apprise's connect/read timeouts; SMTP's socket timeout);
* :class:`MqttPublisher`: events on ``<prefix>/event``, and retained state topics with Home
  Assistant discovery, reconnecting with back-off when the broker goes away.

A failure is logged (the target by its number and scheme only: URLs carry passwords and tokens)
and never reaches the capture.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from calibd.capture.textsafe import shown

if TYPE_CHECKING:
    from calibd.capture.config import NotificationsConfig

log = logging.getLogger(__name__)

KINDS = ("run_finished", "run_failed", "run_paused", "cell_skipped", "cooler_unsettled",
         "disk_low", "unsafe", "observatory_alarm", "library_lacks", "daemon_stopping")
QUEUE_MAX = 256  # alerts waiting for the sending thread; the oldest is dropped past it
TEXT_MAX = 400  # characters of a message (escaped, capped)
MQTT_PENDING_MAX = 64  # events kept while the broker is away


@dataclass(frozen=True)
class Alert:
    """One event. ``message`` is shown through :func:`shown` (escaped, capped)."""

    kind: str
    title: str
    message: str
    camera: str | None = None
    time_utc: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r} (known: {', '.join(KINDS)})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Target:
    """Where alerts go. ``send`` blocks at most about the target's timeout and raises on
    failure; ``kinds`` is the set of alert kinds it takes."""

    kinds: frozenset[str] = frozenset(KINDS)
    label = "target"

    def send(self, alert: Alert) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections. Never raises."""


def scheme_of(url: str) -> str:
    """The scheme of a notification URL, safe to log (``mailto``), or ``?``."""
    head, sep, _ = url.partition("://")
    return shown(head, 12) if sep and head.isalnum() else "?"


class AppriseTarget(Target):
    """One Apprise URL. Raises ValueError at construction when Apprise does not understand it
    (the URL itself is not shown: it may carry a password)."""

    def __init__(self, url: str, kinds: Iterable[str] = KINDS, timeout_s: float = 10.0,
                 number: int = 1) -> None:
        import apprise

        self.label = f"notification target {number} ({scheme_of(url)})"
        self.kinds = frozenset(kinds)
        self._apprise = apprise.Apprise()
        bounded = url + ("&" if "?" in url else "?") + f"cto={timeout_s:g}&rto={timeout_s:g}"
        if not self._apprise.add(bounded) and not self._apprise.add(url):
            raise ValueError(f"{self.label}: not a notification URL Apprise knows")
        for server in self._apprise:
            with contextlib.suppress(AttributeError, TypeError):
                server.socket_connect_timeout = timeout_s  # SMTP and other socket plugins
                server.socket_read_timeout = timeout_s
                server.request_rate_per_sec = 0  # no pause between sends: the hub rate-limits

    def send(self, alert: Alert) -> None:
        import apprise

        body = alert.message if alert.camera is None else f"{alert.camera}: {alert.message}"
        kind = apprise.NotifyType.FAILURE if alert.kind in (
            "run_failed", "run_paused", "cooler_unsettled", "disk_low", "unsafe",
            "observatory_alarm") \
            else apprise.NotifyType.INFO
        if not self._apprise.notify(title=alert.title, body=body, notify_type=kind):
            raise ConnectionError(f"{self.label} did not accept the message")


class AlertHub:
    """Deduplicates, rate-limits and queues alerts for a sending thread (see the module).

    ``monotonic`` gives clock seconds (the daemon's clock, so simulated time applies)."""

    def __init__(self, targets: list[Target], *, dedup_s: float = 600.0, rate_count: int = 3,
                 rate_window_s: float = 3600.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.targets = targets
        self.dedup_s = dedup_s
        self.rate_count = rate_count
        self.rate_window_s = rate_window_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str | None, str], float] = {}
        self._sent: dict[str, deque[float]] = {}
        self._held: dict[str, list[Alert]] = {}
        self._queue: queue.Queue[Alert | None] = queue.Queue(QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self.delivered = 0  # sends that succeeded (all targets), for status and tests
        self.failed = 0

    # -- producers (any thread; never blocks) ------------------------------------------------

    def emit(self, kind: str, title: str, message: str, camera: str | None = None) -> bool:
        """Queue an alert unless it repeats one within ``dedup_s`` or its kind is over its rate
        (then it is held for the digest). True when queued. Never blocks; never raises for a
        full queue (the oldest alert is dropped)."""
        alert = Alert(kind, shown(title, 120), shown(message, TEXT_MAX),
                      None if camera is None else shown(camera, 64))
        now = self._monotonic()
        with self._lock:
            key = (alert.kind, alert.camera, alert.message)
            last = self._seen.get(key)
            if last is not None and now - last < self.dedup_s:
                return False
            self._seen = {k: t for k, t in self._seen.items() if now - t < self.dedup_s}
            self._seen[key] = now
            digest = self._open_window(kind, now)
            sent = self._sent.setdefault(kind, deque())
            if len(sent) >= self.rate_count:
                self._held.setdefault(kind, []).append(alert)
                log.debug("alert %s held back (more than %d in %.0f s)", kind,
                          self.rate_count, self.rate_window_s)
                return False
            sent.append(now)
        if digest is not None:
            self._put(digest)
        self._put(alert)
        return True

    def flush_digests(self) -> None:
        """Queue the digest of every kind whose rate window has opened again (the daemon's main
        loop calls this now and then)."""
        now = self._monotonic()
        with self._lock:
            digests = [d for kind in list(self._held)
                       if (d := self._open_window(kind, now)) is not None]
        for d in digests:
            self._put(d)

    def _open_window(self, kind: str, now: float) -> Alert | None:
        """Forget sends older than the window; when room opened and alerts were held, take one
        slot for their digest. Called with the lock held."""
        sent = self._sent.setdefault(kind, deque())
        while sent and now - sent[0] >= self.rate_window_s:
            sent.popleft()
        held = self._held.get(kind)
        if not held or len(sent) >= self.rate_count:
            return None
        del self._held[kind]
        sent.append(now)
        cameras = sorted({a.camera for a in held if a.camera})
        lines = [f"- {a.camera + ': ' if a.camera else ''}{a.message}" for a in held[-5:]]
        more = f" (last {len(lines)} shown)" if len(held) > len(lines) else ""
        return Alert(kind, f"{len(held)} more: {held[-1].title}",
                     f"{len(held)} {kind} alert(s) were held back by the rate limit{more}:\n"
                     + "\n".join(lines), ", ".join(cameras) or None)

    def _put(self, alert: Alert) -> None:
        while True:
            try:
                self._queue.put_nowait(alert)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    dropped = self._queue.get_nowait()
                    if dropped is not None:
                        log.warning("alert queue full: dropped %s", dropped.kind)

    # -- the sending thread ------------------------------------------------------------------

    def start(self) -> None:
        """Start the sending thread (daemonic). Idempotent."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="calibd-alerts", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (within about ``timeout_s``), then end the thread and close the
        targets. Never raises."""
        thread = self._thread
        if thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout_s)
            thread.join(timeout_s)
            self._thread = None
        for target in self.targets:
            try:
                target.close()
            except Exception:
                log.debug("closing %s failed", target.label, exc_info=True)

    def _loop(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            for target in self.targets:
                if alert.kind not in target.kinds:
                    continue
                try:
                    target.send(alert)
                    self.delivered += 1
                except Exception as err:
                    self.failed += 1
                    log.warning("%s: cannot send the %s alert: %s", target.label, alert.kind,
                                shown(type(err).__name__ + (f": {err}" if str(err) else ""),
                                      160))


# -- MQTT ---------------------------------------------------------------------------------------

STATE_KEYS: dict[str, tuple[str, str | None, str | None]] = {
    # key: (name, unit, device class) of the Home Assistant sensor
    "state": ("state", None, None),
    "temperature_c": ("sensor temperature", "°C", "temperature"),
    "power_pct": ("cooler power", "%", "power_factor"),
    "progress_pct": ("progress", "%", None),
    "frames": ("frames", None, None),
    "eta_s": ("time left", "s", "duration"),
}


def camera_state(status: dict[str, Any]) -> dict[str, Any]:
    """The MQTT/Home Assistant state of one camera from its worker status (``status()``)."""
    run = status.get("run") or {}
    total = run.get("frames_total") or 0
    done = run.get("frames_done") or 0
    return {
        "state": status.get("state"),
        "temperature_c": run.get("temperature_c"),
        "power_pct": run.get("power_pct"),
        "progress_pct": round(100.0 * done / total, 1) if total else None,
        "frames": f"{done}/{total}" if total else None,
        "eta_s": round(run["eta_s"]) if run.get("eta_s") is not None else None,
    }


class MqttPublisher(Target):
    """Events and retained camera state on an MQTT broker (paho-mqtt, its own network thread).

    Topics: ``<prefix>/status`` (``online``/``offline``, the broker's will), ``<prefix>/event``
    (each alert as JSON, QoS 1, not retained), ``<prefix>/<camera>/<key>`` (retained state) and
    Home Assistant discovery under ``<discovery>/sensor/…/config`` (retained). Everything
    retained is published again after every (re)connection; events sent while the broker is
    away wait (at most :data:`MQTT_PENDING_MAX`, oldest dropped) and go out once on reconnect.
    ``connect`` never blocks: paho connects and reconnects in the background (back-off 1…30 s).
    """

    label = "MQTT broker"

    def __init__(self, host: str, port: int = 1883, *, prefix: str = "calibd",
                 discovery_prefix: str | None = "homeassistant", client_id: str = "calibd",
                 username: str | None = None, password: str | None = None,
                 keepalive_s: int = 30, kinds: Iterable[str] = KINDS) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.kinds = frozenset(kinds)
        self.prefix = prefix.rstrip("/")
        self.discovery_prefix = discovery_prefix
        self._lock = threading.Lock()
        self._state: dict[str, dict[str, Any]] = {}  # camera -> key -> value (last published)
        self._pending: deque[bytes] = deque(maxlen=MQTT_PENDING_MAX)
        self._announced: set[str] = set()
        self._connected = False
        self.connections = 0  # successful connections so far (for tests and status)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.will_set(f"{self.prefix}/status", "offline", qos=1, retain=True)
        self._client.reconnect_delay_set(1, 30)
        self._client.max_queued_messages_set(1000)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._host, self._port, self._keepalive = host, port, keepalive_s

    def connect(self) -> None:
        """Start the network thread; it connects (and reconnects) in the background."""
        self._client.connect_async(self._host, self._port, self._keepalive)
        self._client.loop_start()

    @property
    def connected(self) -> bool:
        return self._connected

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker refused the connection: %s", shown(reason))
            return
        with self._lock:
            self._connected = True
            self.connections += 1
            self._announced.clear()
            client.publish(f"{self.prefix}/status", "online", qos=1, retain=True)
            for camera, values in self._state.items():
                self._announce(camera)
                for key, value in values.items():
                    self._publish_value(camera, key, value)
            while self._pending:
                client.publish(f"{self.prefix}/event", self._pending.popleft(), qos=1)
        log.info("MQTT: connected to the broker")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any = None) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
        if was:
            log.warning("MQTT: lost the broker (%s); reconnecting", shown(reason))

    def send(self, alert: Alert) -> None:
        payload = json.dumps(alert.to_dict()).encode()
        with self._lock:
            if self._connected:
                self._client.publish(f"{self.prefix}/event", payload, qos=1)
            else:
                self._pending.append(payload)

    def publish_state(self, camera: str, values: dict[str, Any]) -> None:
        """Publish what changed of ``camera``'s state (retained). Never blocks."""
        with self._lock:
            known = self._state.setdefault(camera, {})
            changed = {k: v for k, v in values.items() if k in STATE_KEYS and known.get(k, ...)
                       != v}
            known.update(changed)
            if not self._connected:
                return
            self._announce(camera)
            for key, value in changed.items():
                self._publish_value(camera, key, value)

    def _topic(self, camera: str, key: str) -> str:
        return f"{self.prefix}/{camera}/{key}"

    def _publish_value(self, camera: str, key: str, value: Any) -> None:
        text = "" if value is None else str(value)
        self._client.publish(self._topic(camera, key), text, qos=1, retain=True)

    def _announce(self, camera: str) -> None:
        """Home Assistant discovery for ``camera``'s sensors (once per connection)."""
        if self.discovery_prefix is None or camera in self._announced:
            return
        self._announced.add(camera)
        node = f"{self.prefix}_{camera}".replace("/", "_").replace(".", "_")
        for key, (name, unit, device_class) in STATE_KEYS.items():
            config: dict[str, Any] = {
                "name": name, "unique_id": f"{node}_{key}",
                "state_topic": self._topic(camera, key),
                "availability_topic": f"{self.prefix}/status",
                "device": {"identifiers": [node], "name": f"calibd {camera}",
                           "manufacturer": "calibd"}}
            if unit is not None:
                config["unit_of_measurement"] = unit
            if device_class is not None:
                config["device_class"] = device_class
            self._client.publish(f"{self.discovery_prefix}/sensor/{node}/{key}/config",
                                 json.dumps(config), qos=1, retain=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._connected:
                info = self._client.publish(f"{self.prefix}/status", "offline", qos=1,
                                            retain=True)
                info.wait_for_publish(2.0)
            self._client.disconnect()
        with contextlib.suppress(Exception):
            self._client.loop_stop()


def hub_from_config(config: NotificationsConfig,
                    monotonic: Callable[[], float] = time.monotonic) -> AlertHub | None:
    """The hub and its targets for ``daemon.notifications`` (None when nothing is configured);
    the MQTT publisher, if any, is connected in the background. Raises ValueError naming the
    target (never its URL) when a URL or password file cannot be used."""
    from calibd.capture.inputfile import read_input_text

    targets: list[Target] = []
    for number, t in enumerate(config.targets, 1):
        if t.url is not None:
            url = t.url
        else:
            assert t.url_file is not None
            try:
                url = read_input_text(t.url_file, max_bytes=4096).strip()
            except OSError as err:
                raise ValueError(f"notification target {number}: cannot read its url_file: "
                                 f"{shown(err, 200)}") from None
        targets.append(AppriseTarget(url, t.events or KINDS, config.timeout_s, number))
    if config.mqtt is not None:
        m = config.mqtt
        password = None
        if m.password_file is not None:
            try:
                password = read_input_text(m.password_file, max_bytes=4096).strip()
            except OSError as err:
                raise ValueError(f"mqtt.password_file: {shown(err, 200)}") from None
        mqtt = MqttPublisher(m.host, m.port, prefix=m.topic_prefix,
                             discovery_prefix=m.discovery_prefix, client_id=m.client_id,
                             username=m.username, password=password, keepalive_s=m.keepalive_s,
                             kinds=m.events or KINDS)
        targets.append(mqtt)
    if not targets:
        return None
    hub = AlertHub(targets, dedup_s=config.dedup_s, rate_count=config.rate_count,
                   rate_window_s=config.rate_window_s, monotonic=monotonic)
    for target in targets:
        if isinstance(target, MqttPublisher):
            target.connect()
    hub.start()
    return hub


def mqtt_of(hub: AlertHub | None) -> MqttPublisher | None:
    """The hub's MQTT publisher, if one is configured."""
    if hub is None:
        return None
    return next((t for t in hub.targets if isinstance(t, MqttPublisher)), None)
