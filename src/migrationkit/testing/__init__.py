"""Testing support: the repository contract suite and real-database fixtures.

Run the suite against your own adapter::

    from migrationkit.testing import LeadRepositoryContract

    class TestMyRepository(LeadRepositoryContract):
        @pytest.fixture
        def lead_harness(self):
            return MyHarness()   # has .name, .repository, .outbox_events()

The suite needs the ``test`` extra (pytest, hypothesis): ``pip install
migrationkit[test]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migrationkit.testing.contract import LeadRepositoryContract
    from migrationkit.testing.harness import LeadHarness, MemoryHarness, PostgresHarness

__all__ = ["LeadHarness", "LeadRepositoryContract", "MemoryHarness", "PostgresHarness"]


def __getattr__(name: str) -> Any:
    # Lazy, so loading the pytest plugin does not import hypothesis.
    if name == "LeadRepositoryContract":
        from migrationkit.testing.contract import LeadRepositoryContract

        return LeadRepositoryContract
    if name in ("LeadHarness", "MemoryHarness", "PostgresHarness"):
        from migrationkit.testing import harness

        return getattr(harness, name)
    raise AttributeError(name)
