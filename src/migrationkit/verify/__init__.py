"""Verification: PostgreSQL proved equal to Convex, table by table and per workspace.

See docs/verify.md. ``verify(...)`` in ``runner`` is the entry point; the
results go to ``verify_runs`` and the cutover gate reads them.
"""
