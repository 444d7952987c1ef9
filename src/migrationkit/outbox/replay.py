"""Replaying dead letters through the worker's sink, after their cause is fixed.

Each dead letter goes through the sink on its own; the sink's inbox and
version guard make a replay of something already applied a no-op, so a
dead letter is applied at most once however often it is replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

from pydantic import ValidationError

from migrationkit.bootstrap import build_pipeline
from migrationkit.errors import ConfigurationError, MigrationKitError
from migrationkit.outbox.settings import WorkerSettings, settings_errors


def replay_dead_letters(
    event_ids: list[str] | None, progress: Callable[[int, int], None] | None = None
) -> tuple[int, list[tuple[str, str]]]:
    """Replay the named dead letters (all pending ones when ``None``).

    Returns how many were applied and ``(event_id, error)`` for those that
    still fail; those stay in the table. ``progress(done, total)`` hears of
    each one tried.
    """
    try:
        settings = WorkerSettings()  # from the environment
    except ValidationError as exc:
        raise ConfigurationError("; ".join(settings_errors(exc))) from None
    with ExitStack() as stack:
        pipeline = build_pipeline(settings, stack)
        store, sink = pipeline.dead_letters, pipeline.sink
        if store is None or sink is None:
            raise ConfigurationError(
                "the mirror tail keeps no dead letters: MIGRATIONKIT_SOURCE=convex_mirror has"
                " nothing to replay"
            )
        if event_ids is None:
            letters = store.list(limit=10_000)
        else:
            found = [store.get(event_id) for event_id in event_ids]
            missing = [e for e, letter in zip(event_ids, found, strict=True) if letter is None]
            if missing:
                raise ConfigurationError(f"no dead letter with id {', '.join(missing)}")
            letters = [letter for letter in found if letter is not None]
        replayed: list[str] = []
        failed: list[tuple[str, str]] = []
        for done, letter in enumerate(letters, start=1):
            try:
                sink.apply([letter.change])
            except MigrationKitError as exc:
                failed.append((letter.event_id, str(exc)))
            else:
                replayed.append(letter.event_id)
            if progress is not None:
                progress(done, len(letters))
        if replayed:
            store.mark_replayed(replayed)
    return len(replayed), failed
