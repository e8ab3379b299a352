"""Turns settings into the objects the domain packages need (they never read `Settings`).

Domain packages below `lethe` take plain values: a key file path, a cron string, an engine.
This module builds those objects once per app or CLI invocation, puts them on `app.state`
for routes, and starts/stops background work (the in-process scheduler).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from lethe.settings import Settings
from records.crypto import Keyring


@dataclass
class Wiring:
    settings: Settings
    engine: Engine
    registry: CollectorRegistry
    # name -> object placed on app.state (keyring, signer, notifier, registry paths…)
    state: dict[str, Any] = field(default_factory=dict)
    on_start: list[Callable[[], None]] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    metric_refreshers: list[Callable[[], None]] = field(default_factory=list)

    def install(self, app: FastAPI) -> None:
        for name, value in self.state.items():
            setattr(app.state, name, value)

    def start(self) -> None:
        for hook in self.on_start:
            hook()

    def stop(self) -> None:
        for hook in reversed(self.on_stop):
            hook()

    def refresh_metrics(self) -> None:
        for refresh in self.metric_refreshers:
            refresh()


def build_wiring(
    settings: Settings, engine: Engine, registry: CollectorRegistry, *, scheduler: bool = False
) -> Wiring:
    """Build the domain objects. `scheduler`: also run the scheduled jobs in this process."""
    wiring = Wiring(settings=settings, engine=engine, registry=registry)
    # Each domain adds what it needs below, in layer order (records first).
    wiring.state["keyring"] = Keyring.load_or_create(settings.effective_kek_file)
    return wiring
