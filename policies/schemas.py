"""API shapes of the policy registry (API.md "Policies")."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from policies.document import (
    Controller,
    DataCategory,
    DpoFlag,
    LegalBasis,
    Party,
    PolicyDocument,
    Purpose,
    Recipient,
    RelatedRecord,
    RetentionRule,
    Service,
    SubjectCategory,
    Transfer,
)
from policies.models import ProcessingRecordVersion
from policies.service import LoadResult, PolicySummary


class PolicySummaryRead(BaseModel):
    reference: str
    title: str
    version: int
    content_hash: str
    loaded_at: datetime
    unresolved_references: list[str]
    # Gaps in the record the DPO must resolve (e.g. a special category with no stated ground).
    dpo_flags: list[DpoFlag]

    @classmethod
    def of(cls, summary: PolicySummary) -> PolicySummaryRead:
        return cls(
            reference=summary.reference,
            title=summary.title,
            version=summary.version,
            content_hash=summary.content_hash,
            loaded_at=summary.loaded_at,
            unresolved_references=summary.unresolved_references,
            dpo_flags=summary.dpo_flags,
        )


class RelatedRecordRead(RelatedRecord):
    resolved: bool


class PolicyRead(BaseModel):
    reference: str
    title: str
    description: str | None
    version: int
    content_hash: str
    loaded_at: datetime
    controller: Controller
    joint_controllers: list[Controller]
    dpo: Party
    supervisory_authority: Party | None
    processors: list[Party]
    services: list[Service]
    legal_basis: list[LegalBasis]
    purposes: list[Purpose]
    subject_categories: list[SubjectCategory]
    data_categories: list[DataCategory]
    recipients: list[Recipient]
    transfers: list[Transfer]
    rights: dict[str, bool]
    rights_notes: str | None
    related_records: list[RelatedRecordRead]
    unresolved_references: list[str]
    dpo_flags: list[DpoFlag]
    security_measures: list[str]
    outcomes: list[str]
    events: list[str]
    rules: list[RetentionRule]

    @classmethod
    def of(
        cls,
        row: ProcessingRecordVersion,
        document: PolicyDocument,
        *,
        unresolved: list[str],
    ) -> PolicyRead:
        return cls(
            reference=document.reference,
            title=document.title,
            description=document.description,
            version=row.version,
            content_hash=row.content_hash,
            loaded_at=row.loaded_at,
            controller=document.controller,
            joint_controllers=document.joint_controllers,
            dpo=document.dpo,
            supervisory_authority=document.supervisory_authority,
            processors=document.processors,
            services=document.services,
            legal_basis=document.legal_basis,
            purposes=document.purposes,
            subject_categories=document.subject_categories,
            data_categories=document.data_categories,
            recipients=document.recipients,
            transfers=document.transfers,
            rights=document.rights.model_dump(exclude={"notes"}),
            rights_notes=document.rights.notes,
            related_records=[
                RelatedRecordRead(**r.model_dump(), resolved=r.reference not in unresolved)
                for r in document.related_records
            ],
            unresolved_references=unresolved,
            dpo_flags=document.dpo_flags(),
            security_measures=document.security_measures,
            outcomes=document.outcomes,
            events=document.events,
            rules=document.rules,
        )


class PolicyVersionRead(BaseModel):
    version: int
    content_hash: str
    loaded_at: datetime
    loaded_by: str
    source_name: str
    current: bool


class PolicyLoaded(BaseModel):
    reference: str
    version: int
    content_hash: str
    created: bool

    @classmethod
    def of(cls, result: LoadResult) -> PolicyLoaded:
        return cls(
            reference=result.reference,
            version=result.version,
            content_hash=result.content_hash,
            created=result.created,
        )
