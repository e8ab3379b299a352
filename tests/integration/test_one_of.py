"""`records.service.one_of`: an id list of any length selects exactly its rows, on both
databases (a purge batch of external records asks for tens of thousands of ids at once)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Uuid, delete, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from records import service as records


@pytest.mark.parametrize("wanted", [3, records.SQLITE_LIST_PARAMETERS + 1, 40_000])
def test_one_of_selects_exactly_the_listed_rows(engine: Engine, wanted: int) -> None:
    probe = Table(
        "probe_one_of",
        MetaData(),
        Column("id", Uuid, primary_key=True),
        Column("n", Integer, nullable=False),
    )
    probe.create(engine)
    try:
        ids = [uuid.uuid4() for _ in range(wanted + 500)]
        with Session(engine) as session, session.begin():
            session.execute(probe.insert(), [{"id": i, "n": n} for n, i in enumerate(ids)])
        asked = [*ids[:wanted], uuid.uuid4()]  # one id that is not there
        with Session(engine) as session:
            found = set(
                session.execute(
                    select(probe.c.id).where(records.one_of(session, probe.c.id, asked))
                ).scalars()
            )
            by_number = session.execute(
                select(func.count()).where(
                    records.one_of(session, probe.c.n, list(range(0, wanted * 2, 2)))
                )
            ).scalar_one()
        assert found == set(ids[:wanted])
        assert by_number == min(wanted, (wanted + 500 + 1) // 2)
        with Session(engine) as session, session.begin():
            gone = (
                session.connection()
                .execute(delete(probe).where(records.one_of(session, probe.c.id, ids[:wanted])))
                .rowcount
            )
        assert gone == wanted
    finally:
        probe.drop(engine)
