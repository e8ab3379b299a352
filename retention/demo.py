"""A realistic DPR-EC-01488 data set: call EC/2024/CNECT/443651 and its candidates.

Every value is invented (names from lists, addresses on example domains). The data goes through
the ordinary import path (`retention.ingest.import_batch`), in batches, and the call closes with
a `call.closed` event at 2024-03-27 12:00 CET, which sets the due dates of what it triggers.

Per candidate: identity, contact details and the application (CV and motivation letter as text,
diplomas, languages), the survey answers; an outcome (most not selected, some invited, a few
selected); for some an external EUSurvey account whose `collected_at` is its last activity; for
a few, health data about special needs for the interview logistics.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from policies import service as policies
from policies.loader import registry_dir
from records.crypto import Keyring
from records.db import unit_of_work
from retention import ingest

POLICY = "DPR-EC-01488"
CALL = "EC/2024/CNECT/443651"
CALL_CLOSED_AT = datetime.fromisoformat("2024-03-27T12:00:00+01:00")
OPENED_AT = datetime.fromisoformat("2024-02-21T09:00:00+01:00")
ACCOUNTS_CONTEXT = "eusurvey:external-accounts"

FIRST = [
    "Ana", "Bram", "Chiara", "Dimitris", "Eva", "Fionn", "Greta", "Hugo", "Ines", "Jakub",
    "Katarina", "Lukas", "Marta", "Niamh", "Oskar", "Paula", "Quentin", "Rasa", "Stefan",
    "Teodora", "Ugo", "Vesna", "Wim", "Xenia", "Yannick", "Zofia", "Aino", "Bogdan", "Carmen",
    "Daan", "Elif", "Filip", "Giulia", "Henrik", "Ilse", "Joana", "Kristof", "Lea", "Matej",
]  # fmt: skip
LAST = [
    "Andersen", "Bianchi", "Costa", "Dubois", "Eriksson", "Fischer", "García", "Horvat",
    "Ionescu", "Jansen", "Kowalski", "Lambert", "Moreau", "Novák", "O'Brien", "Papadopoulos",
    "Quinn", "Rossi", "Schmidt", "Tamm", "Urbanová", "Varga", "Wouters", "Zielińska", "Berzins",
    "Camilleri", "Dimitrov", "Esposito", "Ferreira", "Grünberg", "Hämäläinen", "Kazlauskas",
]  # fmt: skip
NATIONALITIES = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "EL", "HU", "IE", "IT",
    "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
]  # fmt: skip
CITIES = ["Brussels", "Luxembourg", "Lisbon", "Tallinn", "Vienna", "Warsaw", "Lyon", "Turin"]
SKILLS = [
    "machine learning", "deep learning frameworks", "model evaluation", "red teaming",
    "AI safety", "cybersecurity", "privacy engineering", "model alignment", "bias auditing",
    "distributed systems", "MLOps", "natural language processing", "computer vision",
]  # fmt: skip
DEGREES = [
    "MSc Computer Science", "MSc Artificial Intelligence", "MEng Electrical Engineering",
    "MSc Data Science", "MSc Mathematics", "PhD Machine Learning", "MSc Information Technology",
]  # fmt: skip
LANGUAGES = ["en", "fr", "de", "it", "es", "pl", "nl", "pt", "el", "ro", "sv", "fi"]
NEEDS = [
    "wheelchair access to the interview room",
    "ground-floor room; limited mobility",
    "sign-language interpreter",
    "extra time for written tests (medical certificate provided)",
]


@dataclass(frozen=True)
class DemoResult:
    candidates: int
    records: int
    failed: int
    affected_by_call_closed: int


def _outcome(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.02:
        return "selected"
    if roll < 0.10:
        return "invited"
    if roll < 0.18:
        return "not_invited"
    return "not_selected"


def _cv(rng: random.Random, name: str, years: int) -> str:
    skills = rng.sample(SKILLS, 4)
    return (
        f"Curriculum vitae of {name}. {rng.choice(DEGREES)}, {rng.choice(CITIES)}. "
        f"{years} years of professional experience in {skills[0]} and {skills[1]}, "
        f"including {skills[2]}. Projects: evaluation of general-purpose AI models, "
        f"{skills[3]} for a public administration. Publications and open-source work listed."
    )


def _letter(rng: random.Random, name: str) -> str:
    focus = rng.choice(SKILLS)
    return (
        f"Dear selection panel, I am {name} and I wish to join the enforcement team of the "
        f"AI Office. My work on {focus} prepared me to help implement the AI Act, "
        "in particular the rules for general-purpose AI models with systemic risks. "
        "I would welcome the chance to contribute to codes of practice and model evaluations."
    )


def candidate_lines(count: int, *, seed: int = 1488) -> Iterator[dict[str, Any]]:
    """Import lines (dicts) for `count` candidates, deterministic for a seed."""
    rng = random.Random(seed)
    span = (CALL_CLOSED_AT - OPENED_AT).total_seconds()
    for n in range(1, count + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name = f"{first} {last}"
        local = f"{first}.{last}".lower().replace("'", "").replace(" ", "")
        email = f"{local}.{n}@candidates.example.eu"
        per_id = f"P{100000 + n}"
        subject: dict[str, Any] = {
            "email": email,
            "name": name,
            "external_id": f"EPSO-{seed:04d}-{n:07d}",
            "attributes": {"per_id": per_id, "function_group": "FGIV"},
        }
        submitted = OPENED_AT + timedelta(seconds=rng.uniform(0, span - 60))
        outcome = _outcome(rng)
        years = rng.randint(1, 15)
        base = {
            "policy": POLICY,
            "subject_category": "candidate",
            "context": CALL,
            "outcome": outcome,
            "source": "eusurvey",
            "collected_at": submitted.isoformat(),
        }
        yield {
            **base,
            "subject": subject,
            "category": "identity",
            "payload": {
                "first_name": first,
                "family_name": last,
                "family_name_at_birth": last,
                "nationality": rng.choice(NATIONALITIES),
                "date_of_birth": f"{rng.randint(1965, 1998)}-{rng.randint(1, 12):02d}-"
                f"{rng.randint(1, 28):02d}",
                "place_of_birth": rng.choice(CITIES),
                "civil_status": rng.choice(["single", "married", "partnership", "divorced"]),
                "per_id": per_id,
                "function_group": "FGIV",
            },
        }
        yield {
            **base,
            "subject": subject,
            "category": "contact_details",
            "payload": {
                "email": email,
                "phone": f"+32 2 {rng.randint(100, 999)} {rng.randint(10, 99)} {n % 100:02d}",
                "address": f"{rng.randint(1, 200)} Rue de l'Exemple, {rng.choice(CITIES)}",
            },
        }
        yield {
            **base,
            "subject": subject,
            "category": "application",
            "payload": {
                "cv": _cv(rng, name, years),
                "motivation_letter": _letter(rng, name),
                "diplomas": [rng.choice(DEGREES)],
                "languages": rng.sample(LANGUAGES, rng.randint(2, 4)),
                "experience_years": years,
                "epso_cast_registered": True,
            },
        }
        yield {
            **base,
            "subject": subject,
            "category": "survey_answers",
            "outcome": None,
            "payload": {
                "q1_profile": "Technology specialist in AI",
                "q2_place_of_employment": rng.choice(["Brussels", "Luxembourg", "either"]),
                "q3_available_from": rng.choice(["autumn 2024", "winter 2024", "spring 2025"]),
            },
        }
        if rng.random() < 0.03:
            yield {
                **base,
                "subject": subject,
                "category": "special_needs_health",
                "payload": {"special_needs": rng.choice(NEEDS)},
            }
        if rng.random() < 0.3:
            last_activity = submitted + timedelta(days=rng.randint(0, 200))
            yield {
                "policy": POLICY,
                "subject": subject,
                "subject_category": "external_user",
                "category": "user_account",
                "context": ACCOUNTS_CONTEXT,
                "source": "eusurvey",
                # The account's state as collected at its last activity: the inactivity period
                # of the sliding rule runs from here.
                "collected_at": last_activity.astimezone(UTC).isoformat(),
                "payload": {
                    "login": f"{local}{n}",
                    "last_activity_at": last_activity.astimezone(UTC).isoformat(),
                },
            }


def run_demo(
    engine: Engine,
    *,
    keyring: Keyring,
    candidates: int,
    now: datetime,
    batch_size: int = 1000,
    seed: int = 1488,
    on_batch: Callable[[int], None] | None = None,
) -> DemoResult:
    """Load the registry record, import the candidates in batches, then close the call."""
    with unit_of_work(engine) as session:
        policies.load_policy_file(
            session, path_or_text=registry_dir() / f"{POLICY}.yaml", actor="cli:demo", now=now
        )
    lines = (
        (number, ingest.validate_line(number, raw))
        for number, raw in enumerate(candidate_lines(candidates, seed=seed), start=1)
    )
    imported = failed = 0
    state: ingest.ImportState | None = None
    for batch in ingest.batched(lines, batch_size):
        with unit_of_work(engine) as session:
            if state is None:
                state = ingest.ImportState(session, keyring=keyring, now=now)
            state.rebind(session)
            result = ingest.import_batch(
                session, state=state, lines=batch, actor="cli:demo", now=now
            )
        imported += result.imported
        failed += len(result.failures)
        if on_batch is not None:
            on_batch(len(batch))
    with unit_of_work(engine) as session:
        event = ingest.record_event(
            session,
            type="call.closed",
            context=CALL,
            occurred_at=CALL_CLOSED_AT,
            actor="cli:demo",
            now=now,
        )
        affected = event.affected_records
    return DemoResult(
        candidates=candidates, records=imported, failed=failed, affected_by_call_closed=affected
    )
