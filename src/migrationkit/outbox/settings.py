"""Worker settings, from the environment (or a ``.env`` file).

MIGRATIONKIT_DATABASE_URL     PostgreSQL (required)
CONVEX_URL                    the Convex deployment (or the local backend);
                              MIGRATIONKIT_CONVEX_URL is read too
CONVEX_DEPLOY_KEY             admin or deploy key (never logged);
                              MIGRATIONKIT_CONVEX_DEPLOY_KEY is read too
MIGRATIONKIT_DIRECTION        convex_to_pg (default) | pg_to_convex
MIGRATIONKIT_SOURCE           convex_outbox (default) | convex_deltas | pg_outbox
                              | convex_mirror (mirror tables, from the change feed)
                              | convex_app_outbox (mirror tables, from the outbox an
                              existing app writes in its own mutations: docs/app-outbox.md)
MIGRATIONKIT_MIRROR_CONFIG    the mirror config file (TOML) naming the models module: needed by
                              convex_mirror and convex_app_outbox; with pg_outbox, the
                              application's writes to the mirror tables go back to the
                              app's Convex tables as well
MIGRATIONKIT_BATCH_SIZE       changes per batch (default 500)
MIGRATIONKIT_POLL_MIN / _MAX  idle poll interval bounds in seconds (0.05 / 2.0)
MIGRATIONKIT_MAX_ATTEMPTS     tries of a failing change before dead-lettering (5)
MIGRATIONKIT_METRICS_PORT     /metrics and /healthz (9108; 0 picks a free port, -1 disables)
MIGRATIONKIT_METRICS_HOST     the address they listen on (127.0.0.1; 0.0.0.0 in a container)
MIGRATIONKIT_CONSUMER         the name applied events are recorded under (migrationkit)
MIGRATIONKIT_WORKER_ID        lease owner name (default host-pid)
MIGRATIONKIT_LEASE_SECONDS    PostgreSQL outbox lease (30)
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Sources that feed the mirror tables of an existing app.
MIRROR_SOURCES = ("convex_mirror", "convex_app_outbox")


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MIGRATIONKIT_", env_file=".env", extra="ignore")

    database_url: SecretStr
    convex_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CONVEX_URL", "MIGRATIONKIT_CONVEX_URL")
    )
    convex_deploy_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CONVEX_DEPLOY_KEY", "MIGRATIONKIT_CONVEX_DEPLOY_KEY"),
    )
    direction: Literal["convex_to_pg", "pg_to_convex"] = "convex_to_pg"
    source: Literal[
        "convex_outbox", "convex_deltas", "pg_outbox", "convex_mirror", "convex_app_outbox"
    ] = "convex_outbox"
    mirror_config: Path | None = None
    batch_size: int = Field(default=500, ge=1, le=10_000)
    poll_min: float = Field(default=0.05, gt=0)
    poll_max: float = Field(default=2.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    metrics_port: int = Field(default=9108, ge=-1, le=65535)
    metrics_host: str = "127.0.0.1"
    worker_id: str = Field(default_factory=_default_worker_id)
    lease_seconds: float = Field(default=30.0, gt=0)
    consumer: str = "migrationkit"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        expected = {
            "convex_to_pg": (
                "convex_outbox",
                "convex_deltas",
                "convex_mirror",
                "convex_app_outbox",
            ),
            "pg_to_convex": ("pg_outbox",),
        }
        if self.source not in expected[self.direction]:
            raise ValueError(
                f"source {self.source} does not feed direction {self.direction}:"
                f" use one of {', '.join(expected[self.direction])}"
            )
        if self.poll_max < self.poll_min:
            raise ValueError("MIGRATIONKIT_POLL_MAX must be at least MIGRATIONKIT_POLL_MIN")
        if self.source in MIRROR_SOURCES and self.mirror_config is None:
            raise ValueError(
                f"MIGRATIONKIT_MIRROR_CONFIG is not set: the {self.source} source needs the"
                " mirror config file"
            )
        if self.convex_url is None:
            raise ValueError("CONVEX_URL is not set: the worker needs the Convex deployment")
        return self


def _variable(field: str) -> str:
    """The environment variable a settings field is read from."""
    info = WorkerSettings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    choices = getattr(alias, "choices", None)
    if choices:
        return str(choices[0])
    return f"MIGRATIONKIT_{field.upper()}"


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per bad setting, naming its environment variable."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"]:
            lines.append(message)  # a rule across settings names its variables itself
        elif error["type"] == "missing":
            lines.append(f"{_variable(str(error['loc'][0]))} is not set")
        else:
            lines.append(f"{_variable(str(error['loc'][0]))}: {message}")
    return lines
