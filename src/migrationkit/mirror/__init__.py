"""Mirror tables: any Convex app's tables, copied into PostgreSQL as they are.

See docs/mirror-tables.md. Models are written by ``migrationkit introspect``
(or by hand) and registered with ``register_mirror``.
"""

from migrationkit.mirror.model import (
    ConvexJson,
    MirrorDocument,
    MirrorTable,
    RefersTo,
    mirror_model_for,
    register_mirror,
    registered_mirrors,
)

__all__ = [
    "ConvexJson",
    "MirrorDocument",
    "MirrorTable",
    "RefersTo",
    "mirror_model_for",
    "register_mirror",
    "registered_mirrors",
]
