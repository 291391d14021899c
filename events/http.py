"""The webhook HTTP client, and the server-side request forgery guard it shares with the
endpoint services.

A URL is checked when an endpoint is saved and again at every delivery, after resolving its
host: the connection then goes to the very address that was checked (TLS still verifies the
certificate for the host name), so a DNS answer that changes between the check and the
connection (rebinding) cannot reach the portal's own network. No redirect is followed, no
cookie kept, no proxy from the environment used, nothing sent but the event and its headers.
A request ends TOTAL_TIMEOUT after it connected however slowly the answer trickles in, and
reads at most BODY_LOG_BYTES of the body. (Resolving the name is bounded by the resolver's
own timeouts, not by TOTAL_TIMEOUT.)
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
import urllib3.connection
from django.conf import settings

from portal.errors import DomainError, ErrorCode

CONNECT_TIMEOUT = 5.0
TOTAL_TIMEOUT = 10.0
BODY_LOG_BYTES = 1024


class RefusedUrl(DomainError):
    """A webhook URL the portal will not call: INVALID_REQUEST with the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_REQUEST, message)


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


def parse_url(url: str) -> Target:
    """The URL's parts, refused unless https (or http with WEBHOOK_ALLOW_HTTP) with a host
    and no credentials in it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedUrl(f"the URL is not valid: {exc}") from exc
    allowed = {"https", "http"} if settings.WEBHOOK_ALLOW_HTTP else {"https"}
    if parts.scheme not in allowed:
        raise RefusedUrl(
            "the URL must use https"
            + ("" if settings.WEBHOOK_ALLOW_HTTP else " (http needs WEBHOOK_ALLOW_HTTP=true)")
        )
    if not parts.hostname:
        raise RefusedUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedUrl("the URL must not carry credentials")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    default_port = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default_port, path)


def refusal(address: str) -> str | None:
    """Why `address` may not be called (None: it may). Only public unicast addresses may,
    unless WEBHOOK_ALLOW_PRIVATE_NETWORKS. An IPv4 address inside an IPv6 one (mapped, or
    6to4, which a 6to4 relay would forward to it) is judged as itself. The specific kinds
    come before "private", which the standard library also says of each of them."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return None
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            article = "an" if kind == "unspecified" else "a"
            return f"{ip} is {article} {kind.replace('_', '-')} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def resolve(target: Target) -> str:
    """The address to connect to: every address the host resolves to must be allowed (one
    private address among public ones refuses the URL), and the first is used."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise RefusedUrl(f"the host {target.host} does not resolve") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            raise RefusedUrl(
                f"the URL reaches {reason}, which webhooks may not call "
                "(WEBHOOK_ALLOW_PRIVATE_NETWORKS is off)"
            )
    return addresses[0]


def check_url(url: str) -> str:
    """At save time: the URL as it will be called, or RefusedUrl."""
    resolve(parse_url(url))
    return url


class _Deadline:
    """Ends a request TOTAL_TIMEOUT after it started, whatever the receiver does.

    urllib3's `total` only caps each socket read, so a receiver trickling a byte every few
    seconds (TLS handshake, status line, headers or body) would hold the worker for hours and
    outlive the delivery's lease. At the deadline a timer shuts the connection's socket down,
    which ends the read blocked on it. The timer holds a duplicate of the socket, so it never
    touches a descriptor the connection has closed and something else reused."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            watched = sock.dup()
            self._sockets.append(watched)
            if self.expired:
                _shut(watched)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """A connection whose socket, once connected, is handed to the request's _Deadline."""

    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        self._deadline.watch(sock)
        return sock


class _HTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: int
    body: str
    error: str

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """POSTs `body`; never raises for what the receiver (or its address) does."""
    started = time.monotonic()

    def outcome(status: int | None, text: str = "", error: str = "") -> Outcome:
        latency = round((time.monotonic() - started) * 1000)
        return Outcome(status, latency, text, error[:500])

    try:
        target = parse_url(url)
        address = resolve(target)
    except RefusedUrl as exc:
        return outcome(None, error=f"refused: {exc.message}")
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    if target.port != (443 if target.scheme == "https" else 80):
        host_header += f":{target.port}"
    timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, total=TOTAL_TIMEOUT)
    deadline = _Deadline(TOTAL_TIMEOUT)
    if target.scheme == "https":
        pool: urllib3.HTTPConnectionPool = _HTTPSPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=target.host,
            assert_hostname=target.host,
            deadline=deadline,
        )
    else:
        pool = _HTTPPool(
            address, target.port, timeout=timeout, retries=False, maxsize=1, deadline=deadline
        )
    try:
        with deadline, pool:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers={**headers, "Host": host_header},
                redirect=False,
                preload_content=False,
                assert_same_host=False,
            )
            if deadline.expired:
                # Cut off before its headers ended: http.client takes the end of the stream
                # for the end of a status line or of the headers, so what it parsed is not
                # the receiver's whole answer (a 2xx here would be a success nobody sent).
                response.release_conn()
                return outcome(None, error=f"timeout: no full answer within {TOTAL_TIMEOUT:g} s")
            return outcome(response.status, *_first_bytes(response, deadline))
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if deadline.expired:
            return outcome(None, error=f"timeout: no full answer within {TOTAL_TIMEOUT:g} s")
        # NewConnectionError is a ConnectTimeoutError to urllib3: told apart first.
        timed_out = isinstance(exc, urllib3.exceptions.TimeoutError) and not isinstance(
            exc, urllib3.exceptions.NewConnectionError
        )
        kind = "timeout" if timed_out else "error"
        return outcome(None, error=f"{kind}: {exc.__class__.__name__}")


def _first_bytes(response: urllib3.BaseHTTPResponse, deadline: _Deadline) -> tuple[str, str]:
    """The start of the body, for the log. The status has arrived and is the answer: a body
    cut short (by the deadline or the receiver) is noted, it does not undo the status."""
    try:
        return response.read(BODY_LOG_BYTES).decode("utf-8", "replace"), ""
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        kind = "timeout" if deadline.expired else "error"
        return "", f"{kind} reading the body: {exc.__class__.__name__}"
    finally:
        response.release_conn()
