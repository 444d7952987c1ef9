"""Convex adapter: an httpx client for Convex's HTTP API and its value codec.

Usage::

    from migrationkit.adapters.convex import ConvexClient

    with ConvexClient("https://happy-otter-123.convex.cloud", admin_key=key) as convex:
        lead = convex.query("leads:get", {"workspaceId": "acme", "id": lead_id})
        page = convex.list_snapshot(table_name="leads")
"""

from migrationkit.adapters.convex.client import FORMAT, ConvexClient, DeltaPage, SnapshotPage
from migrationkit.adapters.convex.codec import (
    decode_json_format,
    decode_value,
    encode_args,
    encode_value,
)
from migrationkit.adapters.convex.repository import ConvexLeadRepository, ConvexRepository
from migrationkit.adapters.convex.streaming_export import StreamingExport

__all__ = [
    "FORMAT",
    "ConvexClient",
    "ConvexLeadRepository",
    "ConvexRepository",
    "DeltaPage",
    "SnapshotPage",
    "StreamingExport",
    "decode_json_format",
    "decode_value",
    "encode_args",
    "encode_value",
]
