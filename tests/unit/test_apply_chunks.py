"""How PostgresApplier cuts a batch into chunks (no database needed)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from migrationkit.adapters.postgres.applier import chunk_bounds


@given(count=st.integers(0, 5000), size=st.integers(1, 600))
def test_chunks_cover_the_batch_in_order_none_larger_than_the_size(count: int, size: int) -> None:
    bounds = chunk_bounds(count, size)
    assert bounds[0][0] == 0
    assert bounds[-1][1] == count
    assert all(end == next_start for (_, end), (next_start, _) in itertools.pairwise(bounds))
    assert all(0 < end - start <= size for start, end in bounds if count)


def test_the_end_of_a_batch_goes_in_halves_so_the_last_wait_is_short() -> None:
    sizes = [end - start for start, end in chunk_bounds(2000, 250)]
    assert sizes == [250] * 7 + [125, 62, 63]
    assert [end - start for start, end in chunk_bounds(500, 250)] == [250, 125, 62, 63]


def test_a_small_batch_is_one_chunk() -> None:
    assert chunk_bounds(0, 250) == [(0, 0)]
    assert chunk_bounds(64, 250) == [(0, 64)]
