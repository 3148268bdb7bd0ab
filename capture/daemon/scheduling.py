"""APScheduler 3 for the daemon: a persistent SQLite job store, cron and twilight triggers,
and (for the simulator only) the same scheduler running on a simulated clock.

Jobs only *queue* a run (:func:`fire` looks the running daemon up and hands it the schedule's
name); the runs themselves happen in the camera workers. Misfire policy: jobs coalesce (a
schedule missed several times while the machine was off runs once), and a missed fire still
runs when the daemon comes back within ``misfire_grace_s`` (``run_once``) or is skipped
(``skip``: a grace of one second).

Daylight saving time (:class:`WallClockCronTrigger`): a cron time that occurs twice when the
clocks go back (02:30 in Europe/Rome on the last Sunday of October) fires once, at its first
occurrence; a time that does not exist when they go forward (02:30 on the last Sunday of March)
fires one hour later by the clock (03:30 summer time, the instant 02:30 winter time would have
been). Schedules that run every hour (hour field ``*``) follow real time through the change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import tzinfo
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from calibd.capture.config import CronSchedule
from calibd.capture.config import ScheduleConfig
from calibd.capture.config import TwilightSchedule
from calibd.capture.site import Site
from calibd.capture.site import crossings
from calibd.drivers.clock import Clock
from calibd.drivers.clock import RealClock

log = logging.getLogger(__name__)

_fire_target: dict[str, Callable[[str], None]] = {}


def fire(schedule_name: str) -> None:
    """The job function stored in the job store (by reference): queue the schedule's run."""
    target = _fire_target.get("daemon")
    if target is None:
        log.warning("schedule %s fired with no daemon running", schedule_name)
        return
    target(schedule_name)


def set_fire_target(target: Callable[[str], None] | None) -> None:
    if target is None:
        _fire_target.pop("daemon", None)
    else:
        _fire_target["daemon"] = target


class TwilightTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires when the sun crosses ``altitude_deg`` going down (dusk) or up (dawn) at ``site``."""

    def __init__(self, site: Site, event: str, altitude_deg: float) -> None:
        self.site = site
        self.event = event
        self.altitude_deg = altitude_deg

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        start = now
        if previous_fire_time is not None:
            start = max(now, previous_fire_time + timedelta(minutes=30))
        for when, rising in crossings(self.site, start, self.altitude_deg, hours=48.0):
            if rising == (self.event == "dawn"):
                return when.astimezone(now.tzinfo) if now.tzinfo else when
        return None

    def __str__(self) -> str:
        return f"{self.event} (sun at {self.altitude_deg:g}°)"

    def __getstate__(self) -> dict[str, Any]:
        return {"version": 1, "site": self.site, "event": self.event,
                "altitude_deg": self.altitude_deg}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.site = state["site"]
        self.event = state["event"]
        self.altitude_deg = state["altitude_deg"]


class WallClockCronTrigger(CronTrigger):  # type: ignore[misc]
    """A CronTrigger that fires a repeated wall-clock time only once in autumn. APScheduler 3
    alone fires a daily 02:30 at both 02:30 CEST and 02:30 CET."""

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        fire: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        for _ in range(4):  # at most one repeated hour a day; bounded anyway
            if fire is None or not self._second_occurrence(fire):
                return fire
            fire = super().get_next_fire_time(fire, fire.astimezone(UTC) + timedelta(seconds=1))
        return fire

    def _second_occurrence(self, when: datetime) -> bool:
        """``when`` is the later of two instants with the same local wall-clock time, and the
        schedule names its hours (a job every hour keeps running through the repeated hour)."""
        hour = next(f for f in self.fields if f.name == "hour")
        if str(hour) == "*":
            return False
        wall = when.astimezone(self.timezone).replace(tzinfo=None)
        first = wall.replace(tzinfo=self.timezone, fold=0)
        second = wall.replace(tzinfo=self.timezone, fold=1)
        if first.utcoffset() == second.utcoffset():
            return False  # not an ambiguous time
        return when.astimezone(UTC) == second.astimezone(UTC) != first.astimezone(UTC)


def trigger_for(schedule: ScheduleConfig, site: Site | None, tz: tzinfo) -> BaseTrigger | None:
    if isinstance(schedule, CronSchedule):
        return WallClockCronTrigger.from_crontab(schedule.cron, timezone=tz)
    if isinstance(schedule, TwilightSchedule):
        assert site is not None
        return TwilightTrigger(site, schedule.trigger, schedule.sun_altitude_deg)
    return None


class ClockScheduler(BackgroundScheduler):  # type: ignore[misc]
    """A BackgroundScheduler whose waits are converted to the daemon clock's real seconds (so a
    simulated clock drives it too) and never longer than ``max_real_wait_s``."""

    def __init__(self, clock: Clock, max_real_wait_s: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clock = clock
        self._max_real_wait_s = max_real_wait_s

    def _main_loop(self) -> None:
        wait_seconds: float | None = 0.0
        while self.state != STATE_STOPPED:
            real = self._max_real_wait_s if wait_seconds is None else min(
                self._max_real_wait_s, self._clock.real_seconds(wait_seconds))
            self._event.wait(real)
            self._event.clear()
            wait_seconds = self._process_jobs()


_patch_lock = threading.Lock()
_clock_holder: dict[str, Clock] = {}


class ClockDatetime(datetime):
    """``datetime`` whose ``now()`` reads the daemon's clock; it returns plain datetimes (so
    nothing of this class ends up pickled in the job store)."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        clock = _clock_holder.get("clock")
        if clock is None:
            return datetime.now(tz)
        now = clock.now()
        return now.astimezone(tz) if tz is not None else now.replace(tzinfo=None)


def use_clock_for_apscheduler(clock: Clock) -> None:
    """Make APScheduler read the time from ``clock`` (process-wide; only ever done for a
    simulated clock, in simulator runs and tests). APScheduler 3 calls ``datetime.now`` in its
    scheduler and executor modules; those module names are pointed at a subclass whose
    ``now`` is the clock's."""
    if isinstance(clock, RealClock):
        _clock_holder.pop("clock", None)  # a simulated clock set earlier in this process
        return
    import apscheduler.executors.base as executors_base
    import apscheduler.schedulers.base as schedulers_base

    _clock_holder["clock"] = clock
    with _patch_lock:
        schedulers_base.datetime = ClockDatetime
        executors_base.datetime = ClockDatetime


def make_scheduler(state_dir: Path, clock: Clock, tz: tzinfo) -> ClockScheduler:
    """A scheduler with its jobs persisted in ``state_dir/jobs.sqlite``."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    use_clock_for_apscheduler(clock)
    return ClockScheduler(
        clock,
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{state_dir / 'jobs.sqlite'}")},
        executors={"default": ThreadPoolExecutor(2)},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=tz,
    )


def trigger_identity(trigger: Any) -> str:
    """What makes two triggers fire at the same times: the kind, the schedule, its time zone,
    its site (``str()`` of a CronTrigger leaves the zone out)."""
    return (f"{type(trigger).__name__}|{trigger}|{getattr(trigger, 'timezone', '')}|"
            f"{getattr(trigger, 'site', '')}")


def sync_jobs(scheduler: ClockScheduler, schedules: list[ScheduleConfig], site: Site | None,
              tz: tzinfo) -> None:
    """Make the job store hold exactly the enabled timed schedules (added, replaced with new
    triggers, or removed). A schedule whose trigger did not change keeps its next run time."""
    wanted: dict[str, ScheduleConfig] = {s.name: s for s in schedules if s.enabled}
    for job in scheduler.get_jobs():
        schedule = wanted.get(job.id)
        if schedule is None or trigger_for(schedule, site, tz) is None:
            scheduler.remove_job(job.id)
    existing = {job.id: job for job in scheduler.get_jobs()}
    for name, schedule in wanted.items():
        trigger = trigger_for(schedule, site, tz)
        if trigger is None:
            continue
        assert isinstance(schedule, CronSchedule | TwilightSchedule)
        grace = int(schedule.misfire_grace_s) if schedule.misfire == "run_once" else 1
        job = existing.get(name)
        if job is not None and trigger_identity(job.trigger) == trigger_identity(trigger) and \
                job.misfire_grace_time == grace:
            continue
        scheduler.add_job(fire, trigger, args=[name], id=name, name=name,
                          replace_existing=True, misfire_grace_time=grace)
        log.info("schedule %s: %s", name, trigger)
