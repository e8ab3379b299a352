"""W3C Data Privacy Vocabulary (DPV 2.x) JSON-LD export of a processing record.

The context is inline (no network fetch needed to read it). The record is a `dpv:Process` with
its controller, legal bases, purposes, data subjects, personal data (`pd:` terms), recipients and
one `dpv:StorageDuration` condition per retention rule (`dpv:hasDuration` the ISO 8601 offset),
plus `lethe:` terms for what DPV has no word for (trigger, direction, action, mandate).

Processors are `dpv:DataProcessor`; the controller's institution's own services (EUSurvey,
Europa Analytics for a Commission record) are not processors and are exported as
`lethe:usesService` nodes of type `lethe:ControllerService`. A special category whose ground the
statement does not give carries `lethe:specialCategoryGroundStatus "unstated"` and no ground.
"""

from __future__ import annotations

from typing import Any

from policies.document import PolicyDocument

DPV = "https://w3id.org/dpv#"
DPV_PD = "https://w3id.org/dpv/pd#"
DCT = "http://purl.org/dc/terms/"
LETHE = "https://lethe.dev/ns/policy#"
DPV_SPEC = "https://w3id.org/dpv/2.0"
MEDIA_TYPE = "application/ld+json"

CONTEXT: dict[str, Any] = {
    "dpv": DPV,
    "pd": DPV_PD,
    "dct": DCT,
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "lethe": LETHE,
    "dct:conformsTo": {"@type": "@id"},
    "dpv:hasDuration": {"@type": "xsd:duration"},
}


def _iri(reference: str, *parts: str) -> str:
    tail = "/".join(parts)
    return f"urn:lethe:policy:{reference}" + (f"#{tail}" if tail else "")


def _term(value: str) -> dict[str, str]:
    return {"@id": value}


def to_jsonld(document: PolicyDocument, *, version: int, content_hash: str) -> dict[str, Any]:
    """The JSON-LD of one version. Each rule is a node `<record>#rule/<id>`."""
    ref = document.reference
    legal_bases = []
    for basis in document.legal_basis:
        node: dict[str, Any] = {
            "@id": _iri(ref, "legal-basis", basis.key),
            "@type": [basis.dpv or "dpv:LegalBasis"],
            "rdfs:label": basis.article,
        }
        if basis.dpv and basis.dpv != "dpv:LegalBasis":
            node["@type"].append("dpv:LegalBasis")
        if basis.description:
            node["dct:description"] = basis.description
        legal_bases.append(node)

    personal_data = []
    for category in document.data_categories:
        node = {
            "@id": _iri(ref, "data", category.key),
            "@type": [
                "dpv:SpecialCategoryPersonalData" if category.special else "dpv:PersonalData"
            ],
            "rdfs:label": category.key,
            "dct:description": category.description,
        }
        if category.pd:
            node["rdfs:subClassOf"] = [_term(t) for t in category.pd]
        if category.special_ground:
            node["lethe:specialCategoryGround"] = category.special_ground
        if category.ground_unstated:
            node["lethe:specialCategoryGroundStatus"] = "unstated"
            if category.ground_note:
                node["lethe:specialCategoryGroundNote"] = category.ground_note
        personal_data.append(node)

    storage = []
    for rule in document.rules:
        condition: dict[str, Any] = {
            "@id": _iri(ref, "rule", rule.id),
            "@type": ["dpv:StorageDuration", "dpv:StorageCondition"],
            "rdfs:label": rule.id,
            "dpv:hasDuration": rule.offset.isoformat(),
            "lethe:trigger": rule.trigger.describe(),
            "lethe:direction": rule.direction.value,
            "lethe:action": rule.action.kind.value,
            "lethe:timezone": rule.timezone,
            "lethe:enforcedBy": rule.enforced_by,
            "lethe:mandate": rule.mandate,
            "lethe:appliesToData": [
                _term(_iri(ref, "data", key)) for key in rule.applies_to.data_categories
            ],
        }
        if rule.action.handover_to:
            condition["lethe:handoverTo"] = _term(_iri(rule.action.handover_to))
            condition["dct:references"] = _term(_iri(rule.action.handover_to))
        if rule.applies_to.outcomes:
            condition["lethe:outcomes"] = list(rule.applies_to.outcomes)
        if rule.review_if_untriggered_after is not None:
            condition["lethe:reviewIfUntriggeredAfter"] = {
                "@value": rule.review_if_untriggered_after.isoformat(),
                "@type": "xsd:duration",
            }
        storage.append(condition)

    rights = [name for name, applies in _rights(document).items() if applies]
    graph: dict[str, Any] = {
        "@context": CONTEXT,
        "@id": _iri(ref),
        "@type": "dpv:Process",
        "dct:identifier": ref,
        "dct:title": document.title,
        "dct:conformsTo": DPV_SPEC,
        "dct:hasVersion": str(version),
        "lethe:contentHash": content_hash,
        "dpv:hasDataController": {
            "@id": _iri(ref, "controller"),
            "@type": "dpv:DataController",
            "rdfs:label": document.controller.name,
        },
        "dpv:hasDataProtectionOfficer": {
            "@id": _iri(ref, "dpo"),
            "@type": "dpv:DataProtectionOfficer",
            "rdfs:label": document.dpo.name,
        },
        "dpv:hasLegalBasis": legal_bases,
        "dpv:hasPurpose": [
            {
                "@id": _iri(ref, "purpose", p.key),
                "@type": "dpv:Purpose",
                "dct:description": p.description,
            }
            for p in document.purposes
        ],
        "dpv:hasDataSubject": [
            {
                "@id": _iri(ref, "subjects", s.key),
                "@type": "dpv:DataSubject",
                "dct:description": s.description,
            }
            for s in document.subject_categories
        ],
        "dpv:hasPersonalData": personal_data,
        "dpv:hasRecipient": [
            {
                "@id": _iri(ref, "recipient", r.key),
                "@type": "dpv:Recipient",
                "dct:description": r.description,
            }
            for r in document.recipients
        ],
        "dpv:hasStorageCondition": storage,
        "dpv:hasRight": [{"@id": _iri(ref, "right", name), "rdfs:label": name} for name in rights],
        "dct:references": [_term(_iri(r.reference)) for r in document.related_records],
    }
    if document.processors:
        graph["dpv:hasDataProcessor"] = [
            {
                "@id": _iri(ref, "processor", str(i)),
                "@type": "dpv:DataProcessor",
                "rdfs:label": p.name,
            }
            for i, p in enumerate(document.processors)
        ]
    if document.services:
        graph["lethe:usesService"] = [
            {
                "@id": _iri(ref, "service", str(i)),
                "@type": "lethe:ControllerService",
                "rdfs:label": svc.name,
                "lethe:operatedBy": svc.operator,
                **({"dct:description": svc.role} if svc.role else {}),
            }
            for i, svc in enumerate(document.services)
        ]
    flags = document.dpo_flags()
    if flags:
        graph["lethe:dpoFlag"] = [f"{f.code}: {f.field}" for f in flags]
    return graph


def _rights(document: PolicyDocument) -> dict[str, bool]:
    return document.rights.model_dump(exclude={"notes"})
