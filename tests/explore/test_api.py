"""Every explorer endpoint over a corpus-seeded store, on SQLite and on Postgres."""

from __future__ import annotations

import hashlib

import asyncio
from urllib.parse import unquote

import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient
from sqlalchemy import text

from figalign.config import Settings
from figalign.explore.app import create_app
from tests.explore.seed import PROMPT_A, PROMPT_B, seed

pytest.importorskip("pymupdf")


@pytest.fixture
def explorer(engine, db_url, tmp_path):
    """(client, seeded ids, app) over a freshly seeded store on each backend."""
    seeded = seed(engine, tmp_path / "data")
    app = create_app(Settings(database_url=db_url, data_dir=tmp_path / "data"))
    with TestClient(app) as client:
        yield client, seeded, app
    app.state.engine.dispose()


def ids(resp) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [item["id"] for item in resp.json()["items"]]


# --- grid ----------------------------------------------------------------------------------


def test_grid_lists_all_figures_newest_first_with_caption_and_image(explorer):
    client, sd, _ = explorer
    body = client.get("/api/figures").json()
    all_ids = sorted(list(sd.pone_figures.values()) + list(sd.futoma_figures.values()), reverse=True)
    assert [i["id"] for i in body["items"]] == all_ids
    assert body["next_cursor"] is None
    fig1 = next(i for i in body["items"] if i["id"] == sd.pone_figures["1"])
    assert fig1["caption"].startswith("Distribution of GAS pharyngitis according to age")
    assert fig1["image_sha256"] == sd.image_shas[fig1["id"]]
    assert fig1["source"] == "pmc" and fig1["licence"] == "cc-by"


def test_grid_keyset_pagination_visits_every_figure_once(explorer):
    client, sd, _ = explorer
    seen, cursor = [], None
    for _ in range(10):
        resp = client.get("/api/figures", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        seen += ids(resp)
        cursor = resp.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(list(sd.pone_figures.values()) + list(sd.futoma_figures.values()), reverse=True)


@pytest.mark.parametrize("params,expect", [
    ({"source": "arxiv"}, "futoma"),
    ({"source": "pmc"}, "pone"),
    ({"licence": "cc-by"}, "pone"),
    ({"discipline": "cs"}, "futoma"),
    ({"kind": "figure"}, "all"),
    ({"source": "nowhere"}, "none"),
])
def test_grid_paper_filters(explorer, params, expect):
    client, sd, _ = explorer
    want = {"futoma": set(sd.futoma_figures.values()), "pone": set(sd.pone_figures.values()),
            "all": set(sd.futoma_figures.values()) | set(sd.pone_figures.values()), "none": set()}[expect]
    assert set(ids(client.get("/api/figures", params=params))) == want


def test_grid_stage_status_and_failure_reason_filters(explorer):
    client, sd, _ = explorer
    failed = ids(client.get("/api/figures", params={"stage": "filter", "status": "failed"}))
    assert set(failed) == {sd.futoma_figures["2"], sd.futoma_figures["3"], sd.futoma_figures["4"]}
    by_reason = ids(client.get("/api/figures", params={"stage": "filter", "status": "failed",
                                                       "reason": "BadInputError"}))
    assert set(by_reason) == {sd.futoma_figures["2"], sd.futoma_figures["3"]}
    skipped = ids(client.get("/api/figures", params={"stage": "recaption", "reason": "recaption exists"}))
    assert skipped == [sd.pone_figures["2"]]
    # parse is recorded per paper: every figure of both papers was parsed.
    assert len(ids(client.get("/api/figures", params={"stage": "parse", "status": "done"}))) == 8
    assert ids(client.get("/api/figures", params={"filter_reason": "duplicate"})) == [sd.futoma_figures["5"]]


def test_grid_caption_text_search_is_case_insensitive_and_literal(explorer):
    client, sd, _ = explorer
    assert set(ids(client.get("/api/figures", params={"q": "BRASÍLIA"}))) <= set(sd.pone_figures.values())
    assert ids(client.get("/api/figures", params={"q": "sepsis rapid response"})) == [sd.futoma_figures["5"]]
    assert ids(client.get("/api/figures", params={"q": "100%_"})) == []  # % and _ are not wildcards


def test_grid_metric_range_filter(explorer):
    client, sd, _ = explorer
    got = ids(client.get("/api/figures", params={"metric": "clip_cosine", "metric_kind": "original",
                                                 "metric_min": "0.22", "metric_max": "0.25"}))
    assert got == [sd.pone_figures["3"]]  # originals: 0.21, 0.26, 0.24
    got = ids(client.get("/api/figures", params={"metric": "pppl", "metric_kind": "recaption", "metric_min": "10"}))
    assert set(got) == {sd.pone_figures["1"], sd.pone_figures["3"]}  # recaption PPPL 12, 9, 15


def test_sort_by_clip_gain_and_pppl(explorer):
    client, sd, _ = explorer
    p = sd.pone_figures
    # gain = best recaption CLIP - original: fig1 .09, fig2 .05, fig3 -.02; futoma figures have no scores.
    body = client.get("/api/figures", params={"sort": "-gain:clip_cosine"}).json()
    assert [i["id"] for i in body["items"]] == [p["1"], p["2"], p["3"]]
    assert body["items"][0]["sort_value"] == pytest.approx(0.09)
    assert ids(client.get("/api/figures", params={"sort": "-metric:pppl:original"})) == [p["2"], p["1"], p["3"]]
    assert ids(client.get("/api/figures", params={"sort": "metric:pppl:recaption"})) == [p["2"], p["1"], p["3"]]


def test_grid_filters_by_the_stored_clip_gain(explorer):
    client, sd, _ = explorer
    got = ids(client.get("/api/figures", params={"metric": "clip_cosine_gain", "metric_kind": "recaption",
                                                 "metric_min": "0.04"}))
    assert set(got) == {sd.pone_figures["1"], sd.pone_figures["2"]}  # gains .09, .05, -.02


def test_metric_sort_paginates_by_value_then_id(explorer):
    client, sd, _ = explorer
    first = client.get("/api/figures", params={"sort": "-gain:clip_cosine", "limit": 2}).json()
    second = client.get("/api/figures", params={"sort": "-gain:clip_cosine", "limit": 2,
                                                "cursor": first["next_cursor"]}).json()
    assert [i["id"] for i in first["items"] + second["items"]] == [sd.pone_figures[n] for n in "123"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("params", [{"sort": "drop table"}, {"limit": "0"}, {"limit": "5000"},
                                    {"metric_min": "abc"}, {"cursor": "!!!notbase64"}, {"cursor": "WyJ4IiwyXQ"},
                                    {"reason": "x"}, {"metric_kind": "other"}])
def test_bad_grid_parameters_are_400_not_500(explorer, params):
    client, _, _ = explorer
    assert client.get("/api/figures", params=params).status_code == 400
    assert client.get("/", params=params).status_code == 400


def test_grid_html_shows_thumbnails_captions_and_filter_values(explorer):
    client, sd, _ = explorer
    html = client.get("/").text
    assert f'src="/image/{sd.image_shas[sd.pone_figures["1"]]}"' in html
    assert "Distribution of GAS pharyngitis" in html
    assert '<option value="arxiv"' in html and '<option value="cc-by"' in html
    page = client.get("/", params={"limit": 2})
    assert 'id="next"' in page.text and "cursor=" in page.text


# --- figure page ---------------------------------------------------------------------------


def test_figure_api_has_captions_metrics_contexts_and_provenance(explorer):
    client, sd, _ = explorer
    d = client.get(f"/api/figures/{sd.pone_figures['2']}").json()
    kinds = [c["kind"] for c in d["captions"]]
    assert kinds == ["original", "recaption", "recaption"]
    orig = d["captions"][0]
    assert orig["text"].startswith("emm-types distribution in Brussels and Brasília")
    assert {(m["metric"], m["value"]) for m in orig["metrics"]} == {("clip_cosine", 0.26), ("pppl", 55.0)}
    assert {c["prompt_hash"] for c in d["captions"][1:]} == {PROMPT_A, PROMPT_B}
    assert [c["mention"] for c in d["contexts"]] == ["figure 2", "figure 2"]
    assert d["paper"]["licence"] == "cc-by" and d["paper"]["doi"] == "10.1371/journal.pone.0000010"
    assert d["figure"]["parser"] == "jats"
    runs = {(r["stage"], r["entity_type"]): r for r in d["stage_runs"]}
    assert runs[("parse", "paper")]["dag_id"] == "figalign_parse"
    assert runs[("recaption", "figure")]["status"] == "skipped"
    assert d["has_page"] is True


def test_figure_html_highlights_mentions_and_escapes_links(explorer):
    client, sd, _ = explorer
    html = client.get(f"/figure/{sd.pone_figures['1']}").text
    assert "<mark>Figure 1</mark>" in html
    assert "Bar chart for figure 1: recaption under prompt v1." in html
    assert 'href="https://doi.org/10.1371/journal.pone.0000010"' in html
    assert 'href="javascript:' not in html  # a stored javascript: URL stays text
    assert "manual__2026-11-27T10:00:00+00:00" in html
    assert f"/figure/{sd.pone_figures['1']}/page.png" in html


@pytest.mark.parametrize("path", ["/api/figures/999999", "/figure/999999", "/figure/999999/page.png"])
def test_missing_figure_is_404(explorer, path):
    client, _, _ = explorer
    assert client.get(path).status_code == 404


def test_page_png_draws_the_box_on_the_pdf_page(explorer):
    from PIL import Image
    import io

    client, sd, _ = explorer
    resp = client.get(f"/figure/{sd.pone_figures['1']}/page.png")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(resp.content)).convert("RGB")
    # box [58,527,357,695] pt at 110 dpi: its left edge is red, the page margin left of it white.
    scale = 110 / 72
    y = int(600 * scale)
    assert img.getpixel((int(58 * scale), y))[0] > 180 and img.getpixel((int(58 * scale), y))[1] < 80
    assert img.getpixel((int(30 * scale), y)) == (255, 255, 255)
    etag = resp.headers["etag"]
    assert client.get(f"/figure/{sd.pone_figures['1']}/page.png", headers={"If-None-Match": etag}).status_code == 304


# --- images ------------------------------------------------------------------------------


def test_image_served_by_sha_with_type_and_caching_headers(explorer):
    client, sd, _ = explorer
    sha = sd.image_shas[sd.pone_figures["3"]]
    resp = client.get(f"/image/{sha}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "image/png"
    assert hashlib.sha256(resp.content).hexdigest() == sha
    assert resp.headers["etag"] == f'"{sha}"'
    assert "immutable" in resp.headers["cache-control"] and "max-age=31536000" in resp.headers["cache-control"]
    assert resp.headers["x-content-type-options"] == "nosniff"
    again = client.get(f"/image/{sha}", headers={"If-None-Match": f'"{sha}"'})
    assert again.status_code == 304 and again.content == b""


def test_pdf_artifacts_are_not_served_as_images(explorer):
    client, sd, _ = explorer
    assert client.get(f"/image/{sd.pdf_sha}").status_code == 404


@pytest.mark.parametrize("raw_path", [
    "/image/../../etc/passwd", "/image/..%2f..%2fetc%2fpasswd", "/image/%2e%2e/%2e%2e/etc/passwd",
    "/image/%2e%2e", "/image/..", "/image/" + "A" * 64, "/image/" + "g" * 64, "/image/%2Fetc%2Fpasswd",
    "/image/" + "0" * 63 + "%00", "/image/" + "0" * 64,
])
def test_traversal_and_unknown_hashes_are_404(explorer, raw_path):
    _, _, app = explorer
    status, body = raw_get(app, raw_path)
    assert status == 404
    assert b"root:" not in body


def raw_get(app, raw_path: str) -> tuple[int, bytes]:
    """Call the ASGI app with the path exactly as written (HTTP clients and browsers would
    remove ``..`` segments before sending; a hostile client does not)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": unquote(raw_path), "raw_path": raw_path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1),
             "server": ("testserver", 80)}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_image_with_missing_bytes_is_404(explorer, tmp_path):
    client, sd, _ = explorer
    sha = sd.image_shas[sd.futoma_figures["1"]]
    for path in (tmp_path / "data" / "objects").rglob(f"{sha}*"):
        path.unlink()
    assert client.get(f"/image/{sha}").status_code == 404


def test_tampered_storage_uri_cannot_serve_another_file(explorer, engine):
    client, sd, _ = explorer
    sha = sd.image_shas[sd.futoma_figures["2"]]
    with engine.begin() as conn:
        conn.execute(text("UPDATE artifacts SET storage_uri = '/etc/passwd' WHERE sha256 = :s"), {"s": sha})
    resp = client.get(f"/image/{sha}")
    assert resp.status_code == 200  # found under the data dir by its hash, not at /etc/passwd
    assert hashlib.sha256(resp.content).hexdigest() == sha


# --- stages and comparison ---------------------------------------------------------------------


def test_stage_view_counts_and_top_failures(explorer):
    client, sd, _ = explorer
    data = client.get("/api/stages").json()
    counts = {(c["stage"], c["status"]): c["count"] for c in data["counts"]}
    assert counts == {("parse", "done"): 2, ("filter", "done"): 5, ("filter", "failed"): 3,
                      ("recaption", "done"): 1, ("recaption", "skipped"): 1}
    fails = [(f["stage"], f["status"], f["reason"], f["count"]) for f in data["failures"]]
    assert fails == [("filter", "failed", "BadInputError", 2), ("filter", "failed", "PermanentError", 1),
                     ("recaption", "skipped", "recaption exists", 1)]
    html = client.get("/stages").text
    assert "stage=filter&amp;status=failed&amp;reason=BadInputError" in html


def test_compare_two_prompt_versions_on_the_same_figures(explorer):
    client, sd, _ = explorer
    body = client.get("/api/compare", params={"a": PROMPT_A, "b": PROMPT_B, "limit": 2}).json()
    assert [i["figure_id"] for i in body["items"]] == [sd.pone_figures["1"], sd.pone_figures["2"]]
    first = body["items"][0]
    assert first["a"]["prompt_hash"] == PROMPT_A and first["b"]["prompt_hash"] == PROMPT_B
    assert [m["value"] for m in first["a"]["metrics"] if m["metric"] == "clip_cosine"] == [0.30]
    rest = client.get("/api/compare", params={"a": PROMPT_A, "b": PROMPT_B, "cursor": body["next_cursor"]}).json()
    assert [i["figure_id"] for i in rest["items"]] == [sd.pone_figures["3"]] and rest["next_cursor"] is None
    assert client.get("/api/compare", params={"a": PROMPT_A, "b": "nope"}).json()["items"] == []
    assert client.get("/api/compare", params={"a": "x", "b": "y", "by": "colour"}).status_code == 400
    html = client.get("/compare", params={"a": PROMPT_A, "b": PROMPT_B}).text
    assert "recaption under prompt v1" in html and "(prompt v2)" in html


def test_facets_list_distinct_values(explorer):
    client, _, _ = explorer
    f = client.get("/api/facets").json()
    assert f["sources"] == ["arxiv", "pmc"]
    assert f["licences"] == ["cc-by"]
    assert f["stages"] == ["filter", "parse", "recaption"]
    assert f["metrics"] == ["clip_cosine", "clip_cosine_gain", "pppl"]  # the stored gain is a metric too
    assert f["prompt_hashes"] == sorted([PROMPT_A, PROMPT_B])


def test_explorer_never_writes_to_the_store(explorer):
    _, _, app = explorer
    with app.state.engine.connect() as conn:
        with pytest.raises(Exception) as info:
            conn.execute(text("UPDATE papers SET title = 'x'"))
    assert "readonly" in str(info.value).lower().replace("-", "").replace(" ", "") or \
        "read-only" in str(info.value).lower()


def test_auth_dependency_guards_every_route(engine, db_url, tmp_path):
    seed(engine, tmp_path / "data")

    def deny(request: Request) -> None:
        if request.headers.get("x-user") != "ada":
            raise HTTPException(401, "Not authenticated")

    app = create_app(Settings(database_url=db_url, data_dir=tmp_path / "data"), auth_dependency=deny)
    with TestClient(app) as client:
        for path in ("/", "/api/figures", "/api/figures/1", "/stages", "/api/stages", "/compare", "/api/facets",
                     "/image/" + "0" * 64, "/figure/1", "/figure/1/page.png", "/api/compare?a=x&b=y"):
            assert client.get(path).status_code == 401, path
        assert client.get("/api/figures", headers={"x-user": "ada"}).status_code == 200
    app.state.engine.dispose()


def test_missing_images_are_counted_by_the_parsers_reason(explorer, engine):
    from figalign.store.db import session_scope
    from figalign.store.models import FigureRow
    from figalign.store.upsert import upsert

    client, sd, app = explorer
    with session_scope(engine) as s:  # the explorer's own engine is read-only
        paper_id = s.get(FigureRow, sd.pone_figures["1"]).paper_id
        for n in range(2):  # what the parse stage stores for a TikZ figure of a paper without PDF
            upsert(s, FigureRow, dict(figure_key=f"t:tikz{n}", paper_id=paper_id, kind="figure", parser="latex",
                                      parser_version="1", subfigures=[], filter_reason="no-image:tikz-without-pdf"),
                   ("figure_key",))
    reasons = client.get("/api/missing-images").json()["reasons"]
    assert reasons["tikz-without-pdf"] == 2
    grid = client.get("/api/figures", params={"filter_reason": "no-image:tikz-without-pdf"}).json()
    assert len(grid["items"]) == 2


def test_metric_tooltips_say_how_each_number_was_measured(explorer):
    """Every metric cell and badge carries a title naming model, text strategy and image fit."""
    from figalign.metrics.describe import tooltip
    from tests.explore.seed import CLIP

    client, sd, _ = explorer
    html = client.get(f"/figure/{sd.pone_figures['1']}").text
    tip = tooltip("clip_cosine", CLIP)
    assert "text: truncate" in tip and "image: centre-crop" in tip
    assert f'title="{tip}">clip_cosine</td>' in html
    assert 'title="masked-LM pseudo-perplexity (lower is better)' in html
    grid = client.get("/").text
    assert 'title="CLIP cosine' in grid  # the metric filter's options


def test_figure_type_label_is_shown_and_filterable(explorer, engine):
    """A zero-shot figure-type row (stages/figtype.py) appears on the figure page with its
    tooltip and in the grid's metric filter, like any metric."""
    from sqlalchemy import select

    from figalign.store.db import session_scope
    from figalign.store.models import Caption, Metric
    from figalign.store.upsert import upsert

    client, sd, _ = explorer
    fid = sd.pone_figures["2"]
    with session_scope(engine) as s:
        cap = s.execute(select(Caption.id).where(Caption.figure_id == fid, Caption.kind == "original")).scalar()
        upsert(s, Metric, dict(figure_id=fid, caption_id=cap, caption_kind="original", metric="figtype:bar chart",
                               model="ViT-L-14:openai|figure_types_v1", value=0.91,
                               details={"label": "bar chart"}), ("caption_id", "metric", "model"))
    html = client.get(f"/figure/{fid}").text
    assert "figtype:bar chart" in html and "zero-shot figure type &#39;bar chart&#39;" in html
    resp = client.get("/api/figures", params={"metric": "figtype:bar chart", "metric_min": "0.5"})
    assert ids(resp) == [fid]


def test_paper_level_failures_link_to_a_paper_list(explorer, engine):
    """A paper that failed fetch has no figures: the stage view links to the papers instead."""
    from figalign.store.db import session_scope
    from figalign.store.models import FigureRow, StageRun
    from figalign.store.upsert import upsert

    client, sd, _ = explorer
    with session_scope(engine) as s:
        paper_id = s.get(FigureRow, sd.pone_figures["1"]).paper_id
        upsert(s, StageRun, dict(stage="fetch", entity_type="paper", entity_id=str(paper_id), status="failed",
                                 attempts=4, max_attempts=4, reason="HttpStatusError: GET …/pdf: HTTP 404", output={}),
               ("stage", "entity_type", "entity_id"))
    html = client.get("/stages").text
    assert "/papers?stage=fetch&amp;status=failed&amp;reason=HttpStatusError" in html
    body = client.get("/api/papers", params={"stage": "fetch", "status": "failed"}).json()
    assert [(p["id"], p["attempts"]) for p in body["items"]] == [(paper_id, 4)] and body["next_cursor"] is None
    page = client.get("/papers", params={"stage": "fetch", "status": "failed"}).text
    assert f'data-paper-id="{paper_id}"' in page and "HTTP 404" in page
    assert client.get("/api/papers", params={"stage": "filter"}).status_code == 400


def test_the_first_view_shows_what_the_dataset_holds(explorer):
    client, sd, _ = explorer
    first = client.get("/").text
    assert 'class="noimg"' not in first and 'data-figure-id="%d"' % sd.futoma_figures["5"] not in first  # a duplicate
    assert 'data-figure-id="%d"' % sd.futoma_figures["5"] in client.get("/?show=all").text
    dataset = ids(client.get("/api/figures", params={"show": "dataset"}))
    assert sd.futoma_figures["5"] not in dataset and len(dataset) == 7
    assert client.get("/api/figures", params={"show": "nonsense"}).status_code == 400
