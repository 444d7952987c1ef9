"""The contract suite, run on every adapter the plugin knows."""

from migrationkit.testing import LeadRepositoryContract


class TestLeadRepository(LeadRepositoryContract):
    pass
