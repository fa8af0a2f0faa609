"""The Celery app (`celery -A celery_app`) and its no-op task: Redis broker, Redis results.

Durable mode (PEERS_DURABLE=1) asks for late acknowledgement and rejection on a lost
worker, so a task whose worker dies is delivered again (at-least-once), which is what
dropsited gives; the default, early ack, loses it (at-most-once).
"""

from __future__ import annotations

from celery import Celery
from peer_config import DURABLE, REDIS_URL, RESULTS_URL

app = Celery("peers", broker=REDIS_URL, backend=RESULTS_URL)
app.conf.update(
    task_acks_late=DURABLE,
    task_reject_on_worker_lost=DURABLE,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop() -> None:
    """Do nothing: the benchmark measures the queue, not the work (its result, None,
    is still stored: that record is how the bench knows the task finished)."""
