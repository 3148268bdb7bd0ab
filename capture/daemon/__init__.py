"""The calibd service: schedules, twilight and weather triggers, per-camera run queues, systemd
notify and watchdog, a local HTTP API, and resuming unfinished runs after a restart."""
