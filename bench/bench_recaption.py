"""Recaption client throughput against the local OpenAI-compatible server.

The server (tests/servers/openai_server.py, its own process so it does not share the
client's GIL) answers every request after a fixed latency. With ``--in-flight`` requests
outstanding the ideal rate is in_flight / latency; we report the achieved share of it and
the client's CPU time per request, for small (~64 KB PNG, sent as is) and realistic
images (corpus figures: PNGs sent as is, large TIFFs decoded, downscaled to the pixel
budget and re-encoded). A single-threaded breakdown of the client's per-request work
(image encode, request build with base64, JSON serialisation) says where the time goes.
Requests take the recaption stage's own path (``RecaptionStage.compute_async`` under its
``async_resources``, as ``stages.base.run_batch`` runs it), minus the store.

    .venv/bin/python bench/bench_recaption.py [--requests 1280] [--realistic-requests 320] [--in-flight 64] [--latency 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from figalign.config import Settings  # noqa: E402
from figalign.recaption.prompt import ContextIn, PromptOptions, RecaptionInput, encode_image  # noqa: E402
from figalign.stages.recaption import RecaptionStage, Work, build_pair  # noqa: E402
from figalign.store.queue import Claimed  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "jats"
REALISTIC = ["plos_pone.0000010/pone.0000010.g001.png", "plos_pone.0000010/pone.0000010.g002.png",
             "plos_pone.0000010/pone.0000010.g003.png", "plos_pone.0038869/pone.0038869.g001.tif",
             "plos_pone.0038869/pone.0038869.g002.tif"]
MODEL = "bench-vlm"


def small_png(target: int = 64_000) -> bytes:
    """A PNG of about ``target`` bytes: a noisy strip (noise does not compress)."""
    rng = random.Random(0)
    side = int((target / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), bytes(rng.randrange(256) for _ in range(side * side * 3)))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def inputs(images: list[bytes]) -> list[RecaptionInput]:
    contexts = [ContextIn(f"As Figure 1 shows, the measured response {i} rises with dose in treated samples.", i)
                for i in range(6)]
    return [RecaptionInput(i, "Dose response of a reporter", "We measure a reporter's response. " * 20,
                           "Figure 1", "Response versus dose.", img, contexts) for i, img in enumerate(images)]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests/servers/openai_server.py"), "--latency", str(latency),
                             "--model", MODEL, "--no-record"], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def _works(items: list[RecaptionInput], n: int) -> list[Work]:
    return [Work(Claimed(i, "recaption", "figure", str(i), 1), inp=items[i % len(items)]) for i in range(n)]


async def _run(base_url: str, items: list[RecaptionInput], n: int, in_flight: int,
               options: PromptOptions) -> tuple[float, float]:
    """Wall and CPU seconds of the ``n`` measured requests (client start and warm-up excluded).

    Requests go through the recaption stage's own concurrent path (``compute_async``: builds
    in worker threads, bounded, then ``complete()``), minus the store.
    """
    settings = replace(Settings(), vllm_base_url=base_url, vllm_model=MODEL)
    stage = RecaptionStage(settings, options=options, model=MODEL,
                           client_overrides={"timeout_s": 60, "max_in_flight": in_flight})

    async def ask(works: list[Work]) -> list:
        return await asyncio.gather(*(stage.compute_async(w.item, w) for w in works), return_exceptions=True)

    async with stage.async_resources():
        await ask(_works(items, 1))  # warm the pool's first connection
        works = _works(items, n)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        outcomes = await ask(works)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        raise SystemExit(f"{len(failed)} of {n} requests failed, e.g. {failed[0]!r}")
    return wall, cpu


def measure(base_url: str, items: list[RecaptionInput], n: int, in_flight: int, latency: float) -> dict:
    """Rate and client CPU of ``n`` requests; ``*_incl_startup`` also count the client's construction and
    the one warm-up request (~1 latency), as this script reported them before."""
    options = PromptOptions()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    wall, cpu = asyncio.run(_run(base_url, items, n, in_flight, options))
    cpu_all, wall_all = time.process_time() - cpu0, time.perf_counter() - wall0
    ideal = in_flight / latency
    return {"requests": n, "wall_s": round(wall, 2), "rps": round(n / wall, 1), "ideal_rps": round(ideal, 1),
            "share_of_ideal": round(n / wall / ideal, 3), "client_cpu_ms_per_request": round(cpu / n * 1000, 2),
            "rps_incl_startup": round(n / wall_all, 1), "share_of_ideal_incl_startup": round(n / wall_all / ideal, 3),
            "client_cpu_ms_per_request_incl_startup": round(cpu_all / n * 1000, 2)}


def breakdown(items: list[RecaptionInput], repeat: int = 5) -> dict:
    """Single-threaded CPU per request: image encode, full request build, JSON serialisation."""
    options = PromptOptions()
    encode, build, dumps, sizes = [], [], [], []
    for _ in range(repeat):
        for inp in items:
            t0 = time.process_time()
            encode_image(inp.image, options.max_pixels, options.image_format, options.jpeg_quality)
            t1 = time.process_time()
            request, _ = build_pair(inp, MODEL, options)
            t2 = time.process_time()
            body = json.dumps(request)
            t3 = time.process_time()
            encode.append(t1 - t0)
            build.append(t2 - t1)
            dumps.append(t3 - t2)
            sizes.append(len(body))
    ms = lambda xs: round(statistics.mean(xs) * 1000, 2)  # noqa: E731
    return {"encode_ms": ms(encode), "build_ms_incl_encode_and_base64": ms(build), "json_dumps_ms": ms(dumps),
            "body_kb": round(statistics.mean(sizes) / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1280)
    ap.add_argument("--realistic-requests", type=int, default=320)
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.3)
    args = ap.parse_args(argv)
    small = inputs([small_png()])
    realistic = inputs([(CORPUS / p).read_bytes() for p in REALISTIC if (CORPUS / p).exists()])
    proc, base_url = start_server(args.latency)
    try:
        report = {"cpus": os.cpu_count(), "in_flight": args.in_flight, "latency_s": args.latency,
                  "small_image_kb": round(len(small[0].image) / 1024, 1)}
        report["small"] = {**measure(base_url, small, args.requests, args.in_flight, args.latency),
                           **breakdown(small)}
        if realistic and args.realistic_requests > 0:
            report["realistic"] = {**measure(base_url, realistic, args.realistic_requests, args.in_flight, args.latency),
                                   **breakdown(realistic), "images": len(realistic)}
            report["realistic_per_image"] = {Path(p).name: breakdown(inputs([(CORPUS / p).read_bytes()]), 3)
                                             for p in REALISTIC if (CORPUS / p).exists()}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
