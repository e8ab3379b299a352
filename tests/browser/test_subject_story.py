"""A data subject files an access request in the privacy centre, confirms it with the code that
reached a local SMTP server, and — once the staff processed it — downloads her package as a
readable page and as JSON — from the status page and from the e-mailed links — in headless
Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import Live, Pages

EMAIL = "ada.canary-7f3a@example.org"
CV = "canary-cv-7f3a: nine years of model evaluation"
CALL = "EC/2024/CNECT/443651"


def _seed(live: Live) -> None:
    ingest = {"Authorization": f"Bearer {live.key('ingest')}"}
    dpo = {"Authorization": f"Bearer {live.key('dpo')}"}
    from policies.loader import registry_dir

    with httpx.Client(base_url=live.url, timeout=30) as api:
        loaded = api.post(
            "/v1/policies",
            content=(registry_dir() / "DPR-EC-01488.yaml").read_text(),
            headers={**dpo, "Content-Type": "application/yaml"},
        )
        assert loaded.status_code == 201, loaded.text
        subject = api.post("/v1/subjects", json={"email": EMAIL}, headers=ingest).json()
        stored = api.post(
            "/v1/records",
            json={
                "subject_id": subject["id"],
                "policy": "DPR-EC-01488",
                "category": "application",
                "subject_category": "candidate",
                "context": CALL,
                "outcome": "invited",
                "collected_at": "2026-11-20T10:00:00Z",
                "payload": {"cv": CV},
            },
            headers=ingest,
        )
        assert stored.status_code == 201, stored.text


def test_subject_files_access_verifies_by_email_code_and_downloads_the_package(
    live: Live, browser: Any, pages: Pages
) -> None:
    _seed(live)
    subject = browser.new_context(base_url=live.url, viewport={"width": 1000, "height": 900})
    page = subject.new_page()

    page.goto("/privacy")
    pages.look(page, "privacy-home")
    # By keyboard alone: the first Tab reaches the skip link; the form is sent with Enter.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.get_by_label("Tell me what you hold about me, and give me a copy").is_checked()
    page.get_by_label("Your e-mail address").focus()
    page.keyboard.type(EMAIL)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Check your e-mail").wait_for()
    request_id = page.get_by_test_id("reference").inner_text()
    pages.look(page, "enter-code")

    page.get_by_label("Confirmation code").fill("000000")
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("This code is not right").wait_for()
    pages.look(page, "wrong-code")
    code = live.wait_for_mail(request_id, r"confirmation code is (\d{6})")
    page.get_by_label("Confirmation code").fill(code)
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("heading", name="Your request").wait_for()
    assert "You confirmed your request" in page.get_by_test_id("status-text").inner_text()
    assert page.get_by_test_id("due-date").inner_text()[:2] == "20"
    pages.look(page, "status-verified")

    # A controller processes the request from the console.
    staff = browser.new_context(base_url=live.url)
    console = staff.new_page()
    console.goto("/console/sign-in")
    console.get_by_label("API key").fill(live.key("controller"))
    console.get_by_role("button", name="Sign in").click()
    console.goto(f"/console/requests/{request_id}")
    pages.look(console, "staff-request")
    console.get_by_role("button", name="Process the request").click()
    console.get_by_text("Request processed.").wait_for()
    assert "dsr.request.closed" in console.locator("ol.steps").inner_text()
    pages.look(console, "staff-request-processed")
    staff.close()

    page.reload()
    page.get_by_role("heading", name="Your data is ready").wait_for()
    pages.look(page, "status-completed")

    # From the status page itself: the privacy centre's cookie is the key, not a token in a URL.
    page.get_by_role("link", name="Read it as a page (HTML)").click()
    page.wait_for_url(f"**/privacy/requests/{request_id}/package/html")
    assert "token" not in page.url
    page.get_by_text(CV).first.wait_for()
    assert page.get_by_text(CV).first.is_visible()
    pages.look(page, "package-from-status")
    page.go_back()
    page.get_by_role("heading", name="Your data is ready").wait_for()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download it as a file (JSON)").click()
    saved = download.value
    assert saved.suggested_filename == f"request-{request_id}.json"
    from_status = json.loads(Path(saved.path()).read_text())
    assert from_status["request_id"] == request_id
    assert CV in json.dumps(from_status)
    pages.look(page, "status-after-download")

    html_link = live.wait_for_mail(request_id, r"(http\S+/package\?token=\S+format=html)")
    json_link = live.wait_for_mail(request_id, r"(http\S+/package\?token=\S+format=json)")
    page.goto(html_link)
    assert CV in page.content()
    pages.look(page, "package")
    downloaded = page.request.get(json_link)
    assert downloaded.status == 200
    package = json.loads(downloaded.text())
    assert CV in json.dumps(package)
    (pages.folder / "package.json").write_text(json.dumps(package, indent=2))

    page.goto(f"/privacy/requests/{request_id}?lang=fr")
    page.get_by_role("heading", name="Votre demande").wait_for()
    assert page.get_by_role("link", name="La lire sous forme de page (HTML)").is_visible()
    assert page.get_by_role("link", name="La télécharger sous forme de fichier (JSON)").is_visible()
    pages.look(page, "status-fr")
    page.goto("/privacy")  # the language stays French
    page.get_by_role("heading", name="Vos données personnelles : faire une demande").wait_for()
    pages.look(page, "privacy-home-fr")
    subject.close()
