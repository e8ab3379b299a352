"""The connector registry (a directory of mapping files) and the secrets that open the sources.

Secrets never sit in a mapping: a YAML or JSON secrets file (`LETHE_CONNECTOR_SECRETS_FILE`)
holds, per connector name, `password`, `url` (a whole URL, when the mapping's is not enough)
and `hash_key` (the key of `with: hash` masks); the environment variables
`LETHE_CONNECTOR_<NAME>_PASSWORD`, `…_URL` and `…_HASH_KEY` win over the file.

    # secrets.yaml (mode 0600, owned by the service)
    eusurvey:
      password: "…"
      hash_key: "…"
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import URL, Engine, create_engine, make_url

from connectors.errors import ConnectorNotFoundError, MappingError, SecretMissingError
from connectors.mapping import ConnectorMapping, read_mapping
from connectors.source import Source

PACKAGED = Path(__file__).resolve().parent / "registry"


def _env_name(connector: str, item: str) -> str:
    return f"LETHE_CONNECTOR_{connector.upper().replace('-', '_')}_{item.upper()}"


@dataclass(frozen=True)
class Secrets:
    """Secrets per connector, from a file and the environment (the environment wins)."""

    by_connector: Mapping[str, Mapping[str, str]]
    environ: Mapping[str, str]

    @classmethod
    def load(cls, path: Path | None, environ: Mapping[str, str] | None = None) -> Secrets:
        found: dict[str, dict[str, str]] = {}
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise SecretMissingError(
                    f"cannot read the connector secrets file {path.name} ({exc.strerror})"
                ) from exc
            data: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            if not isinstance(data, dict):
                raise SecretMissingError(f"{path.name}: a mapping of connector name to secrets")
            for name, items in data.items():
                if isinstance(items, dict):
                    found[str(name)] = {str(k): str(v) for k, v in items.items() if v is not None}
        return cls(by_connector=found, environ=dict(os.environ if environ is None else environ))

    def get(self, connector: str, item: str) -> str | None:
        env = self.environ.get(_env_name(connector, item))
        if env:
            return env
        return self.by_connector.get(connector, {}).get(item)


def source_url(mapping: ConnectorMapping, secrets: Secrets) -> URL:
    whole = secrets.get(mapping.name, "url")
    url = make_url(whole) if whole else make_url(mapping.url)
    password = secrets.get(mapping.name, "password")
    if password is not None:
        url = url.set(password=password)
    return url


def hash_key(mapping: ConnectorMapping, secrets: Secrets) -> bytes | None:
    key = secrets.get(mapping.name, "hash_key")
    if key is None:
        if mapping.uses_hash:
            raise SecretMissingError(
                f"connector {mapping.name} masks with a keyed hash and has no hash_key "
                f"(secrets file or {_env_name(mapping.name, 'hash_key')})"
            )
        return None
    return key.encode("utf-8")


class Registry:
    """Mapping files of a directory, read when first asked for; one engine per source."""

    def __init__(self, directory: Path, secrets: Secrets) -> None:
        self.directory = directory
        self.secrets = secrets
        self._mappings: dict[str, tuple[ConnectorMapping, Path]] | None = None
        self._engines: dict[str, Engine] = {}
        self._sources: dict[str, Source] = {}
        self._lock = threading.RLock()

    def _load(self) -> dict[str, tuple[ConnectorMapping, Path]]:
        with self._lock:
            return self._load_locked()

    def _load_locked(self) -> dict[str, tuple[ConnectorMapping, Path]]:
        if self._mappings is None:
            found: dict[str, tuple[ConnectorMapping, Path]] = {}
            paths = sorted(self.directory.glob("*.yaml")) if self.directory.is_dir() else []
            for path in paths:
                mapping = read_mapping(path)
                if mapping.name in found:
                    raise MappingError(
                        f"{path.name}: connector {mapping.name} is also defined in "
                        f"{found[mapping.name][1].name}"
                    )
                found[mapping.name] = (mapping, path)
            self._mappings = found
        return self._mappings

    def names(self) -> list[str]:
        return sorted(self._load())

    def __iter__(self) -> Iterator[ConnectorMapping]:
        return iter(m for m, _ in self._load().values())

    def get(self, name: str) -> ConnectorMapping:
        found = self._load().get(name)
        if found is None:
            raise ConnectorNotFoundError(f"no connector {name} in the registry")
        return found[0]

    def add(self, mapping: ConnectorMapping) -> None:
        """Register a mapping that is not in the directory (tests, the bench)."""
        self._load()[mapping.name] = (mapping, self.directory / f"{mapping.name}.yaml")

    def engine(self, name: str) -> Engine:
        with self._lock:
            return self._engine(name)

    def _engine(self, name: str) -> Engine:
        engine = self._engines.get(name)
        if engine is None:
            mapping = self.get(name)
            engine = create_engine(
                source_url(mapping, self.secrets),
                pool_pre_ping=True,
                # Statement parameters are keys and masked values: keep them out of logs anyway.
                hide_parameters=True,
            )
            self._engines[name] = engine
        return engine

    def hash_key(self, name: str) -> bytes | None:
        return hash_key(self.get(name), self.secrets)

    def source(self, name: str) -> Source:
        with self._lock:
            return self._source(name)

    def _source(self, name: str) -> Source:
        found = self._sources.get(name)
        if found is None:
            found = Source(self.get(name), self.engine(name), hash_key=self.hash_key(name))
            self._sources[name] = found
        return found

    def dispose(self) -> None:
        self._sources.clear()
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
