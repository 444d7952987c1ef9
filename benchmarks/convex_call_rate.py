"""Sequential call rates through the Convex adapter on the local backend.

Each figure is measured in the same run as a baseline: the same number of
bare HTTP round trips (``GET /version``) on the same connection, so the
ratio shows what a function call costs over the transport itself.

    python benchmarks/convex_call_rate.py [--calls 500]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import httpx

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.adapters.convex.repository import ConvexLeadRepository
from migrationkit.testing.convex_backend import LocalConvexBackend


def rate(fn: Callable[[int], object], calls: int) -> float:
    start = time.perf_counter()
    for n in range(calls):
        fn(n)
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    with LocalConvexBackend() as backend, httpx.Client() as http:
        client = ConvexClient(backend.url, admin_key=backend.admin_key, http=http)
        repo = ConvexLeadRepository(client)
        ids: list[str] = []
        results = {
            "http_round_trip": rate(lambda n: http.get(f"{backend.url}/version"), args.calls),
            "upsert_new": rate(
                lambda n: ids.append(repo.upsert("bench", {"email": f"b{n}@example.com"})),
                args.calls,
            ),
            "upsert_existing": rate(
                lambda n: repo.upsert("bench", {"id": ids[n], "email": f"c{n}@example.com"}),
                args.calls,
            ),
            "get": rate(lambda n: repo.get("bench", ids[n]), args.calls),
        }
    base = results["http_round_trip"]
    print(f"{'call':<18}{'calls/s':>10}{'vs bare HTTP':>14}")
    for name, value in results.items():
        print(f"{name:<18}{value:>10.0f}{value / base:>14.2f}")
    print(json.dumps({k: round(v) for k, v in results.items()}))


if __name__ == "__main__":
    main()
