"""Settings from the environment (prefix `LETHE_`), built in `create_app()` and the CLI only."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LETHE_", extra="ignore")

    # Storage
    data_dir: Path = Field(Path("./var"), description="Key files and the embedded database.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file `lethe.db` in the data directory."
    )
    database_busy_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Seconds a write waits for another writer's lock (SQLite busy timeout, "
        "PostgreSQL lock_timeout); past it the API answers 503 with Retry-After.",
    )

    # HTTP
    host: str = Field("127.0.0.1", description="Address `lethe serve` listens on.")
    port: int = Field(8000, description="Port `lethe serve` listens on.")
    public_base_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL used in links sent to data subjects."
    )
    metrics_public: bool = Field(True, description="`/metrics` open to all; false: auditor key.")
    checkpoint_public: bool = Field(
        True, description="`/v1/audit/checkpoint` open to all; false: auditor key."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1, description="Largest request body of any route but the bulk import (413)."
    )
    max_import_bytes: int = Field(
        1_073_741_824, ge=1, description="Largest streamed body of `POST /v1/imports` (413)."
    )

    # Logging
    log_level: str = Field("INFO", description="Minimum level of log lines.")
    log_format: Literal["json", "console"] = Field("json", description="JSON lines or console.")

    # Scheduler and retention
    scheduler: Literal["on", "off"] = Field(
        "on", description="Run the job scheduler inside `lethe serve`."
    )
    purge_cron: str = Field("0 2 * * *", description="Cron of the nightly purge.")
    purge_timezone: str = Field("Europe/Brussels", description="Time zone of `purge_cron`.")
    purge_batch_size: int = Field(500, description="Records per purge transaction.")
    purge_anomaly_factor: float = Field(
        3.0, description="Pause a run deleting more than this multiple of the recent average."
    )
    purge_anomaly_floor: int = Field(
        100, description="Runs deleting fewer records than this never pause for volume."
    )
    checkpoint_interval_minutes: int = Field(15, description="Minutes between audit checkpoints.")
    checkpoint_freshness_seconds: float = Field(
        5.0,
        ge=0,
        description="Seconds after a write by which a signed checkpoint covers it (one is also "
        "made at startup); 0: only the periodic checkpoint job.",
    )

    # Keys
    kek_file: Path | None = Field(
        None, description="Key-encryption-key file; default `kek.json` in the data directory."
    )
    kek_backup_window_days: int = Field(
        35, description="Days a retired key epoch is kept so backups stay restorable."
    )
    kek_rotation_days: int = Field(30, description="Days between key-epoch rotations.")
    audit_key_file: Path | None = Field(
        None, description="Ed25519 checkpoint signing key; default `audit-signing.key` in data dir."
    )
    audit_log_origin: str = Field(
        "lethe.local/audit", description="Origin line of checkpoints and the note key name."
    )

    # Data-subject requests
    smtp_host: str | None = Field(None, description="SMTP server; unset: the development outbox.")
    smtp_port: int = Field(25, description="SMTP port.")
    smtp_from: str = Field("lethe@localhost", description="Sender address of notices.")
    smtp_username: str | None = Field(None, description="SMTP user name.")
    smtp_password: str | None = Field(None, description="SMTP password.")
    smtp_tls: Literal["none", "starttls", "tls"] = Field("none", description="SMTP transport.")
    holidays: list[date] = Field(
        default_factory=list,
        description=(
            "Institution holidays (JSON list of ISO dates); with `holidays_file` also unset: "
            "the European Commission's 2024-2027 list."
        ),
    )
    holidays_file: Path | None = Field(
        None, description="File with one ISO holiday date a line (added to `holidays`)."
    )
    otp_ttl_minutes: int = Field(15, description="Minutes a one-time code stays valid.")
    otp_max_attempts: int = Field(5, description="Wrong codes allowed; the N-th locks the request.")
    intake_rate_per_hour: int = Field(
        10, description="Public requests per hour per client address and per e-mail."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxies (JSON list of IPs/CIDRs) whose forwarding header names the client.",
    )
    proxy_header: Literal["x-forwarded-for", "forwarded"] = Field(
        "x-forwarded-for", description="The header the trusted proxies set (`forwarded`: RFC 7239)."
    )
    package_token_minutes: int = Field(60, description="Minutes a package download link lives.")
    calendar_timezone: str = Field(
        "Europe/Brussels", description="Time zone of the institution calendar (request deadlines)."
    )
    requests_alert_to: str | None = Field(
        None, description="Mailbox told daily of overdue and soon-due data-subject requests."
    )
    connectors_dir: Path | None = Field(
        None, description="Connector mapping files (`*.yaml`); unset: the packaged registry."
    )
    connector_secrets_file: Path | None = Field(
        None, description="Connector secrets (password, url, hash_key per connector), YAML/JSON."
    )
    connectors_sync_cron: str | None = Field(
        None, description="Cron (in `purge_timezone`) of the scheduled sync of every connector."
    )

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            ipaddress.ip_network(entry.strip(), strict=False)  # ValueError: a clear message
        return value

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'lethe.db'}"

    @property
    def effective_kek_file(self) -> Path:
        return self.kek_file or self.data_dir / "kek.json"

    @property
    def effective_audit_key_file(self) -> Path:
        return self.audit_key_file or self.data_dir / "audit-signing.key"

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.data_dir
