"""The Convex HTTP client against httpx.MockTransport: wire shapes, error mapping, retries."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from migrationkit.adapters.convex import ConvexClient, DeltaPage, SnapshotPage
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

URL = "https://happy-otter-123.convex.cloud"
TOKEN = "01a2b3c4d5e6f7SECRETTOKEN0123456789abcdef"
KEY = f"prod:happy-otter-123|{TOKEN}"
BIG = 2**60 + 1  # above 2**53: a float would round it

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Script:
    """A MockTransport handler that plays replies in order and records requests."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            if isinstance(reply, httpx.RequestError):
                reply.request = request
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        return reply(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


class Clock:
    """Fake time: sleeping advances it, so retry deadlines pass instantly."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def client_for(
    script: Script,
    *,
    clock: Clock | None = None,
    admin_key: str | None = KEY,
    jitter: float = 0.5,
    **options: Any,
) -> ConvexClient:
    clock = clock or Clock()
    return ConvexClient(
        URL,
        admin_key=admin_key,
        http=httpx.Client(transport=httpx.MockTransport(script)),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: jitter,
        **options,
    )


def success(value: Any, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"status": "success", "value": value, **extra})


def failure(status: int, code: str, message: str = "nope", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message}, headers=headers)


def raw_json(status: int, text: str) -> httpx.Response:
    """A reply whose JSON text is written by hand (json= would not show bare big ints)."""
    headers = {"content-type": "application/json"}
    return httpx.Response(status, content=text.encode(), headers=headers)


# --- request shapes -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["query", "mutation", "action"])
def test_function_calls_post_encoded_args_with_the_format(kind: str) -> None:
    script = Script(success(None))
    client = client_for(script)
    getattr(client, kind)("leads/admin:get", {"n": 1, "f": 1.5, "b": b"\x01", "ok": True})

    request = script.last
    assert request.method == "POST"
    assert str(request.url) == f"{URL}/api/{kind}"
    assert request.headers["authorization"] == f"Convex {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert script.body() == {
        "path": "leads/admin:get",
        "args": {"n": {"$integer": "AQAAAAAAAAA="}, "f": 1.5, "b": {"$bytes": "AQ=="}, "ok": True},
        "format": "convex_encoded_json",
    }


def test_args_default_to_an_empty_object() -> None:
    script = Script(success(None))
    client_for(script).query("leads:count")
    assert script.body()["args"] == {}


@pytest.mark.parametrize(
    ("path", "url_path"),
    [
        ("leads:get", "/api/run/leads/get"),
        ("leads/admin:purge", "/api/run/leads/admin/purge"),
        ("messages", "/api/run/messages/default"),
    ],
)
def test_run_puts_the_function_in_the_url(path: str, url_path: str) -> None:
    script = Script(success(2.0))
    assert client_for(script).run(path, {"x": 0.5}) == 2.0
    assert script.last.method == "POST"
    assert script.last.url.path == url_path
    assert script.body() == {"args": {"x": 0.5}, "format": "convex_encoded_json"}


def test_without_a_key_no_authorization_is_sent() -> None:
    script = Script(success(None))
    client_for(script, admin_key=None).query("leads:get")
    assert "authorization" not in script.last.headers


def test_args_that_cannot_be_encoded_fail_before_any_request() -> None:
    script = Script(success(None))
    with pytest.raises(ValidationFailed, match=r"args\.when"):
        client_for(script).mutation("leads:put", {"when": {1, 2}})
    assert script.requests == []


@pytest.mark.parametrize("path", ["", "a:b:c", ":fn", "mod:", "has space:fn", "/abs:fn"])
def test_malformed_function_paths_are_refused(path: str) -> None:
    script = Script(success(None))
    with pytest.raises(ValidationFailed):
        client_for(script).query(path)
    assert script.requests == []


# --- replies ------------------------------------------------------------------


def test_success_values_are_decoded() -> None:
    script = Script(
        raw_json(
            200,
            '{"status":"success","value":{"f":1.0,"plain":3,"n":{"$integer":"/////////38="},'
            '"b":{"$bytes":"AP8="},"neg0":{"$float":"AAAAAAAAAIA="},"s":"x"}}',
        )
    )
    value = client_for(script).query("leads:get")
    expected = {"f": 1.0, "plain": 3.0, "n": 2**63 - 1, "b": b"\x00\xff", "neg0": 0.0, "s": "x"}
    assert value == expected
    assert type(value["plain"]) is float and type(value["n"]) is int
    assert str(value["neg0"]) == "-0.0"


@pytest.mark.parametrize("status", [200, 560])
def test_a_function_that_throws_is_function_failed(status: int) -> None:
    script = Script(
        httpx.Response(status, json={"status": "error", "errorMessage": "Uncaught Error: boom"})
    )
    with pytest.raises(FunctionFailed) as caught:
        client_for(script).mutation("leads:put", {"x": 1.0})
    assert str(caught.value) == "Uncaught Error: boom"
    assert caught.value.function == "leads:put"
    assert caught.value.data is None


def test_convex_error_data_is_decoded() -> None:
    script = Script(
        httpx.Response(
            200,
            json={
                "status": "error",
                "errorMessage": "Uncaught ConvexError: stale",
                "errorData": {"code": "VERSION_CONFLICT", "current": {"$integer": "BwAAAAAAAAA="}},
            },
        )
    )
    with pytest.raises(FunctionFailed) as caught:
        client_for(script).mutation("leads:upsert")
    assert caught.value.data == {"code": "VERSION_CONFLICT", "current": 7}


@pytest.mark.parametrize(
    "message",
    [
        "ArgumentValidationError: Object is missing the required field `email`.",
        "[Request ID: 7f3a] Server Error\nArgumentValidationError: Value does not match validator.",
    ],
)
def test_argument_validation_errors_are_validation_failed(message: str) -> None:
    script = Script(httpx.Response(200, json={"status": "error", "errorMessage": message}))
    with pytest.raises(ValidationFailed) as caught:
        client_for(script).mutation("leads:put", {"x": 1.0})
    assert "ArgumentValidationError" in str(caught.value)
    assert not isinstance(caught.value, FunctionFailed)


def test_an_error_that_merely_mentions_argument_validation_stays_a_function_failure() -> None:
    message = "Uncaught Error: ArgumentValidationError is what we expected"
    script = Script(httpx.Response(200, json={"status": "error", "errorMessage": message}))
    with pytest.raises(FunctionFailed):
        client_for(script).mutation("leads:put")


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "BadJsonBody", ValidationFailed),
        (401, "BadDeployKey", PermissionDenied),
        (403, "StreamingExportNotEnabled", StreamingExportNotEnabled),
        (403, "Forbidden", PermissionDenied),
        (404, "NotFound", ConfigurationError),
        (409, "OptimisticConcurrencyControlFailure", Conflict),
        (500, "InternalServerError", StoreUnavailable),
        (502, "BadGateway", StoreUnavailable),
    ],
)
def test_request_level_failures_map_to_the_error_tree(
    status: int, code: str, error: type[MigrationKitError]
) -> None:
    script = Script(failure(status, code, "the server explains"))
    with pytest.raises(MigrationKitError) as caught:
        client_for(script).mutation("leads:put")
    assert type(caught.value) is error
    assert code in str(caught.value)
    assert "the server explains" in str(caught.value)
    assert len(script.requests) == 1  # none of these is retried


def test_permission_denied_on_export_keeps_the_code() -> None:
    script = Script(failure(403, "StreamingExportNotEnabled", "needs the Pro plan"))
    with pytest.raises(PermissionDenied, match="StreamingExportNotEnabled"):
        client_for(script).list_snapshot()


def test_streaming_export_not_enabled_says_what_to_use_instead() -> None:
    script = Script(failure(403, "StreamingExportNotEnabled", "needs the Pro plan"))
    with pytest.raises(StreamingExportNotEnabled) as caught:
        client_for(script).document_deltas(cursor=1)
    message = str(caught.value)
    assert "migrationkit import" in message
    assert "outbox" in message


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, text="<html>hello</html>", headers={"content-type": "text/html"}),
        httpx.Response(500, text="<html>oops</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=b"", headers={"content-type": "application/json"}),
        raw_json(200, "NaN"),
    ],
)
def test_a_reply_that_is_not_json_is_a_bad_reply(reply: httpx.Response) -> None:
    with pytest.raises(BadReply) as caught:
        client_for(Script(reply)).query("leads:get")
    text = str(caught.value)
    assert f"HTTP {reply.status_code}" in text
    assert reply.headers["content-type"] in text
    assert "hello" not in text and "oops" not in text


@pytest.mark.parametrize(
    "payload",
    [
        {"value": 1.0},
        {"status": "success"},
        {"status": "weird", "value": 1.0},
        {"status": "error"},
        [1.0],
    ],
)
def test_a_function_reply_of_the_wrong_shape_is_a_bad_reply(payload: Any) -> None:
    with pytest.raises(BadReply, match=r"HTTP 200 .*application/json"):
        client_for(Script(httpx.Response(200, json=payload))).query("leads:get")


def test_an_error_status_without_code_and_message_is_a_bad_reply() -> None:
    with pytest.raises(BadReply, match="HTTP 400"):
        client_for(Script(httpx.Response(400, json={"error": "?"}))).query("leads:get")


def test_a_malformed_value_in_a_success_is_a_bad_reply() -> None:
    script = Script(success({"rows": [{"$set": []}]}))
    with pytest.raises(BadReply, match=r"value\.rows\[0\]"):
        client_for(script).query("leads:get")


def test_log_lines_reach_the_callback_and_the_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, list[str]]] = []
    script = Script(success(1.0, logLines=["[LOG] 'hello'", f"[LOG] key {KEY}"]))
    client = client_for(script, on_log_lines=lambda fn, lines: seen.append((fn, list(lines))))
    with caplog.at_level(logging.DEBUG, logger="migrationkit"):
        assert client.query("leads:get") == 1.0
    assert seen == [("leads:get", ["[LOG] 'hello'", "[LOG] key <redacted>"])]
    assert "[LOG] 'hello'" in caplog.text
    assert TOKEN not in caplog.text


# --- retries ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["query", "mutation", "action"])
def test_429_and_503_are_retried_for_every_call(kind: str) -> None:
    clock = Clock()
    script = Script(failure(429, "RateLimited"), failure(503, "Overloaded"), success(5.0))
    assert getattr(client_for(script, clock=clock), kind)("leads:put") == 5.0
    assert len(script.requests) == 3
    # full jitter (0.5 here) of 50 ms, then of 100 ms
    assert clock.sleeps == pytest.approx([0.025, 0.05])


def test_backoff_doubles_up_to_the_cap() -> None:
    clock = Clock()
    script = Script(*[failure(503, "Overloaded")] * 9, success(1.0))
    client = client_for(script, clock=clock, jitter=1.0, retry_deadline=60.0)
    assert client.query("leads:get") == 1.0
    assert clock.sleeps == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])


def test_retries_stop_at_the_deadline_and_say_how_many_attempts() -> None:
    clock = Clock()
    script = Script(failure(503, "Overloaded", "busy"))
    client = client_for(script, clock=clock, jitter=1.0, retry_deadline=1.0)
    with pytest.raises(StoreUnavailable) as caught:
        client.mutation("leads:put")
    # waits 0.05 + 0.1 + 0.2 + 0.4 = 0.75 s; the next (0.8 s) would pass 1 s
    assert len(script.requests) == 5
    assert type(caught.value) is StoreUnavailable
    assert "5 attempt" in str(caught.value)
    assert "Overloaded" in str(caught.value)
    assert sum(clock.sleeps) <= 1.0


def test_a_zero_deadline_means_one_attempt() -> None:
    script = Script(failure(429, "RateLimited"))
    with pytest.raises(StoreUnavailable, match="1 attempt"):
        client_for(script, retry_deadline=0).query("leads:get")
    assert len(script.requests) == 1


def test_retry_after_is_honoured() -> None:
    clock = Clock()
    script = Script(failure(429, "RateLimited", **{"Retry-After": "1.5"}), success(1.0))
    assert client_for(script, clock=clock).query("leads:get") == 1.0
    assert clock.sleeps == [1.5]


def test_a_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    clock = Clock()
    script = Script(failure(429, "RateLimited", **{"Retry-After": "120"}), success(1.0))
    with pytest.raises(StoreUnavailable, match="asked to wait 120s"):
        client_for(script, clock=clock, retry_deadline=30).query("leads:get")
    assert clock.sleeps == []
    assert len(script.requests) == 1


def test_an_http_date_retry_after_falls_back_to_backoff() -> None:
    clock = Clock()
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    script = Script(failure(503, "Overloaded", **{"Retry-After": date}), success(1.0))
    assert client_for(script, clock=clock).query("leads:get") == 1.0
    assert clock.sleeps == pytest.approx([0.025])


@pytest.mark.parametrize("fault", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")])
def test_connection_failures_before_sending_are_retried_even_for_mutations(
    fault: Exception,
) -> None:
    script = Script(fault, success(1.0))
    assert client_for(script).mutation("leads:put") == 1.0
    assert len(script.requests) == 2


def test_connection_failures_until_the_deadline_name_the_attempts() -> None:
    script = Script(httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(StoreUnavailable) as caught:
        client_for(script, jitter=1.0, retry_deadline=1.0).query("leads:get")
    assert "5 attempt" in str(caught.value)
    assert "Connection refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    "fault",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
    ],
)
@pytest.mark.parametrize("call", ["mutation", "action", "run"])
def test_unknown_outcomes_are_not_retried_for_plain_writes(fault: Exception, call: str) -> None:
    script = Script(fault, success(1.0))
    with pytest.raises(StoreUnavailable, match="outcome is unknown") as caught:
        getattr(client_for(script), call)("leads:put", {"x": 1.0})
    assert len(script.requests) == 1
    assert caught.value.__cause__ is fault


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.query("leads:get"),
        lambda c: c.mutation("leads:put", idempotent=True),
        lambda c: c.action("leads:sync", idempotent=True),
        lambda c: c.run("leads:put", idempotent=True),
    ],
    ids=["query", "idempotent mutation", "idempotent action", "idempotent run"],
)
def test_unknown_outcomes_are_retried_for_safe_calls(call: Callable[[ConvexClient], Any]) -> None:
    script = Script(httpx.ReadTimeout("timed out"), success(1.0))
    assert call(client_for(script)) == 1.0
    assert len(script.requests) == 2


def test_unknown_outcomes_are_retried_for_export_reads() -> None:
    page = raw_json(200, fill('{"values":[],"cursor":<big>,"hasMore":false}', big=BIG))
    script = Script(httpx.RemoteProtocolError("dropped"), page)
    assert client_for(script).document_deltas(cursor=1).cursor == BIG
    script = Script(httpx.ReadTimeout("slow"), httpx.Response(200, text="1.2.3"))
    assert client_for(script).version() == "1.2.3"


# --- the admin key stays secret -----------------------------------------------


def _echo_auth(status: int, shape: str) -> Callable[[httpx.Request], httpx.Response]:
    """A server that (badly) echoes the Authorization header into its reply."""

    def reply(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        if shape == "function":
            return httpx.Response(status, json={"status": "error", "errorMessage": f"bad {auth}"})
        if shape == "argument":
            body = {"status": "error", "errorMessage": f"ArgumentValidationError: {auth}"}
            return httpx.Response(status, json=body)
        if shape == "token-only":
            return httpx.Response(status, json={"code": "BadDeployKey", "message": TOKEN})
        return httpx.Response(status, json={"code": f"Code{auth}", "message": f"saw {auth}"})

    return reply


@pytest.mark.parametrize(
    ("status", "shape"),
    [
        (200, "function"),
        (200, "argument"),
        (400, "request"),
        (401, "request"),
        (401, "token-only"),
        (403, "request"),
        (404, "request"),
        (409, "request"),
        (500, "request"),
        (503, "request"),
    ],
)
def test_the_admin_key_never_appears_in_errors(
    status: int, shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(Script(_echo_auth(status, shape)), retry_deadline=0.1)
    with (
        caplog.at_level(logging.DEBUG, logger="migrationkit"),
        pytest.raises(MigrationKitError) as caught,
    ):
        client.mutation("leads:put", {"x": 1.0})
    for text in (str(caught.value), repr(caught.value), caplog.text):
        assert KEY not in text and TOKEN not in text


@pytest.mark.parametrize(
    "fault", [httpx.ConnectError(f"refused {KEY}"), httpx.ReadTimeout(f"slow {KEY}")]
)
def test_the_admin_key_never_appears_in_transport_errors(fault: Exception) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        client_for(Script(fault), retry_deadline=0).mutation("leads:put")
    assert TOKEN not in str(caught.value)


def test_the_admin_key_never_appears_in_the_client_repr() -> None:
    client = client_for(Script(success(None)))
    for text in (repr(client), str(client), f"{client}"):
        assert TOKEN not in text
        assert URL in text


@pytest.mark.parametrize("key", ["", "   ", f"bad key {TOKEN}", f"{TOKEN}\r\nX-Evil: 1"])
def test_a_malformed_key_is_refused_without_being_echoed(key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ConvexClient(URL, admin_key=key)
    assert TOKEN not in str(caught.value)


# --- streaming export ---------------------------------------------------------


SNAPSHOT_PAGE = (
    '{"values":[{"_component":"","_table":"leads","_ts":<ts>,"_id":"k57abc",'
    '"_creationTime":1712345678901.25,"email":"a@example.com",'
    '"version":{"$integer":"AwAAAAAAAAA="},"score":2.0,"_newMeta":"kept"}],'
    '"snapshot":<snapshot>,"cursor":"opaque:cursor/1","hasMore":true}'
)


def fill(template: str, **numbers: int) -> str:
    """Put bare JSON integers into a hand-written reply."""
    for name, number in numbers.items():
        template = template.replace(f"<{name}>", str(number))
    return template


def test_list_snapshot_sends_its_params_and_keeps_big_timestamps_exact() -> None:
    script = Script(raw_json(200, fill(SNAPSHOT_PAGE, ts=BIG, snapshot=BIG + 2)))
    page = client_for(script).list_snapshot(
        snapshot=BIG + 2,
        cursor="opaque:cursor/0",
        table_name="leads",
        extra_params={"component": "billing"},
    )
    request = script.last
    assert request.method == "GET"
    assert request.url.path == "/api/list_snapshot"
    assert dict(request.url.params) == {
        "format": "convex_encoded_json",
        "snapshot": str(BIG + 2),
        "cursor": "opaque:cursor/0",
        "tableName": "leads",
        "component": "billing",
    }
    assert request.headers["authorization"] == f"Convex {KEY}"

    assert isinstance(page, SnapshotPage)
    assert page.snapshot == BIG + 2 and type(page.snapshot) is int
    assert page.cursor == "opaque:cursor/1"
    assert page.has_more is True
    (row,) = page.values
    assert row["_ts"] == BIG and type(row["_ts"]) is int
    assert row["_creationTime"] == 1712345678901.25
    assert row["version"] == 3 and type(row["version"]) is int
    assert row["score"] == 2.0 and type(row["score"]) is float
    assert (row["_id"], row["_table"], row["_component"], row["_newMeta"]) == (
        "k57abc",
        "leads",
        "",
        "kept",
    )


def test_the_first_snapshot_page_sends_only_the_format() -> None:
    script = Script(raw_json(200, '{"values":[],"snapshot":5,"cursor":null,"hasMore":false}'))
    page = client_for(script).list_snapshot()
    assert dict(script.last.url.params) == {"format": "convex_encoded_json"}
    assert page == SnapshotPage(values=[], snapshot=5, cursor=None, has_more=False)


def test_document_deltas_sends_its_params_and_keeps_metadata() -> None:
    text = fill(
        '{"values":['
        '{"_component":"","_table":"leads","_ts":<ts1>,"_deleted":false,"_id":"k1",'
        '"_creationTime":1.5,"n":{"$integer":"AQAAAAAAAAA="}},'
        '{"_component":"","_table":"leads","_ts":<ts2>,"_deleted":true,"_id":"k2"}'
        '],"cursor":<cursor>,"hasMore":false}',
        ts1=BIG,
        ts2=BIG + 1,
        cursor=BIG + 1,
    )
    script = Script(raw_json(200, text))
    page = client_for(script).document_deltas(cursor=BIG - 1, table_name="leads")

    assert script.last.method == "GET"
    assert script.last.url.path == "/api/document_deltas"
    assert dict(script.last.url.params) == {
        "format": "convex_encoded_json",
        "cursor": str(BIG - 1),
        "tableName": "leads",
    }
    assert isinstance(page, DeltaPage)
    assert page.cursor == BIG + 1 and page.has_more is False
    live, deleted = page.values
    assert live == {
        "_component": "",
        "_table": "leads",
        "_ts": BIG,
        "_deleted": False,
        "_id": "k1",
        "_creationTime": 1.5,
        "n": 1,
    }
    assert deleted == {
        "_component": "",
        "_table": "leads",
        "_ts": BIG + 1,
        "_deleted": True,
        "_id": "k2",
    }


def test_an_expired_delta_cursor_asks_for_a_resync() -> None:
    script = Script(failure(400, "InvalidWindowToReadDocuments", "Timestamp too old"))
    with pytest.raises(ResyncRequired) as caught:
        client_for(script).document_deltas(cursor=1)
    assert "full resync" in str(caught.value)
    assert "InvalidWindowToReadDocuments" in str(caught.value)
    assert len(script.requests) == 1


def test_an_expired_snapshot_asks_for_a_resync() -> None:
    script = Script(failure(400, "SnapshotTooOld", "Snapshot too old"))
    with pytest.raises(ResyncRequired, match="full resync"):
        client_for(script).list_snapshot(snapshot=1, cursor="c")


@pytest.mark.parametrize(
    "text",
    [
        '{"values":[],"snapshot":1.5e18,"cursor":null,"hasMore":false}',
        '{"values":[],"snapshot":"5","cursor":null,"hasMore":false}',
        '{"values":[],"snapshot":5,"cursor":7,"hasMore":false}',
        '{"values":[],"snapshot":5,"cursor":null}',
        '{"values":{},"snapshot":5,"cursor":null,"hasMore":false}',
        '{"values":[{"_ts":1.0,"_id":"a"}],"snapshot":5,"cursor":null,"hasMore":false}',
        '{"values":[{"_ts":1}],"snapshot":5,"cursor":null,"hasMore":false}',
        '{"values":[{"_ts":1,"_id":"a","x":{"$set":[]}}],"snapshot":5,"cursor":null,"hasMore":false}',
    ],
)
def test_snapshot_pages_of_the_wrong_shape_are_bad_replies(text: str) -> None:
    with pytest.raises(BadReply):
        client_for(Script(raw_json(200, text))).list_snapshot()


def test_a_delta_row_without_deleted_flag_is_a_bad_reply() -> None:
    text = '{"values":[{"_ts":1,"_id":"a"}],"cursor":2,"hasMore":false}'
    with pytest.raises(BadReply, match="_deleted"):
        client_for(Script(raw_json(200, text))).document_deltas(cursor=1)


def test_extra_params_may_not_override_managed_ones() -> None:
    script = Script(raw_json(200, "{}"))
    with pytest.raises(ValidationFailed, match="format"):
        client_for(script).document_deltas(cursor=1, extra_params={"format": "json"})
    assert script.requests == []


@pytest.mark.parametrize("cursor", [-1, True, 1.5])
def test_a_delta_cursor_must_be_a_non_negative_int(cursor: Any) -> None:
    with pytest.raises(ValidationFailed):
        client_for(Script(raw_json(200, "{}"))).document_deltas(cursor=cursor)


# --- deployment endpoints -----------------------------------------------------


def test_version_is_a_plain_get() -> None:
    script = Script(httpx.Response(200, text="1.29.0\n"))
    assert client_for(script).version() == "1.29.0"
    assert script.last.method == "GET"
    assert str(script.last.url) == f"{URL}/version"


def test_json_schemas_asks_for_delta_schemas_in_json() -> None:
    schemas = {"leads": {"type": "object", "properties": {"_ts": {"type": "integer"}}}}
    script = Script(httpx.Response(200, json=schemas))
    assert client_for(script).json_schemas() == schemas
    assert script.last.method == "GET"
    assert script.last.url.path == "/api/json_schemas"
    assert dict(script.last.url.params) == {"deltaSchema": "true", "format": "json"}


# --- configuration and lifecycle ----------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "happy-otter-123.convex.cloud",
        "ftp://happy-otter-123.convex.cloud",
        "https://",
        "https://user:secretpw@host.example",
        "https://host.example/?x=1",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ConvexClient(url)
    assert "secretpw" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://happy-otter-123.convex.cloud/", "https://happy-otter-123.convex.cloud"),
        ("http://127.0.0.1:3210", "http://127.0.0.1:3210"),
        ("https://example.com/convex/", "https://example.com/convex"),
    ],
)
def test_good_urls_are_normalised(url: str, expected: str) -> None:
    script = Script(success(None))
    client = ConvexClient(url, http=httpx.Client(transport=httpx.MockTransport(script)))
    assert client.url == expected
    client.query("a:b")
    assert str(script.last.url) == f"{expected}/api/query"


@pytest.fixture
def own_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[httpx.Client]]:
    """Capture the httpx.Client a ConvexClient makes for itself."""
    made: list[httpx.Client] = []
    real = httpx.Client

    def spy(*args: Any, **kwargs: Any) -> httpx.Client:
        client = real(*args, **kwargs)
        made.append(client)
        return client

    monkeypatch.setattr(httpx, "Client", spy)
    yield made


def test_a_client_closes_the_http_client_it_made(own_http: list[httpx.Client]) -> None:
    with ConvexClient(URL, timeout=3.0):
        pass
    (made,) = own_http
    assert made.is_closed
    assert made.timeout == httpx.Timeout(3.0)


def test_an_injected_http_client_stays_open() -> None:
    http = httpx.Client(transport=httpx.MockTransport(Script(success(None))))
    with ConvexClient(URL, http=http) as client:
        client.query("a:b")
    assert not http.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        client.query("a:b")
