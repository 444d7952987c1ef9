"""Every check, in order, from settings the command line resolved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from migrationkit.schema import convex_codegen

from .convex import convex_checks
from .dsn import inspect_dsn
from .postgres import Role, postgres_checks
from .report import Check, Report, Secrets
from .tenants import load_mirror_models, tenant_tables

__all__ = ["DoctorSettings", "expected_fingerprint", "run_doctor"]


@dataclass(frozen=True)
class DoctorSettings:
    database_url: str | None
    convex_url: str | None
    deploy_key: str | None
    role: Role = Role.APP
    versions: Path | None = None
    config: Path | None = None
    #: Seconds for each network step (connect, each HTTP call); short, so a
    #: host that never answers is a failed line, not a hung command.
    timeout: float = 5.0


def expected_fingerprint() -> str:
    """What `migrationkit codegen convex` would write now, fingerprinted."""
    return convex_codegen.fingerprint(convex_codegen.generate())


def run_doctor(settings: DoctorSettings, *, fingerprint: str | None = None) -> Report:
    """Run every check. ``fingerprint`` replaces the codegen's own (for a
    deployment built from other models)."""
    secrets = Secrets([settings.deploy_key])
    if settings.deploy_key:
        # Admin keys read "<name>|<token>"; a message may echo the token alone.
        secrets.add(settings.deploy_key.rpartition("|")[2])
    dsn = inspect_dsn(settings.database_url)
    secrets.add(*dsn.secrets)
    checks: list[Check] = list(dsn.checks)
    mirror_check, mirrors = load_mirror_models(settings.config)
    if mirror_check is not None:
        checks.append(mirror_check)
    checks += postgres_checks(
        dsn.dsn,
        role=settings.role,
        tables=tenant_tables(mirrors),
        versions=settings.versions,
        timeout=settings.timeout,
    )
    checks += convex_checks(
        settings.convex_url,
        settings.deploy_key,
        timeout=settings.timeout,
        expected_fingerprint=fingerprint or expected_fingerprint(),
    )
    return Report.of(checks, secrets)
