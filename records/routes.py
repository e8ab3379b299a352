"""Read-only routes of this package; writes (which compute due dates and audit) are in
`retention.ingest_routes`."""

from fastapi import APIRouter

import records.models  # noqa: F401  (registers the tables for the metadata)

router = APIRouter()
