"""Policy files: what DPR-EC-01488 encodes, and how a bad file is refused (file, line, field)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from policies.calendar import (
    DEFAULT_INSTITUTION_CALENDAR,
    CalendarDuration,
    Convention,
    period_end,
    shipped_holidays,
)
from policies.document import PolicyDocument, policy_json_schema
from policies.errors import PolicyFileError
from policies.loader import content_hash, parse_policy, registry_dir
from records.types import MAX_INSTANT, MAX_PERIOD_YEARS

REGISTRY_FILE = registry_dir() / "DPR-EC-01488.yaml"
SCHEMA_FILE = Path(registry_dir().parent / "schema" / "policy-1.json")


@pytest.fixture(scope="module")
def text() -> str:
    return REGISTRY_FILE.read_text()


@pytest.fixture(scope="module")
def doc(text: str) -> PolicyDocument:
    return parse_policy(text, source=REGISTRY_FILE.name).document


def refusal(text: str) -> PolicyFileError:
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text, source="broken.yaml")
    return info.value


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# --- what the statement says, encoded ---


def test_controller_dpo_and_edps_are_those_of_the_statement(doc: PolicyDocument) -> None:
    assert doc.reference == "DPR-EC-01488"
    assert doc.controller.entity == "CNECT.A.2"
    assert doc.controller.contact == "CNECT-AIOFFICE-RECRUITMENT@ec.europa.eu"
    assert doc.dpo.contact == "DATA-PROTECTION-OFFICER@ec.europa.eu"
    assert doc.supervisory_authority is not None
    assert doc.supervisory_authority.contact == "edps@edps.europa.eu"


def test_legal_basis_is_article_5_1_a_and_the_ceos_articles(doc: PolicyDocument) -> None:
    articles = " | ".join(b.article for b in doc.legal_basis)
    assert "Art. 5(1)(a)" in articles
    assert "Articles 1, 3a, 3b and 82" in articles
    assert "C(2017) 6760" in articles


def test_health_data_about_special_needs_is_special_with_its_ground_unstated_and_flagged(
    doc: PolicyDocument,
) -> None:
    # The statement gives no Art. 10(2) ground: none is invented, the gap goes to the DPO.
    health = doc.data_category("special_needs_health")
    assert health is not None and health.special
    assert health.ground == "unstated" and health.special_ground is None
    assert health.ground_note and "No personal data within the meaning of Article 10" in (
        " ".join(health.ground_note.split())
    )
    assert "logistics" in health.description
    assert [d.key for d in doc.data_categories if d.special] == ["special_needs_health"]
    assert not any("10(2)" in b.article for b in doc.legal_basis)
    [flag] = doc.dpo_flags()
    assert (flag.code, flag.field) == (
        "special_category_ground_unstated",
        "data_categories.special_needs_health",
    )


def test_the_controller_works_on_the_commission_calendar(doc: PolicyDocument) -> None:
    assert doc.controller.calendar == "european-commission"


def test_eusurvey_and_europa_analytics_are_the_commissions_own_services(
    doc: PolicyDocument,
) -> None:
    assert doc.processors == []
    assert [(s.name, s.operator) for s in doc.services] == [
        ("EUSurvey", "European Commission"),
        ("Europa Analytics", "European Commission"),
    ]


def test_session_cookies_and_local_storage_have_their_own_rules(doc: PolicyDocument) -> None:
    rules = {r.id: r for r in doc.rules}
    cookies = rules["session-cookies"]
    assert cookies.applies_to.data_categories == ["session_cookies"]
    assert (cookies.trigger.kind.value, cookies.trigger.event) == ("event", "session.ended")
    assert (cookies.offset.is_zero, cookies.enforced_by) == (True, "external")
    storage = rules["local-storage-drafts"]
    assert storage.applies_to.data_categories == ["local_storage"]
    assert (storage.trigger.event, storage.offset.is_zero) == ("answers.saved", True)
    assert storage.enforced_by == "external"
    analytics = rules["analytics-on-device"]
    assert analytics.applies_to.data_categories == ["analytics"]
    category = doc.data_category("analytics")
    assert category is not None and "cookie" not in category.description.lower()


def test_the_categories_listed_in_the_statement_are_all_there(doc: PolicyDocument) -> None:
    described = " ".join(d.description for d in doc.data_categories).lower()
    for item in [
        "first name",
        "family name(s) at birth",
        "nationality",
        "place of birth",
        "date of birth",
        "e-mail",
        "civil status",
        "diplomas",
        "knowledge of languages",
        "motivational letter",
        "cv",
        "login id and password",
        "analytics",
    ]:
        assert item in described, item


def test_recipients_are_need_to_know_staff_hr_b3_and_the_panel(doc: PolicyDocument) -> None:
    assert {r.key for r in doc.recipients} == {"need_to_know_staff", "hr_b3", "selection_panel"}
    hr = next(r for r in doc.recipients if r.key == "hr_b3")
    assert "HR.B.3" in hr.description and "DPR-02054" in hr.description
    assert doc.transfers == []


def test_portability_does_not_apply_and_objection_does(doc: PolicyDocument) -> None:
    assert doc.rights.portability is False
    assert doc.rights.objection is True
    assert doc.rights.access and doc.rights.rectification and doc.rights.erasure
    assert doc.rights.notes and "22(3)" in doc.rights.notes


def test_every_retention_sentence_of_the_statement_is_a_rule_mandate(
    doc: PolicyDocument, shared_dir: Path
) -> None:
    statement = " ".join(
        " ".join(p.read_text(encoding="utf-8").split())
        for p in sorted((shared_dir / "seeds").glob("*.txt"))
    )

    def norm(s: str) -> str:
        quotes = str.maketrans({"\u2019": "'", "\u201c": '"', "\u201d": '"'})
        return " ".join(s.translate(quotes).split())

    statement = norm(statement)
    for sentence in [
        "Data of non-selected candidates derived from the EU Survey tool by DG CNECT is stored "
        "for 1 year after the closure of the call for interest.",
        "Data of candidates that were invited to an interview or were successfully selected fall "
        "under the retention period of the DPR-02054.",
        "Survey specific data on EU Survey - i.e. data collected by the individual survey is "
        "retained as long as the questionnaire is valid.",
        "unused external user accounts are deleted after a period of inactivity of 2 years.",
        "Analytics data is automatically removed from the user's device after 13 months.",
        "Data of candidates that are not invited to the panels are not processed or transferred "
        "further.",
        "the retention period applicable for Sysper database applies",
        "your user account remains active and your personal data is therefore retained.",
        "The cookies disappear once the session has been terminated.",
        "Once a participant has submitted one's answers successfully to the server or has "
        "successfully saved a draft on the server, the data is removed from the local storage.",
    ]:
        assert sentence in statement, f"seed changed: {sentence}"
        assert any(sentence.lower() in norm(r.mandate).lower() for r in doc.rules), sentence


def test_non_selected_rule_is_one_year_after_call_closed_in_brussels(doc: PolicyDocument) -> None:
    rule = next(r for r in doc.rules if r.id == "non-selected-candidates")
    assert rule.trigger.event == "call.closed"
    assert rule.offset.isoformat() == "P1Y"
    assert rule.timezone == "Europe/Brussels"
    assert (rule.direction.value, rule.action.kind.value) == ("max", "delete")


def test_the_questionnaire_rule_raises_an_alarm_rather_than_waiting_forever(
    doc: PolicyDocument,
) -> None:
    rule = next(r for r in doc.rules if r.id == "survey-specific-data")
    assert rule.review_if_untriggered_after is not None


def test_unresolved_references_are_the_two_other_records(doc: PolicyDocument) -> None:
    assert doc.referenced_records() == ["DPR-02054", "DPR-EC-01230"]


# --- content hash ---


def test_a_file_that_uses_no_new_field_keeps_its_content_hash() -> None:
    # Fields added to the format later stay out of the hash while unset: an unchanged file
    # loaded after an upgrade is the same version (no new version, no rule-change pause).
    minimal = (
        "reference: DPR-X-1\ntitle: t\ncontroller: {name: Unit X}\ndpo: {name: DPO}\n"
        "legal_basis: [{key: a, article: Art. 5(1)(a)}]\npurposes: [{key: p, description: d}]\n"
        "subject_categories: [{key: s, description: d}]\n"
        "data_categories: [{key: c, description: d}]\n"
    )
    document = parse_policy(minimal).document
    # the hash this file had before `ground`, `ground_note`, `calendar` and `services` existed
    before = "ce1ee0404132367e6a6ebf2dba544d5c2e938f1053ee25a389f85893bf25439f"
    assert content_hash(document) == before


def test_comments_and_layout_do_not_change_the_content_hash(text: str, doc: PolicyDocument) -> None:
    reformatted = "# a new comment\n" + text.replace(
        "format: lethe.policy/1", "format: 'lethe.policy/1'"
    )
    assert content_hash(parse_policy(reformatted).document) == content_hash(doc)
    changed = text.replace("offset: P13M", "offset: P12M")
    assert content_hash(parse_policy(changed).document) != content_hash(doc)


# --- refusals name the file, the line and the field ---


def test_a_bad_offset_is_refused_with_file_line_and_field(text: str) -> None:
    bad = text.replace("offset: P13M", "offset: 13 months")
    err = refusal(bad)
    line = line_of(bad, "offset: 13 months")
    assert f"broken.yaml, line {line}, field rules.7.offset" in err.detail
    assert err.extra["errors"][0] == {
        "file": "broken.yaml",
        "line": line,
        "field": "rules.7.offset",
        "reason": err.extra["errors"][0]["reason"],
    }
    assert "ISO 8601" in err.extra["errors"][0]["reason"]


@pytest.mark.parametrize("offset", ["P9000Y", "P101Y", "P1201M", "P100Y1D", "P36525D", "P5218W"])
def test_an_offset_past_the_longest_period_is_refused_at_load_with_its_line(
    text: str, offset: str
) -> None:
    # Loaded, P9000Y would make every record it governs a 422 "date out of range" at ingest.
    bad = text.replace("offset: P13M", f"offset: {offset}")
    err = refusal(bad)
    line = line_of(bad, f"offset: {offset}")
    assert f"broken.yaml, line {line}, field rules.7.offset" in err.detail
    assert f"at most {MAX_PERIOD_YEARS} years" in err.extra["errors"][0]["reason"]


def test_an_alarm_period_past_the_longest_is_refused_too(text: str) -> None:
    bad = text.replace("review_if_untriggered_after: P2Y", "review_if_untriggered_after: P9000Y", 1)
    err = refusal(bad)
    line = line_of(bad, "review_if_untriggered_after: P9000Y")
    assert err.extra["errors"][0]["line"] == line
    assert err.extra["errors"][0]["field"].endswith(".review_if_untriggered_after")


@pytest.mark.parametrize("convention", list(Convention))
def test_the_longest_period_from_the_latest_accepted_instant_still_computes(
    text: str, convention: Convention
) -> None:
    # The two bounds are one: the last instant records.types accepts plus the longest period a
    # policy may state, rolled over the shipped holidays, is a date the calendar can carry.
    longest = f"P{MAX_PERIOD_YEARS}Y"
    doc = parse_policy(text.replace("offset: P13M", f"offset: {longest}"), source="x").document
    rule = doc.rules[7]
    assert rule.offset == CalendarDuration(years=MAX_PERIOD_YEARS)
    latest = MAX_INSTANT - timedelta(microseconds=1)
    end = period_end(
        latest,
        rule.offset,
        tz=rule.timezone,
        convention=convention,
        holidays=shipped_holidays(DEFAULT_INSTITUTION_CALENDAR),
    )
    a_century_on = MAX_INSTANT.replace(year=MAX_INSTANT.year + MAX_PERIOD_YEARS)
    assert a_century_on - timedelta(days=1) <= end < a_century_on + timedelta(days=15)


def test_an_unknown_action_is_refused(text: str) -> None:
    bad = text.replace("action: {kind: review}", "action: {kind: shred}", 1)
    err = refusal(bad)
    assert f"line {line_of(bad, 'kind: shred')}, field rules.3.action.kind" in err.detail


def test_a_misspelt_field_is_refused_not_ignored(text: str) -> None:
    bad = text.replace("    enforced_by: external", "    enforced_bye: external")
    err = refusal(bad)
    assert f"line {line_of(bad, 'enforced_bye')}, field rules.7.enforced_bye" in err.detail
    assert "Extra inputs are not permitted" in err.detail


def test_a_rule_naming_an_undeclared_category_is_refused(text: str) -> None:
    bad = text.replace("data_categories: [survey_answers]", "data_categories: [survey_answer]")
    err = refusal(bad)
    assert "field rules.4.applies_to.data_categories: unknown category survey_answer" in err.detail
    assert err.extra["errors"][0]["line"] == line_of(bad, "[survey_answer]")


def test_a_duplicate_key_is_refused(text: str) -> None:
    bad = text.replace("offset: P13M", "offset: P13M\n    offset: P1M")
    err = refusal(bad)
    assert f"line {line_of(bad, 'offset: P1M')}, field rules.7.offset: duplicate key" in err.detail


def test_an_unknown_time_zone_is_refused(text: str) -> None:
    bad = text.replace("timezone: Europe/Brussels", "timezone: Europe/Bruxelles", 1)
    err = refusal(bad)
    assert "field rules.0.timezone: unknown IANA time zone 'Europe/Bruxelles'" in err.detail


def test_a_handover_without_a_target_is_refused(text: str) -> None:
    bad = text.replace("{kind: handover, handover_to: DPR-02054}", "{kind: handover}")
    err = refusal(bad)
    assert "field rules.2.action: a handover names the record" in err.detail


def test_a_special_category_without_a_ground_is_refused(text: str) -> None:
    start = text.index("    ground: unstated")
    end = text.index("    pd: [pd:HealthRecord")
    err = refusal(text[:start] + text[end:])
    assert "field data_categories.3: a special category needs special_ground" in err.detail
    assert "ground: unstated" in err.detail


def test_an_unstated_ground_with_a_ground_text_is_refused(text: str) -> None:
    bad = text.replace(
        "    ground: unstated\n", "    ground: unstated\n    special_ground: Art. 10(2)(b)\n"
    )
    err = refusal(bad)
    assert "field data_categories.3: a ground marked unstated takes no special_ground" in err.detail


def test_a_ground_on_an_ordinary_category_is_refused(text: str) -> None:
    bad = text.replace(
        "    pd: [pd:Preference]\n", "    pd: [pd:Preference]\n    ground: unstated\n", 1
    )
    err = refusal(bad)
    assert "field data_categories.4: special_ground, ground and ground_note are for" in err.detail


def test_an_unknown_controller_calendar_is_refused_with_its_line(text: str) -> None:
    bad = text.replace("calendar: european-commission", "calendar: atlantis")
    err = refusal(bad)
    assert f"line {line_of(bad, 'calendar: atlantis')}, field controller.calendar" in err.detail
    assert "unknown calendar 'atlantis'" in err.detail


def test_a_handover_to_the_record_itself_is_refused(text: str) -> None:
    bad = text.replace("handover_to: DPR-02054}", "handover_to: DPR-EC-01488}")
    err = refusal(bad)
    assert "field rules.2.action.handover_to: a record cannot hand over to itself" in err.detail


def test_a_personal_data_term_outside_dpv_pd_is_refused(text: str) -> None:
    bad = text.replace("pd: [pd:Preference]", "pd: [Preference]")
    err = refusal(bad)
    assert f"line {line_of(bad, 'pd: [Preference]')}, field data_categories.4.pd.0" in err.detail


def test_broken_yaml_is_refused_with_its_line() -> None:
    err = refusal("reference: DPR-X-1\ntitle: [unclosed\n")
    assert err.detail.startswith("broken.yaml, line")
    assert "not valid YAML" in err.detail


def test_yaml_tags_that_build_python_objects_are_refused() -> None:
    err = refusal("!!python/object/apply:os.system ['true']\n")
    assert "not valid YAML" in err.detail


def test_yaml_aliases_are_refused_before_they_can_expand() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    err = refusal(bomb)
    assert (
        err.detail == "broken.yaml, line 2, field (document): YAML aliases (*name) are not allowed"
    )


def test_a_list_instead_of_a_mapping_is_refused() -> None:
    assert "mapping" in refusal("- a\n- b\n").detail


# --- the published JSON Schema ---


def test_the_shipped_json_schema_is_the_current_one() -> None:
    shipped = json.loads(SCHEMA_FILE.read_text())
    assert shipped == json.loads(json.dumps(policy_json_schema())), (
        "run `lethe policies schema --output policies/schema/policy-1.json`"
    )


def test_the_json_schema_describes_offsets_as_iso_durations() -> None:
    schema = policy_json_schema()
    rule = schema["$defs"]["RetentionRule"]
    assert rule["properties"]["offset"]["type"] == "string"
    assert "additionalProperties" in rule and rule["additionalProperties"] is False
    assert set(rule["required"]) >= {"id", "applies_to", "trigger", "offset", "action", "mandate"}
