"""Convex replies -> values or the kit's errors.

Two layers of failure come back. A request-level failure is a non-2xx
status with ``{"code", "message"}``: the call was refused or the backend
broke. A function that ran and threw is HTTP 200 (or 560) with
``{"status": "error", "errorMessage", "errorData"?}``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import httpx

from migrationkit.adapters.convex.codec import decode_at
from migrationkit.errors import (
    BadReply,
    ConfigurationError,
    Conflict,
    FunctionFailed,
    MigrationKitError,
    PermissionDenied,
    ResyncRequired,
    StoreUnavailable,
    StreamingExportNotEnabled,
    ValidationFailed,
)

__all__ = [
    "LogLinesHandler",
    "Redactor",
    "function_result",
    "is_function_reply",
    "raise_request_error",
    "read_json",
    "shape_error",
]

_log = logging.getLogger("migrationkit.adapters.convex")

LogLinesHandler = Callable[[str, Sequence[str]], None]

# The backend prefixes some messages with tags such as "[Request ID: ...]"
# and a "Server Error" line; the error's own name follows them.
_TAGS = re.compile(r"^\s*(?:\[[^\]\n]*\]\s*)*(?:Server Error\s*)?")

_RESYNC_ADVICE = {
    "InvalidWindowToReadDocuments": (
        "the document_deltas cursor is older than the deployment keeps history"
        " (its retention window), so the changes since then cannot be read."
        " Tailing cannot resume without a gap: run a full resync, re-backfilling the tables"
        " (`migrationkit backfill --restart`, a new list_snapshot backfill) and"
        " start the deltas from its final snapshot"
    ),
    "SnapshotTooOld": (
        "the list_snapshot snapshot timestamp has expired, so the backfill"
        " cannot continue on one consistent cut. Run a full resync: restart the"
        " backfill without a snapshot (and without a cursor)"
    ),
}


class Redactor:
    """Strikes a secret from text that came from elsewhere (server messages, logs)."""

    def __init__(self, secret: str | None) -> None:
        parts: list[str] = []
        if secret:
            parts.append(secret)
            # Admin keys read "<name>|<token>"; a server may echo the token alone.
            token = secret.rpartition("|")[2]
            if token != secret and len(token) >= 8:
                parts.append(token)
        self._parts = parts

    def __call__(self, text: str) -> str:
        for part in self._parts:
            text = text.replace(part, "<redacted>")
        return text

    def __repr__(self) -> str:
        return "Redactor(<secret>)" if self._parts else "Redactor(None)"


def _content_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "none"))


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


def read_json(response: httpx.Response, call: str) -> Any:
    """The reply body parsed as JSON, integers kept exact (2**53 and beyond)."""
    try:
        return json.loads(response.content, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise BadReply(
            f"Convex {call}: the HTTP {response.status_code} reply is not JSON"
            f" (content-type {_content_type(response)})"
        ) from exc


def shape_error(response: httpx.Response, call: str, problem: str) -> BadReply:
    return BadReply(
        f"Convex {call}: the HTTP {response.status_code} reply has an unexpected shape"
        f" (content-type {_content_type(response)}): {problem}"
    )


def is_function_reply(status: int) -> bool:
    """200 and 560 both carry a function's outcome (the JS client accepts 560 too)."""
    return 200 <= status < 300 or status == 560


def function_result(
    response: httpx.Response,
    *,
    function: str,
    call: str,
    redact: Redactor,
    on_log_lines: LogLinesHandler | None,
) -> Any:
    payload = read_json(response, call)
    if not isinstance(payload, dict):
        raise shape_error(response, call, "not a JSON object")
    _deliver_log_lines(payload.get("logLines"), function, redact, on_log_lines)
    status = payload.get("status")
    if status == "success":
        if "value" not in payload:
            raise shape_error(response, call, "a success without 'value'")
        return decode_at(payload["value"], ("value",))
    if status == "error":
        message = payload.get("errorMessage")
        if not isinstance(message, str):
            raise shape_error(response, call, "an error without a string 'errorMessage'")
        message = redact(message)
        if _TAGS.sub("", message, count=1).startswith("ArgumentValidationError"):
            raise ValidationFailed(
                message, [{"loc": ("args",), "msg": message, "type": "ArgumentValidationError"}]
            )
        data = decode_at(payload["errorData"], ("errorData",)) if "errorData" in payload else None
        raise FunctionFailed(message, function=function, data=data)
    raise shape_error(response, call, "'status' is neither 'success' nor 'error'")


def _deliver_log_lines(
    raw: object, function: str, redact: Redactor, on_log_lines: LogLinesHandler | None
) -> None:
    if not isinstance(raw, list) or not raw:
        return
    lines = [redact(line if isinstance(line, str) else json.dumps(line)) for line in raw]
    for line in lines:
        _log.debug("Convex %s logged: %s", function, line)
    if on_log_lines is not None:
        on_log_lines(function, lines)


def raise_request_error(
    response: httpx.Response, call: str, redact: Redactor, *, what: str = "endpoint"
) -> NoReturn:
    """Raise the error a non-2xx reply stands for.

    ``what`` names the thing a 404 says is missing ("function", "endpoint").
    """
    raise _request_error(response, call, redact, what)


def _request_error(
    response: httpx.Response, call: str, redact: Redactor, what: str
) -> MigrationKitError:
    status = response.status_code
    payload = read_json(response, call)
    if not (
        isinstance(payload, dict)
        and isinstance(payload.get("code"), str)
        and isinstance(payload.get("message"), str)
    ):
        raise shape_error(response, call, "an error without string 'code' and 'message'")
    code = redact(payload["code"])
    message = redact(payload["message"])
    said = f"{code}: {message}"
    if status == 400:
        if code in _RESYNC_ADVICE:
            return ResyncRequired(f"Convex {call}: {_RESYNC_ADVICE[code]}. (Convex said {said})")
        return ValidationFailed(
            f"Convex refused {call} as a bad request ({said})",
            [{"loc": (), "msg": message, "type": code}],
        )
    if status == 403 and code == "StreamingExportNotEnabled":
        return StreamingExportNotEnabled(
            f"Convex refused {call}: streaming export is not enabled for this deployment"
            " (on Convex Cloud it needs the Pro plan). Without it, copy the data from an"
            " export ZIP (`npx convex export`, then `migrationkit import EXPORT.zip`) and"
            " keep PostgreSQL in step through the outbox written by the app's own"
            f" mutations (MIGRATIONKIT_SOURCE=convex_outbox). (Convex said {said})"
        )
    if status in (401, 403):
        return PermissionDenied(f"Convex denied {call} (HTTP {status} {said})")
    if status == 404:
        return ConfigurationError(
            f"Convex has no such {what} for {call} (HTTP 404 {said}). Check the deployment"
            " URL (the API, e.g. port 3210, not the HTTP-actions site on 3211) and that"
            " the functions are deployed"
        )
    if status == 409:
        return Conflict(f"Convex {call} conflicted (HTTP 409 {said})")
    return StoreUnavailable(f"Convex failed {call} (HTTP {status} {said})")
