"""migrationkit: move a product from Convex to PostgreSQL with no downtime.

The public surface is re-exported here; submodules prefixed with ``_`` and
anything not in ``__all__`` may change without notice.
"""

from migrationkit.domain import Entity, Lead, ListQuery, OutboxEvent, Page, Segment, SegmentQuery
from migrationkit.errors import (
    ConfigurationError,
    Conflict,
    InvalidCursor,
    MigrationKitError,
    NotFound,
    PermissionDenied,
    StoreUnavailable,
    UnknownEntity,
    ValidationFailed,
)
from migrationkit.ports import LeadRepository, Repository

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "Conflict",
    "Entity",
    "InvalidCursor",
    "Lead",
    "LeadRepository",
    "ListQuery",
    "MigrationKitError",
    "NotFound",
    "OutboxEvent",
    "Page",
    "PermissionDenied",
    "Repository",
    "Segment",
    "SegmentQuery",
    "StoreUnavailable",
    "UnknownEntity",
    "ValidationFailed",
    "__version__",
]
