"""Timing constants shared by the daemon and the service files it is run from.

They live in one import-free module so the daemon can read its drain grace without
pulling in sd_notify, and so every generated service file derives its stop timeout
from the same number: a manager that kills before the drain ends loses tasks.
"""

from __future__ import annotations

# Seconds the daemon gives its agents to finish after SIGTERM before it kills them.
DEFAULT_DRAIN_GRACE = 30.0

# Extra seconds the service manager waits beyond the drain grace, so the daemon's own
# kill-and-reap of stragglers finishes before the manager's SIGKILL.
STOP_MARGIN = 15.0

# How long systemd / launchd / pm2 wait after the stop signal before SIGKILL.
STOP_TIMEOUT = DEFAULT_DRAIN_GRACE + STOP_MARGIN

# Pause before a crashed daemon is started again, so a bad manifest does not spin.
RESTART_DELAY = 5.0

# systemd WatchdogSec: the daemon pings at half of it while its loop is healthy.
WATCHDOG_SEC = 30

# launchd refuses to relaunch a job more often than this (seconds).
THROTTLE_INTERVAL = 10

# Name of the systemd unit and of the pm2 app; the launchd job label.
SERVICE_NAME = "dropsited"
LAUNCHD_LABEL = "org.dropsited.daemon"
