"""The recaption stage end to end on a SQLite store and the local OpenAI-compatible server."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from figalign.recaption.prompt import PromptOptions, load_template
from figalign.stages import recaption as stage_mod
from figalign.stages.recaption import NO_ENDPOINT, drain_recaption, run_recaption_batch
from figalign.store.db import session_scope
from figalign.store.models import Artifact, Caption, FigureRow, StageRun
from tests.recaption.store_helpers import MODEL, add_figure, make_store, plot_png
from tests.servers.openai_server import OpenAIServer, ServerState

FAST = {"timeout_s": 2.0, "backoff_base_s": 0.01, "max_retries": 1}


@pytest.fixture
def server():
    with OpenAIServer(ServerState(model=MODEL, retry_after="0")) as srv:
        yield srv


def _store(tmp_path, server=None, figures=2):
    engine, settings = make_store(tmp_path, base_url=server.base_url if server else "")
    ids = [add_figure(engine, settings, n) for n in range(figures)]
    return engine, settings, ids


def _recaptions(engine):
    with session_scope(engine) as session:
        return session.execute(select(Caption).where(Caption.kind == "recaption").order_by(Caption.id)).scalars().all()


def _runs(engine):
    with session_scope(engine) as session:
        return {r.entity_id: r for r in session.execute(select(StageRun).where(StageRun.stage == "recaption"))
                .scalars()}


def test_without_endpoint_every_figure_is_skipped_and_nothing_is_invented(tmp_path):
    engine, settings, ids = _store(tmp_path)
    summary = run_recaption_batch(engine, settings, 10)
    assert summary.claimed == 2 and dict(summary.statuses) == {"skipped": 2}
    runs = _runs(engine)
    assert {r.status for r in runs.values()} == {"skipped"} and {r.reason for r in runs.values()} == {NO_ENDPOINT}
    assert _recaptions(engine) == []
    again = run_recaption_batch(engine, settings, 10)
    assert again.claimed == 0 and again.enqueued == 0


def test_accepted_captions_carry_full_provenance(tmp_path, server):
    engine, settings, ids = _store(tmp_path, server)
    summary = run_recaption_batch(engine, settings, 10, client_overrides=FAST)
    assert dict(summary.statuses) == {"done": 2}
    captions = _recaptions(engine)
    assert sorted(c.figure_id for c in captions) == sorted(ids)
    cap = captions[0]
    assert cap.status == "accepted" and cap.text.startswith("The figure is a line plot") and cap.raw_text == cap.text
    assert cap.model == MODEL and cap.prompt_hash == load_template().sha256
    assert cap.params_hash == PromptOptions().params_hash() and cap.params["temperature"] == 0.2
    assert cap.prompt_tokens > 0 and cap.completion_tokens > 0 and cap.latency_ms > 0
    assert cap.endpoint == f"{server.base_url}/chat/completions" and cap.request_id.startswith("req-")
    assert server.state.shape_errors == []
    sent = server.state.requests[0]["messages"][1]["content"][1]["text"]
    assert "Reporter activation in cells" in sent and "treated cells brighten steadily" in sent
    runs = _runs(engine)
    assert {r.status for r in runs.values()} == {"done"}
    assert {r.output["caption_status"] for r in runs.values()} == {"accepted"}


def test_rerun_skips_done_and_force_redoes(tmp_path, server):
    engine, settings, ids = _store(tmp_path, server)
    run_recaption_batch(engine, settings, 10, client_overrides=FAST)
    first = {c.figure_id: c.id for c in _recaptions(engine)}
    again = run_recaption_batch(engine, settings, 10, client_overrides=FAST)
    assert (again.enqueued, again.claimed) == (0, 0) and len(server.state.requests) == 2
    forced = drain_recaption(engine, settings, force=True, client_overrides=FAST)
    assert forced.claimed == 2 and dict(forced.statuses) == {"done": 2}
    assert len(server.state.requests) == 4
    assert {c.figure_id: c.id for c in _recaptions(engine)} == first  # same rows, updated in place


def test_new_prompt_or_params_add_rows_and_keep_old_ones(tmp_path, server, monkeypatch):
    engine, settings, ids = _store(tmp_path, server)
    run_recaption_batch(engine, settings, 10, client_overrides=FAST)
    summary = run_recaption_batch(engine, settings, 10, options=PromptOptions(target_words=200),
                                  client_overrides=FAST)
    assert summary.claimed == 2 and len(_recaptions(engine)) == 4
    v1 = load_template()
    monkeypatch.setattr(stage_mod, "load_template", lambda version="v1": replace(v1, sha256="f" * 64))
    summary = run_recaption_batch(engine, settings, 10, client_overrides=FAST)
    assert summary.claimed == 2
    hashes = [c.prompt_hash for c in _recaptions(engine)]
    assert len(hashes) == 6 and hashes.count("f" * 64) == 2 and hashes.count(v1.sha256) == 4


def test_rejections_and_errors_are_recorded_per_figure(tmp_path, server):
    engine, settings, ids = _store(tmp_path, server, figures=4)
    server.state.faults.extend(["refusal", "malformed", "length"])
    summary = run_recaption_batch(engine, settings, 10, client_overrides=FAST)
    assert summary.claimed == 4 and summary.statuses["done"] == 3 and summary.statuses["failed"] == 1
    captions = _recaptions(engine)
    statuses = sorted((c.status, c.reject_reason or "") for c in captions)
    assert statuses == [("accepted", ""), ("rejected", "cut off (finish_reason=length)"),
                        ("rejected", "refusal-like answer")]
    rejected = [c for c in captions if c.status == "rejected"]
    assert all(c.text is None and c.raw_text for c in rejected)
    failed = [r for r in _runs(engine).values() if r.status == "failed"]
    assert len(failed) == 1 and failed[0].error_class == "PermanentError" and "malformed" in failed[0].error_message


def test_transient_failure_goes_back_to_pending(tmp_path, server):
    engine, settings, ids = _store(tmp_path, server, figures=1)
    server.state.faults.extend(["500", "500"])
    summary = run_recaption_batch(engine, settings, 10, client_overrides=FAST)
    assert dict(summary.statuses) == {"pending": 1}
    run = _runs(engine)[str(ids[0])]
    assert run.error_class == "TransientError" and run.attempts == 1
    retry = run_recaption_batch(engine, settings, 10, client_overrides=FAST)
    assert dict(retry.statuses) == {"done": 1} and len(_recaptions(engine)) == 1


def test_missing_or_broken_image_fails_only_that_figure(tmp_path, server):
    engine, settings, ids = _store(tmp_path, server, figures=1)
    missing = add_figure(engine, settings, 8, image=plot_png(seed=3))
    broken = add_figure(engine, settings, 9, image=b"\x89PNG broken image bytes")
    with session_scope(engine) as session:
        Path(session.get(Artifact, session.get(FigureRow, missing).image_artifact_id).storage_uri).unlink()
    summary = run_recaption_batch(engine, settings, 10, client_overrides=FAST)
    assert summary.statuses == {"done": 1, "failed": 2}
    runs = _runs(engine)
    assert runs[str(broken)].error_class == "BadInputError" and "cannot be decoded" in runs[str(broken)].error_message
    assert runs[str(missing)].error_class == "PermanentError" and "missing" in runs[str(missing)].error_message
    assert runs[str(ids[0])].status == "done"


def test_filtered_and_duplicate_figures_are_not_recaptioned(tmp_path, server):
    engine, settings, ids = _store(tmp_path, server, figures=1)
    add_figure(engine, settings, 5, filter_reason="too small")
    summary = run_recaption_batch(engine, settings, 10, client_overrides=FAST)
    assert summary.claimed == 1


def test_batch_requests_run_concurrently(tmp_path, server):
    server.state.latency_s = 0.3
    engine, settings, ids = _store(tmp_path, server, figures=8)
    started = time.monotonic()
    summary = run_recaption_batch(engine, settings, 8, client_overrides={**FAST, "max_in_flight": 8})
    elapsed = time.monotonic() - started
    assert dict(summary.statuses) == {"done": 8}
    assert server.state.peak >= 4 and elapsed < 8 * 0.3


def test_answers_are_recorded_as_they_arrive_not_after_the_batch(tmp_path, server):
    """While one request is still out (a slow answer), the others' captions and stage runs are
    already committed: a worker killed now would lose only the request in flight."""
    import threading

    server.state.faults.append("hang")  # whichever request comes first waits hang_s, then answers
    server.state.hang_s = 2.0
    engine, settings, ids = _store(tmp_path, server, figures=4)
    result = {}
    batch = threading.Thread(target=lambda: result.update(summary=run_recaption_batch(
        engine, settings, 4, client_overrides={**FAST, "timeout_s": 10.0})))
    batch.start()
    seen_while_running = None
    deadline = time.monotonic() + 10
    while batch.is_alive() and time.monotonic() < deadline:
        with session_scope(engine) as session:
            done = session.execute(select(func.count()).select_from(StageRun).where(
                StageRun.stage == "recaption", StageRun.status == "done")).scalar()
        if done == 3:
            seen_while_running = (len(_recaptions(engine)), batch.is_alive())
            break
        time.sleep(0.05)
    batch.join(15)
    assert seen_while_running == (3, True)
    assert dict(result["summary"].statuses) == {"done": 4} and len(_recaptions(engine)) == 4


def test_store_failure_while_recording_fails_the_batch_and_leaves_items_claimed(tmp_path, server, monkeypatch):
    """Trouble with the store is the batch's: it raises, and what was not recorded stays claimed
    (running, leased) for a later run instead of being marked anything it is not."""
    engine, settings, ids = _store(tmp_path, server, figures=3)
    from figalign.stages import base

    real = base.settle
    calls = []

    def flaky(stage, engine_, item, produce, not_ready=None):
        calls.append(item.entity_id)
        if len(calls) == 2:
            raise stage_mod.TransientError("store went away")
        return real(stage, engine_, item, produce, not_ready)

    monkeypatch.setattr(base, "settle", flaky)
    with pytest.raises(stage_mod.TransientError, match="store went away"):
        run_recaption_batch(engine, settings, 3, client_overrides=FAST)
    statuses = sorted(r.status for r in _runs(engine).values())
    assert statuses == ["done", "running", "running"] and len(_recaptions(engine)) == 1


def test_limit_caps_the_figures_claimed(tmp_path, server):
    engine, settings, ids = _store(tmp_path, server, figures=5)
    summary = drain_recaption(engine, settings, limit=3, batch_size=2, client_overrides=FAST)
    assert summary.claimed == 3 and len(_recaptions(engine)) == 3


def test_cli_dry_run_prints_the_request_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import argparse

    from figalign.cli.recaption import add_commands

    engine, settings, ids = _store(tmp_path, figures=1)
    monkeypatch.setenv("FIGALIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("FIGALIGN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FIGALIGN_VLLM_BASE_URL", "http://127.0.0.1:9/v1")
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["recaption", "--dry-run", "--model", "Qwen/Qwen3-VL-8B-Instruct"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["url"] == "http://127.0.0.1:9/v1/chat/completions" and printed["figure_id"] == ids[0]
    body = printed["body"]
    assert body["model"] == "Qwen/Qwen3-VL-8B-Instruct" and body["max_tokens"] == 512
    assert "more characters]" in body["messages"][1]["content"][0]["image_url"]["url"]
    with session_scope(engine) as session:
        assert session.execute(select(func.count()).select_from(StageRun)).scalar() == 0
    assert _recaptions(engine) == []


def test_skipped_figures_are_requeued_once_an_endpoint_exists(tmp_path, server):
    engine, settings, ids = _store(tmp_path, figures=2)
    assert dict(run_recaption_batch(engine, settings, 10).statuses) == {"skipped": 2}
    ready = replace(settings, vllm_base_url=server.base_url)
    summary = run_recaption_batch(engine, ready, 10, client_overrides=FAST)
    assert summary.enqueued == 2 and dict(summary.statuses) == {"done": 2} and len(_recaptions(engine)) == 2


def test_generic_run_batch_drives_the_stage_one_item_at_a_time(tmp_path, server):
    from figalign.stages.base import run_batch
    from figalign.stages.recaption import RecaptionStage

    engine, settings, ids = _store(tmp_path, server, figures=1)
    summary = run_batch(RecaptionStage(settings), engine, size=5)
    assert dict(summary.statuses) == {"done": 1}
    assert _recaptions(engine)[0].status == "accepted"


def test_think_block_stripped_and_flags_stored_as_metrics_then_used_by_the_export(tmp_path):
    """A Qwen3-Thinking style answer with an invented number: the caption is the answer after
    the block (raw answer kept), the flags are metric rows, and an export can drop on them."""
    from sqlalchemy import update

    from figalign.export import run_export
    from figalign.export.quality import QualityPolicy
    from figalign.storage import ArtifactStore
    from figalign.store.models import Metric, Paper

    answer = ("The line plot shows reporter fluorescence over time for treated cells and controls. Treated cells "
              "brighten steadily, reaching 73% of the maximum within one hour, while controls remain flat.")
    reply = f"<think>The user wants a caption. The image is a line plot.</think>\n\n{answer}"
    with OpenAIServer(ServerState(model=MODEL, retry_after="0", reply=reply)) as srv:
        engine, settings, ids = _store(tmp_path, srv, figures=1)
        assert dict(run_recaption_batch(engine, settings, 10, client_overrides=FAST).statuses) == {"done": 1}
    (cap,) = _recaptions(engine)
    assert cap.status == "accepted" and cap.text == answer and cap.raw_text == reply
    with session_scope(engine) as session:
        flags = {m.metric: (m.value, m.details["tokens"], m.caption_id, m.caption_kind)
                 for m in session.execute(select(Metric)).scalars()}
        session.execute(update(Paper).values(licence="cc-by"))
    assert flags == {"flag:ungrounded-number": (1.0, ["73%"], cap.id, "recaption"),
                     "flag:think-stripped": (1.0, [], cap.id, "recaption")}
    store = ArtifactStore(Path(settings.data_dir) / "artifacts")
    (kept,) = run_export(engine, store, "parquet", tmp_path / "keep", quality=QualityPolicy())
    (cut,) = run_export(engine, store, "s1mmalign", tmp_path / "cut",
                        quality=QualityPolicy(drop_flags=frozenset({"ungrounded-number"})))
    assert kept["samples"] == 1 and cut["samples"] == 0
    (line,) = (tmp_path / "cut" / "dropped.jsonl").read_text().splitlines()
    assert json.loads(line)["reason"] == "recaption-removed:flag:ungrounded-number"
