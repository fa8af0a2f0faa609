"""Settings shared by the peers' task modules and client, read from the environment.

bench/peers.py sets these variables; environment rather than arguments because each
system's own consumer command (`rq worker`, `huey_consumer`, `celery worker`) imports
the task module itself and passes no arguments of ours through to it.
"""

from __future__ import annotations

import os

REDIS_URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")
# Celery's results go to another database so that DBSIZE counts completions alone.
RESULTS_URL = REDIS_URL.rsplit("/", 1)[0] + "/1"
DURABLE = os.environ.get("PEERS_DURABLE") == "1"
HUEY_BACKEND = os.environ.get("PEERS_HUEY_BACKEND", "redis")  # "redis" or "sqlite"
SQLITE_FILE = os.environ.get("PEERS_SQLITE_FILE", "huey.db")
QUEUE = "default"
