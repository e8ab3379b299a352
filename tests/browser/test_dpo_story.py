"""A DPO signs in, sees the overdue count, places a legal hold, approves the purge run that the
anomaly guard paused, and opens its signed certificate — in headless Chromium."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from dsr import service as dsr
from dsr.models import RequestType
from records.db import new_session, unit_of_work, utc_now
from records.http import Actor, Role
from records.models import PersonalRecord
from retention import demo, purge
from retention.models import LegalHold, PurgeRun
from tests.browser.conftest import Live, Pages

SEED_DPO = Actor(id="key:seed-dpo", role=Role.dpo)
SEED_STAFF = Actor(id="key:seed-staff", role=Role.controller)


def _seed(live: Live) -> uuid.UUID:
    """Candidates of the call (due for deletion by now), two requests of which one overdue, and
    a real run the anomaly guard paused. Returns a subject to hold."""
    app, now = live.app, utc_now()
    demo.run_demo(app.state.engine, keyring=app.state.keyring, candidates=12, now=now)
    with unit_of_work(app.state.engine) as s:
        for days_ago in (45, 3):
            dsr.file_request(
                s,
                config=app.state.dsr,
                type=RequestType.access,
                email=f"seed-{days_ago}.canary-7f3a@example.org",
                details=None,
                changes=None,
                actor=SEED_STAFF,
                client_address=None,
                identity_verified=True,
                now=now - timedelta(days=days_ago),
            )
        run = purge.create_run(
            s,
            dry_run=False,
            trigger="scheduler",
            actor=SEED_DPO,
            now=now,
            config=app.state.purge_context.config,
        )
        assert run.status == "paused", "the seed must leave a paused run"
        subject = s.exec(
            select(PersonalRecord.subject_id).where(col(PersonalRecord.due_at) <= now).limit(1)
        ).one()
    return subject


def test_dpo_holds_a_subject_approves_the_paused_run_and_opens_its_certificate(
    live: Live, browser: Any, pages: Pages
) -> None:
    held_subject = _seed(live)
    key = live.key("dpo")
    context = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()

    page.goto("/console")
    assert page.url.startswith(f"{live.url}/console/sign-in")
    pages.look(page, "sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live.url}/console")
    assert page.get_by_test_id("overdue-count").inner_text() == "1"
    pages.look(page, "overview")

    page.get_by_role("link", name="Requests", exact=True).click()
    assert page.get_by_test_id("queue-overdue").inner_text() == "1"
    assert page.locator("tr.overdue").count() == 1
    pages.look(page, "requests")

    page.get_by_role("link", name="Legal holds").click()
    page.get_by_label("What to hold").select_option("subject")
    page.get_by_label("Reference, context or id").fill(str(held_subject))
    page.get_by_label("Reason", exact=True).fill("complaint before the Ombudsman")
    page.get_by_label("Case reference (optional)").fill("OI/7/2026")
    page.get_by_role("button", name="Place the hold").click()
    page.get_by_text("Legal hold placed.").wait_for()
    assert "complaint before the Ombudsman" in page.locator("#active-holds").inner_text()
    pages.look(page, "hold-placed")

    page.get_by_role("link", name="Purge runs").click()
    pages.look(page, "purges-paused")
    page.locator("section.panel a").first.click()
    page.get_by_role("heading", name="What approving acts on").wait_for()
    assert int(page.get_by_test_id("plan-total").inner_text()) >= 12  # the call's candidates
    assert "DPR-EC-01488" in page.get_by_test_id("plan").inner_text()
    pages.look(page, "paused-run")
    page.get_by_role("button", name="Approve and run").click()
    page.get_by_text("Run approved; it is running now.").wait_for()
    page.get_by_role("link", name="Open the signed certificate").wait_for(timeout=30_000)
    assert page.get_by_test_id("run-status").inner_text() in ("completed", "partial")
    pages.look(page, "run-finished")
    page.get_by_role("link", name="Open the signed certificate").click()
    page.get_by_role("heading", name="Certificate of disposition").wait_for()
    shown_sha = page.get_by_test_id("certificate-sha256").inner_text()
    pages.look(page, "certificate")

    with new_session(live.app.state.engine) as s:
        run = s.exec(select(PurgeRun).where(col(PurgeRun.dry_run).is_(False))).one()
        hold = s.exec(select(LegalHold)).one()
        counts = purge.counts(s, run.id)
        kept = _remaining(s, held_subject)
    assert run.approved_by is not None and run.approved_by.startswith("key:")
    assert shown_sha == run.certificate_sha256
    assert hold.scope_value == str(held_subject) and hold.owner.startswith("key:")
    assert counts["deleted"] > 0
    assert counts["skipped_hold"] > 0 and kept > 0  # the held subject's due records stayed
    page.goto("/console/audit")
    page.get_by_role("button", name="Verify the whole trail now").click()
    page.get_by_text("Verified").first.wait_for()
    pages.look(page, "audit")
    page.goto("/console/retention")
    assert page.locator("svg.chart").count() == 2
    pages.look(page, "retention")
    page.goto("/console/policies")
    assert page.get_by_text("DPR-EC-01488").first.is_visible()
    pages.look(page, "policies")
    page.goto("/console?lang=fr")
    assert page.get_by_text("demandes en retard").is_visible()
    pages.look(page, "overview-fr")
    context.close()


def _remaining(s: Session, subject: uuid.UUID) -> int:
    return len(s.exec(select(PersonalRecord.id).where(PersonalRecord.subject_id == subject)).all())
