"""HTTP probes: ``/healthz`` (alive), ``/readyz`` (ready to serve) and ``/metrics``.

A stdlib :class:`ThreadingHTTPServer` in a daemon thread: no extra dependency, and the
handlers only read state that the runners' listeners keep up to date.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from eventsource.errors import ConfigurationError
from eventsource.lifecycle import ServiceThread

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer(ServiceThread):
    """Serves the probes on ``host:port`` until :meth:`close` (port 0 picks a free one)."""

    def __init__(
        self, readiness: Readiness, registry: CollectorRegistry, *, host: str, port: int
    ) -> None:
        super().__init__("eventsource-http")
        self._readiness = readiness
        self._registry = registry
        handler = _make_handler(self)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve health and metrics on {host}:{port}: {exc.strerror}; "
                "choose another --http-port (0 picks a free one)"
            ) from exc
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self.start_thread()
        return self

    def _loop(self) -> None:
        self._server.serve_forever()

    def _wake(self) -> None:
        if self.alive:  # serve_forever runs (or is about to): make it return
            self._server.shutdown()

    def _cleanup(self) -> None:
        self._server.server_close()


def _make_handler(server: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, "application/json", b'{"status": "alive"}')
            elif path == "/readyz":
                ready, detail = server._readiness()
                body = json.dumps({"ready": ready, "projections": detail}).encode()
                self._send(200 if ready else 503, "application/json", body)
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(server._registry))
            else:
                self._send(404, "text/plain", b"not found: try /healthz, /readyz, /metrics\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Probes hit every few seconds; access logs would drown the service's own lines.
            return

    return Handler
