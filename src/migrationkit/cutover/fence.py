"""The write fence that makes switching the authority safe under traffic.

Processes follow a stage change within their cache's lifetime, so for a
moment some still write to the old authority while others write to the
new one. Unfenced, one entity could then take the same version in both
stores with different contents, and the version guard would keep a
different one in each. The fence makes each store refuse writes while the
other is authoritative:

* Convex: the generated write functions read a ``cutoverFence`` document
  inside their mutation and refuse (``StageMoved``) while PostgreSQL is the
  authority for the scope. In an existing app that adopted the outbox
  wrapper (``codegen app-outbox``), the wrapper reads ``migrationkitFence``
  the same way before each write to a tracked table.
* PostgreSQL: the router's writes take a shared advisory lock and check the
  stage inside their transaction; a stage change takes the same lock
  exclusively, so a write either commits before the change (and is in the
  outbox the switch waits for) or sees the new stage and is refused.

The switch is then: fence the old authority, wait for its outbox to drain
into the new one, move the stage (``CutoverControl`` does this). A refused
write is retried by the router once it re-reads the stage: a short pause,
never a failure.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.cutover.stages import Store
from migrationkit.cutover.store import FENCE_LOCK_KEY, PostgresStageStore, resolve
from migrationkit.errors import StageMoved


class PostgresFence:
    def __init__(self, engine: Engine) -> None:
        self.stages = PostgresStageStore(engine)

    def guard(self, entity: str, workspace: str) -> Callable[[Connection], None]:
        def check(conn: Connection) -> None:
            conn.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": FENCE_LOCK_KEY})
            stage = resolve(self.stages.snapshot(conn), entity, workspace)
            if stage.authority is not Store.POSTGRES:
                raise StageMoved(
                    f"PostgreSQL is fenced off for {entity} in {workspace}: the stage is {stage}"
                )

        return check


#: The fence mutation of the kit's generated functions, and of an app's outbox.
KIT_SET_FENCE = "outbox:setFence"
APP_SET_FENCE = "migrationkit/outbox:setFence"


class ConvexFence:
    def __init__(self, client: ConvexClient, function: str = KIT_SET_FENCE) -> None:
        self.client = client
        self.function = function

    def set(self, authority: Store, *, entity: str, workspace: str) -> None:
        self.client.mutation(
            self.function,
            {"entity": entity, "workspaceId": workspace, "authority": authority.value},
            idempotent=True,  # setting the same fence twice changes nothing
        )
