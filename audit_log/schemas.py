"""API shapes of the audit trail (API.md "Audit trail")."""

from __future__ import annotations

from pydantic import BaseModel


class EntryOut(BaseModel):
    index: int
    body: str  # the exact canonical JSON string whose UTF-8 bytes are the leaf data


class InclusionProofOut(BaseModel):
    index: int
    size: int
    proof: list[str]  # base64 node hashes, leaf side first


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    proof: list[str]
