"""In-memory adapter."""

from migrationkit.adapters.memory.repository import MemoryLeadRepository, MemoryRepository

__all__ = ["MemoryLeadRepository", "MemoryRepository"]
