"""Parse work is planned by lane: only papers whose parse calls GROBID take the grobid lane.

The committed sample papers are two bare PDFs and one JATS package. With GROBID configured
the PDFs will call it (lane ``grobid``) and the JATS paper will not (lane ``default``);
without GROBID every paper is ``default`` work. Each lane's batches are fitted on their own,
and a lane's task claims only its own items.
"""

from __future__ import annotations

from sqlalchemy import select

from figalign.config import load_settings
from figalign.pipeline import ingest_local, plan_batches, plan_lanes
from figalign.store.db import get_engine, session_scope
from figalign.store.migrate import upgrade
from figalign.store.models import Paper, StageRun
from figalign.store.queue import RunContext, claim_batch
from tests.conftest import FIXTURES


def _store(url, tmp_path, grobid_url=None):
    upgrade(url)
    env = {"FIGALIGN_DATABASE_URL": url, "FIGALIGN_DATA_DIR": str(tmp_path / "data")}
    if grobid_url:
        env["FIGALIGN_GROBID_URL"] = grobid_url
    settings = load_settings(env)
    ingest_local(str(FIXTURES / "papers"), settings=settings)
    return settings


def _lanes(settings) -> dict[str, str]:
    with session_scope(get_engine(settings)) as s:
        return dict(s.execute(select(Paper.external_id, StageRun.lane)
                              .join(StageRun, StageRun.entity_id == Paper.id.cast(StageRun.entity_id.type))
                              .where(StageRun.stage == "parse")).all())


def test_pdf_only_papers_go_to_the_grobid_lane_when_grobid_is_configured(db_url, tmp_path):
    settings = _store(db_url, tmp_path, grobid_url="http://127.0.0.1:9")
    assert plan_lanes("parse", 25, 16, settings, slots=4) == {"default": [1], "grobid": [1, 1]}
    lanes = _lanes(settings)
    assert sorted(lanes.values()) == ["default", "grobid", "grobid"]
    assert lanes["pone.0000010"] == "default"  # the JATS package never calls GROBID
    # the lane plans that follow only count their own lane; the CLI's plan counts them all
    assert plan_batches("parse", 25, 16, settings, slots=4, lane="grobid") == [1, 1]
    assert plan_batches("parse", 25, 16, settings, slots=4) == [1, 1, 1]
    # sizes are fitted per lane: one slot spreads nothing, a cap of one batch holds the lane's rest
    assert plan_lanes("parse", 25, 16, settings, slots=1) == {"default": [1], "grobid": [2]}
    assert plan_lanes("parse", 1, 1, settings, slots=4) == {"default": [1], "grobid": [1]}

    with session_scope(get_engine(settings)) as s:
        default = claim_batch(s, "parse", 10, ctx=RunContext("a"), lane="default")
        grobid = claim_batch(s, "parse", 10, ctx=RunContext("b"), lane="grobid")
    assert len(default) == 1 and len(grobid) == 2
    assert {c.entity_id for c in default}.isdisjoint(c.entity_id for c in grobid)
    # claimed items keep their lane: a new plan neither moves them nor counts them
    assert plan_lanes("parse", 25, 16, settings, slots=4) == {"default": [], "grobid": []}


def test_without_grobid_every_paper_is_default_work(db_url, tmp_path):
    settings = _store(db_url, tmp_path)
    assert plan_lanes("parse", 25, 16, settings, slots=4) == {"default": [1, 1, 1], "grobid": []}
    assert set(_lanes(settings).values()) == {"default"}


def test_a_pending_item_moves_lane_when_what_it_needs_changes(sqlite_url, tmp_path):
    """Lanes are sorted at every plan: GROBID configured later moves the PDFs to its lane."""
    settings = _store(sqlite_url, tmp_path)
    assert plan_lanes("parse", 25, 16, settings, slots=4)["grobid"] == []
    with_grobid = load_settings({"FIGALIGN_DATABASE_URL": sqlite_url, "FIGALIGN_DATA_DIR": str(tmp_path / "data"),
                                 "FIGALIGN_GROBID_URL": "http://127.0.0.1:9"})
    assert plan_lanes("parse", 25, 16, with_grobid, slots=4) == {"default": [1], "grobid": [1, 1]}
