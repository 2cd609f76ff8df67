"""Bulk sources against a real S3 API (moto's server): arXiv source tars and MECA packages.

The buckets are laid out as the providers document them (arXiv: ``src/arXiv_src_manifest.xml``
and ``src/arXiv_src_YYMM_NNN.tar`` of ``YYMM/<id>.gz`` e-prints; bioRxiv/medRxiv:
``Current_Content/<Month>_<Year>/<uuid>.meca`` zips with ``manifest.xml`` and ``content/``),
requester pays, built from corpus e-prints and committed JATS fixtures.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import tarfile
import threading
import zipfile
from collections import Counter

import pytest
from sqlalchemy import select

from figalign.config import load_settings
from figalign.errors import BadInputError
from figalign.sources import arxiv_bulk
from figalign.sources.arxiv import file_refs
from figalign.sources.bulk_s3 import BulkLocation
from figalign.sources.record import PaperRecord
from figalign.stages.base import drain
from figalign.stages.bulk import AWAITING_METADATA, ArxivBulkStage, MecaBulkStage, plan_arxiv, plan_meca
from figalign.stages.fetch import FetchStage
from figalign.stages.harvest import harvest_window
from figalign.stages.parse import ParseStage
from figalign.storage import ArtifactStore
from figalign.store.db import session_scope
from figalign.store.models import Artifact, FigureRow, Paper, PaperFile, StageRun
from figalign.store.papers import pixel_sha256
from tests.conftest import FIXTURES, require_corpus

TAR_TIME = "2026-11-20 03:04:05"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _eprint(name: str) -> bytes:
    data = require_corpus("latex", name).read_bytes()
    return data if data.startswith(b"\x1f\x8b") else gzip.compress(data)  # some corpus .tar.gz are plain tar


def _tar(members: list[tuple[str, bytes] | tarfile.TarInfo]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def _manifest(tars: dict[str, bytes], *, wrong_md5: set[str] = frozenset()) -> bytes:
    files = []
    for name, data in tars.items():
        yymm = name.split("_")[2]
        md5 = "0" * 32 if name in wrong_md5 else hashlib.md5(data).hexdigest()
        files.append(f"<file><content_md5sum>{'f' * 32}</content_md5sum><filename>{name}</filename>"
                     f"<first_item>x</first_item><last_item>y</last_item><md5sum>{md5}</md5sum>"
                     f"<num_items>2</num_items><seq_num>{int(name[-7:-4])}</seq_num><size>{len(data)}</size>"
                     f"<timestamp>{TAR_TIME}</timestamp><yymm>{yymm}</yymm></file>")
    body = "".join(files)
    return f"<?xml version='1.0' encoding='UTF-8'?>\n<arXivSRC>{body}<timestamp>x</timestamp></arXivSRC>".encode()


def _requester_pays_bucket(s3_server, bucket_url: str, objects: dict[str, bytes]) -> None:
    client = s3_server.client()
    bucket = bucket_url.removeprefix("s3://")
    client.put_bucket_request_payment(Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"})
    for key, data in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=data, RequestPayer="requester")


def _arxiv_stage(bucket_url: str, tmp_path, **env) -> ArxivBulkStage:
    location = BulkLocation.from_env("arxiv", {"FIGALIGN_ARXIV_BULK_URL": bucket_url, **env})
    return ArxivBulkStage(location, ArtifactStore(tmp_path / "data"), arxiv_base_url="https://arxiv.example")


def _runs(engine, stage: str) -> dict[str, StageRun]:
    with session_scope(engine) as s:
        return {r.entity_id: r for r in s.scalars(select(StageRun).where(StageRun.stage == stage))}


def _record(arxiv_id: str, updated: dt.datetime) -> PaperRecord:
    return PaperRecord(source="arxiv", external_id=arxiv_id, title=f"Paper {arxiv_id}", licence="cc-by",
                       updated_at=updated, files=file_refs(arxiv_id, "https://arxiv.example"))


class _Source:
    """An OAI listing of given records (one page), as the harvest reads a source."""

    name = "arxiv"

    def __init__(self, records):
        self.records = records

    def pages(self, start, end, set_spec, token):
        yield self.records, None


class _NoDownloads:
    """An HTTP client that records every download asked of it and refuses them all."""

    def __init__(self):
        self.urls: list[str] = []

    def download(self, url, **kwargs):
        self.urls.append(url)
        raise AssertionError(f"fetch downloaded {url} although the bulk source stored it")


# --- the manifest -----------------------------------------------------------------------


def test_manifest_entries_months_and_member_names():
    tars = {"src/arXiv_src_9912_001.tar": b"a", "src/arXiv_src_0001_002.tar": b"b",
            "src/arXiv_src_0001_001.tar": b"c", "src/arXiv_src_2301_001.tar": b"d"}
    entries = arxiv_bulk.parse_manifest(_manifest(tars))
    first = entries[0]
    assert (first.filename, first.yymm, first.seq_num, first.size, first.num_items) == \
        ("src/arXiv_src_9912_001.tar", "9912", 1, 1, 2)
    assert first.md5sum == hashlib.md5(b"a").hexdigest() and first.timestamp == dt.datetime(2026, 11, 20, 3, 4, 5)
    # two-digit years: 99 is 1999, 00 is 2000
    picked = arxiv_bulk.select_months(entries, "9912", "0001")
    assert [e.filename for e in picked] == ["src/arXiv_src_9912_001.tar", "src/arXiv_src_0001_001.tar",
                                            "src/arXiv_src_0001_002.tar"]
    with pytest.raises(ValueError):
        arxiv_bulk.select_months(entries, "0001", "9912")
    with pytest.raises(BadInputError, match="lacks filename, md5sum or yymm"):
        arxiv_bulk.parse_manifest(b"<arXivSRC><file><filename>src/x.tar</filename></file></arXivSRC>")
    with pytest.raises(BadInputError, match="not <arXivSRC>"):
        arxiv_bulk.parse_manifest(b"<other/>")
    assert arxiv_bulk.member_paper("2301/2301.00001.gz") == ("2301.00001", "eprint")
    assert arxiv_bulk.member_paper("1501/1501.0001.pdf") == ("1501.0001", "pdf")
    assert arxiv_bulk.member_paper("0001/astro-ph0001001.gz") == ("astro-ph/0001001", "eprint")
    assert arxiv_bulk.member_paper("0001/README.txt") is None


# --- arXiv tars end to end -----------------------------------------------------------------


def _two_tars():
    good = _tar([("1708/1708.00137.gz", _eprint("1708.00137.tar.gz")),
                 ("1708/1708.99999.gz", _eprint("1801.03879.tar.gz"))])
    other = _tar([("9802/hep-th9802040.gz", _eprint("9802040.tar.gz"))])
    return {"src/arXiv_src_1708_001.tar": good, "src/arXiv_src_9802_001.tar": other}


def test_bulk_run_corrupt_md5_fails_then_resumes_only_what_is_left(engine, s3_server, s3_env, tmp_path):
    tars = _two_tars()
    _requester_pays_bucket(s3_server, s3_env, {**tars, arxiv_bulk.MANIFEST_KEY: _manifest(
        tars, wrong_md5={"src/arXiv_src_9802_001.tar"})})
    # a paper the OAI harvest already listed (before the tar was made)
    harvest_window(engine, _Source([_record("1708.00137", dt.datetime(2026, 11, 1))]),
                   dt.date(2026, 11, 1), dt.date(2026, 11, 1), now=NOW)

    stage = _arxiv_stage(s3_env, tmp_path)
    plan = plan_arxiv(engine, stage, "9801", "1712")
    assert (plan.selected, plan.enqueued) == (2, 2)
    summary = drain(stage, engine, size=1)
    assert dict(summary.statuses) == {"done": 1, "pending": 2, "failed": 1}  # retried twice, then failed
    runs = _runs(engine, "bulk_arxiv")
    good, bad = runs["src/arXiv_src_1708_001.tar"], runs["src/arXiv_src_9802_001.tar"]
    assert good.status == "done" and good.output["members"] == 2 and good.output["known_papers"] == 1
    assert good.output["new_papers"] == 1 and good.output["queued_parse"] == 1
    assert bad.status == "failed" and bad.attempts == 3 and "md5 mismatch" in bad.reason
    with session_scope(engine) as s:
        papers = {p.external_id: p for p in s.scalars(select(Paper))}
        assert "hep-th/9802040" not in papers  # nothing of a tar that failed its checksum is written
        known, unknown = papers["1708.00137"], papers["1708.99999"]
        assert known.excluded_reason is None and known.title == "Paper 1708.00137"
        assert unknown.excluded_reason == AWAITING_METADATA
        files = s.execute(select(PaperFile.paper_id, PaperFile.role, PaperFile.name, PaperFile.source_updated_at,
                                 Artifact.size).join(Artifact, Artifact.id == PaperFile.artifact_id)).all()
        assert {(f.paper_id, f.role, f.name) for f in files} == {(known.id, "eprint", "1708.00137.eprint"),
                                                                 (unknown.id, "eprint", "1708.99999.eprint")}
        assert all(f.source_updated_at == dt.datetime(2026, 11, 20, 3, 4, 5) for f in files)
        parse = set(s.scalars(select(StageRun.entity_id).where(StageRun.stage == "parse")))
        assert parse == {str(known.id)}  # an unknown paper has no licence yet: not parsed
    finished_at = good.finished_at

    # the tar is replaced with a good copy; a second run only takes what is left
    _requester_pays_bucket(s3_server, s3_env, {arxiv_bulk.MANIFEST_KEY: _manifest(tars)})
    stage = _arxiv_stage(s3_env, tmp_path)
    plan = plan_arxiv(engine, stage, "9801", "1712", retry_failed=True)
    assert (plan.enqueued, plan.requeued, plan.done_before) == (0, 1, 1)
    summary = drain(stage, engine, size=1)
    assert summary.claimed == 1 and dict(summary.statuses) == {"done": 1}
    runs = _runs(engine, "bulk_arxiv")
    assert runs["src/arXiv_src_1708_001.tar"].finished_at == finished_at
    assert runs["src/arXiv_src_1708_001.tar"].attempts == 1
    with session_scope(engine) as s:
        old = s.scalars(select(Paper).where(Paper.external_id == "hep-th/9802040")).one()
        assert old.excluded_reason == AWAITING_METADATA
    # a third run finds everything done
    assert plan_arxiv(engine, _arxiv_stage(s3_env, tmp_path), "9801", "1712").done_before == 2
    assert drain(stage, engine).claimed == 0


def test_bulk_papers_parse_and_are_never_downloaded_again(engine, db_url, s3_server, s3_env, tmp_path):
    tars = _two_tars()
    _requester_pays_bucket(s3_server, s3_env, {**tars, arxiv_bulk.MANIFEST_KEY: _manifest(tars)})
    harvest_window(engine, _Source([_record("1708.00137", dt.datetime(2026, 11, 1))]),
                   dt.date(2026, 11, 1), dt.date(2026, 11, 1), now=NOW)
    stage = _arxiv_stage(s3_env, tmp_path)
    plan_arxiv(engine, stage, "1708", "1708")
    assert dict(drain(stage, engine).statuses) == {"done": 1}

    # the harvest had queued fetch for the known paper: it finds the e-print there already
    http = _NoDownloads()
    fetch = drain(FetchStage(http, ArtifactStore(tmp_path / "data"), arxiv_pdf="fallback"), engine)
    assert http.urls == [] and fetch.statuses["done"] == 1
    # the unknown paper's metadata arrives: it is no longer excluded, fetched without a download
    harvest_window(engine, _Source([_record("1708.99999", dt.datetime(2026, 11, 2))]),
                   dt.date(2026, 11, 2), dt.date(2026, 11, 2), now=NOW)
    fetch = drain(FetchStage(http, ArtifactStore(tmp_path / "data"), arxiv_pdf="fallback"), engine)
    assert http.urls == [] and fetch.statuses["done"] == 1
    with session_scope(engine) as s:
        unknown = s.scalars(select(Paper).where(Paper.external_id == "1708.99999")).one()
        assert unknown.excluded_reason is None and unknown.licence == "cc-by"
        known = s.scalars(select(Paper).where(Paper.external_id == "1708.00137")).one()
        known_id = known.id

    settings = load_settings({"FIGALIGN_DATA_DIR": str(tmp_path / "data"), "FIGALIGN_DATABASE_URL": db_url})
    parsed = drain(ParseStage(settings), engine)
    assert parsed.statuses["done"] == 2
    with session_scope(engine) as s:
        figs = s.scalars(select(FigureRow).where(FigureRow.paper_id == known_id, FigureRow.kind == "figure")).all()
        assert len(figs) == 3 and all(f.image_artifact_id for f in figs)
        assert s.get(Paper, known_id).parser == "latex"


def test_requester_pays_on_s3_and_a_local_mirror_works_the_same(s3_server, s3_env, tmp_path):
    """Every S3 request carries RequestPayer=requester; a mirror folder needs no such option."""
    tars = {"src/arXiv_src_1708_001.tar": _tar([("1708/1708.00137.gz", _eprint("1708.00137.tar.gz"))])}
    objects = {**tars, arxiv_bulk.MANIFEST_KEY: _manifest(tars)}
    _requester_pays_bucket(s3_server, s3_env, objects)
    location = BulkLocation.from_env("arxiv", {"FIGALIGN_ARXIV_BULK_URL": s3_env})
    assert location.storage_options == {"requester_pays": True}
    fs, _ = location.filesystem()
    assert fs.req_kw == {"RequestPayer": "requester"}  # what s3fs adds to every call
    assert BulkLocation.from_env("arxiv", {}).url == "s3://arxiv"
    mirror = tmp_path / "mirror"
    for key, data in objects.items():
        (mirror / key).parent.mkdir(parents=True, exist_ok=True)
        (mirror / key).write_bytes(data)
    local = BulkLocation.from_env("arxiv", {"FIGALIGN_ARXIV_BULK_URL": str(mirror)})
    assert local.storage_options == {}
    assert local.read_bytes(arxiv_bulk.MANIFEST_KEY) == location.read_bytes(arxiv_bulk.MANIFEST_KEY)


def test_hostile_tar_members_are_refused_with_reasons(engine, s3_server, s3_env, tmp_path):
    link = tarfile.TarInfo("1708/1708.00003.gz")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    device = tarfile.TarInfo("1708/1708.00004.gz")
    device.type = tarfile.CHRTYPE
    good = _eprint("1708.00137.tar.gz")
    tar = _tar([("../../etc/1708.00001.gz", good), ("/abs/1708.00002.gz", good), link, device,
                ("1708/1708.00005.gz", b"plain text, not gzip"), ("1708/README.txt", b"hello"),
                ("1708/1708.00006.gz", b"\x1f\x8b" + b"\0" * (2 * 1024 * 1024)),
                ("1708/1708.00137.gz", good)])
    tars = {"src/arXiv_src_1708_001.tar": tar}
    _requester_pays_bucket(s3_server, s3_env, {**tars, arxiv_bulk.MANIFEST_KEY: _manifest(tars)})
    stage = _arxiv_stage(s3_env, tmp_path, FIGALIGN_BULK_MAX_MEMBER_MB="1")
    plan_arxiv(engine, stage, "1708", "1708")
    assert dict(drain(stage, engine).statuses) == {"done": 1}
    run = _runs(engine, "bulk_arxiv")["src/arXiv_src_1708_001.tar"]
    assert run.output["members"] == 1 and run.output["refused"] == 7
    reasons = run.output["refusals"]
    assert reasons["../../etc/1708.00001.gz"] == "path traversal"
    assert reasons["/abs/1708.00002.gz"] == "absolute path"
    assert reasons["1708/1708.00003.gz"] == "link"
    assert reasons["1708/1708.00004.gz"] == "device or fifo"
    assert reasons["1708/1708.00005.gz"].startswith("not gzip data")
    assert reasons["1708/README.txt"].startswith("name is no arXiv e-print")
    assert "over the cap" in reasons["1708/1708.00006.gz"]
    with session_scope(engine) as s:
        assert list(s.scalars(select(Paper.external_id))) == ["1708.00137"]


@pytest.mark.parametrize("workers", [2])
def test_two_claimers_never_process_one_tar_twice(engine, s3_server, s3_env, tmp_path, workers):
    small = _eprint("1801.03879.tar.gz")
    tars = {f"src/arXiv_src_1708_{n:03d}.tar": _tar([(f"1708/1708.{n:05d}.gz", small)]) for n in range(1, 7)}
    _requester_pays_bucket(s3_server, s3_env, {**tars, arxiv_bulk.MANIFEST_KEY: _manifest(tars)})
    seen: Counter = Counter()
    lock = threading.Lock()

    class Counting(ArxivBulkStage):
        def compute(self, item, job):
            with lock:
                seen[item.entity_id] += 1
            return super().compute(item, job)

    plan_arxiv(engine, _arxiv_stage(s3_env, tmp_path), "1708", "1708")
    stages = [Counting(_arxiv_stage(s3_env, tmp_path).location, ArtifactStore(tmp_path / "data"))
              for _ in range(workers)]
    barrier = threading.Barrier(workers)
    results = []

    def work(stage):
        barrier.wait()
        results.append(drain(stage, engine, size=1))

    threads = [threading.Thread(target=work, args=(s,)) for s in stages]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(seen) == sorted(tars) and set(seen.values()) == {1}
    assert sum(r.statuses["done"] for r in results) == len(tars)
    assert all(r.attempts == 1 and r.status == "done" for r in _runs(engine, "bulk_arxiv").values())


# --- bioRxiv / medRxiv MECA ---------------------------------------------------------------------

MECA_MANIFEST = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE manifest SYSTEM "MECA_manifest.dtd">
<manifest xmlns="http://manuscriptexchange.org" version="1.0">
  <item type="article" id="a1"><instance media-type="application/xml" href="content/{stem}.xml"/></item>
  <item type="pdf" id="p1"><instance media-type="application/pdf" href="content/{stem}.pdf"/></item>
  {figures}
</manifest>"""


def _figure_item(href: str) -> str:
    return f'<item type="figure"><instance media-type="image/png" href="{href}"/></item>'


def _meca(members: dict[str, bytes], figures: list[str], stem: str = "pone.0000010", links: tuple = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.xml", MECA_MANIFEST.format(stem=stem, figures="".join(map(_figure_item, figures))))
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _plos_package() -> tuple[dict[str, bytes], list[str]]:
    folder = FIXTURES / "papers" / "pone.0000010"
    members = {"content/pone.0000010.xml": (folder / "pone.0000010.xml").read_bytes(),
               "content/pone.0000010.pdf": (folder / "pone.0000010.pdf").read_bytes()}
    figures = []
    for png in sorted(folder.glob("*.png")):
        members[f"content/{png.name}"] = png.read_bytes()
        figures.append(f"content/{png.name}")
    return members, figures


def test_meca_packages_take_the_jats_path_with_their_figure_files(engine, db_url, s3_server, s3_env, tmp_path):
    members, figures = _plos_package()
    good = _meca(members, figures)
    hostile_members = dict(members)
    hostile_members["content/bomb.png"] = b"\0" * (3 * 1024 * 1024)
    hostile = _meca(hostile_members, ["../../evil.png", "/abs.png", "content/missing.png", "content/bomb.png",
                                      "content/link.png", figures[0]], links=("content/link.png",))
    month = "Current_Content/November_2026"
    _requester_pays_bucket(s3_server, s3_env, {
        f"{month}/27_Nov_26_Batch_1/0a1b2c3d-good.meca": good,
        f"{month}/27_Nov_26_Batch_1/4e5f6a7b-nomanifest.meca": _tar([("x", b"y")]),
        "Current_Content/October_2026/99-other.meca": good,
    })
    location = BulkLocation.from_env("medrxiv", {"FIGALIGN_MEDRXIV_BULK_URL": s3_env,
                                                 "FIGALIGN_BULK_MAX_MEMBER_MB": "2"})
    stage = MecaBulkStage("medrxiv", location, ArtifactStore(tmp_path / "data"))
    plan = plan_meca(engine, stage, ["Current_Content/November_2026"])
    assert plan.selected == 2  # October's package is not in the month asked for
    summary = drain(stage, engine)
    assert dict(summary.statuses) == {"done": 1, "failed": 1}
    runs = _runs(engine, "bulk_medrxiv")
    assert "not a zip" in runs[f"{month}/27_Nov_26_Batch_1/4e5f6a7b-nomanifest.meca"].reason
    done = runs[f"{month}/27_Nov_26_Batch_1/0a1b2c3d-good.meca"]
    assert done.output["figures"] == 3 and done.output["refused"] == 0
    with session_scope(engine) as s:
        paper = s.scalars(select(Paper)).one()
        assert (paper.source, paper.external_id, paper.version) == ("medrxiv", "10.1371/journal.pone.0000010", "1")
        assert paper.licence == "cc-by" and paper.excluded_reason is None
        roles = Counter(s.scalars(select(PaperFile.role).where(PaperFile.paper_id == paper.id)))
        assert roles == {"jats": 1, "jats-text": 1, "pdf": 1, "media": 3}
        paper_id = paper.id

    settings = load_settings({"FIGALIGN_DATA_DIR": str(tmp_path / "data"), "FIGALIGN_DATABASE_URL": db_url})
    assert dict(drain(ParseStage(settings), engine).statuses) == {"done": 1}
    with session_scope(engine) as s:
        assert s.get(Paper, paper_id).parser == "jats"
        figs = s.scalars(select(FigureRow).where(FigureRow.paper_id == paper_id, FigureRow.kind == "figure")
                         .order_by(FigureRow.ordinal)).all()
        assert [f.number for f in figs] == ["1", "2", "3"]
        # the figures' pixels are the package's own figure files, not crops of the PDF
        originals = {pixel_sha256(p) for p in (FIXTURES / "papers" / "pone.0000010").glob("*.png")}
        assert {f.pixel_sha256 for f in figs} == originals

    # a hostile package: each bad member refused with its reason, the paper still stored
    _requester_pays_bucket(s3_server, s3_env, {f"{month}/28_Nov_26_Batch_2/hostile.meca": hostile})
    plan_meca(engine, stage, ["Current_Content/November_2026"])
    assert dict(drain(stage, engine).statuses) == {"done": 1}
    reasons = _runs(engine, "bulk_medrxiv")[f"{month}/28_Nov_26_Batch_2/hostile.meca"].output["refusals"]
    assert reasons["../../evil.png"] == "path traversal"
    assert reasons["/abs.png"] == "absolute path"
    assert reasons["content/missing.png"] == "listed in the manifest but not in the package"
    assert "over the cap" in reasons["content/bomb.png"] or "zip bomb" in reasons["content/bomb.png"]
    assert reasons["content/link.png"] == "link or device"


def test_meca_excluded_licence_keeps_the_row_and_stores_no_files(engine, s3_server, s3_env, tmp_path):
    members, figures = _plos_package()
    xml = members["content/pone.0000010.xml"]
    start = xml.index(b"<copyright-statement>")
    end = xml.index(b"</copyright-statement>") + len(b"</copyright-statement>")
    members["content/pone.0000010.xml"] = xml[:start] + xml[end:]  # no licence stated
    _requester_pays_bucket(s3_server, s3_env, {"Current_Content/November_2026/x.meca": _meca(members, figures)})
    location = BulkLocation.from_env("biorxiv", {"FIGALIGN_BIORXIV_BULK_URL": s3_env})
    stage = MecaBulkStage("biorxiv", location, ArtifactStore(tmp_path / "data"))
    plan_meca(engine, stage, ["Current_Content/November_2026"])
    assert dict(drain(stage, engine).statuses) == {"done": 1}
    with session_scope(engine) as s:
        paper = s.scalars(select(Paper)).one()
        assert paper.excluded_reason.startswith("licence: unknown")
        assert s.scalars(select(PaperFile)).all() == []
        assert s.scalars(select(StageRun).where(StageRun.stage == "parse")).all() == []


# --- the CLI and the Airflow task bodies ---------------------------------------------------------


def test_cli_arxiv_bulk_runs_and_a_second_run_skips_done_tars(engine, db_url, s3_server, s3_env, tmp_path,
                                                               monkeypatch, capsys):
    import json

    from figalign.cli import main

    tars = {"src/arXiv_src_1708_001.tar": _tar([("1708/1708.00137.gz", _eprint("1708.00137.tar.gz"))])}
    _requester_pays_bucket(s3_server, s3_env, {**tars, arxiv_bulk.MANIFEST_KEY: _manifest(tars)})
    monkeypatch.setenv("FIGALIGN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FIGALIGN_DATABASE_URL", db_url)
    monkeypatch.setenv("FIGALIGN_ARXIV_BULK_URL", s3_env)
    assert main(["harvest", "arxiv-bulk", "--from-yymm", "1708", "--until-yymm", "1708"]) == 0
    plan, summary = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert plan["plan"]["enqueued"] == 1 and summary["statuses"] == {"done": 1}
    assert main(["harvest", "arxiv-bulk", "--from-yymm", "1708", "--until-yymm", "1708"]) == 0
    plan, summary = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert plan["plan"]["done_before"] == 1 and summary["claimed"] == 0
    with pytest.raises(SystemExit):
        main(["harvest", "arxiv-bulk", "--from-yymm", "1713", "--until-yymm", "1708"])
    # a tar replaced in the manifest (new md5) is read again
    tars = {"src/arXiv_src_1708_001.tar": _tar([("1708/1708.00137.gz", _eprint("1708.00137.tar.gz")),
                                                ("1708/1708.00138.gz", _eprint("1801.03879.tar.gz"))])}
    _requester_pays_bucket(s3_server, s3_env, {**tars, arxiv_bulk.MANIFEST_KEY: _manifest(tars)})
    assert main(["harvest", "arxiv-bulk", "--from-yymm", "1708", "--until-yymm", "1708"]) == 0
    plan, summary = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert plan["plan"]["requeued"] == 1 and summary["statuses"] == {"done": 1}
    with session_scope(engine) as s:
        assert sorted(s.scalars(select(Paper.external_id))) == ["1708.00137", "1708.00138"]


def test_task_bodies_plan_then_workers_share_the_queue(engine, db_url, s3_server, s3_env, tmp_path, monkeypatch):
    from figalign.stages.bulk import plan_from_params, work_queue
    from figalign.store.queue import RunContext

    members, figures = _plos_package()
    package = _meca(members, figures)
    _requester_pays_bucket(s3_server, s3_env, {f"Current_Content/{m}_2026/{m}.meca": package
                                               for m in ("October", "November", "December")})
    settings = load_settings({"FIGALIGN_DATA_DIR": str(tmp_path / "data"), "FIGALIGN_DATABASE_URL": db_url})
    monkeypatch.setenv("FIGALIGN_BIORXIV_BULK_URL", s3_env)
    plan = plan_from_params("biorxiv", {"from_month": "October_2026", "until_month": "November_2026",
                                        "folders": ["Current_Content/December_2026"]}, settings)
    assert (plan["selected"], plan["enqueued"]) == (3, 3)
    first = work_queue("biorxiv", settings, ctx=RunContext(owner="w1"), max_items=1)
    rest = work_queue("biorxiv", settings, ctx=RunContext(owner="w2"))
    assert first["claimed"] == 1 and rest["claimed"] == 2
    assert all(r.status == "done" and r.attempts == 1 for r in _runs(engine, "bulk_biorxiv").values())
    with pytest.raises(ValueError, match="name months"):
        plan_from_params("biorxiv", {}, settings)
    with pytest.raises(ValueError, match="not a bucket folder"):
        plan_from_params("biorxiv", {"folders": ["../other-bucket"]}, settings)


@pytest.mark.slow
def test_a_tar_is_streamed_not_held_in_memory(s3_server, s3_env, tmp_path):
    """A 134 MB tar of 8 MB members goes through with a Python heap peak bounded by a few members
    and read blocks, not by the tar."""
    import os
    import tracemalloc

    from figalign.store.queue import Claimed

    members = [(f"1708/1708.{n:05d}.gz", b"\x1f\x8b" + os.urandom(8 * 1024 * 1024)) for n in range(1, 17)]
    tars = {"src/arXiv_src_1708_001.tar": _tar(members)}
    _requester_pays_bucket(s3_server, s3_env, {**tars, arxiv_bulk.MANIFEST_KEY: _manifest(tars)})
    size = len(tars["src/arXiv_src_1708_001.tar"])
    del tars, members
    stage = _arxiv_stage(s3_env, tmp_path)
    item = Claimed(1, stage.name, stage.entity_type, "src/arXiv_src_1708_001.tar", 1, "t")
    job = stage.load(None, item)
    tracemalloc.start()
    try:
        job = stage.compute(item, job)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(job.stored) == 16 and job.bytes == size
    print(f"streamed a {size / 1e6:.0f} MB tar with a Python heap peak of {peak / 1e6:.1f} MB")
    assert peak < 64e6 < size / 2, f"peak {peak / 1e6:.0f} MB for a {size / 1e6:.0f} MB tar"


def test_meca_manifest_without_figure_items_takes_the_images_beside_the_jats():
    from figalign.sources import meca

    members, figures = _plos_package()
    members["elsewhere/stray.png"] = members[figures[0]]
    with zipfile.ZipFile(io.BytesIO(_meca(members, []))) as zf:
        package = meca.read_package(zf, max_member_bytes=10 << 20, max_total_bytes=40 << 20)
    assert package.jats.name == "pone.0000010.xml" and package.pdf.name == "pone.0000010.pdf"
    assert [f.name for f in package.media] == [p.rsplit("/", 1)[1] for p in figures]
    bombed = {**members, "content/zeros.png": b"\0" * (3 << 20)}
    with zipfile.ZipFile(io.BytesIO(_meca(bombed, ["content/zeros.png"]))) as zf:
        package = meca.read_package(zf, max_member_bytes=10 << 20, max_total_bytes=40 << 20)
    assert package.media == [] and package.refused == [("content/zeros.png", "compression ratio over 200:1 (zip bomb?)")]
    with zipfile.ZipFile(io.BytesIO(_meca(members, []))) as zf, pytest.raises(BadInputError, match="zip bomb"):
        meca.read_package(zf, max_member_bytes=10 << 20, max_total_bytes=200_000)
    assert meca.month_range("November_2026", "Feb_2027") == [
        "Current_Content/November_2026", "Current_Content/December_2026", "Current_Content/January_2027",
        "Current_Content/February_2027"]
    meta = meca.jats_meta(members["content/pone.0000010.xml"])
    assert (meta.doi, meta.version, meta.licence) == ("10.1371/journal.pone.0000010", "1", "cc-by")
    versioned = members["content/pone.0000010.xml"].replace(b"</article-meta>",
                                                            b"<article-version>1.3</article-version></article-meta>")
    assert meca.jats_meta(versioned).version == "3"
