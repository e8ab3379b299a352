"""What the registry says about a record's processing: the Art. 15/17 information beside the
data, which rights apply, and whether a rule is a minimum obligation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from policies.document import Direction, PolicyDocument, RetentionRule
from policies.models import ProcessingRecord, ProcessingRecordVersion


class PolicyCache:
    """Documents by (reference, version); version None is the current one."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._docs: dict[tuple[str, int | None], PolicyDocument | None] = {}

    def document(self, reference: str, version: int | None = None) -> PolicyDocument | None:
        key = (reference, version)
        if key not in self._docs:
            self._docs[key] = self._load(reference, version)
        return self._docs[key]

    def _load(self, reference: str, version: int | None) -> PolicyDocument | None:
        record = self.session.execute(
            select(ProcessingRecord).where(col(ProcessingRecord.reference) == reference)
        ).scalar_one_or_none()
        if record is None:
            return None
        wanted = version if version is not None else record.current_version
        row = self.session.execute(
            select(ProcessingRecordVersion).where(
                col(ProcessingRecordVersion.record_id) == record.id,
                col(ProcessingRecordVersion.version) == wanted,
            )
        ).scalar_one_or_none()
        if row is None:
            return None
        return PolicyDocument.model_validate(row.document)

    def rule(
        self, reference: str, version: int | None, rule_id: str | None
    ) -> RetentionRule | None:
        if rule_id is None:
            return None
        doc = self.document(reference, version) or self.document(reference)
        if doc is None:
            return None
        return next((r for r in doc.rules if r.id == rule_id), None)

    def is_minimum(self, reference: str, version: int | None, rule_id: str | None) -> bool:
        rule = self.rule(reference, version, rule_id)
        return rule is not None and rule.direction == Direction.min

    def allows(self, reference: str, right: str) -> bool | None:
        doc = self.document(reference)
        if doc is None:
            return None
        return bool(getattr(doc.rights, right))


def processing_information(doc: PolicyDocument) -> dict[str, Any]:
    """The information EUDPR Art. 17(1) / GDPR Art. 15(1) requires beside the data."""
    data = doc.model_dump(mode="json")
    return {
        "reference": doc.reference,
        "title": doc.title,
        "controller": data["controller"],
        "dpo": data["dpo"],
        "purposes": data["purposes"],
        "legal_basis": data["legal_basis"],
        "data_categories": [
            {k: c[k] for k in ("key", "description", "special", "source") if k in c}
            for c in data["data_categories"]
        ],
        "recipients": data["recipients"],
        "transfers": data["transfers"],
        "retention_rules": [
            {
                "id": r["id"],
                "offset": r.get("offset"),
                "trigger": r.get("trigger"),
                "direction": r.get("direction"),
                "action": r.get("action"),
                "mandate": r.get("mandate"),
            }
            for r in data["rules"]
        ],
        "rights": data["rights"],
        "supervisory_authority": data.get("supervisory_authority"),
    }
