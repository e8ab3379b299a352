"""The staff console and the privacy centre over plain HTTP: who may see what, the session
cookie, CSRF on every form, and no personal data in what is written."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from audit_log.models import AuditEntry
from dsr import service as dsr
from dsr.models import DsrRequest, NotificationOutbox, RequestStatus, RequestType
from lethe import auth
from lethe.app import create_app
from lethe.console import session as console_session
from lethe.settings import Settings
from policies import service as policies
from policies.loader import registry_dir
from records.db import unit_of_work, utc_now
from records.http import Actor, Role
from retention.models import HoldScope
from tests.routes import api_routes

CANARY_EMAIL = "console.canary-7f3a@example.org"


@pytest.fixture
def web(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def registry(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s, path_or_text=registry_dir() / "DPR-EC-01488.yaml", actor="test", now=utc_now()
        )


def _key(engine: Engine, role: str) -> str:
    with unit_of_work(engine) as s:
        _, key = auth.create_key(s, role=role, name=f"console-{role}", now=utc_now())
    return key


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def _sign_in(web: TestClient, engine: Engine, role: str) -> Any:
    page = web.get("/console/sign-in")
    return web.post(
        "/console/sign-in",
        data={"api_key": _key(engine, role), "csrf_token": _csrf(page.text), "next": "/console"},
        follow_redirects=False,
    )


def test_console_without_a_session_redirects_to_sign_in(web: TestClient) -> None:
    for path in ("/console", "/console/requests", "/console/holds", "/console/audit"):
        response = web.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/sign-in?next=")


def test_sign_in_sets_a_strict_httponly_cookie_without_the_key(
    web: TestClient, engine: Engine
) -> None:
    page = web.get("/console/sign-in")
    key = _key(engine, "dpo")
    response = web.post(
        "/console/sign-in",
        data={"api_key": key, "csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("lethe_console=")
    )
    attributes = cookie.lower()
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "secure" not in attributes  # the base URL is http://127.0.0.1
    assert key not in cookie
    assert key.split("_")[2] not in cookie
    assert web.get("/console").status_code == 200


def test_cookie_is_secure_when_the_public_base_url_is_https(
    settings: Settings, engine: Engine
) -> None:
    secure = settings.model_copy(update={"public_base_url": "https://lethe.example.org"})
    with TestClient(create_app(secure), base_url="https://testserver") as web:
        response = _sign_in(web, engine, "dpo")
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("lethe_console=")
    )
    assert "secure" in cookie.lower()


def test_a_wrong_key_does_not_sign_in(web: TestClient) -> None:
    page = web.get("/console/sign-in")
    response = web.post(
        "/console/sign-in",
        data={"api_key": "lethe_nope_nope", "csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 401
    assert "lethe_console=" not in response.headers.get("set-cookie", "")
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_sign_in_without_the_csrf_token_is_refused(web: TestClient, engine: Engine) -> None:
    web.get("/console/sign-in")
    response = web.post(
        "/console/sign-in", data={"api_key": _key(engine, "dpo")}, follow_redirects=False
    )
    assert response.status_code == 403
    assert web.get("/console", follow_redirects=False).status_code == 303


@pytest.mark.usefixtures("registry")
def test_a_post_without_the_csrf_token_is_refused(web: TestClient, engine: Engine) -> None:
    assert _sign_in(web, engine, "dpo").status_code == 303
    form = {"scope_kind": "policy", "scope_value": "DPR-EC-01488", "reason": "litigation"}
    refused = web.post("/console/holds", data=form, follow_redirects=False)
    assert refused.status_code == 403
    forged = web.post(
        "/console/holds", data={**form, "csrf_token": "forged"}, follow_redirects=False
    )
    assert forged.status_code == 403
    page = web.get("/console/holds")
    assert "No active hold." in page.text
    placed = web.post(
        "/console/holds", data={**form, "csrf_token": _csrf(page.text)}, follow_redirects=False
    )
    assert placed.status_code == 303
    after = web.get("/console/holds").text
    assert "Legal hold placed." in after
    assert "litigation" in after


def test_the_csrf_token_of_one_session_does_not_serve_another(
    settings: Settings, engine: Engine
) -> None:
    app = create_app(settings)
    with TestClient(app) as first, TestClient(app) as second:
        _sign_in(first, engine, "dpo")
        _sign_in(second, engine, "dpo")
        token = _csrf(first.get("/console/holds").text)
        response = second.post(
            "/console/holds",
            data={"scope_kind": "policy", "scope_value": "X", "reason": "r", "csrf_token": token},
            follow_redirects=False,
        )
    assert response.status_code == 403


REQUESTS, HOLDS, AUDIT = "/console/requests", "/console/holds", "/console/audit"
PURGES, RETENTION, POLICIES = "/console/purges", "/console/retention", "/console/policies"


@pytest.mark.parametrize(
    ("role", "allowed", "forbidden", "hidden_links"),
    [
        ("controller", [REQUESTS, HOLDS], [AUDIT, PURGES, RETENTION], [AUDIT]),
        ("auditor", [AUDIT, PURGES, RETENTION], [REQUESTS, HOLDS], [REQUESTS]),
        ("ingest", [POLICIES], [REQUESTS, AUDIT], [REQUESTS, AUDIT]),
        ("dpo", [REQUESTS, HOLDS, AUDIT, PURGES, RETENTION, POLICIES], [], []),
    ],
)
def test_the_role_decides_what_is_shown_and_allowed(
    web: TestClient,
    engine: Engine,
    role: str,
    allowed: list[str],
    forbidden: list[str],
    hidden_links: list[str],
) -> None:
    _sign_in(web, engine, role)
    home = web.get("/console").text
    for path in allowed:
        assert web.get(path).status_code == 200, path
    for path in forbidden:
        assert web.get(path, follow_redirects=False).status_code == 403, path
    for path in hidden_links:
        assert f'href="{path}"' not in home


def test_a_controller_cannot_place_a_hold(web: TestClient, engine: Engine) -> None:
    _sign_in(web, engine, "controller")
    page = web.get("/console/holds").text
    assert 'action="/console/holds"' not in page  # the form is not shown
    response = web.post(
        "/console/holds",
        data={"scope_kind": "policy", "scope_value": "X", "reason": "r", "csrf_token": _csrf(page)},
        follow_redirects=False,
    )
    assert response.status_code == 403


def test_a_revoked_key_ends_its_session(web: TestClient, engine: Engine) -> None:
    _sign_in(web, engine, "dpo")
    assert web.get("/console", follow_redirects=False).status_code == 200
    from lethe.models import ApiKey

    with unit_of_work(engine) as s:
        for row in s.exec(select(ApiKey)).scalars():  # type: ignore[call-overload]
            row.revoked_at = utc_now()
            s.add(row)
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_a_tampered_or_expired_session_cookie_is_refused(web: TestClient, engine: Engine) -> None:
    _sign_in(web, engine, "auditor")
    cookie = web.cookies["lethe_console"]
    payload, mac = cookie.split(".")
    claims = console_session._unb64(payload).replace(b'"auditor"', b'"dpo"')
    web.cookies.clear()
    web.cookies.set("lethe_console", f"{console_session._b64(claims)}.{mac}")
    assert web.get("/console", follow_redirects=False).status_code == 303
    web.cookies.clear()
    web.cookies.set("lethe_console", cookie)
    assert web.get("/console").status_code == 200
    later = utc_now() + console_session.SESSION_TTL + timedelta(minutes=1)
    from freezegun import freeze_time

    with freeze_time(later):
        assert web.get("/console", follow_redirects=False).status_code == 303


def test_sign_out_clears_the_session(web: TestClient, engine: Engine) -> None:
    _sign_in(web, engine, "dpo")
    page = web.get("/console").text
    out = web.post("/console/sign-out", data={"csrf_token": _csrf(page)}, follow_redirects=False)
    assert out.status_code == 303
    assert (
        'lethe_console=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    )
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_console_and_privacy_routes_declare_their_access(settings: Settings) -> None:
    from tests.integration.test_service import _declares_access

    app = create_app(settings)
    pages = [r for r in api_routes(app) if r.path.startswith(("/console", "/privacy"))]
    assert len(pages) > 20
    assert [r.path for r in pages if not _declares_access(r)] == []


def test_privacy_centre_files_and_verifies_without_personal_data_in_the_trail(
    web: TestClient, engine: Engine, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    home = web.get("/privacy")
    assert home.status_code == 200
    filed = web.post(
        "/privacy/requests",
        data={"type": "access", "email": CANARY_EMAIL, "csrf_token": _csrf(home.text)},
        follow_redirects=False,
    )
    assert filed.status_code == 303
    rid = filed.headers["location"].split("/")[3]
    page = web.get(filed.headers["location"])
    assert rid in page.text
    wrong = web.post(
        f"/privacy/requests/{rid}/verify",
        data={"code": "000000", "csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )
    assert wrong.status_code == 400
    assert "not right" in wrong.text
    outbox = session.exec(select(NotificationOutbox)).scalars().first()  # type: ignore[call-overload]
    code = re.search(r"code is (\d{6})", outbox.body)
    assert code
    ok = web.post(
        f"/privacy/requests/{rid}/verify",
        data={"code": code.group(1), "csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert "lethe_privacy=" in ok.headers["set-cookie"]
    status = web.get(f"/privacy/requests/{rid}")
    assert "You confirmed your request" in status.text, status.text
    session.rollback()
    row = session.get(DsrRequest, uuid.UUID(rid))
    assert row is not None and row.status == "verified"
    bodies = [e.body for e in session.exec(select(AuditEntry)).scalars()]  # type: ignore[call-overload]
    assert bodies and all(CANARY_EMAIL not in b for b in bodies)
    assert CANARY_EMAIL not in caplog.text


def test_privacy_status_needs_the_code_in_another_browser(
    settings: Settings, session: Session
) -> None:
    app = create_app(settings)
    with TestClient(app) as mine, TestClient(app) as other:
        home = mine.get("/privacy")
        filed = mine.post(
            "/privacy/requests",
            data={"type": "erasure", "email": CANARY_EMAIL, "csrf_token": _csrf(home.text)},
            follow_redirects=False,
        )
        rid = filed.headers["location"].split("/")[3]
        seen = other.get(f"/privacy/requests/{rid}")
    assert seen.status_code == 200
    assert 'name="code"' in seen.text
    assert "We answer by" not in seen.text


def test_privacy_form_without_csrf_is_refused(web: TestClient) -> None:
    web.get("/privacy")
    response = web.post(
        "/privacy/requests", data={"type": "access", "email": CANARY_EMAIL}, follow_redirects=False
    )
    assert response.status_code == 403


def test_pages_speak_french(web: TestClient, engine: Engine) -> None:
    assert "Votre" in web.get("/privacy?lang=fr").text
    assert web.get("/privacy").text.count('lang="fr"') >= 1  # the cookie keeps French
    _sign_in(web, engine, "dpo")
    assert "Se connecter" in web.get("/console/sign-in?lang=fr").text


def _staff_request(engine: Engine, settings: Settings, *, days_ago: int) -> str:
    app = create_app(settings)
    with unit_of_work(engine) as s:
        row = dsr.file_request(
            s,
            config=app.state.dsr,
            type=RequestType.access,
            email=CANARY_EMAIL,
            details=None,
            changes=None,
            actor=Actor(id="key:seed", role=Role.controller),
            client_address=None,
            identity_verified=True,
            now=utc_now() - timedelta(days=days_ago),
        )
        return str(row.id)


def test_queue_shows_the_overdue_request_and_its_audit_steps(
    web: TestClient, engine: Engine, settings: Settings
) -> None:
    late = _staff_request(engine, settings, days_ago=45)
    fresh = _staff_request(engine, settings, days_ago=1)
    _sign_in(web, engine, "dpo")
    overdue = web.get("/console/requests?show=overdue").text
    assert late[:8] in overdue and fresh[:8] not in overdue
    assert '<strong data-testid="queue-overdue">1</strong>' in overdue
    detail = web.get(f"/console/requests/{late}").text
    assert "dsr.request.received" in detail and "dsr.request.verified" in detail
    assert 'action="/console/requests/' not in detail  # the DPO reads; the controller acts
    assert CANARY_EMAIL not in detail


def test_controller_extends_once_then_is_refused_and_nothing_half_done_is_kept(
    web: TestClient, engine: Engine, settings: Settings, session: Session
) -> None:
    rid = _staff_request(engine, settings, days_ago=2)
    _sign_in(web, engine, "controller")
    page = web.get(f"/console/requests/{rid}").text
    token = _csrf(page)
    extended = web.post(
        f"/console/requests/{rid}/extend",
        data={"months": "2", "reason": "many records in archives", "csrf_token": token},
    )
    assert "Deadline extended" in extended.text
    assert "extended by 2 month(s)" in extended.text
    again = web.post(
        f"/console/requests/{rid}/extend",
        data={"months": "1", "reason": "more", "csrf_token": token},
    )
    assert "flash error" in again.text
    row = session.get(DsrRequest, uuid.UUID(rid))
    assert row is not None and row.extended_months == 2
    rejected = web.post(
        f"/console/requests/{rid}/reject",
        data={"ground": "excessive", "reason": "the fifth identical request", "csrf_token": token},
    )
    assert "Request rejected" in rejected.text
    session.expire_all()
    session.rollback()
    row = session.get(DsrRequest, uuid.UUID(rid))
    assert row is not None and row.status == "rejected"


def test_controller_processes_once_then_processing_and_lifting_are_refused(
    web: TestClient, engine: Engine, settings: Settings, session: Session
) -> None:
    rid = _staff_request(engine, settings, days_ago=2)
    _sign_in(web, engine, "controller")
    token = _csrf(web.get(f"/console/requests/{rid}").text)
    processed = web.post(f"/console/requests/{rid}/process", data={"csrf_token": token})
    assert "Request processed." in processed.text
    again = web.post(f"/console/requests/{rid}/process", data={"csrf_token": token})
    assert "flash error" in again.text and "cannot be processed" in again.text
    lifted = web.post(f"/console/requests/{rid}/lift", data={"csrf_token": token})
    assert "flash error" in lifted.text and "can be lifted" in lifted.text
    row = session.get(DsrRequest, uuid.UUID(rid))
    assert row is not None and row.status == "completed"


def test_every_message_of_the_pages_has_its_french() -> None:
    from lethe.console import staff
    from lethe.console.messages_fr import FR
    from lethe.console.render import TEMPLATES

    used: set[str] = set()
    for template in TEMPLATES.rglob("*.html"):
        used |= set(re.findall(r'_\("((?:[^"\\]|\\.)+)"', template.read_text()))
        used |= set(re.findall(r"_\('((?:[^'\\]|\\.)+)'", template.read_text()))
    used |= {label for _, label, _ in staff.PAGES}
    used |= set(re.findall(r'ok="([^"]+)"', Path(staff.__file__).read_text()))
    keyed = {f"{p}{t.value}" for p in ("type-title:", "type-help:") for t in RequestType}
    keyed |= {f"status-text:{s.value}" for s in RequestStatus}
    keyed |= {f"scope:{k.value}" for k in HoldScope}
    missing = sorted(m for m in used | keyed if m not in FR and not m.endswith(":"))
    assert missing == []


@pytest.mark.usefixtures("registry")
def test_dpo_releases_a_hold_with_a_reason(
    web: TestClient, engine: Engine, session: Session
) -> None:
    _sign_in(web, engine, "dpo")
    token = _csrf(web.get("/console/holds").text)
    web.post(
        "/console/holds",
        data={
            "scope_kind": "policy",
            "scope_value": "DPR-EC-01488",
            "reason": "audit by the EDPS",
            "csrf_token": token,
        },
    )
    page = web.get("/console/holds").text
    hold_id = re.search(r'action="/console/holds/([0-9a-f-]{36})/release"', page)
    assert hold_id
    refused = web.post(
        f"/console/holds/{hold_id.group(1)}/release", data={"reason": " ", "csrf_token": token}
    )
    assert "a reason is required" in refused.text
    released = web.post(
        f"/console/holds/{hold_id.group(1)}/release",
        data={"reason": "audit closed", "csrf_token": token},
    )
    assert "Legal hold released." in released.text
    assert "No active hold." in released.text
    assert "audit closed" in released.text


# --- the package in the privacy centre ------------------------------------------------------------


def _answered_access(web: TestClient, engine: Engine, settings: Settings) -> tuple[str, str]:
    """A subject holding one record, her access request filed and confirmed in this browser
    and processed by a controller: (request id, the canary name in her record)."""
    from dsr import rights
    from records.crypto import Keyring
    from tests.integration.test_purge import CANARY_EMAIL as SUBJECT_EMAIL
    from tests.integration.test_purge import CANARY_NAME, make_record, make_subject

    keyring = Keyring.load_or_create(settings.effective_kek_file)
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring, n=7)
        make_record(s, keyring, subject, due_at=utc_now() + timedelta(days=30))
        email = f"7-{SUBJECT_EMAIL}"
    home = web.get("/privacy")
    filed = web.post(
        "/privacy/requests",
        data={"type": "access", "email": email, "csrf_token": _csrf(home.text)},
        follow_redirects=False,
    )
    rid = filed.headers["location"].split("/")[3]
    with Session(engine) as s:
        body = next(
            o.body
            for o in s.exec(select(NotificationOutbox)).scalars()  # type: ignore[call-overload]
            if o.request_id == uuid.UUID(rid)
        )
    code = re.search(r"code is (\d{6})", body)
    assert code
    ok = web.post(
        f"/privacy/requests/{rid}/verify",
        data={"code": code.group(1), "csrf_token": _csrf(home.text)},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    with unit_of_work(engine) as s:
        rights.process(
            s,
            config=web.app.state.dsr,  # type: ignore[attr-defined]
            request_id=uuid.UUID(rid),
            actor=Actor(id="key:seed", role=Role.controller),
            upheld=None,
            reason=None,
            now=utc_now(),
        )
    return rid, CANARY_NAME


def _downloads(engine: Engine, rid: str) -> list[AuditEntry]:
    with Session(engine) as s:
        return [
            e
            for e in s.exec(select(AuditEntry)).scalars()  # type: ignore[call-overload]
            if e.action == "dsr.package.downloaded" and e.target == f"dsr_request:{rid}"
        ]


def test_the_subject_downloads_her_package_from_the_status_page(
    web: TestClient, engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    rid, name = _answered_access(web, engine, settings)
    status = web.get(f"/privacy/requests/{rid}")
    assert "Your data is ready" in status.text
    html_href = f'href="/privacy/requests/{rid}/package/html"'
    json_href = f'href="/privacy/requests/{rid}/package/json"'
    assert html_href in status.text and json_href in status.text
    assert "Read it as a page (HTML)" in status.text
    assert "Download it as a file (JSON)" in status.text
    assert "token" not in re.sub(r'name="csrf_token"[^>]*>', "", status.text)

    page = web.get(f"/privacy/requests/{rid}/package/html")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert name in page.text
    file = web.get(f"/privacy/requests/{rid}/package/json")
    assert file.status_code == 200
    assert file.headers["content-disposition"].startswith("attachment;")
    package = file.json()
    assert package["request_id"] == rid
    assert name in json.dumps(package["records"])

    entries = _downloads(engine, rid)
    assert [e.actor for e in entries] == ["requester", "requester"]
    assert all(name not in e.body and "@example.org" not in e.body for e in entries)
    assert name not in caplog.text and "@example.org" not in caplog.text

    fr = web.get(f"/privacy/requests/{rid}?lang=fr").text
    assert "La lire sous forme de page (HTML)" in fr
    assert "La télécharger sous forme de fichier (JSON)" in fr


def test_the_package_needs_this_requests_cookie_and_a_valid_link(
    web: TestClient, engine: Engine, settings: Settings
) -> None:
    rid, name = _answered_access(web, engine, settings)
    # Another browser, without the cookie: sent to the code form, nothing disclosed.
    with TestClient(web.app) as other:
        refused = other.get(f"/privacy/requests/{rid}/package/json", follow_redirects=False)
        assert refused.status_code == 303
        assert refused.headers["location"] == f"/privacy/requests/{rid}"
        assert name not in refused.text
        assert 'name="code"' in other.get(refused.headers["location"]).text
    # This browser's cookie names its own request, not another one.
    home = web.get("/privacy")
    second = (
        web.post(
            "/privacy/requests",
            data={"type": "access", "email": CANARY_EMAIL, "csrf_token": _csrf(home.text)},
            follow_redirects=False,
        )
        .headers["location"]
        .split("/")[3]
    )
    other_id = web.get(f"/privacy/requests/{second}/package/html", follow_redirects=False)
    assert other_id.status_code == 303 and name not in other_id.text
    # A forged cookie is no better.
    with TestClient(web.app, cookies={"lethe_privacy": "e30.AAAA"}) as forger:
        forged = forger.get(f"/privacy/requests/{rid}/package/html", follow_redirects=False)
    assert forged.status_code == 303 and name not in forged.text
    assert _downloads(engine, rid) == []


def test_the_package_is_refused_once_its_link_has_expired(
    web: TestClient, engine: Engine, settings: Settings
) -> None:
    rid, name = _answered_access(web, engine, settings)
    with unit_of_work(engine) as s:
        row = s.get(DsrRequest, uuid.UUID(rid))
        assert row is not None and row.package_token_expires_at is not None
        row.package_token_expires_at = utc_now() - timedelta(minutes=1)
        s.add(row)
    gone = web.get(f"/privacy/requests/{rid}/package/json", follow_redirects=False)
    assert gone.status_code == 410
    assert "This download is not available" in gone.text and name not in gone.text
    status = web.get(f"/privacy/requests/{rid}").text
    assert "Your download has expired" in status
    assert f"/privacy/requests/{rid}/package/" not in status
    assert _downloads(engine, rid) == []


# --- what the DPO approves ------------------------------------------------------------------------


def test_the_paused_run_and_the_dry_run_show_their_plan_per_rule(
    settings: Settings, engine: Engine
) -> None:
    from retention import purge
    from tests.integration.test_purge import POLICY
    from tests.integration.test_purge_api import seed

    small_guard = settings.model_copy(update={"purge_anomaly_floor": 2})
    seed(engine, settings, due=3, later=2)
    with TestClient(create_app(small_guard), raise_server_exceptions=False) as web:
        with unit_of_work(engine) as s:
            run = purge.create_run(
                s,
                dry_run=False,
                trigger="scheduler",
                actor=Actor(id="key:seed-dpo", role=Role.dpo),
                now=utc_now(),
                config=web.app.state.purge_context.config,  # type: ignore[attr-defined]
            )
            assert run.status == "paused"
            paused_id = run.id
        _sign_in(web, engine, "dpo")
        page = web.get(f"/console/purges/{paused_id}").text
        assert "What approving acts on" in page
        table = page[page.index('data-testid="plan"') : page.index("</table>")]
        assert POLICY in table and "<code>not-selected</code>" in table
        assert "<td>delete</td>" in table and "due now" in table
        assert '<td data-testid="plan-total">3</td>' in table  # not the two due later
        assert 'id="approve-run"' in page

        dry = web.post("/console/purges", data={"csrf_token": _csrf(page)})
        assert "Dry run planned." in dry.text
        assert "The plan of this dry run" in dry.text
        table = dry.text[dry.text.index('data-testid="plan"') : dry.text.index("</table>")]
        assert POLICY in table and "<td>deleted</td>" in table
        assert '<td data-testid="plan-total">3</td>' in table
        assert "deleted: 3" in dry.text  # the sample of record ids per outcome
        assert CANARY_EMAIL not in dry.text and 'id="approve-run"' not in dry.text
