"""The Convex side: the deployment answers, the deploy key is accepted,
streaming export is on, and the kit's functions there are the ones the
codegen writes now.

The key is sent only inside the client, which strikes it from every message
it raises; nothing here formats it.
"""

from __future__ import annotations

from typing import Any

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.errors import (
    FunctionFailed,
    MigrationKitError,
    PermissionDenied,
    StreamingExportNotEnabled,
    ValidationFailed,
)
from migrationkit.mirror.cli_support import CONVEX_DEPLOY_KEY, CONVEX_URL
from migrationkit.schema.convex_codegen import FINGERPRINT_FUNCTION

from .report import Check, Status

__all__ = ["convex_checks"]

URL_CHECK, KEY_CHECK, STREAMING, FUNCTIONS = (
    "convex url",
    "convex key",
    "streaming export",
    "convex functions",
)
# Present in every codegen since the outbox existed: tells an older
# deployment of the kit's functions (no fingerprint yet) from none at all.
_OUTBOX_STATS = "outbox:stats"
_REDEPLOY = (
    "regenerate (`migrationkit codegen convex --out convex/functions`) and deploy"
    " (`npx convex deploy`)"
)


def convex_checks(
    url: str | None, key: str | None, *, timeout: float, expected_fingerprint: str
) -> list[Check]:
    if not url:
        return [
            Check(
                URL_CHECK,
                Status.WARN,
                f"{CONVEX_URL} is not set and no --convex-url was given: Convex not checked",
                f"export {CONVEX_URL}=https://<deployment>.convex.cloud (self-hosted: the API"
                " on port 3210)",
            ),
            *_skipped("no Convex URL"),
        ]
    try:
        with ConvexClient(url, timeout=timeout, retry_deadline=timeout) as anonymous:
            version = anonymous.version()
            shown = anonymous.url
    except MigrationKitError as exc:
        fix = (
            "check the URL: the deployment's API (https://<name>.convex.cloud, or port 3210"
            " self-hosted), not its HTTP-actions site (.convex.site, port 3211)"
        )
        return [Check(URL_CHECK, Status.FAIL, str(exc), fix), *_skipped("the URL did not answer")]
    checks = [Check(URL_CHECK, Status.OK, f"{shown} answers (version {version})")]
    if not key:
        checks.append(
            Check(
                KEY_CHECK,
                Status.FAIL,
                f"{CONVEX_DEPLOY_KEY} is not set (it is read from the environment only)",
                f"export {CONVEX_DEPLOY_KEY}=... (dashboard: Settings > Deploy keys; self-hosted:"
                " the admin key)",
            )
        )
        return checks + _skipped("no deploy key", (STREAMING, FUNCTIONS))
    try:
        with ConvexClient(url, admin_key=key, timeout=timeout, retry_deadline=timeout) as client:
            answered = _key_and_streaming(client)
            checks += answered
            if answered[0].status is Status.OK:
                checks.append(_functions(client, expected_fingerprint))
            else:
                checks += _skipped("the key was not accepted", (STREAMING, FUNCTIONS))
    except MigrationKitError as exc:  # a key the client refuses to send (whitespace)
        checks.append(Check(KEY_CHECK, Status.FAIL, str(exc), f"check {CONVEX_DEPLOY_KEY}"))
        checks += _skipped("no usable deploy key", (STREAMING, FUNCTIONS))
    return checks


def _skipped(why: str, names: tuple[str, ...] = (KEY_CHECK, STREAMING, FUNCTIONS)) -> list[Check]:
    return [Check(name, Status.SKIP, why) for name in names]


def _key_and_streaming(client: ConvexClient) -> list[Check]:
    """One admin call (``json_schemas``) answers both: a wrong key is refused
    before the deployment looks at its plan. The key's line comes first."""
    accepted = Check(KEY_CHECK, Status.OK, "accepted (an admin call answered)")
    try:
        schemas = client.json_schemas()
    except StreamingExportNotEnabled:
        return [
            accepted,
            Check(
                STREAMING,
                Status.WARN,
                "not enabled for this deployment (Convex Cloud: the Pro plan): no backfill"
                " from a live snapshot, no change-feed tail",
                "copy the data from an export ZIP (`npx convex export`, then `migrationkit"
                " import EXPORT.zip`) and keep PostgreSQL in step through the kit's outbox"
                " (MIGRATIONKIT_SOURCE=convex_outbox)",
            ),
        ]
    except PermissionDenied as exc:
        return [
            Check(
                KEY_CHECK,
                Status.FAIL,
                f"refused: {exc}",
                f"set {CONVEX_DEPLOY_KEY} to a deploy key of this deployment (production and"
                " development deployments have different keys)",
            )
        ]
    except ValidationFailed as exc:
        # The deployment got past the key and the plan, then refused to
        # describe a table (no object shape): streaming export itself works.
        code = exc.errors[0].get("type") if exc.errors else "refused"
        return [
            accepted,
            Check(
                STREAMING,
                Status.OK,
                f"enabled (json_schemas refused with {code}: introspect reads a snapshot instead)",
            ),
        ]
    except MigrationKitError as exc:
        return [Check(KEY_CHECK, Status.FAIL, f"could not be checked: {exc}")]
    return [accepted, Check(STREAMING, Status.OK, f"enabled ({len(schemas)} tables described)")]


def _functions(client: ConvexClient, expected: str) -> Check:
    try:
        served = client.query(FINGERPRINT_FUNCTION, {})
    except FunctionFailed as exc:
        if _not_found(exc):
            return _without_fingerprint(client)
        return Check(FUNCTIONS, Status.FAIL, f"{FINGERPRINT_FUNCTION} failed", _REDEPLOY)
    except MigrationKitError as exc:
        return Check(FUNCTIONS, Status.FAIL, f"could not be checked: {exc}")
    deployed = served.get("fingerprint") if isinstance(served, dict) else None
    if deployed == expected:
        return Check(FUNCTIONS, Status.OK, f"deployed and current ({_short(expected)})")
    return Check(
        FUNCTIONS,
        Status.FAIL,
        f"deployed, but not what `migrationkit codegen convex` writes now (deployed"
        f" {_short(deployed)}, now {_short(expected)})",
        _REDEPLOY,
    )


def _without_fingerprint(client: ConvexClient) -> Check:
    try:
        # A float: the validator says v.number(), and a Python int goes as an Int64.
        stats: Any = client.query(_OUTBOX_STATS, {"limit": 1.0})
    except MigrationKitError:
        stats = None
    if isinstance(stats, dict) and {"pending", "oldestOccurredAt"} <= stats.keys():
        return Check(
            FUNCTIONS,
            Status.FAIL,
            "the kit's functions are deployed, from a codegen older than the fingerprint",
            _REDEPLOY,
        )
    return Check(
        FUNCTIONS,
        Status.WARN,
        "the kit's functions are not deployed (fine for mirror tables; needed for the outbox)",
        "to use the outbox or the kit's repositories: " + _REDEPLOY,
    )


def _not_found(exc: FunctionFailed) -> bool:
    return "could not find" in str(exc).lower()


def _short(fingerprint: object) -> str:
    if not isinstance(fingerprint, str):
        return "none"
    algorithm, _, digest = fingerprint.partition(":")
    return f"{algorithm}:{digest[:12]}" if digest else fingerprint[:19]
