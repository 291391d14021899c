"""Races on issuance, deletion, key-expiry notices and the code sweep, with real threads on
the real PostgreSQL.

Where a race needs a precise interleaving, "forced" rounds hold one side at the exact point
of the race (with a wrapped service or cursor, in that thread only) while the other side
runs, so the interleaving happens every time and one round proves it; "free" rounds release
the sides together, so the other orders are covered too. The outcome must be right either way.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace

import psycopg
import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import crypto, services
from accounts.audit import Actor
from accounts.models import (
    ApiKeyNotice,
    AuditAction,
    AuditEvent,
    AuthCode,
    AuthCodeStatus,
    DeletionRequest,
    DeletionStatus,
    LinkedUser,
    UserStatus,
)
from accounts.services import keys as key_services
from accounts.services import users as user_services
from accounts.signals import user_deleted
from devices.models import Device, InactiveReason
from tests.concurrency import run_together, values
from tests.factories import ApiKeyFactory, AppFactory, LinkedUserFactory
from tests.helpers import issue_code, redeem

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 20
ROUNDS = 1  # twenty threads on one external id collide within a round
REDEMPTIONS = 10
# With redemption reading the user before locking it, 29 of 30 single rounds of these tests
# failed: two rounds make a miss unlikely.
DELETION_ROUNDS = 2


def _issuance(api_key, external_id: str) -> Callable:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    return lambda: client.post("/users/auth-code", {"external_id": external_id}, format="json")


def _answers(responses) -> list[tuple[int, str]]:
    return [
        (response.status_code, response.json().get("errorCode", "") if response.content else "")
        for response in responses
    ]


def test_twenty_first_issuances_for_one_external_id_create_one_user(api_key, app):
    for round_ in range(ROUNDS):
        external_id = f"brand-new-{round_}"
        responses = values(run_together([_issuance(api_key, external_id) for _ in range(THREADS)]))

        assert _answers(responses) == [(200, "")] * THREADS
        bodies = [response.json() for response in responses]
        assert len({body["user_id"] for body in bodies}) == 1
        assert sorted(body["existing_user"] for body in bodies) == [False] + [True] * (THREADS - 1)
        user = LinkedUser.objects.get(app=app, external_id=external_id)
        assert user.user_id == bodies[0]["user_id"]
        assert user.status == UserStatus.PENDING
        # Every answer's code is a live code of that one user.
        assert len({body["authentication_code"] for body in bodies}) == THREADS
        assert AuthCode.objects.filter(user=user, status=AuthCodeStatus.ISSUED).count() == THREADS
    assert LinkedUser.objects.filter(app=app).count() == ROUNDS


def _user_with_codes(customer, api, app, external_id: str) -> tuple[str, list[str]]:
    """A user with an active phone and REDEMPTIONS outstanding codes."""
    first = issue_code(customer, external_id)
    phone = redeem(api, first["authentication_code"], app.app_id, f"{external_id}-phone")
    assert phone.status_code == 201, phone.content
    codes = [issue_code(customer, external_id)["authentication_code"] for _ in range(REDEMPTIONS)]
    return first["user_id"], codes


def _deletion_race(
    customer, app, user_id: str, codes: list[str], prefix: str, form_factor: str = "phone"
):
    """One DELETE /users/{id} and REDEMPTIONS redemptions on new installs, all at once."""
    installs = [f"{prefix}-new-{n:02d}" for n in range(REDEMPTIONS)]
    redeemers = [APIClient() for _ in installs]
    calls: list[Callable] = [lambda: customer.delete(f"/users/{user_id}")]
    calls += [
        lambda client=client, code=code, install=install: redeem(
            client, code, app.app_id, install, form_factor=form_factor
        )
        for client, code, install in zip(redeemers, codes, installs, strict=True)
    ]
    deletion, *redemptions = values(run_together(calls))
    assert deletion.status_code == 202, deletion.content
    return deletion.json()["request_id"], redemptions, installs


def _assert_tokens_void(redemptions) -> None:
    for response in redemptions:
        if response.status_code == 201:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access_token']}")
            answer = client.get("/sdk/status")
            assert answer.status_code == 401, answer.content
            assert answer.json()["errorCode"] == "INVALID_ACCESS_TOKEN"


@pytest.mark.parametrize("form_factor", ["phone", "tablet"])
def test_deletion_racing_redemptions_leaves_no_usable_device(
    customer, api, app, monkeypatch, form_factor
):
    """The purge is held back, so the deleted user's rows stay to be inspected.

    Deletion and redemption both lock the user row, so each redemption falls wholly before
    the deletion (its device is then retired with the others) or wholly after it (refused).
    A redemption slipping past the lock would commit a device after the retirement: it would
    stay active (a phone) or PHONE_PREFERRED (a tablet) with a working token. Tablets do not
    touch each other's rows, so there only the deletion's lock orders them."""
    held: list[str] = []
    monkeypatch.setattr("accounts.tasks.purge_deleted_user", SimpleNamespace(delay=held.append))
    for round_ in range(DELETION_ROUNDS):
        external_id = f"deleted-{round_}"
        user_id, codes = _user_with_codes(customer, api, app, external_id)

        request_id, redemptions, installs = _deletion_race(
            customer, app, user_id, codes, external_id, form_factor
        )

        answers = _answers(redemptions)
        assert set(answers) <= {(201, ""), (403, "USER_DISABLED")}, answers
        won = [r.json()["device"]["install_id"] for r in redemptions if r.status_code == 201]
        user = LinkedUser.objects.get(user_id=user_id)
        assert user.status == UserStatus.DELETED
        deletion = DeletionRequest.objects.get(request_id=request_id)
        assert (deletion.status, deletion.user_id) == (DeletionStatus.PENDING, user.pk)
        assert held[-1] == request_id

        devices = Device.objects.filter(user=user)
        assert sorted(devices.values_list("install_id", flat=True)) == sorted(
            [f"{external_id}-phone", *won]
        )
        assert set(devices.values_list("is_active", "inactive_reason", "access_token_digest")) == {
            (False, InactiveReason.USER_DELETED, None)
        }
        assert not Device.objects.filter(install_id__in=set(installs) - set(won)).exists()
        codes_left = Counter(AuthCode.objects.filter(user=user).values_list("status", flat=True))
        # The first code (the phone's) and each winner's were redeemed; every other one voided.
        assert codes_left == Counter(
            {AuthCodeStatus.REDEEMED: 1 + len(won), AuthCodeStatus.VOID: REDEMPTIONS - len(won)}
        )
        _assert_tokens_void(redemptions)

        assert services.purge_deleted_user(request_id=request_id)
        assert not LinkedUser.objects.filter(user_id=user_id).exists()
        assert not Device.objects.filter(app=app).exists()


def test_deletion_racing_redemptions_with_the_purge_running(customer, api, app):
    """Nothing held back: the eager purge runs as soon as the deletion commits. A redemption
    after the deletion is refused (403), or finds its code already purged (400); one that
    slipped past the lock would fail on the purged user (an IntegrityError from its thread)
    or leave a device behind."""
    for round_ in range(DELETION_ROUNDS):
        external_id = f"purged-{round_}"
        user_id, codes = _user_with_codes(customer, api, app, external_id)

        request_id, redemptions, installs = _deletion_race(
            customer, app, user_id, codes, external_id
        )

        answers = _answers(redemptions)
        assert set(answers) <= {(201, ""), (403, "USER_DISABLED"), (400, "INVALID_AUTH_CODE")}, (
            answers
        )
        deletion = DeletionRequest.objects.get(request_id=request_id)
        assert (deletion.status, deletion.user_id) == (DeletionStatus.DONE, None)
        assert not LinkedUser.objects.filter(user_id=user_id).exists()
        assert not Device.objects.filter(install_id__in=[f"{external_id}-phone", *installs])
        assert not AuthCode.objects.filter(code_digest__in=[crypto.digest(c) for c in codes])
        _assert_tokens_void(redemptions)
        # The external id is free again, for a brand-new user.
        again = issue_code(customer, external_id)
        assert (again["existing_user"], again["user_id"] != user_id) == (False, True)


WAIT = 10.0  # seconds a held side waits for the other before the test gives up
FORCED_ROUNDS = 1  # a forced interleaving happens every time: one round proves it
FREE_ROUNDS = 10


def _wait(event: threading.Event, what: str) -> None:
    if not event.wait(WAIT):
        raise AssertionError(f"gave up waiting for {what}")


def _customer(api_key) -> APIClient:
    """A client of its own for each thread."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    return client


def _answer(response) -> tuple[int, str]:
    return response.status_code, response.json().get("errorCode", "") if response.content else ""


# --- Issuance racing the deletion (and the purge) of its user ----------------------------


HOLD_CODE_INSERT = 4242  # the advisory lock the test trigger below waits for


@pytest.fixture
def watcher():
    """A connection of the test's own (autocommit) that sees which backend waits for which,
    and a BEFORE INSERT trigger on the codes that waits for an advisory lock this connection
    may hold: an issuance that gets there is held mid-statement, its user upserted and locked,
    its code not yet inserted."""
    conn = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    conn.execute(
        "CREATE FUNCTION test_hold_code_insert() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN PERFORM pg_advisory_xact_lock({HOLD_CODE_INSERT}); RETURN NEW; END $$"
    )
    conn.execute(
        "CREATE TRIGGER test_hold_code_insert BEFORE INSERT ON accounts_authcode"
        " FOR EACH ROW EXECUTE FUNCTION test_hold_code_insert()"
    )
    try:
        yield conn
    finally:
        conn.execute("DROP TRIGGER test_hold_code_insert ON accounts_authcode")
        conn.execute("DROP FUNCTION test_hold_code_insert()")
        conn.close()


def _wait_for_blocked(watcher, by: int, what: str, done: threading.Event | None = None):
    """The pid of a backend waiting for a lock that backend `by` holds, once there is one;
    None if `done` is set first."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        row = watcher.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [by]
        ).fetchone()
        if row:
            return row[0]
        if done is not None and done.is_set():
            return None
        time.sleep(0.005)
    raise AssertionError(f"gave up waiting for {what}")


def _issue_while_deleting(api_key, external_id: str, user_id: str, watcher, order: str):
    """POST /users/auth-code and DELETE /users/{user_id} at once. Returns both answers and
    whether the deletion was seen waiting for the issuance.

    "deletion first": the deletion, in its transaction with the user locked and marked
    deleted (in a user_deleted receiver), waits until the issuance is blocked on that lock,
    and only then commits. "issuance first": the issuance is held at its code insert (the
    trigger) until the deletion is blocked on the user the issuance locked, or has answered.
    "free": the DELETE starts after a random 0 to 30 ms."""
    locked, held, deleted = threading.Event(), threading.Event(), threading.Event()
    issuer, deleter = _customer(api_key), _customer(api_key)

    def hold_the_deletion(sender, user, now, **kwargs):
        locked.set()
        _wait_for_blocked(
            watcher, connection.connection.info.backend_pid, "the issuance to wait for it"
        )

    def issuance():
        if order == "deletion first":
            _wait(locked, "the deletion to lock the user")
        return issuer.post("/users/auth-code", {"external_id": external_id}, format="json")

    def deletion():
        if order == "issuance first":
            _wait(held, "the issuance to reach its code insert")
        elif order == "free":
            time.sleep(random.uniform(0, 0.03))
        try:
            return deleter.delete(f"/users/{user_id}")
        finally:
            deleted.set()

    def release_the_issuance():
        try:
            issuer_pid = _wait_for_blocked(
                watcher, watcher.info.backend_pid, "the issuance to reach its code insert"
            )
            held.set()
            return _wait_for_blocked(watcher, issuer_pid, "the deletion", done=deleted)
        finally:
            watcher.execute("SELECT pg_advisory_unlock(%s)", [HOLD_CODE_INSERT])

    if order == "deletion first":
        user_deleted.connect(hold_the_deletion, dispatch_uid="hold-the-deletion")
        try:
            return (*values(run_together([issuance, deletion])), False)
        finally:
            user_deleted.disconnect(dispatch_uid="hold-the-deletion")
    if order == "issuance first":
        watcher.execute("SELECT pg_advisory_lock(%s)", [HOLD_CODE_INSERT])
        issued, removed, waiting = values(run_together([issuance, deletion, release_the_issuance]))
        return issued, removed, waiting is not None
    return (*values(run_together([issuance, deletion])), False)


@pytest.mark.parametrize("purge", ["eager", "held"])
@pytest.mark.parametrize("order", ["deletion first", "issuance first", "free"])
def test_issuance_racing_the_deletion_of_its_user_never_leaves_a_live_code(
    api_key, customer, api, app, monkeypatch, watcher, order, purge
):
    """Guards: issuance upserted the user, then inserted the code in a second statement with
    no check in between. A DELETE /users/{id} committing in that window left a live `issued`
    code of the deleted user (purge held back), or, once the purge had removed the user, made
    the code's insert fail on its foreign key (a 500). Now both are one statement holding the
    user's lock: an issuance that meets a deletion in progress waits for it and then makes a
    brand-new user (existing_user false); a deletion that meets an issuance in progress waits
    for it and then voids its code ("issuance first" fails on the old two statements: the
    deletion does not wait, and the code goes in after it)."""
    if purge == "held":
        held_purges: list[str] = []
        monkeypatch.setattr(
            "accounts.tasks.purge_deleted_user", SimpleNamespace(delay=held_purges.append)
        )
    rounds = FREE_ROUNDS if order == "free" else FORCED_ROUNDS
    outcomes: Counter[str] = Counter()
    for round_ in range(rounds):
        external_id = f"issue-vs-delete-{order[:3]}-{purge}-{round_}"
        old_user_id = issue_code(customer, external_id)["user_id"]
        issued, removed, deletion_waited = _issue_while_deleting(
            api_key, external_id, old_user_id, watcher, order
        )

        assert _answer(removed) == (202, ""), removed.content
        assert deletion_waited == (order == "issuance first")
        assert issued.status_code == 200, issued.content
        body = issued.json()
        code = body["authentication_code"]
        digest = crypto.digest(code)
        row = AuthCode.objects.select_related("user").filter(code_digest=digest).first()
        redemption = redeem(APIClient(), code, app.app_id, f"install-{order[:3]}-{round_:03d}")
        if body["user_id"] != old_user_id:
            outcomes["brand-new user"] += 1
            assert body["existing_user"] is False
            assert row is not None
            assert (row.status, row.user.user_id, row.user.status) == (
                AuthCodeStatus.ISSUED,
                body["user_id"],
                UserStatus.PENDING,
            )
            assert redemption.status_code == 201, redemption.content
            assert redemption.json()["user_id"] == body["user_id"]
        else:
            outcomes["voided code of the deleted user"] += 1
            assert body["existing_user"] is True
            # Purged with its user, or still there but void.
            assert row is None or row.status == AuthCodeStatus.VOID, row.status
            assert _answer(redemption) in {(403, "USER_DISABLED"), (400, "INVALID_AUTH_CODE")}
        assert not AuthCode.objects.filter(
            status=AuthCodeStatus.ISSUED, user__status=UserStatus.DELETED
        ).exists()
    if order == "deletion first":  # it committed while the issuance waited
        assert outcomes == {"brand-new user": rounds}
    if order == "issuance first":  # it waited for the issuance, then voided the code
        assert outcomes == {"voided code of the deleted user": rounds}


# --- A repeated DELETE racing the purge ---------------------------------------------------

DELETES = 3


def _delete(client: APIClient, user_id: str):
    return lambda: client.delete(f"/users/{user_id}")


@pytest.mark.parametrize("interleaving", ["forced", "free"])
def test_repeated_deletes_racing_the_purge_all_answer_the_first_request(
    api_key, customer, api, app, monkeypatch, interleaving
):
    """Guards: DELETE looked the user up, then locked it with a get() in the deletion. A
    repeat that found the user just before the first DELETE's purge removed it then failed
    on the missing row (a 500). Now a repeat answers 202 with the first request's id,
    whether it comes during the deletion, during the purge or after it.

    "forced": all DELETEs are held just before request_user_deletion (each found the user);
    the first then deletes and its eager purge runs, and only then do the others go on."""
    deletion = user_services.request_user_deletion
    gate: dict[str, object] = {}

    def held_deletion(**kwargs):
        if not gate:
            return deletion(**kwargs)
        if gate["arrivals"].wait(WAIT) == 0:
            try:
                return deletion(**kwargs)
            finally:
                gate["first_done"].set()
        _wait(gate["first_done"], "the first deletion and its purge")
        return deletion(**kwargs)

    monkeypatch.setattr(user_services, "request_user_deletion", held_deletion)
    rounds = FORCED_ROUNDS if interleaving == "forced" else FREE_ROUNDS
    for round_ in range(rounds):
        external_id = f"repeat-delete-{interleaving}-{round_}"
        issued = issue_code(customer, external_id)
        user_id = issued["user_id"]
        phone = redeem(api, issued["authentication_code"], app.app_id, f"phone-{round_:04d}")
        assert phone.status_code == 201, phone.content
        clients = [_customer(api_key) for _ in range(DELETES)]
        if interleaving == "forced":
            gate.update(arrivals=threading.Barrier(DELETES), first_done=threading.Event())
        try:
            responses = values(run_together([_delete(client, user_id) for client in clients]))
        finally:
            gate.clear()
        responses.append(customer.delete(f"/users/{user_id}"))  # one right after

        assert [_answer(response) for response in responses] == [(202, "")] * (DELETES + 1), [
            response.content for response in responses
        ]
        request_ids = {response.json()["request_id"] for response in responses}
        assert len(request_ids) == 1
        request = DeletionRequest.objects.get(deleted_user_id=user_id)
        assert request.request_id in request_ids
        assert (request.status, request.user_id) == (DeletionStatus.DONE, None)
        assert not LinkedUser.objects.filter(user_id=user_id).exists()
        assert not Device.objects.filter(app=app, install_id=f"phone-{round_:04d}").exists()


# --- Two expiry-notice runs at once -------------------------------------------------------

NOTICE_ROUNDS = 3
KEYS_PER_WINDOW = 4


def test_two_expiry_notice_runs_at_once_send_each_reminder_once(monkeypatch, caplog):
    """Guards: each reminder is claimed (its ApiKeyNotice row inserted) in the same
    transaction as its mail is sent; a second run at the same time waits on that row and
    then finds it. A check-then-send (or send-then-record) would mail the contacts twice, or
    trip over the unique notice and leave a logged error. Sending is slowed a little so the
    two runs overlap on every key."""
    send = key_services._send_expiry_mail

    def slow_send(*args, **kwargs):
        time.sleep(0.02)
        return send(*args, **kwargs)

    monkeypatch.setattr(key_services, "_send_expiry_mail", slow_send)
    for round_ in range(NOTICE_ROUNDS):
        app = AppFactory(contact_emails=[f"ops-{round_}@example.com"])
        now = timezone.now()
        due = [
            ApiKeyFactory(app=app, expires_at=now + dt.timedelta(days=days, hours=1))
            for days in (10, 3)  # the 14-day reminder, the 7-day one
            for _ in range(KEYS_PER_WINDOW)
        ]
        expired = ApiKeyFactory(app=app, expires_at=now - dt.timedelta(hours=1))
        before = len(mail.outbox)

        sent = values(run_together([services.send_key_expiry_notices] * 2))

        assert sum(sent) == len(due), sent
        messages = mail.outbox[before:]
        per_key = Counter(key.key_id for key in due for m in messages if key.key_id in m.subject)
        assert per_key == {key.key_id: 1 for key in due}, per_key
        assert len(messages) == len(due)
        notices = Counter(
            ApiKeyNotice.objects.filter(api_key__app=app).values_list("api_key_id", "kind")
        )
        assert set(notices.values()) == {1}
        assert {kind for _, kind in notices} == {"14d", "7d", "expired"}
        assert len(notices) == len(due) + 1
        events = AuditEvent.objects.filter(action=AuditAction.KEY_EXPIRED, target_id=expired.key_id)
        assert events.count() == 1
    assert not [record for record in caplog.records if record.levelname == "ERROR"], [
        record.getMessage() for record in caplog.records
    ]


# --- The code sweep running while codes are redeemed --------------------------------------

SWEEP_ROUNDS = 1  # each round runs the sweep's many batches against 36 redemptions at once
SWEEP_USERS = 6
VALID_PER_USER = 4
EXPIRED_PER_USER = 20
OLD_PER_USER = 10  # past the retention: the sweep deletes them
SWEEP_BATCH = 3


def _codes(app, user, count: int, expires_at: dt.datetime) -> list[str]:
    secrets = [crypto.new_secret() for _ in range(count)]
    AuthCode.objects.bulk_create(
        AuthCode(code_digest=crypto.digest(secret), app=app, user=user, expires_at=expires_at)
        for secret in secrets
    )
    return secrets


def test_the_code_sweep_running_while_codes_are_redeemed(app, settings):
    """The sweep marks and deletes codes in many small batches (one statement each) while
    the valid codes are redeemed and some expired ones tried: every valid code redeems (201),
    every expired one is refused (410, or 400 once deleted), and nothing deadlocks, 503s or
    500s. Redemption locks the user, then writes only its own, valid code; the sweep touches
    only expired codes and locks no user, so the two never wait on each other. Guards against
    a deadlock or an error between the two, and against a sweep that sweeps away or
    misclassifies a code being redeemed (e.g. one purging redeemed codes: the counts and
    statuses below catch it)."""
    retention = settings.AUTH_CODE_RETENTION
    for round_ in range(SWEEP_ROUNDS):
        now = timezone.now()
        valid, expired, old = [], [], []
        for _ in range(SWEEP_USERS):
            user = LinkedUserFactory(app=app)
            valid += _codes(app, user, VALID_PER_USER, now + dt.timedelta(minutes=10))
            expired += _codes(app, user, EXPIRED_PER_USER, now - dt.timedelta(minutes=5))
            old += _codes(app, user, OLD_PER_USER, now - retention - dt.timedelta(hours=1))
        tried_expired, tried_old = expired[::EXPIRED_PER_USER], old[::OLD_PER_USER]

        def redemption(code: str, install: str):
            client = APIClient()
            return lambda: redeem(client, code, app.app_id, install)

        calls = [lambda: services.sweep_auth_codes(batch_size=SWEEP_BATCH)]
        calls += [redemption(code, f"sweep-{round_}-{n:03d}") for n, code in enumerate(valid)]
        calls += [
            redemption(code, f"late-{round_}-{n:03d}")
            for n, code in enumerate(tried_expired + tried_old)
        ]

        swept, *responses = values(run_together(calls))

        assert swept == services.SweepResult(expired=len(expired), purged=len(old)), swept
        answers = [_answer(response) for response in responses]
        assert answers[: len(valid)] == [(201, "")] * len(valid), answers
        assert answers[len(valid) : len(valid) + len(tried_expired)] == [
            (410, "AUTH_CODE_EXPIRED")
        ] * len(tried_expired), answers
        assert set(answers[len(valid) + len(tried_expired) :]) <= {
            (410, "AUTH_CODE_EXPIRED"),
            (400, "INVALID_AUTH_CODE"),
        }, answers

        def statuses(codes: list[str]) -> Counter:
            digests = [crypto.digest(code) for code in codes]
            return Counter(
                AuthCode.objects.filter(code_digest__in=digests).values_list("status", flat=True)
            )

        assert statuses(valid) == {AuthCodeStatus.REDEEMED: len(valid)}
        assert statuses(expired) == {AuthCodeStatus.EXPIRED: len(expired)}
        assert statuses(old) == {}
        for code in tried_expired:  # still refused, now that the sweep is done
            again = redeem(APIClient(), code, app.app_id, f"again-{round_}-0000")
            assert _answer(again) == (410, "AUTH_CODE_EXPIRED")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_issuance_with_a_key_being_rotated_neither_waits_nor_deadlocks(app, monkeypatch):
    """A rotation holds its key and app rows locked while it makes the successor; issuance
    with that key meanwhile (a new user: its code's foreign keys check both rows) goes
    through at once. With FOR UPDATE there, it waited on the key row and then deadlocked with
    the rotation's app lock (503 after the deadlock timeout)."""
    key = ApiKeyFactory(app=app)
    gate = {"locked": threading.Event(), "issued": threading.Event()}
    check = key_services.check_rotatable

    def held_check(api_key, **kwargs):
        gate["locked"].set()  # the key (and app) rows are locked by now
        _wait(gate["issued"], "the issuance")
        return check(api_key, **kwargs)

    monkeypatch.setattr(key_services, "check_rotatable", held_check)

    def rotate():
        return services.rotate_api_key(
            api_key=key, grace=dt.timedelta(hours=1), actor=Actor.operator("test")
        )

    def issue():
        _wait(gate["locked"], "the rotation's locks")
        try:
            return services.issue_auth_code(api_key=key, external_id="new-during-rotation")
        finally:
            gate["issued"].set()

    started = time.monotonic()
    rotation, issued = values(run_together([rotate, issue]))
    assert time.monotonic() - started < 5
    assert issued.existing_user is False and issued.code_id is not None
    assert rotation.old_key.pk == key.pk
