"""``python -m migrationkit.worker``: the outbox worker.

Configured from the environment (see ``migrationkit.outbox.settings``).
SIGTERM and SIGINT let the batch under way finish, then exit 0. Exit codes:
2 for bad settings, 3 when the pipeline cannot go on (a feed that needs a
resync, a permission refused).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack

from pydantic import ValidationError

import migrationkit
from migrationkit.bootstrap import build_pipeline
from migrationkit.errors import MigrationKitError
from migrationkit.observability.http import MetricsServer
from migrationkit.observability.stage_metrics import StageCollector
from migrationkit.observability.verify_metrics import VerifyCollector
from migrationkit.outbox import settings as settings_module
from migrationkit.outbox.settings import WorkerSettings, settings_errors

log = logging.getLogger("migrationkit.worker")


def _settings() -> WorkerSettings | None:
    try:
        return WorkerSettings()  # filled from the environment
    except ValidationError as exc:
        for line in settings_errors(exc):
            print(f"error: {line}", file=sys.stderr)
        return None


def _parse_args(argv: Sequence[str] | None) -> None:
    """``--help`` and ``--version`` answer with no environment at all."""
    parser = argparse.ArgumentParser(
        prog="python -m migrationkit.worker",
        description="The migrationkit worker: applies changes from one store to the other."
        " Configured from the environment (or a .env file):",
        epilog=(settings_module.__doc__ or "").split("\n", 1)[1].rstrip()
        + "\n\nSIGTERM/SIGINT finish the current batch, then exit 0. Exit codes: 2 bad"
        " settings, 3 the pipeline cannot go on (resync needed, permission refused).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"migrationkit {migrationkit.__version__}"
    )
    parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One line per HTTP request would bury what the worker itself says.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = _settings()
    if settings is None:
        return 2
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("%s received: finishing the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with ExitStack() as stack:
        try:
            pipeline = build_pipeline(settings, stack)
        except MigrationKitError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        worker = pipeline.runner
        # The last verify of each table, read from PostgreSQL at scrape time.
        worker.metrics.registry.register(VerifyCollector(pipeline.engine))
        # The cutover stage of each scope, read the same way.
        worker.metrics.registry.register(StageCollector(pipeline.engine))
        if settings.metrics_port >= 0:
            server = MetricsServer(
                worker.metrics.registry,
                port=settings.metrics_port,
                host=settings.metrics_host,
                healthy=lambda: worker.seconds_since_beat() < 30 + settings.poll_max,
            ).start()
            stack.callback(server.stop)
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.port)
        log.info("worker %s: %s via %s", settings.worker_id, settings.direction, worker.name)
        try:
            worker.run(stop)
        except MigrationKitError as exc:
            log.error("stopping: %s", exc)
            return 3
    log.info("stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
