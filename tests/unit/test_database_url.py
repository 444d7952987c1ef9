"""Database URLs: accepted spellings, clear refusals, masked passwords."""

from __future__ import annotations

import pytest

from migrationkit.adapters.postgres import PostgresLeadRepository, make_engine
from migrationkit.adapters.postgres.database_url import normalize_database_url, safe_url
from migrationkit.errors import ConfigurationError, StoreUnavailable


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://u@localhost/db",
        "postgresql://u:p@localhost:5433/db",
        "postgresql+psycopg://u@localhost/db?sslmode=require",
        "postgresql://postgres:@/db?host=/tmp/socketdir",
    ],
)
def test_accepted_spellings_use_psycopg3(raw: str) -> None:
    assert normalize_database_url(raw).drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("not a url", "malformed"),
        ("mysql://u:pw@h/db", "not supported"),
        ("postgresql+asyncpg://u@h/db", "not supported"),
        ("postgresql://u:pw@h:5432", "names no database"),
    ],
)
def test_bad_urls_are_refused_clearly(raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        normalize_database_url(raw)
    assert "pw" not in str(caught.value).replace("postgresql", "")


def test_safe_url_masks_the_password() -> None:
    assert "hunter2" not in safe_url("postgresql://u:hunter2@h/db")


def test_unreachable_server_is_store_unavailable_without_user_data() -> None:
    engine = make_engine(
        "postgresql://u:hunter2@127.0.0.1:1/db", connect_args={"connect_timeout": 2}
    )
    repo = PostgresLeadRepository(engine)
    with pytest.raises(StoreUnavailable) as caught:
        repo.upsert("w", {"email": "private-person@example.com"})
    text = str(caught.value)
    assert "private-person" not in text and "hunter2" not in text
    assert "127.0.0.1" in text
