"""The producer side of bench/peers.py for RQ, Huey and Celery, run by the peers' venv.

bench/peers.py runs in the project's venv, which must not carry the peers' packages,
so everything that talks to a peer through its own client library happens here, in a
subprocess started with .venv-peers/bin/python:

    client.py versions                     print the peers' package versions (JSON)
    client.py enqueue SYSTEM N             put N no-op tasks on the queue, then exit
    client.py drain SYSTEM N               print "ready", poll the system's own record of
                                           finished tasks until it counts N, print JSON
                                           {"first": t, "last": t} (time.monotonic())
    client.py latency SYSTEM N BUDGET      one task at a time against a running consumer;
                                           print the latencies (JSON list, seconds)

SYSTEM is rq, huey or celery (Huey's storage and every address come from peer_config's
environment). time.monotonic() is CLOCK_MONOTONIC, one clock for every process on the
machine, so bench/peers.py can subtract its own readings from these.

Completions are counted from what each system records anyway: RQ's FinishedJobRegistry
(a sorted set: ZCARD), Huey's result store (HLEN, or COUNT(*) on SQLite; the tasks
store None results because of store_none=True) and Celery's result backend (DBSIZE of
the results database). Polling them costs one cheap command every --interval.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from importlib import metadata

from peer_config import QUEUE, REDIS_URL, RESULTS_URL


def counter(system: str) -> Callable[[], int]:
    """A function returning how many tasks the system has recorded as finished."""
    from redis import Redis

    if system == "rq":
        from rq import Queue
        from rq.registry import FinishedJobRegistry

        conn = Redis.from_url(REDIS_URL)
        key = FinishedJobRegistry(queue=Queue(QUEUE, connection=conn)).key
        return lambda: int(conn.zcard(key))
    if system == "huey":
        from huey_app import huey

        return huey.result_count
    if system == "celery":
        results = Redis.from_url(RESULTS_URL)
        return lambda: int(results.dbsize())
    raise SystemExit(f"unknown system {system!r}")


def enqueue(system: str, n: int) -> None:
    """N no-op tasks through each system's ordinary enqueue API (RQ in pipelined batches,
    which only saves the untimed fill's round trips)."""
    if system == "rq":
        import rq_tasks
        from redis import Redis
        from rq import Queue

        queue = Queue(QUEUE, connection=Redis.from_url(REDIS_URL))
        for start in range(0, n, 1000):
            batch = [Queue.prepare_data(rq_tasks.noop) for _ in range(min(1000, n - start))]
            queue.enqueue_many(batch)
    elif system == "huey":
        import huey_app

        for _ in range(n):
            huey_app.noop()
    elif system == "celery":
        import celery_app

        for _ in range(n):
            celery_app.noop.apply_async()
    else:
        raise SystemExit(f"unknown system {system!r}")


def submitter(system: str) -> Callable[[], Callable[[], bool]]:
    """A function that enqueues one task and returns a 'has it finished?' check."""
    from redis import Redis

    if system == "rq":
        import rq_tasks
        from rq import Queue
        from rq.job import JobStatus

        queue = Queue(QUEUE, connection=Redis.from_url(REDIS_URL))

        def submit_rq() -> Callable[[], bool]:
            job = queue.enqueue(rq_tasks.noop)
            return lambda: job.get_status(refresh=True) == JobStatus.FINISHED

        return submit_rq
    if system == "huey":
        import huey_app

        def submit_huey() -> Callable[[], bool]:
            result = huey_app.noop()
            return lambda: huey_app.huey.storage.has_data_for_key(result.id)

        return submit_huey
    if system == "celery":
        import celery_app

        results = Redis.from_url(RESULTS_URL)
        backend = celery_app.app.backend

        def submit_celery() -> Callable[[], bool]:
            key = backend.get_key_for_task(celery_app.noop.apply_async().id)
            return lambda: bool(results.exists(key))

        return submit_celery
    raise SystemExit(f"unknown system {system!r}")


def drain(system: str, n: int, interval: float, timeout: float) -> int:
    count = counter(system)
    print("ready", flush=True)
    first: float | None = None
    deadline = time.monotonic() + timeout
    while True:
        done = count()
        now = time.monotonic()
        if done and first is None:
            first = now
        if done >= n:
            print(json.dumps({"first": first, "last": now, "count": done}), flush=True)
            return 0
        if now > deadline:
            print(json.dumps({"error": f"{done} of {n} finished after {timeout:g} s"}), flush=True)
            return 1
        time.sleep(interval)


def latency(system: str, n: int, budget: float, interval: float, warm_up: int = 5) -> int:
    """Up to N tasks one at a time; stops early after BUDGET seconds once 10 are done."""
    submit = submitter(system)
    latencies: list[float] = []
    began = time.monotonic()
    for i in range(warm_up + n):
        if len(latencies) >= min(n, 10) and time.monotonic() - began > budget:
            break
        start = time.monotonic()
        finished = submit()
        deadline = start + 60.0
        while not finished():
            if time.monotonic() > deadline:
                print(json.dumps({"error": "a task did not finish within 60 s"}), flush=True)
                return 1
            time.sleep(interval)
        if i >= warm_up:
            latencies.append(time.monotonic() - start)
        else:
            began = time.monotonic()
    print(json.dumps(latencies), flush=True)
    return 0


def versions() -> int:
    names = ["rq", "huey", "celery", "kombu", "redis"]
    print(json.dumps({name: metadata.version(name) for name in names}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("versions")
    p = sub.add_parser("enqueue")
    p.add_argument("system")
    p.add_argument("n", type=int)
    p = sub.add_parser("drain")
    p.add_argument("system")
    p.add_argument("n", type=int)
    p.add_argument("--interval", type=float, default=0.005)
    p.add_argument("--timeout", type=float, default=600.0)
    p = sub.add_parser("latency")
    p.add_argument("system")
    p.add_argument("n", type=int)
    p.add_argument("budget", type=float)
    p.add_argument("--interval", type=float, default=0.0005)
    args = parser.parse_args(argv)
    if args.command == "versions":
        return versions()
    if args.command == "enqueue":
        enqueue(args.system, args.n)
        return 0
    if args.command == "drain":
        return drain(args.system, args.n, args.interval, args.timeout)
    return latency(args.system, args.n, args.budget, args.interval)


if __name__ == "__main__":
    sys.exit(main())
