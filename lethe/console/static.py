"""The console's stylesheet and script, served from the package (no CDN, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from records.errors import NotFoundError
from records.http import public

STATIC = Path(__file__).parent / "static"
FILES = {"console.css": "text/css", "console.js": "text/javascript"}

router = APIRouter(include_in_schema=False)


@router.get("/console/static/{name}", dependencies=[Depends(public)])
def asset(name: str) -> FileResponse:
    if name not in FILES:
        raise NotFoundError("no such file")
    return FileResponse(
        STATIC / name, media_type=FILES[name], headers={"Cache-Control": "public, max-age=3600"}
    )
