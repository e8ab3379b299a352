"""The client address the public intake counts: forwarding headers only from trusted proxies."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time

from dsr.client_address import client_address, parse_networks
from lethe.app import create_app
from lethe.logging import configure_logging
from lethe.settings import Settings
from tests.integration.test_requests import T0

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8:ffff::1"])


# --- the rule, pure ---------------------------------------------------------------------------


def test_the_header_of_an_untrusted_peer_is_ignored() -> None:
    assert client_address("203.0.113.7", ["198.51.100.1"], proxies=PROXIES) == "203.0.113.7"
    assert client_address("10.0.0.5", ["198.51.100.1"], proxies=()) == "10.0.0.5"


def test_the_right_most_untrusted_hop_is_the_client() -> None:
    # the client forged "1.1.1.1"; the first proxy appended the real peer, the second its own
    forged = ["1.1.1.1, 198.51.100.1", "10.0.0.9"]
    assert client_address("10.0.0.5", forged, proxies=PROXIES) == "198.51.100.1"
    assert client_address("10.0.0.5", [], proxies=PROXIES) == "10.0.0.5"
    assert client_address("10.0.0.5", ["10.0.0.8, 10.0.0.9"], proxies=PROXIES) == "10.0.0.8"
    # an unreadable hop: stop at the proxy that reported it
    assert client_address("10.0.0.5", ["1.1.1.1, garbage"], proxies=PROXIES) == "10.0.0.5"


def test_forwarded_header_with_ports_quotes_and_ipv6() -> None:
    value = ['for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.9:8080']
    assert (
        client_address("2001:db8:ffff::1", value, proxies=PROXIES, header="forwarded")
        == "2001:db8:cafe::17"
    )
    assert (
        client_address("10.0.0.5", ["for=unknown"], proxies=PROXIES, header="forwarded")
        == "10.0.0.5"
    )


def test_a_bad_proxy_entry_is_refused_at_start(settings: Settings) -> None:
    with pytest.raises(ValueError):
        Settings(database_url=settings.database_url, trusted_proxies=["10.0.0.0/33"])


# --- the intake's buckets ---------------------------------------------------------------------


@pytest.fixture
def frozen() -> Iterator[Any]:
    with freeze_time(T0) as f:
        yield f


def _answers(
    settings: Settings, peer: str, headers: list[dict[str, str]], **update: Any
) -> list[int]:
    custom = settings.model_copy(update={"intake_rate_per_hour": 2, **update})
    answers = []
    with TestClient(create_app(custom), client=(peer, 4000)) as client:
        for n, extra in enumerate(headers):
            body = {"type": "access", "email": f"addr{n}@example.org"}
            answers.append(client.post("/v1/requests", json=body, headers=extra).status_code)
    return answers


def test_a_spoofed_header_from_an_untrusted_peer_does_not_change_the_bucket(
    settings: Settings, frozen: Any
) -> None:
    spoofed = [
        {"X-Forwarded-For": f"192.0.2.{n}", "Forwarded": f"for=192.0.2.{n}"} for n in range(3)
    ]
    assert _answers(settings, "203.0.113.7", spoofed) == [202, 202, 429]
    # even when proxies are configured, the header of a peer that is not one of them is ignored
    assert _answers(settings, "203.0.113.8", spoofed, trusted_proxies=["10.0.0.0/8"]) == [
        202,
        202,
        429,
    ]


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(
    settings: Settings, frozen: Any
) -> None:
    trusted = {"trusted_proxies": ["10.0.0.0/8"]}
    distinct = [{"X-Forwarded-For": f"198.51.100.{n}"} for n in range(3)]
    assert _answers(settings, "10.0.0.5", distinct, **trusted) == [202, 202, 202]
    # one client forging different left-hand hops stays in its own bucket
    forged = [{"X-Forwarded-For": f"192.0.2.{n}, 198.51.100.77"} for n in range(3)]
    assert _answers(settings, "10.0.0.5", forged, **trusted) == [202, 202, 429]


def test_only_the_configured_header_is_believed(settings: Settings, frozen: Any) -> None:
    config = {"trusted_proxies": ["10.0.0.0/8"], "proxy_header": "forwarded"}
    # the proxy sets Forwarded; an X-Forwarded-For the client added is passed through untouched
    forged = [
        {"Forwarded": "for=198.51.100.9", "X-Forwarded-For": f"192.0.2.{n}"} for n in range(3)
    ]
    assert _answers(settings, "10.0.0.5", forged, **config) == [202, 202, 429]
    distinct = [{"Forwarded": f'for="198.51.100.{n}:1234"'} for n in range(3)]
    assert _answers(settings, "10.0.0.5", distinct, **config) == [202, 202, 202]


def test_no_client_address_is_logged(settings: Settings, frozen: Any) -> None:
    custom = settings.model_copy(
        update={"intake_rate_per_hour": 1, "trusted_proxies": ["10.0.0.0/8"]}
    )
    app = create_app(custom)
    output = io.StringIO()
    configure_logging(custom.log_level, custom.log_format, stream=output)
    headers = {"X-Forwarded-For": "198.51.100.123"}
    with TestClient(app, client=("10.11.12.13", 4000)) as client:
        for n in range(2):  # the second one is rate-limited, and logged as such
            client.post(
                "/v1/requests",
                json={"type": "access", "email": f"l{n}@example.org"},
                headers=headers,
            )
    logged = output.getvalue()
    assert "dsr.intake.rate_limited" in logged
    assert "198.51.100.123" not in logged and "10.11.12.13" not in logged


def test_ipv6_clients_are_counted_per_slash_64(settings: Settings, frozen: Any) -> None:
    trusted = {"trusted_proxies": ["10.0.0.0/8"]}
    same_64 = [{"X-Forwarded-For": f"2001:db8:1:2::{n:x}"} for n in range(1, 4)]
    assert _answers(settings, "10.0.0.5", same_64, **trusted) == [202, 202, 429]
    other_64s = [{"X-Forwarded-For": f"2001:db8:9:{n:x}::1"} for n in range(1, 4)]
    assert _answers(settings, "10.0.0.5", other_64s, **trusted) == [202, 202, 202]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_the_privacy_centre_counts_the_same_client_as_the_api(
    settings: Settings, frozen: Any
) -> None:
    custom = settings.model_copy(
        update={"intake_rate_per_hour": 2, "trusted_proxies": ["10.0.0.0/8"]}
    )
    with TestClient(create_app(custom), client=("10.0.0.5", 4000)) as web:

        def post(n: int, forwarded: str) -> int:
            home = web.get("/privacy", headers={"X-Forwarded-For": forwarded})
            data = {"type": "access", "email": f"p{n}@example.org", "csrf_token": _csrf(home.text)}
            return web.post(
                "/privacy/requests",
                data=data,
                headers={"X-Forwarded-For": forwarded},
                follow_redirects=False,
            ).status_code

        # three clients behind the proxy: each its own bucket (not all in the proxy's)
        assert [post(n, f"198.51.100.{n}") for n in range(3)] == [303, 303, 303]
        assert [post(n + 3, "198.51.100.50") for n in range(3)] == [303, 303, 429]
