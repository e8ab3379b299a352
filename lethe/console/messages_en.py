# ruff: noqa: E501 - one message a line reads better than wrapped prose
"""English texts of the messages keyed by a code (a status, a type) rather than by their text."""

from __future__ import annotations

EN: dict[str, str] = {
    # what a subject may ask
    "type-title:access": "Tell me what you hold about me, and give me a copy",
    "type-title:rectification": "Correct information about me",
    "type-title:erasure": "Delete information about me",
    "type-title:restriction": "Stop using my information for now (keep it only)",
    "type-title:objection": "Object to the use of my information",
    "type-title:portability": "Give me my data in a file for another service",
    "type-help:access": "You receive a readable page and a JSON file with everything we hold.",
    "type-help:rectification": "Say below which information is wrong and what it should be.",
    "type-help:erasure": "We delete what the law lets us delete, and tell you what we keep and why.",
    "type-help:restriction": "We keep your data but do not use it until the question is settled.",
    "type-help:objection": "We stop using your data while we assess your objection.",
    "type-help:portability": "Only where the law gives this right; otherwise we explain why not.",
    # where a request stands, in plain words
    "status-text:awaiting_identity": "We are waiting for you to confirm the request with the code we e-mailed you.",
    "status-text:locked": "Too many wrong codes were entered. For your safety the request is locked; please make a new one.",
    "status-text:verified": "You confirmed your request. We are working on it and will answer by e-mail.",
    "status-text:awaiting_assessment": "We have stopped using your data while we assess your objection.",
    "status-text:completed": "We have answered your request. Our answer was sent to you by e-mail.",
    "status-text:partial": "We have answered your request in part, and told you by e-mail what we kept and why.",
    "status-text:rejected": "We could not grant your request. We e-mailed you the reason and how to complain.",
    # hold scopes and pause reasons
    "scope:subject": "A data subject (id)",
    "scope:policy": "A processing record",
    "scope:context": "A context (a call, a case)",
    "scope:record": "A single record (id)",
    "pause:volume": "far more deletions than usual",
    "pause:rule_change": "a retention rule changed since the last run",
    # enum values shown to staff, in words
    "awaiting_identity": "awaiting identity",
    "awaiting_assessment": "awaiting assessment",
    "manifestly_unfounded": "manifestly unfounded (EUDPR Art. 14(5))",
    "excessive": "excessive (EUDPR Art. 14(5))",
    "art_25_restriction": "restricted under EUDPR Art. 25",
    "identity_not_established": "identity not established (EUDPR Art. 14(6))",
    "controller": "controller",
    "dpo": "DPO",
}  # fmt: skip
