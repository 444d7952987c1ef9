"""A synchronous client for Convex's HTTP API.

Every call sends ``format: "convex_encoded_json"`` so values come back
lossless, encodes its arguments with :func:`~.codec.encode_value` and
decodes replies with :func:`~.codec.decode_value`.

Errors, by what came back::

    HTTP 200/560 {"status": "success"}       the decoded value
    HTTP 200/560 {"status": "error"}         FunctionFailed (data = decoded errorData)
      ... errorMessage "ArgumentValidationError..."  ValidationFailed (the args were refused;
          also after a "[Request ID: ...] Server Error" prefix)
    400 InvalidWindowToReadDocuments         ResyncRequired (delta cursor too old)
    400 SnapshotTooOld                       ResyncRequired (snapshot expired)
    400 any other code                       ValidationFailed
    401, 403                                 PermissionDenied (code kept in the message)
    404                                      ConfigurationError (no such function/endpoint:
                                             a wrong URL or undeployed functions, which
                                             retrying will not fix)
    409                                      Conflict
    429, 503                                 retried; StoreUnavailable when time runs out
    500 and any other status                 StoreUnavailable
    a body that is not JSON / wrong shape    BadReply (names status and content type)
    connection failures                      see "Retries" below

Retries: 429 and 503 (the backend did not run the call) and connection
failures before the request was sent (``ConnectError``, ``ConnectTimeout``,
``PoolTimeout``) are retried for every call. Failures after the request may
have reached the server (read/write timeouts, dropped connections,
``RemoteProtocolError``) are retried only for reads (queries, ``version``,
``json_schemas`` and the export endpoints) and for mutations, actions and
runs called with ``idempotent=True``;
otherwise they raise ``StoreUnavailable`` saying the outcome is unknown.
Waits use exponential backoff with full jitter (or a numeric ``Retry-After``)
until ``retry_deadline`` seconds after the first attempt.

The admin key never appears in a message, a log line or a repr: server
text is scrubbed of it too, in case a message echoes the request.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx

from migrationkit.adapters.convex._export import (
    DeltaPage,
    SnapshotPage,
    parse_delta_page,
    parse_snapshot_page,
)
from migrationkit.adapters.convex._replies import (
    LogLinesHandler,
    Redactor,
    function_result,
    is_function_reply,
    raise_request_error,
    read_json,
    shape_error,
)
from migrationkit.adapters.convex._retry import (
    RETRY_STATUSES,
    Backoff,
    maybe_sent,
    not_sent,
    parse_retry_after,
)
from migrationkit.adapters.convex.codec import encode_args
from migrationkit.errors import BadReply, ConfigurationError, StoreUnavailable, ValidationFailed

__all__ = ["FORMAT", "ConvexClient", "DeltaPage", "SnapshotPage"]

FORMAT = "convex_encoded_json"

_log = logging.getLogger("migrationkit.adapters.convex")

FunctionKind = Literal["query", "mutation", "action"]
QueryParams = Mapping[str, str | int]


class ConvexClient:
    """Calls one Convex deployment over HTTP.

    ``url`` is the deployment's API URL (``https://<name>.convex.cloud``, or
    ``http://127.0.0.1:3210`` self-hosted). ``admin_key`` (an admin or
    deploy key) is sent as ``Authorization: Convex <key>``; it is needed for
    internal functions and streaming export.

    ``http`` is the seam: pass an ``httpx.Client`` (with a
    ``MockTransport`` in tests) and it is used as is, its own timeouts
    included, and left open by :meth:`close`. Otherwise the client makes one
    with ``timeout`` seconds per request and closes it.

    ``sleep``, ``jitter`` (a draw from [0, 1)) and ``monotonic`` drive the
    retry waits; replace them to make retries instant and deterministic.
    ``on_log_lines(function, lines)`` receives the ``console.log`` output a
    function returned (also logged at DEBUG on ``migrationkit.adapters.convex``).
    """

    def __init__(
        self,
        url: str,
        *,
        admin_key: str | None = None,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        retry_deadline: float = 30.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
        on_log_lines: LogLinesHandler | None = None,
    ) -> None:
        self._url = _check_url(url)
        self._authorization = _authorization(admin_key)
        self._redact = Redactor(admin_key.strip() if admin_key else None)
        if not timeout > 0:
            raise ConfigurationError("timeout must be a positive number of seconds")
        if not retry_deadline >= 0:
            raise ConfigurationError("retry_deadline must be zero or more seconds")
        if not (backoff_base > 0 and backoff_cap >= backoff_base):
            raise ConfigurationError("backoff needs 0 < backoff_base <= backoff_cap")
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._retry_deadline = retry_deadline
        self._backoff = Backoff(base=backoff_base, cap=backoff_cap)
        self._sleep = sleep
        self._jitter = jitter
        self._monotonic = monotonic
        self._on_log_lines = on_log_lines
        self._closed = False

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        key = "<set>" if self._authorization else None
        return f"ConvexClient({self._url!r}, admin_key={key})"

    # --- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client if this client made it; an injected one stays open."""
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- functions ----------------------------------------------------------

    def query(self, path: str, args: Mapping[str, Any] | None = None) -> Any:
        """Run a query; safe to retry, so every transient failure is retried."""
        return self._function("query", path, args, retry_unknown=True)

    def mutation(
        self, path: str, args: Mapping[str, Any] | None = None, *, idempotent: bool = False
    ) -> Any:
        """Run a mutation. ``idempotent=True`` allows retrying when the outcome is unknown."""
        return self._function("mutation", path, args, retry_unknown=idempotent)

    def action(
        self, path: str, args: Mapping[str, Any] | None = None, *, idempotent: bool = False
    ) -> Any:
        """Run an action. ``idempotent=True`` allows retrying when the outcome is unknown."""
        return self._function("action", path, args, retry_unknown=idempotent)

    def run(
        self, path: str, args: Mapping[str, Any] | None = None, *, idempotent: bool = False
    ) -> Any:
        """Run any function through ``POST /api/run/<module>/<fn>``.

        The kind of function is not known here, so it is treated like a
        mutation: retried after an unknown outcome only if ``idempotent``.
        """
        module, fn = _split_function_path(path)
        segments = [*module.split("/"), fn]
        endpoint = "/api/run/" + "/".join(quote(s, safe="") for s in segments)
        body = {"args": encode_args(args), "format": FORMAT}
        return self._call_function(f"run {path}", path, endpoint, body, retry_unknown=idempotent)

    def _function(
        self,
        kind: FunctionKind,
        path: str,
        args: Mapping[str, Any] | None,
        *,
        retry_unknown: bool,
    ) -> Any:
        _split_function_path(path)
        body = {"path": path, "args": encode_args(args), "format": FORMAT}
        return self._call_function(
            f"{kind} {path}", path, f"/api/{kind}", body, retry_unknown=retry_unknown
        )

    def _call_function(
        self, call: str, path: str, endpoint: str, body: dict[str, Any], *, retry_unknown: bool
    ) -> Any:
        content = json.dumps(body, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        response = self._send(
            "POST", endpoint, call, content=content.encode("utf-8"), retry_unknown=retry_unknown
        )
        if not is_function_reply(response.status_code):
            raise_request_error(response, call, self._redact, what="function")
        return function_result(
            response,
            function=path,
            call=call,
            redact=self._redact,
            on_log_lines=self._on_log_lines,
        )

    # --- deployment ---------------------------------------------------------

    def version(self) -> str:
        """The backend's version string (``GET /version``)."""
        response = self._send("GET", "/version", "version", retry_unknown=True)
        self._raise_unless_ok(response, "version")
        text = response.text.strip()
        if "json" in response.headers.get("content-type", ""):
            parsed = read_json(response, "version")
            text = parsed.strip() if isinstance(parsed, str) else ""
        if not text:
            raise shape_error(response, "version", "no version string")
        return text

    def json_schemas(self, *, by_component: bool = False) -> dict[str, Any]:
        """A JSON Schema per table (``GET /api/json_schemas?deltaSchema=true&format=json``).

        The schemas describe the ``format=json`` shape of documents; they are
        returned as parsed, not decoded as Convex values. ``by_component``
        nests them by component path (``{"": {...}, "ratelimiter": {...}}``);
        the flat default lets a component's table hide an app table of the
        same name.
        """
        params = {"deltaSchema": "true", "format": "json"}
        if by_component:
            params["byComponent"] = "true"
        call = "json_schemas"
        response = self._send("GET", "/api/json_schemas", call, params=params, retry_unknown=True)
        self._raise_unless_ok(response, call)
        payload = read_json(response, call)
        if not isinstance(payload, dict):
            raise shape_error(response, call, "not a JSON object")
        return payload

    # --- streaming export ---------------------------------------------------

    def list_snapshot(
        self,
        *,
        snapshot: int | None = None,
        cursor: str | None = None,
        table_name: str | None = None,
        extra_params: QueryParams | None = None,
    ) -> SnapshotPage:
        """One page of a consistent snapshot (``GET /api/list_snapshot``).

        Pass the first page's ``snapshot`` on every later page. ``extra_params``
        adds other query parameters the endpoint takes (e.g. ``component``).
        """
        params: dict[str, str | int] = {"format": FORMAT}
        if snapshot is not None:
            params["snapshot"] = _check_timestamp(snapshot, "snapshot")
        if cursor is not None:
            if not isinstance(cursor, str):
                raise ValidationFailed("list_snapshot cursor must be a string (it is opaque)")
            params["cursor"] = cursor
        if table_name is not None:
            params["tableName"] = table_name
        call = "list_snapshot"
        response = self._send(
            "GET", "/api/list_snapshot", call, params=_merge(params, extra_params)
        )
        self._raise_unless_ok(response, call)
        return parse_snapshot_page(read_json(response, call), _failer(response, call))

    def document_deltas(
        self,
        *,
        cursor: int,
        table_name: str | None = None,
        extra_params: QueryParams | None = None,
    ) -> DeltaPage:
        """Revisions with ``_ts > cursor`` (``GET /api/document_deltas``).

        A cursor older than the retention window raises ``ResyncRequired``.
        """
        params: dict[str, str | int] = {
            "format": FORMAT,
            "cursor": _check_timestamp(cursor, "cursor"),
        }
        if table_name is not None:
            params["tableName"] = table_name
        call = "document_deltas"
        response = self._send(
            "GET", "/api/document_deltas", call, params=_merge(params, extra_params)
        )
        self._raise_unless_ok(response, call)
        return parse_delta_page(read_json(response, call), _failer(response, call))

    # --- transport ----------------------------------------------------------

    def _raise_unless_ok(self, response: httpx.Response, call: str) -> None:
        if not 200 <= response.status_code < 300:
            raise_request_error(response, call, self._redact)

    def _send(
        self,
        method: str,
        endpoint: str,
        call: str,
        *,
        params: QueryParams | None = None,
        content: bytes | None = None,
        retry_unknown: bool = True,
    ) -> httpx.Response:
        """Send until the reply is not a 429/503, or until the deadline passes.

        ``retry_unknown`` says whether a failure after the request may have
        reached the server can be retried (the call is safe to repeat).
        """
        if self._closed:
            raise RuntimeError("this ConvexClient is closed")
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        url = self._url + endpoint
        start = self._monotonic()
        attempt = 0
        while True:
            attempt += 1
            cause: Exception | None = None
            retry_after: float | None = None
            try:
                response = self._http.request(
                    method, url, params=params, content=content, headers=headers
                )
            except not_sent as exc:
                cause = exc
                failure = f"could not connect ({self._describe(exc)})"
            except maybe_sent as exc:
                if not retry_unknown:
                    raise StoreUnavailable(
                        f"Convex {call}: the connection failed after the request was sent"
                        f" ({self._describe(exc)}); the outcome is unknown: it may or may"
                        " not have run. Not retried because the call is not marked"
                        " idempotent"
                    ) from exc
                cause = exc
                failure = f"the reply was lost ({self._describe(exc)})"
            except httpx.HTTPError as exc:
                raise StoreUnavailable(
                    f"Convex {call}: the HTTP exchange failed ({self._describe(exc)})"
                ) from exc
            else:
                _log.debug("Convex %s: HTTP %s (attempt %d)", call, response.status_code, attempt)
                if response.status_code not in RETRY_STATUSES:
                    return response
                failure = self._describe_refusal(response)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            elapsed = self._monotonic() - start
            delay = self._backoff.delay(attempt, self._jitter(), retry_after)
            if elapsed + delay > self._retry_deadline:
                waited = f"{elapsed:.1f}s"
                if retry_after is not None:
                    waited += f"; the server asked to wait {retry_after:g}s more"
                raise StoreUnavailable(
                    f"Convex {call} failed after {attempt} attempt(s) over {waited}"
                    f" (retry deadline {self._retry_deadline:g}s); last: {failure}"
                ) from cause
            _log.debug("Convex %s: %s; retrying in %.3fs", call, failure, delay)
            self._sleep(delay)

    def _describe(self, exc: Exception) -> str:
        text = self._redact(str(exc).strip())
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def _describe_refusal(self, response: httpx.Response) -> str:
        status = response.status_code
        try:
            payload = json.loads(response.content)
        except (ValueError, RecursionError):
            return f"HTTP {status}"
        if isinstance(payload, dict) and isinstance(payload.get("code"), str):
            message = payload.get("message")
            said = f"{payload['code']}: {message}" if isinstance(message, str) else payload["code"]
            return self._redact(f"HTTP {status} {said}")
        return f"HTTP {status}"


# --- helpers ------------------------------------------------------------------


def _check_url(url: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("Convex URL is empty: expected https://<deployment>.convex.cloud")
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError, TypeError):
        raise ConfigurationError("Convex URL is malformed") from None
    if parsed.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"Convex URL scheme {parsed.scheme!r} is not supported: use https:// (or http://)"
        )
    if not parsed.host:
        raise ConfigurationError("Convex URL names no host")
    if parsed.userinfo:
        # Never echo it: the user part may hold a password or a key.
        raise ConfigurationError("Convex URL must not carry credentials: pass the key as admin_key")
    if parsed.query or parsed.fragment:
        raise ConfigurationError("Convex URL must not have a query string or fragment")
    return str(parsed).rstrip("/")


def _authorization(admin_key: str | None) -> str | None:
    if admin_key is None:
        return None
    if not isinstance(admin_key, str):
        raise ConfigurationError("admin_key must be a string")
    key = admin_key.strip()
    if not key:
        raise ConfigurationError("admin_key is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ConfigurationError("admin_key holds whitespace or control characters")
    return f"Convex {key}"


def _split_function_path(path: str) -> tuple[str, str]:
    """``"module/sub:fn"`` -> ``("module/sub", "fn")``; no ``:`` means the default export."""
    if not isinstance(path, str) or not path:
        raise ValidationFailed("a Convex function path must be a non-empty string")
    if any(ch.isspace() or not ch.isprintable() for ch in path):
        raise ValidationFailed(f"Convex function path {path!r} holds whitespace")
    module, sep, fn = path.partition(":")
    if not module or module.startswith("/") or (sep and not fn) or ":" in fn:
        raise ValidationFailed(
            f"Convex function path {path!r} is malformed: expected module:function"
            " or dir/module:function"
        )
    return module, fn or "default"


def _check_timestamp(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationFailed(f"{name} must be a non-negative integer timestamp")
    return value


def _merge(params: dict[str, str | int], extra: QueryParams | None) -> dict[str, str | int]:
    if not extra:
        return params
    clash = sorted(set(params) & set(extra))
    if clash:
        raise ValidationFailed(f"extra_params may not override {', '.join(clash)}")
    return {**params, **extra}


def _failer(response: httpx.Response, call: str) -> Callable[[str], BadReply]:
    def fail(problem: str) -> BadReply:
        return shape_error(response, call, problem)

    return fail
