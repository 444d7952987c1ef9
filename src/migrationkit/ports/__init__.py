"""Ports: the interfaces the core depends on; adapters implement them."""

from migrationkit.ports.clock import Clock
from migrationkit.ports.repository import LeadRepository, Repository

__all__ = ["Clock", "LeadRepository", "Repository"]
