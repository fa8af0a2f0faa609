"""The `--metrics` HTTP endpoint, with the official prometheus_client (extra `metrics`):
its WSGI app and exposition serve our families (metrics.py), so what a Prometheus server
scrapes is written by the reference implementation. Imported only for `--metrics`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import Metric

from .metrics import Family


class _Collector:
    """A prometheus_client collector over the exporter's last families."""

    def __init__(self, latest: Callable[[], list[Family]]) -> None:
        self.latest = latest

    def collect(self):
        for family in self.latest():
            metric = Metric(family.name, family.help, family.kind)
            for sample in family.samples:
                metric.add_sample(sample.name, dict(sample.labels), sample.value)
            yield metric


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Scrapes every 15 s must not fill the daemon's log."""


def start_server(host: str, port: int, latest: Callable[[], list[Family]]) -> WSGIServer:
    """Listen on host:port (port 0: any free port) and serve in a thread; OSError if the
    address cannot be bound."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(latest))
    server = make_server(host, port, make_wsgi_app(registry), _Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics-http").start()
    return server
