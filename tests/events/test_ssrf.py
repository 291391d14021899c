"""Webhook URLs may not reach the portal's own network: refused at save time and, after DNS
resolution, again at delivery time; redirects are never followed."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from accounts.audit import Actor
from events import http, services
from events.models import Delivery, DeliveryAttempt, DeliveryStatus, WebhookEndpoint
from portal.errors import DomainError
from tests.events.receiver import receiver
from tests.helpers import new_user

OPERATOR = Actor.operator("tests")


@pytest.fixture
def guarded(settings) -> None:
    settings.WEBHOOK_ALLOW_HTTP = False
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False


def _resolving(monkeypatch, names: dict[str, str]) -> None:
    """DNS as the test says for `names`, the real one otherwise."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            family = socket.AF_INET6 if ":" in names[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (names[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
        ("https://10.0.0.1/hook", "10.0.0.1 is a private address"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("https://[fe80::1]/hook", "fe80::1 is a link-local address"),
        ("https://0.0.0.0/hook", "0.0.0.0 is an unspecified address"),
        ("https://2130706433/hook", "127.0.0.1 is a loopback address"),  # decimal
        ("https://0177.0.0.1/hook", "127.0.0.1 is a loopback address"),  # octal
        ("https://[2002:7f00:1::]/hook", "127.0.0.1 is a loopback address"),  # 6to4
        ("https://[64:ff9b::a00:1]/hook", "64:ff9b::a00:1 is a reserved address"),  # NAT64
        ("https://[::1]/hook", "::1 is a loopback address"),
        ("https://internal.example.com/hook", "10.1.2.3 is a private address"),
        ("https://224.0.0.1/hook", "224.0.0.1 is a multicast address"),
        ("https://[::ffff:127.0.0.1]/hook", "127.0.0.1 is a loopback address"),
    ],
)
@pytest.mark.django_db
def test_private_addresses_are_refused_at_save_time(app, guarded, monkeypatch, url, reason):
    _resolving(monkeypatch, {"internal.example.com": "10.1.2.3"})
    with pytest.raises(DomainError) as refused:
        services.create_endpoint(app=app, url=url, actor=OPERATOR)
    assert reason in refused.value.message
    assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS" in refused.value.message
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example.com/x", "must use https"),
        ("https://user:pw@hooks.example.com/x", "must not carry credentials"),
        ("ftp://hooks.example.com/x", "must use https"),
        ("https:///x", "has no host"),
        ("https://nonexistent.invalid/x", "does not resolve"),
    ],
)
@pytest.mark.django_db
def test_other_bad_urls_are_refused(app, guarded, url, message):
    with pytest.raises(DomainError, match=message):
        services.create_endpoint(app=app, url=url, actor=OPERATOR)


@pytest.mark.django_db
def test_a_public_address_is_accepted(app, guarded, monkeypatch):
    _resolving(monkeypatch, {"hooks.example.com": "93.184.215.14"})
    created = services.create_endpoint(app=app, url="https://hooks.example.com/in", actor=OPERATOR)
    assert created.endpoint.url == "https://hooks.example.com/in"


@pytest.mark.django_db
def test_a_name_that_turns_private_after_saving_is_refused_at_delivery(
    customer, app, guarded, monkeypatch
):
    """DNS rebinding: public when saved, loopback when delivering. The connection would go to
    the address checked, and that address is refused: nothing is sent."""
    _resolving(monkeypatch, {"rebind.example.com": "93.184.215.14"})
    services.create_endpoint(
        app=app, url="https://rebind.example.com/in", event_types=["user.created"], actor=OPERATOR
    )
    new_user(customer, app.app_id)
    services.dispatch_events()
    _resolving(monkeypatch, {"rebind.example.com": "127.0.0.1"})

    result = services.attempt_delivery(delivery_id=Delivery.objects.get().pk)

    assert result.outcome is not None and result.outcome.status_code is None
    attempt = DeliveryAttempt.objects.get()
    assert attempt.error.startswith("refused:") and "127.0.0.1 is a loopback" in attempt.error
    assert Delivery.objects.get().status == DeliveryStatus.PENDING  # retried later, like a failure


@pytest.mark.django_db
def test_a_redirect_to_a_private_address_is_not_followed(customer, app):
    """The test receivers are on 127.0.0.1, so private networks are allowed here: even so a
    redirect, to anywhere, is an answer that failed, never a second request."""
    with receiver() as target, receiver() as redirector:
        redirector.answers = [302]
        redirector.extra_headers = {"Location": target.url}
        services.create_endpoint(
            app=app, url=redirector.url, event_types=["user.created"], actor=OPERATOR
        )
        new_user(customer, app.app_id)
        services.dispatch_events()
        services.attempt_delivery(delivery_id=Delivery.objects.get().pk)
        assert len(redirector.requests) == 1
        assert target.requests == []
    attempt = DeliveryAttempt.objects.get()
    assert attempt.status_code == 302 and not attempt.succeeded


def test_the_client_sends_no_cookie_and_keeps_none(settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    with receiver() as target:
        target.extra_headers = {"Set-Cookie": "session=abc"}
        first = http.post(target.url, b"{}", {"Content-Type": "application/json"})
        http.post(target.url, b"{}", {"Content-Type": "application/json"})
    assert first.status_code == 200 and first.body == "answered 200"
    assert all("Cookie" not in request.headers for request in target.requests)
    assert target.requests[0].headers["Host"] == target.url.split("/")[2]


def test_a_hanging_receiver_costs_at_most_the_total_timeout(settings, monkeypatch):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    monkeypatch.setattr(http, "TOTAL_TIMEOUT", 0.5)
    with socket.socket() as listener:  # accepts (the kernel does), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        outcome = http.post(f"http://127.0.0.1:{port}/x", b"{}", {})
    assert outcome.status_code is None and outcome.error.startswith("timeout:")
    assert outcome.latency_ms < 2000


def _trickling_receiver(head: bytes, drip: bytes) -> tuple[socket.socket, int]:
    """A receiver that sends `head`, then `drip` a byte every 50 ms for 5 s: each read is
    quick, the whole answer is not."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection, contextlib.suppress(OSError):
            connection.recv(65536)
            connection.sendall(head)
            for byte in drip:
                connection.sendall(bytes([byte]))
                time.sleep(0.05)

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


@pytest.mark.parametrize(
    ("head", "drip", "status", "error"),
    [
        # The status line itself trickles (a long reason phrase: 3.5 s), so none has arrived.
        (b"", b"HTTP/1.1 200 " + b"O" * 60 + b"K\r\n\r\n", None, "timeout: no full answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"x" * 100, 200, "timeout reading"),
    ],
    ids=["headers", "body"],
)
def test_a_trickling_receiver_costs_at_most_the_total_timeout(
    settings, monkeypatch, head, drip, status, error
):
    """urllib3's total timeout bounds each read, not the answer: the deadline does. A status
    that arrived stands even if the body is cut short (it is only logged)."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    # Long enough for the head that is sent at once to arrive on a busy machine, far shorter
    # than the 5 s and more that the drip takes.
    monkeypatch.setattr(http, "TOTAL_TIMEOUT", 1.5)
    listener, port = _trickling_receiver(head, drip)
    with listener:
        outcome = http.post(f"http://127.0.0.1:{port}/x", b"{}", {})
    assert outcome.latency_ms < 3000
    assert outcome.status_code == status and outcome.error.startswith(error)


def _certificate_authority(tmp_path, host: str) -> tuple[str, str, str]:
    """A CA file, and a certificate and key for `host` that it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def issue(subject, issuer, key, signer, *extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = issue("test CA", "test CA", ca_key, ca_key, (x509.BasicConstraints(True, None), True))
    leaf = issue(
        host,
        "test CA",
        leaf_key,
        ca_key,
        (x509.SubjectAlternativeName([x509.DNSName(host)]), False),
    )
    paths = [str(tmp_path / name) for name in ("ca.pem", "leaf.pem", "leaf.key")]
    for path, data in zip(
        paths,
        [
            ca.public_bytes(serialization.Encoding.PEM),
            leaf.public_bytes(serialization.Encoding.PEM),
            leaf_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ],
        strict=True,
    ):
        Path(path).write_bytes(data)
    return paths[0], paths[1], paths[2]


def test_connecting_by_address_still_verifies_the_certificate_for_the_host(
    settings, monkeypatch, tmp_path
):
    """The client connects to the checked address, not the name: TLS must still send the
    name (SNI) and refuse a certificate that is not for it."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    ca, certificate, key = _certificate_authority(tmp_path, "hooks.example.com")
    monkeypatch.setenv("SSL_CERT_FILE", ca)
    _resolving(monkeypatch, {"hooks.example.com": "127.0.0.1", "other.example.com": "127.0.0.1"})
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    with receiver(tls=context) as target:
        port = target.url.split(":")[2].split("/")[0]

        right = http.post(f"https://hooks.example.com:{port}/in", b"{}", {})
        wrong = http.post(f"https://other.example.com:{port}/in", b"{}", {})

    assert right.status_code == 200 and right.error == ""
    assert wrong.status_code is None and wrong.error == "error: SSLError"
    assert [request.headers["Host"] for request in target.requests] == [f"hooks.example.com:{port}"]


def test_no_proxy_from_the_environment_is_used(settings, monkeypatch):
    """A proxy would connect to a name the portal checked but did not resolve itself."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    with receiver() as target, receiver() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, proxy.url.removesuffix("/hooks"))
        outcome = http.post(target.url, b"{}", {})
    assert outcome.status_code == 200
    assert len(target.requests) == 1 and proxy.requests == []
