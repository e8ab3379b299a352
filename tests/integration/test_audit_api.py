"""Checkpoints, entries and proofs as an auditor sees them over HTTP, and the tree behind them."""

from __future__ import annotations

import base64
import random
import threading
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from audit_log import checkpoints, jobs, merkle, service
from audit_log.models import AuditCheckpoint, AuditEntry, AuditSubtree
from audit_log.signing import NoteSigner, Verifier, open_note
from audit_log.tree import TreeReader
from lethe.app import create_app
from lethe.settings import Settings
from records.db import make_engine, unit_of_work
from tests.conftest import KeyFactory

NOW = datetime(2026, 3, 27, 11, 0, tzinfo=UTC)


def _signer(settings: Settings) -> NoteSigner:
    return NoteSigner.load_or_create(settings.effective_audit_key_file, settings.audit_log_origin)


def _grow(engine: Engine, signer: NoteSigner, count: int, *, checkpoint: bool = True) -> None:
    with unit_of_work(engine) as s:
        for i in range(count):
            service.append(
                s,
                action="records.event.added",
                actor="cli",
                now=NOW,
                target=f"event:{uuid.uuid4()}",
                details={"i": i},
            )
        if checkpoint:
            checkpoints.make_checkpoint(s, signer=signer, now=NOW)


def _leaf_hashes(engine: Engine) -> list[bytes]:
    with Session(engine) as s:
        bodies = s.exec(select(col(AuditEntry.body)).order_by(col(AuditEntry.idx))).all()
    return [merkle.hash_leaf(b.encode()) for b in bodies]


def test_the_checkpoint_is_public_and_checks_with_the_public_key(
    client: TestClient, settings: Settings, engine: Engine
) -> None:
    missing = client.get("/v1/audit/checkpoint")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    _grow(engine, _signer(settings), 5)
    response = client.get("/v1/audit/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    key = client.get("/v1/audit/public-key")
    assert key.status_code == 200
    text = open_note(response.text, Verifier.parse(key.text))
    origin, size, root = text.splitlines()
    assert (origin, size) == (settings.audit_log_origin, "5")
    assert base64.b64decode(root) == merkle.root_of(_leaf_hashes(engine))


def test_a_private_checkpoint_needs_an_auditor_key(
    settings: Settings, engine: Engine, auth_headers: KeyFactory
) -> None:
    _grow(engine, _signer(settings), 2)
    private = settings.model_copy(update={"checkpoint_public": False})
    with TestClient(create_app(private), raise_server_exceptions=False) as c:
        assert c.get("/v1/audit/checkpoint").status_code == 401
        assert c.get("/v1/audit/checkpoint", headers=auth_headers("ingest")).status_code == 403
        ok = c.get("/v1/audit/checkpoint", headers=auth_headers("auditor"))
        assert ok.status_code == 200 and "\n2\n" in ok.text
        assert c.get("/v1/audit/public-key").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/audit/entries",
        "/v1/audit/proofs/inclusion?index=0&size=1",
        "/v1/audit/proofs/consistency?first=1&second=2",
    ],
)
def test_entries_and_proofs_are_for_auditors_and_the_dpo(
    client: TestClient, settings: Settings, engine: Engine, auth_headers: KeyFactory, path: str
) -> None:
    _grow(engine, _signer(settings), 3)
    assert client.get(path).status_code == 401
    assert client.get(path, headers=auth_headers("controller")).status_code == 403
    assert client.get(path, headers=auth_headers("ingest")).status_code == 403
    assert client.get(path, headers=auth_headers("auditor")).status_code == 200
    assert client.get(path, headers=auth_headers("dpo")).status_code == 200


def test_an_auditor_checks_entries_and_proofs_against_signed_checkpoints(
    client: TestClient, settings: Settings, engine: Engine, auth_headers: KeyFactory
) -> None:
    signer = _signer(settings)
    _grow(engine, signer, 300)
    first = client.get("/v1/audit/checkpoint").text
    _grow(engine, signer, 333)
    second = client.get("/v1/audit/checkpoint").text
    verifier = Verifier.parse(client.get("/v1/audit/public-key").text)
    _, size1, root1 = open_note(first, verifier).splitlines()
    _, size2, root2 = open_note(second, verifier).splitlines()
    assert (size1, size2) == ("300", "633")
    headers = auth_headers("auditor")

    entries = client.get("/v1/audit/entries?start=250&end=260", headers=headers).json()
    assert [e["index"] for e in entries] == list(range(250, 260))
    for index in (0, 255, 256, 299):
        leaf = merkle.hash_leaf(
            client.get(f"/v1/audit/entries?start={index}&end={index + 1}", headers=headers)
            .json()[0]["body"]
            .encode()
        )
        proof = client.get(
            f"/v1/audit/proofs/inclusion?index={index}&size=300", headers=headers
        ).json()
        assert (proof["index"], proof["size"]) == (index, 300)
        merkle.verify_inclusion(
            index, 300, leaf, [base64.b64decode(p) for p in proof["proof"]], base64.b64decode(root1)
        )
    consistency = client.get(
        "/v1/audit/proofs/consistency?first=300&second=633", headers=headers
    ).json()
    merkle.verify_consistency(
        300,
        633,
        [base64.b64decode(p) for p in consistency["proof"]],
        base64.b64decode(root1),
        base64.b64decode(root2),
    )
    beyond = client.get("/v1/audit/proofs/inclusion?index=0&size=634", headers=headers)
    assert beyond.status_code == 422
    too_many = client.get("/v1/audit/entries?start=0&end=5000", headers=headers)
    assert too_many.status_code == 422


def test_incremental_subtrees_give_the_proofs_of_the_whole_tree(
    settings: Settings, engine: Engine
) -> None:
    signer = _signer(settings)
    for count in (1, 300, 211, 512, 1, 300):  # heads at 1, 301, 512, 1024, 1025, 1325
        _grow(engine, signer, count)
    _grow(engine, signer, 77, checkpoint=False)  # a tail no checkpoint covers yet
    hashes = _leaf_hashes(engine)
    n = len(hashes)

    def reference(start: int, end: int) -> bytes:
        return merkle.root_of(hashes[start:end])

    with Session(engine) as s:
        stored = {(t.level, t.start) for t in s.exec(select(AuditSubtree))}
        assert (10, 0) in stored and (8, 1024) in stored and (8, 1280) not in stored
        tree = TreeReader(s)
        rng = random.Random(7)
        for size in [1, 2, 255, 256, 257, 512, 1024, 1025, 1325, n, *rng.sample(range(1, n), 20)]:
            assert tree.root(size) == merkle.root_of(hashes[:size])
            index = rng.randrange(size)
            assert tree.inclusion_proof(index, size) == merkle.inclusion_proof(
                index, size, reference
            )
            first = rng.randrange(1, size + 1)
            assert tree.consistency_proof(first, size) == merkle.consistency_proof(
                first, size, reference
            )
        rows = s.exec(select(col(AuditCheckpoint.size))).all()
    assert sorted(rows) == [1, 301, 512, 1024, 1025, 1325]


def test_the_checkpoint_job_signs_only_when_the_log_grew(
    settings: Settings, engine: Engine
) -> None:
    signer = _signer(settings)
    assert jobs.checkpoint_job(engine, signer, NOW) == 0  # the empty tree has a head too
    _grow(engine, signer, 3, checkpoint=False)
    assert jobs.checkpoint_job(engine, signer, NOW) == 3
    assert jobs.checkpoint_job(engine, signer, NOW) == 3
    with Session(engine) as s:
        assert len(checkpoints.all_in_order(s)) == 2


def test_concurrent_writers_get_a_dense_index(settings: Settings, engine: Engine) -> None:
    url = settings.effective_database_url
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        own = make_engine(url)
        try:
            for n in range(15):
                try:
                    with unit_of_work(own) as s:
                        service.append(s, action="a.b", actor=f"job:{seed}", now=NOW)
                        service.append(s, action="a.c", actor=f"job:{seed}", now=NOW)
                        if (seed + n) % 4 == 0:
                            raise LookupError("the caller's change failed: roll back")
                except LookupError:
                    pass
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(engine) as s:
        indexes = s.exec(select(col(AuditEntry.idx)).order_by(col(AuditEntry.idx))).all()
    assert indexes == list(range(len(indexes)))
    assert len(indexes) == 2 * (60 - 15)
