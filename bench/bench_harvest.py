"""Harvesting benchmark: OAI-PMH parse speed, and the rate limiter under 8 concurrent workers.

1. Records/s parsing arXiv OAI-PMH pages (real recorded records; a 999-record page is
   built by repeating the nine recorded records), against the network's ceiling of one
   page (<= 1000 records) per 3 s.
2. Eight worker *processes*, each with its own PoliteHttp (as Airflow tasks would have),
   share one lock dir and hit the local replay server; request times are taken at the
   server. Baseline: the same workers without a shared limiter (separate lock dirs).
   The bench uses a 0.3 s interval to stay short; production uses 3 s
   (``figalign.clients.http.DEFAULT_INTERVAL_S``) — the mechanism is the same.

    .venv/bin/python bench/bench_harvest.py
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from figalign.clients.http import DEFAULT_INTERVAL_S, PoliteHttp  # noqa: E402
from figalign.sources import arxiv  # noqa: E402
from figalign.sources.oaipmh import parse_page  # noqa: E402
from tests.servers.fixtures_http import GETRECORDS, LIST_PAGE, list_page, real_records  # noqa: E402
from tests.servers.replay import ReplayServer  # noqa: E402

INTERVAL = 0.3
WORKERS = 8
PER_WORKER = 3


def bench_parse(seconds: float = 2.0) -> dict:
    import re

    recs = re.findall(rb"<record>.*?</record>", LIST_PAGE.read_bytes(), re.S) + [real_records(i) for i in GETRECORDS]
    pages = {"recorded 3-record page": LIST_PAGE.read_bytes(), "999-record page": list_page(recs * 111, "t")}
    out = {}
    for label, data in pages.items():
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            n += len(arxiv.parse_page_records(parse_page(data, "ListRecords"), "https://arxiv.org"))
        out[label] = n / (time.perf_counter() - started)
    return out


def _worker(url: str, lock_dir: str, n: int) -> None:
    http = PoliteHttp(lock_dir=lock_dir, interval=INTERVAL, timeout=30)
    for _ in range(n):
        http.get(url)


def bench_limiter(shared: bool) -> dict:
    with ReplayServer() as server, tempfile.TemporaryDirectory() as tmp:
        key = server.add("/oai", LIST_PAGE.read_bytes())
        procs = [mp.get_context("fork").Process(
            target=_worker, args=(server.url + "/oai", f"{tmp}/rl" if shared else f"{tmp}/rl{i}", PER_WORKER))
            for i in range(WORKERS)]
        started = time.time()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        times = sorted(h.at for h in server.hits if h.key == key)
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {"requests": len(times), "min_gap_s": min(gaps), "mean_gap_s": sum(gaps) / len(gaps),
            "wall_s": time.time() - started, "req_per_s": len(times) / (times[-1] - times[0])}


def main() -> None:
    print("## parse")
    for label, rate in bench_parse().items():
        print(f"{label}: {rate:,.0f} records/s  (network ceiling ~{1000 / DEFAULT_INTERVAL_S:.0f} records/s)")
    print(f"## limiter: {WORKERS} processes x {PER_WORKER} requests, interval {INTERVAL}s "
          f"(production {DEFAULT_INTERVAL_S}s)")
    for shared in (False, True):
        r = bench_limiter(shared)
        label = "shared limiter" if shared else "baseline (no shared limiter)"
        print(f"{label}: {r['requests']} requests, min gap {r['min_gap_s']:.3f}s, mean gap {r['mean_gap_s']:.3f}s, "
              f"{r['req_per_s']:.2f} req/s, wall {r['wall_s']:.2f}s")


if __name__ == "__main__":
    main()
