"""Prometheus ``/metrics`` and a JSON ``/health`` endpoint, one small HTTP server per service."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

Health = Callable[[], dict[str, Any]]


def lag_gauge(service: str, registry: CollectorRegistry) -> Gauge:
    """The consumer-lag gauge every service exports, named after the service."""
    return Gauge(
        f"selfheal_{service}_consumer_lag", "Messages behind the end of the input topics", registry=registry
    )


class MetricsServer:
    """Serves ``/metrics`` from ``registry`` and ``/health`` from ``health()`` on ``port``
    (0: any free port; read ``.port`` after ``start()``)."""

    def __init__(self, registry: CollectorRegistry, health: Health, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104
        self.registry, self.health = registry, health
        self.host, self.port = host, port
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> MetricsServer:
        registry, health = self.registry, self.health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/health"):
                    state = health()
                    code = 200 if state.get("status") == "ok" else 503
                    body, ctype = orjson.dumps(state), "application/json"
                else:
                    body, ctype, code = b"not found: try /metrics or /health\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # requests are not worth a log line each

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
