"""The migrationkit outbox inside an existing app's own Convex mutations.

``codegen`` writes a small TypeScript folder the app adopts in one place (its
``mutation`` builders wrapped); ``source`` reads that outbox into the mirror
tables; ``reverse`` writes PostgreSQL's changes back into the app's tables
for the rollback window.
"""
