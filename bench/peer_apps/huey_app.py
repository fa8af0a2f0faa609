"""The Huey instance (`huey_app.huey`) and its no-op task, for `huey_consumer`.

One module serves both storages so the consumer command differs only in the
environment: PEERS_HUEY_BACKEND=sqlite gives SqliteHuey, anything else RedisHuey.
"""

from __future__ import annotations

from huey import Huey, RedisHuey, SqliteHuey
from peer_config import DURABLE, HUEY_BACKEND, REDIS_URL, SQLITE_FILE

huey: Huey
if HUEY_BACKEND == "sqlite":
    # journal_mode stays Huey's default ("wal"). fsync=False sets PRAGMA synchronous=0
    # (OFF), fsync=True synchronous=2 (FULL: the WAL is fsynced at every commit).
    # store_none: a task returning None still leaves a result, which is how the
    # bench counts completions.
    huey = SqliteHuey("peers", filename=SQLITE_FILE, fsync=DURABLE, store_none=True)
else:
    # blocking=True (the default): workers wait in BRPOP rather than polling.
    huey = RedisHuey("peers", url=REDIS_URL, store_none=True)


@huey.task()
def noop() -> None:
    """Do nothing: the benchmark measures the queue, not the work."""
