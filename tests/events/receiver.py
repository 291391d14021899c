"""A real webhook receiver for the tests: an HTTP server on a thread of its own that keeps
every request it gets and answers with the statuses it is told, in turn."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    """Statuses to answer, in turn; 200 once they run out."""
    extra_headers: dict[str, str] = field(default_factory=dict)
    before_answer: Callable[[Received], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event_ids(self) -> list[str]:
        with self.lock:
            return [request.headers["Portal-Event-Id"] for request in self.requests]

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(set(self.event_ids())) >= count:
                return True
            time.sleep(0.05)
        return len(set(self.event_ids())) >= count


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """The receiver's check, as the README shows it: some v1= matches, and t is recent."""
    parts = [part.split("=", 1) for part in headers["Portal-Signature"].split(",")]
    timestamp = next(value for name, value in parts if name == "t")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return abs(time.time() - int(timestamp)) <= tolerance and any(
        name == "v1" and hmac.compare_digest(value, expected) for name, value in parts
    )


@contextmanager
def receiver(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """`tls`: the server context to answer https with (at 127.0.0.1)."""
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            received = Received(self.path, dict(self.headers.items()), self.rfile.read(length))
            with state.lock:
                state.requests.append(received)
                status = state.answers.pop(0) if state.answers else 200
            if state.before_answer is not None:
                state.before_answer(received)
            try:
                self.send_response(status)
                for name, value in state.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answered {status}".encode())
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender is gone (a worker killed mid-delivery)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "http" if tls is None else "https"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
