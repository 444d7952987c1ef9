"""``migrationkit doctor``: wiring faults found before anything runs."""
