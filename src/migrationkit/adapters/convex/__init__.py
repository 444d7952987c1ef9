"""Convex adapter: an httpx client for Convex's HTTP API and its value codec.

Usage::

    from migrationkit.adapters.convex import ConvexClient

    with ConvexClient("https://happy-otter-123.convex.cloud", admin_key=key) as convex:
        lead = convex.query("leads:get", {"id": lead_id})
        page = convex.list_snapshot(table_name="leads")
"""

from migrationkit.adapters.convex.client import FORMAT, ConvexClient, DeltaPage, SnapshotPage
from migrationkit.adapters.convex.codec import (
    decode_json_format,
    decode_value,
    encode_args,
    encode_value,
)

__all__ = [
    "FORMAT",
    "ConvexClient",
    "DeltaPage",
    "SnapshotPage",
    "decode_json_format",
    "decode_value",
    "encode_args",
    "encode_value",
]
