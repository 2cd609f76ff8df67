"""The filter stage on a real store: reasons on figures, first seen kept, no item lost."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from figalign.config import Settings
from figalign.stages.base import drain
from figalign.stages.filter import FilterStage
from figalign.store.db import session_scope
from figalign.store.models import FigureRow, StageRun
from figalign.store.queue import enqueue
from tests.figure_store import FigureStore, corpus_file, reencode_jpeg_png, resized, synthetic_figure

CAPTION = "Figure 1. Firing rate of the recorded neurons over time."


@pytest.fixture
def fs(tmp_path):
    store = FigureStore(tmp_path)
    yield store
    store.engine.dispose()


def _stage(fs: FigureStore, **policy) -> FilterStage:
    from figalign.filters import FilterPolicy

    return FilterStage(settings=Settings(data_dir=fs.data_dir, database_url=fs.url), policy=FilterPolicy(**policy))


def _figures(fs: FigureStore) -> dict[int, FigureRow]:
    with session_scope(fs.engine) as s:
        return {f.id: f for f in s.execute(select(FigureRow)).scalars()}


def test_reasons_and_duplicates(fs):
    real = corpus_file("jats", "plos_pone.0000010", "pone.0000010.g002.png").read_bytes()
    other = corpus_file("pdf", "futoma2017improved-Figure4-1.png").read_bytes()
    a, b = fs.paper("PMC1"), fs.paper("PMC2")
    nc, retracted = fs.paper("PMC3", licence="cc-by-nc"), fs.paper("PMC4", retracted=True)
    ids = {
        "original": fs.figure(a, real, caption=CAPTION),
        "other": fs.figure(a, other, caption=CAPTION),
        "resized-copy": fs.figure(b, resized(real, 0.6), caption=CAPTION),
        "jpeg-copy": fs.figure(b, reencode_jpeg_png(real), caption=CAPTION),
        "tiny": fs.figure(b, b"\x89PNG" + b"\0" * 100, caption=CAPTION),
        "table": fs.figure(b, synthetic_figure(1), caption="Table 1. Cohort.", kind="table"),
        "short": fs.figure(b, synthetic_figure(2), caption="Fig. 2"),
        "no-image": fs.figure(b, None, caption=CAPTION),
        "nc": fs.figure(nc, synthetic_figure(3), caption=CAPTION),
        "retracted": fs.figure(retracted, synthetic_figure(4), caption=CAPTION),
    }
    summary = drain(_stage(fs), fs.engine)
    assert summary.claimed == len(ids) and summary.statuses == {"done": len(ids)}
    figs = _figures(fs)
    reasons = {name: figs[i].filter_reason for name, i in ids.items()}
    original_key = figs[ids["original"]].figure_key
    assert reasons == {
        "original": None, "other": None,
        "resized-copy": f"duplicate-of:{original_key}", "jpeg-copy": f"duplicate-of:{original_key}",
        "tiny": "image-under-5kb", "table": "table", "short": "caption-too-short", "no-image": "no-image",
        "nc": "licence-not-exportable:cc-by-nc", "retracted": "retracted",
    }
    assert figs[ids["resized-copy"]].duplicate_of_id == ids["original"]
    assert figs[ids["jpeg-copy"]].duplicate_of_id == ids["original"]
    assert figs[ids["other"]].duplicate_of_id is None


def test_rerun_changes_nothing(fs):
    p = fs.paper("PMC1")
    data = synthetic_figure(7)
    ids = [fs.figure(p, data, caption=CAPTION), fs.figure(p, resized(data, 0.5), caption=CAPTION)]
    drain(_stage(fs), fs.engine)
    before = {i: (f.filter_reason, f.duplicate_of_id, f.updated_at) for i, f in _figures(fs).items()}
    with session_scope(fs.engine) as s:
        from figalign.store.queue import requeue

        requeue(s, "filter", "figure", [str(i) for i in ids])
    drain(_stage(fs), fs.engine)
    after = {i: (f.filter_reason, f.duplicate_of_id, f.updated_at) for i, f in _figures(fs).items()}
    assert after == before


def test_first_seen_kept_even_when_processed_last(fs):
    """The copy is queued first and links to the original; the original then turns out to
    be filtered, so the copy is released, re-queued, and ends kept: nothing is lost."""
    p = fs.paper("PMC1")
    data = synthetic_figure(8)
    first = fs.figure(p, data, caption="Fig. 1")  # lower id, but its caption is too short
    copy = fs.figure(p, reencode_jpeg_png(data), caption=CAPTION)
    third = fs.figure(p, resized(data, 0.5), caption=CAPTION)
    with session_scope(fs.engine) as s:
        enqueue(s, "filter", "figure", [str(third), str(copy), str(first)])
    drain(_stage(fs), fs.engine, size=1)
    figs = _figures(fs)
    assert figs[first].filter_reason == "caption-too-short"
    assert figs[copy].filter_reason is None and figs[copy].duplicate_of_id is None
    assert figs[third].duplicate_of_id == copy
    with session_scope(fs.engine) as s:
        statuses = set(s.execute(select(StageRun.status).where(StageRun.stage == "filter")).scalars())
    assert statuses == {"done"}


def test_dedup_across_stage_instances(fs):
    """A second worker (fresh index built from the store) still links to earlier figures."""
    p = fs.paper("PMC1")
    data = synthetic_figure(9)
    original = fs.figure(p, data, caption=CAPTION)
    drain(_stage(fs), fs.engine)
    later = fs.figure(fs.paper("PMC2"), resized(data, 0.7), caption=CAPTION)
    summary = drain(_stage(fs), fs.engine)
    assert summary.claimed == 1  # discover found the new figure
    assert _figures(fs)[later].duplicate_of_id == original


def test_opt_in_licence_keeps_nc(fs):
    p = fs.paper("PMC9", licence="cc-by-nc")
    fid = fs.figure(p, synthetic_figure(10), caption=CAPTION)
    from figalign.filters import FilterPolicy

    stage = FilterStage(settings=Settings(data_dir=fs.data_dir, database_url=fs.url),
                        policy=FilterPolicy().with_licences(["cc-by-nc"]))
    drain(stage, fs.engine)
    assert _figures(fs)[fid].filter_reason is None


def test_missing_hashes_are_filled(fs):
    p = fs.paper("PMC1")
    fid = fs.figure(p, synthetic_figure(11), caption=CAPTION, name="nohash")
    with session_scope(fs.engine) as s:
        from sqlalchemy import update

        s.execute(update(FigureRow).where(FigureRow.id == fid).values(phash=None, pixel_sha256=None))
    drain(_stage(fs), fs.engine)
    fig = _figures(fs)[fid]
    assert fig.filter_reason is None and len(fig.phash) == 16 and len(fig.pixel_sha256) == 64
