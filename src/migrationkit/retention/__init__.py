"""Retention: the policy in ``spec/data-retention.yaml``, its dry run and its
run (archive, then delete, in short batches), and workspace deletion
(request, grace period, notices, cancel, purge in both stores).

See ``docs/retention.md``.
"""

from migrationkit.retention.policy import (
    DEFAULT_POLICY,
    RetentionPolicy,
    is_due,
    load_policy,
    parse_policy,
)

__all__ = ["DEFAULT_POLICY", "RetentionPolicy", "is_due", "load_policy", "parse_policy"]
