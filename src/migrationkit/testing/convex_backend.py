"""Start and stop the local Convex backend (``convex/localbackend``) for tests
and the demo.

It is a Node process serving the kit's real Convex functions over Convex's
HTTP API; see ``convex/README.md`` for how it differs from a deployment.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from migrationkit.errors import ConfigurationError, StoreUnavailable

CONVEX_DIR_ENV = "MIGRATIONKIT_CONVEX_DIR"
_START_TIMEOUT = 60.0


def convex_dir() -> Path:
    """The Convex project: ``$MIGRATIONKIT_CONVEX_DIR`` or this checkout's ``convex/``."""
    given = os.environ.get(CONVEX_DIR_ENV)
    root = Path(given) if given else Path(__file__).resolve().parents[3] / "convex"
    if not (root / "localbackend" / "server.ts").is_file():
        raise ConfigurationError(
            f"no local Convex backend at {root}: set {CONVEX_DIR_ENV} to the kit's convex/ folder"
        )
    return root


def ensure_node_modules(root: Path) -> None:
    """``npm ci`` once, from the committed lockfile, if dependencies are missing."""
    if (root / "node_modules" / "convex-test").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigurationError("npm is not installed: the local Convex backend needs Node 20")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=root, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ConfigurationError(f"npm ci failed in {root}:\n{result.stderr[-2000:]}")


class LocalConvexBackend:
    """One backend process on a free port, with its own admin key."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        retention_ms: int | None = None,
        functions_dir: Path | None = None,
    ) -> None:
        self.root = root or convex_dir()
        self.admin_key = "local|" + secrets.token_hex(16)
        self.retention_ms = retention_ms
        self.functions_dir = functions_dir
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    def start(self) -> LocalConvexBackend:
        ensure_node_modules(self.root)
        node = shutil.which("node")
        if node is None:
            raise ConfigurationError("node is not installed: the local backend needs Node 20")
        command = [node, "--import", "tsx", "localbackend/server.ts", "--port", "0"]
        if self.retention_ms is not None:
            command += ["--retention-ms", str(self.retention_ms)]
        if self.functions_dir is not None:
            command += ["--functions", str(Path(self.functions_dir).resolve())]
        # stderr goes to a file, not a pipe nobody reads: a full pipe would
        # block the server, and the file tells what went wrong at start-up.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115  closed in stop()
            mode="w+", prefix="convex-backend-", suffix=".log", delete=False
        )
        self._process = subprocess.Popen(
            command,
            cwd=self.root,
            env=os.environ | {"CONVEX_ADMIN_KEY": self.admin_key},
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.url = f"http://127.0.0.1:{self._read_port()}"
        return self

    def _read_port(self) -> int:
        found: list[int] = []

        def read() -> None:
            assert self._process is not None and self._process.stdout is not None
            for line in self._process.stdout:
                try:
                    found.append(int(json.loads(line)["port"]))
                    return
                except (ValueError, KeyError, TypeError):
                    continue

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(_START_TIMEOUT)
        if not found:
            log = self.log_tail()
            self.stop()
            raise StoreUnavailable(
                f"the local Convex backend did not start within {_START_TIMEOUT:.0f}s:\n{log}"
            )
        return found[0]

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the backend's stderr."""
        if self._log is None:
            return ""
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def _test_endpoint(self, name: str, body: dict[str, object] | None = None) -> None:
        response = httpx.post(
            f"{self.url}/_test/{name}",
            headers={"Authorization": f"Convex {self.admin_key}"},
            json=body or {},
            timeout=30,
        )
        response.raise_for_status()

    def reset(self) -> None:
        """Empty the database and the commit log (a test-only endpoint)."""
        self._test_endpoint("reset")

    def set_retention(self, retention_ms: int) -> None:
        """How far back document_deltas may start (a test-only endpoint)."""
        self._test_endpoint("retention", {"retentionMs": retention_ms})

    def fail_next_mutation(self) -> None:
        """Fault injection: the next mutation fails after its writes, before commit."""
        self._test_endpoint("fail_next_mutation")

    def set_streaming_export(self, enabled: bool) -> None:
        """Off: the streaming-export endpoints answer 403 StreamingExportNotEnabled."""
        self._test_endpoint("streaming_export", {"enabled": enabled})

    def refuse_json_schemas(self, code: str | None, table: str | None = None) -> None:
        """json_schemas answers 400 ``code`` (naming ``table``), as the real backend
        does for a table with no object shape; ``None`` answers again (a test-only endpoint)."""
        body: dict[str, object] = {}
        if code is not None:
            body["code"] = code
            if table is not None:
                body["table"] = table
        self._test_endpoint("json_schemas_error", body)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None
        if self._log is not None:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    def __enter__(self) -> LocalConvexBackend:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
