"""What an export contains: the selection of samples and the one metadata record per sample.

Every format writes the same ``Sample.meta`` dict (one fixed schema, ``FIELDS``), so a
sample means the same thing in JSONL, WebDataset and Parquet and can be traced back to
its paper (doi/arXiv id, source URL), file (figure key, image sha256, parser) and model
(recaption model, prompt hash, parameter hash).

Selection: a figure is exported when it has an image and an original caption, is not
filtered for content, is not a duplicate, and its paper passes the export policy *now*
(licence allow-list, not retracted) — the policy is re-checked here because papers get
retracted and exports may opt in to licences the filter stage did not allow.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import math
import re
from collections import defaultdict, namedtuple
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from figalign.filters import FilterPolicy, is_policy_reason, policy_reason
from figalign.storage import ArtifactStore
from figalign.store.models import Artifact, Caption, CitationContextRow, FigureRow, Metric, Paper

CHUNK = 500
_PLAIN_READ = ArtifactStore.read_bytes
MEDIA_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp",
             "image/tiff": "tif"}

FIELDS: dict[str, str] = {
    "key": "string", "figure_id": "int64", "figure_key": "string", "label": "string", "kind": "string",
    "source": "string", "external_id": "string", "version": "string", "doi": "string", "arxiv_id": "string",
    "title": "string", "categories": "list<string>", "discipline": "string", "licence": "string",
    "licence_url": "string", "source_url": "string", "image_path": "string", "image_tar": "string",
    "image_sha256": "string",
    "image_bytes": "int64", "width": "int64", "height": "int64", "caption": "string", "recaption": "string",
    "recaption_model": "string", "recaption_prompt_hash": "string", "recaption_params_hash": "string",
    "contexts": "list<context>", "metrics": "list<metric>", "parser": "string", "parser_version": "string",
    "unit": "string", "parent_key": "string", "panel_label": "string", "image_origin": "string",
}
"""The metadata schema, in output order. ``image_path`` is filled by each format."""

CONTEXT_FIELDS = ("text", "section", "mention")
METRIC_FIELDS = ("metric", "model", "caption_kind", "value")


@dataclass(frozen=True)
class Sample:
    """One exportable figure: its metadata and where its image bytes are."""

    key: str
    source: str
    image_uri: str
    image_ext: str
    created: dt.datetime
    meta: dict[str, Any]
    ordinal: int = 0  # rank among the paper's figures (1-based) when the export asked for it
    scores: dict = field(default_factory=dict, compare=False)
    """(metric, model, caption kind) → value of this sample's own original caption and exported
    recaption (``meta["metrics"]`` also lists older recaptions' rows): what quality rules read."""
    notes: tuple[str, ...] = ()  # what the release's rules changed (e.g. the recaption removed, and why)

    def read_image(self, store: ArtifactStore) -> bytes:
        uri = self.image_uri
        if type(store).read_bytes is _PLAIN_READ and ("://" not in uri or uri.startswith("file://")):
            with open(uri.removeprefix("file://"), "rb") as fh:  # what read_bytes does, minus pathlib
                return fh.read()
        return store.read_bytes(uri)

    def read_image_into(self, store: ArtifactStore, view: memoryview) -> int:
        """Read the image into ``view``; return its length (at most ``len(view)`` is read)."""
        uri = self.image_uri
        if type(store).read_bytes is _PLAIN_READ and ("://" not in uri or uri.startswith("file://")):
            with open(uri.removeprefix("file://"), "rb", buffering=0) as fh:
                total = 0
                while total < len(view) and (n := fh.readinto(view[total:])):
                    total += n
                return total
        data = store.read_bytes(uri)
        n = min(len(data), len(view))
        view[:n] = data[:n]
        return len(data)

    @property
    def mtime(self) -> int:
        """Tar member time: the figure's creation (naive UTC), so re-exports are byte-identical."""
        return calendar.timegm(self.created.utctimetuple()) if self.created else 0


def json_bytes(record: dict[str, Any]) -> bytes:
    """A sample's record as one line of compact UTF-8 JSON (no newline).

    Kept optimisation: ``msgspec.json.encode`` (installed with Airflow) takes ~4 µs per
    record against ~20 µs for ``json.dumps``, about a twentieth of the WebDataset and
    S1-MMAlign data paths (``bench/bench_export.py``; docs/benchmarks.md, "The export's own
    CPU work"). msgspec writes a NaN or infinite float as ``null``; the rare record holding one (a
    metric value) goes through ``json.dumps`` instead, which writes ``NaN``/``Infinity`` as
    before, so no value changes meaning.
    """
    if all(math.isfinite(m["value"]) for m in record.get("metrics") or ()):
        return msgspec.json.encode(record)
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_-]")


def sample_key(figure_id: int, figure_key: str) -> str:
    """A key safe for WebDataset and tar: ASCII letters, digits, '_' and '-' only.

    WebDataset splits a member name at the first dot of its basename, so dots (and
    colons, slashes) must go; the zero-padded figure id keeps keys unique and sorted.
    """
    cleaned = _UNSAFE_KEY.sub("_", figure_key)
    return f"{figure_id:010d}-{cleaned.strip('_')[:80]}"  # member names stay within tar's 100 chars


def source_url(paper) -> str | None:
    """The paper's landing page, for a person to check the sample against its source
    (``paper``: a Paper or a row with its columns)."""
    if paper.source == "arxiv" and paper.external_id:
        version = f"v{paper.version.lstrip('v')}" if paper.version else ""
        return f"https://arxiv.org/abs/{paper.external_id}{version}"
    if paper.doi:
        return f"https://doi.org/{paper.doi}"
    if paper.source == "pmc" and paper.external_id:
        return f"https://pmc.ncbi.nlm.nih.gov/articles/{paper.external_id}/"
    urls = paper.source_urls or {}
    files = urls.get("files") or []
    if files and files[0].get("url"):
        return files[0]["url"]
    return urls.get("landing") or urls.get("folder")


def exportable(row, paper, policy: FilterPolicy) -> bool:
    """Kept by the filter stage (or held back only by a policy reason), and allowed now."""
    if row.duplicate_of_id is not None or row.image_artifact_id is None:
        return False
    if row.filter_reason is not None and not is_policy_reason(row.filter_reason):
        return False
    return policy_reason(paper.licence, paper.retracted, policy) is None


# plain columns, not ORM entities: selection is a large share of export time
COLUMNS = (FigureRow.id, FigureRow.paper_id, FigureRow.figure_key, FigureRow.label, FigureRow.kind, FigureRow.width,
           FigureRow.height, FigureRow.parser, FigureRow.parser_version, FigureRow.filter_reason,
           FigureRow.duplicate_of_id, FigureRow.image_artifact_id, FigureRow.created_at, FigureRow.image_origin,
           FigureRow.subfigures, Artifact.sha256,
           Artifact.size, Artifact.storage_uri, Artifact.media_type)
FigureColumns = namedtuple("FigureColumns", [c.key for c in COLUMNS])
CAPTION_COLUMNS = (Caption.id, Caption.figure_id, Caption.kind, Caption.text, Caption.model, Caption.prompt_hash,
                   Caption.params_hash)
CaptionColumns = namedtuple("CaptionColumns", [c.key for c in CAPTION_COLUMNS])


def core_rows(session: Session, query):
    """Run a plain-column query on the session's connection (SQLAlchemy Core), not the ORM.

    Kept optimisation: ``Session.execute`` builds a second row object per result row
    (``orm.loading``): 25 % of the metrics query's time, 13 % of ``iter_samples``'
    instructions under callgrind (``bench/bench_export.py``; docs/benchmarks.md, "The
    export's own CPU work"). The export's session only reads, so the ORM's autoflush had nothing to do.
    """
    return session.connection().execute(query)


def named_rows(session: Session, query, fields) -> list:
    """The rows of ``query`` as ``fields`` named tuples (``FigureColumns``, ``CaptionColumns``).

    Kept optimisation: reading a column off SQLAlchemy's ``Row`` by attribute first fails a
    type lookup and formats that AttributeError's message before it finds the column
    (~2,700 instructions; the export read ~45 per sample: ~10 % of the S1-MMAlign writer's
    main thread under callgrind); a named tuple's field is an index. Measured with
    ``bench/bench_export.py`` (docs/benchmarks.md, "The export's own CPU work").
    """
    return list(map(fields._make, core_rows(session, query)))


PAPER_COLUMNS = (Paper.id, Paper.source, Paper.external_id, Paper.version, Paper.doi, Paper.title, Paper.categories,
                 Paper.discipline, Paper.licence, Paper.licence_url, Paper.retracted, Paper.source_urls)


@dataclass(frozen=True)
class PaperFields:
    """A paper's share of every sample's record, built once per paper (not once per figure:
    papers have several figures, and their JSON columns cost a decode each)."""

    source: str
    external_id: str | None
    version: str | None
    doi: str | None
    arxiv_id: str | None
    title: str | None
    categories: list[str]
    discipline: str | None
    licence: str | None
    licence_url: str | None
    retracted: bool
    source_url: str | None

    @classmethod
    def of(cls, row) -> PaperFields:
        version = f"v{row.version.lstrip('v')}" if row.version else ""
        arxiv_id = f"{row.external_id}{version}" if row.source == "arxiv" else None
        return cls(row.source, row.external_id, row.version or None, row.doi, arxiv_id, row.title,
                   [str(c) for c in (row.categories or [])], row.discipline, row.licence, row.licence_url,
                   bool(row.retracted), source_url(row))


class PaperCache:
    """``PaperFields`` by paper id, loaded for a chunk's papers in one query; bounded, since
    figures come in id order and a paper's figures are mostly next to each other.

    Kept optimisation: decoding each paper's JSON columns once per paper instead of once per
    figure saved ~15 % of the export's data path (``bench/bench_export.py``, docs/benchmarks.md)."""

    LIMIT = 20_000

    def __init__(self, session: Session):
        self.session = session
        self.papers: dict[int, PaperFields] = {}

    def load(self, paper_ids: set[int]) -> dict[int, PaperFields]:
        missing = paper_ids - self.papers.keys()
        if len(self.papers) + len(missing) > self.LIMIT:
            self.papers = {pid: self.papers[pid] for pid in paper_ids - missing}
        if missing:
            rows = core_rows(self.session, select(*PAPER_COLUMNS).where(Paper.id.in_(missing)))
            self.papers.update((row.id, PaperFields.of(row)) for row in rows)
        return self.papers


def _base_query(since: dt.datetime | None):
    query = (select(*COLUMNS)
             .join(Artifact, Artifact.id == FigureRow.image_artifact_id)
             .where(FigureRow.duplicate_of_id.is_(None))
             .order_by(FigureRow.id))
    if since is not None:
        newer_caption = select(Caption.figure_id).where(Caption.created_at >= since)
        newer_metric = select(Metric.figure_id).where(Metric.created_at >= since)
        query = query.where(or_(FigureRow.created_at >= since, FigureRow.updated_at >= since,
                                FigureRow.id.in_(newer_caption), FigureRow.id.in_(newer_metric)))
    return query


def iter_samples(session: Session, policy: FilterPolicy | None = None,
                 since: dt.datetime | None = None, *, ordinals: bool = False,
                 units: str = "figures") -> Iterator[Sample]:
    """Exportable samples in figure-id order, loaded in chunks (constant memory).

    ``ordinals`` also ranks each figure among its paper's figures (S1-MMAlign's
    ``figNNN`` names): one more query per chunk, so only the formats that need it ask.
    ``units`` (``export.units``): whole figures, their panels (one more query per chunk), or
    each figure followed by its panels.
    """
    policy = policy or FilterPolicy.from_env()
    papers = PaperCache(session)
    last_id = 0
    while True:
        rows = named_rows(session, _base_query(since).where(FigureRow.id > last_id).limit(CHUNK), FigureColumns)
        if not rows:
            return
        last_id = rows[-1].id
        by_id = papers.load({r.paper_id for r in rows})
        keep = [(r, by_id[r.paper_id]) for r in rows if exportable(r, by_id[r.paper_id], policy)]
        ranks = _ordinals(session, {r.paper_id for r, _ in keep}) if ordinals and keep else {}
        yield from _build(session, keep, ranks, units)


def _ordinals(session: Session, paper_ids: set[int]) -> dict[int, int]:
    """Figure id → its 1-based rank among all its paper's figure rows (kept or not), so a
    figure's number does not change when a neighbour is filtered or exported later."""
    out: dict[int, int] = {}
    counts: dict[int, int] = defaultdict(int)
    rows = core_rows(session, select(FigureRow.paper_id, FigureRow.id).where(FigureRow.paper_id.in_(paper_ids))
                     .order_by(FigureRow.paper_id, FigureRow.id))
    for paper_id, fid in rows:
        counts[paper_id] += 1
        out[fid] = counts[paper_id]
    return out


def _build(session: Session, rows: list, ranks: dict[int, int] | None = None,
           units: str = "figures") -> Iterator[Sample]:
    from figalign.export.units import artifact_uris, panel_samples

    ids = [r.id for r, _ in rows]
    if not ids:
        return
    ranks = ranks or {}
    panels = units != "figures"
    uris = artifact_uris(session, [r.subfigures for r, _ in rows]) if panels else {}
    originals, recaptions = _captions(session, ids)
    contexts = _contexts(session, ids)
    metrics, scored = _metrics(session, ids)
    for row, paper in rows:
        original = originals.get(row.id)
        if original is None or not original.text:
            continue  # no original caption: not a sample (the filter stage records why)
        recap = recaptions.get(row.id)
        mine = {original.id, recap.id if recap else None}
        scores = {(m, model, kind): v for cid, m, model, kind, v in scored[row.id] if cid in mine}
        sample = _sample(row, paper, original.text, recap, contexts[row.id], metrics[row.id],
                         ranks.get(row.id, 0), scores)
        if units != "panels":
            yield sample
        if panels:
            yield from panel_samples(sample, row.subfigures, uris)


def _captions(session: Session, ids: list[int]) -> tuple[dict[int, Any], dict[int, Any]]:
    """The original caption, and the latest accepted recaption, per figure (``CaptionColumns``)."""
    originals: dict[int, Any] = {}
    recaptions: dict[int, Any] = {}
    rows = named_rows(session, select(*CAPTION_COLUMNS)
                      .where(Caption.figure_id.in_(ids), Caption.status == "accepted")
                      .order_by(Caption.figure_id, Caption.created_at, Caption.id), CaptionColumns)
    for cap in rows:
        if cap.kind == "original":
            originals.setdefault(cap.figure_id, cap)
        elif cap.kind == "recaption" and cap.text:
            recaptions[cap.figure_id] = cap  # ordered by time: the last one wins
    return originals, recaptions


def _contexts(session: Session, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    rows = core_rows(session, select(CitationContextRow.figure_id, CitationContextRow.text,
                                     CitationContextRow.section, CitationContextRow.mention)
                     .where(CitationContextRow.figure_id.in_(ids))
                     .order_by(CitationContextRow.figure_id, CitationContextRow.position))
    for fid, text, section, mention in rows:
        out[fid].append({"text": text, "section": section, "mention": mention})
    return out


def _metrics(session: Session, ids: list[int]) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[tuple]]]:
    """Every metric row per figure (as exported), and the same rows with their caption id,
    from which each sample keeps the scores of *its* two captions (``Sample.scores``)."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    scored: dict[int, list[tuple]] = defaultdict(list)
    rows = core_rows(session, select(Metric.figure_id, Metric.metric, Metric.model, Metric.caption_kind,
                                     Metric.value, Metric.caption_id)
                     .where(Metric.figure_id.in_(ids))
                     .order_by(Metric.figure_id, Metric.metric, Metric.model, Metric.caption_kind))
    for fid, metric, model, kind, value, caption_id in rows:
        out[fid].append({"metric": metric, "model": model, "caption_kind": kind, "value": float(value)})
        scored[fid].append((caption_id, metric, model, kind, float(value)))
    return out, scored


def _sample(row, paper: PaperFields, caption: str, recap, contexts: list[dict[str, Any]],
            metrics: list[dict[str, Any]], ordinal: int = 0, scores: dict | None = None) -> Sample:
    key = sample_key(row.id, row.figure_key)
    meta = {
        "key": key, "figure_id": row.id, "figure_key": row.figure_key, "label": row.label, "kind": row.kind,
        "source": paper.source, "external_id": paper.external_id, "version": paper.version,
        "doi": paper.doi, "arxiv_id": paper.arxiv_id, "title": paper.title, "categories": list(paper.categories),
        "discipline": paper.discipline, "licence": paper.licence, "licence_url": paper.licence_url,
        "source_url": paper.source_url, "image_path": None, "image_tar": None, "image_sha256": row.sha256,
        "image_bytes": int(row.size), "width": row.width, "height": row.height,
        "caption": caption, "recaption": recap.text if recap else None,
        "recaption_model": recap.model if recap else None,
        "recaption_prompt_hash": recap.prompt_hash if recap else None,
        "recaption_params_hash": recap.params_hash if recap else None,
        "contexts": contexts, "metrics": metrics, "parser": row.parser, "parser_version": row.parser_version,
        "unit": "figure", "parent_key": None, "panel_label": None, "image_origin": row.image_origin,
    }
    ext = MEDIA_EXT.get(row.media_type or "", "png")
    return Sample(key, paper.source, row.storage_uri, ext, row.created_at, meta, ordinal, scores or {})


def pa_schema(*, with_image: bool = False):
    """The pyarrow schema of ``FIELDS`` (plus an HF-style image struct when embedding)."""
    import pyarrow as pa

    context = pa.struct([(f, pa.string()) for f in CONTEXT_FIELDS])
    metric = pa.struct([("metric", pa.string()), ("model", pa.string()), ("caption_kind", pa.string()),
                        ("value", pa.float64())])
    types = {"string": pa.string(), "int64": pa.int64(), "list<string>": pa.list_(pa.string()),
             "list<context>": pa.list_(context), "list<metric>": pa.list_(metric)}
    fields = [pa.field(name, types[kind]) for name, kind in FIELDS.items()]
    if with_image:
        fields.append(pa.field("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
    return pa.schema(fields)


def hf_features():
    """``datasets.Features`` of the metadata record.

    WebDataset loaders infer types from the first few samples; passing these features
    makes loading independent of which fields happen to be empty there.
    """
    import datasets

    return datasets.Features.from_arrow_schema(pa_schema())


def features_for(fmt: str, *, embed_images: bool = False, image_ext: str = "png"):
    """The ``datasets.Features`` a format loads as; ``None`` without ``datasets`` installed.

    Written into the card (``dataset_info``) and ``features.json`` so loaders need not
    guess types from the first samples (WebDataset inference looks at five). Exports use
    ``features_dict`` (the same, as ``Features.to_dict()``).
    """
    try:
        import datasets
    except ModuleNotFoundError:
        return None
    meta = hf_features()
    if fmt == "webdataset":
        return datasets.Features({"__key__": datasets.Value("string"), "__url__": datasets.Value("string"),
                                  "json": meta, image_ext: datasets.Image()})
    if fmt == "parquet" and embed_images:
        meta["image"] = datasets.Image()
    if fmt == "s1mmalign":
        meta["categories"] = datasets.Value("string")  # the published type (see s1mmalign.categories_text)
    return meta


def features_dict(fmt: str, *, embed_images: bool = False, image_ext: str = "png") -> dict[str, Any] | None:
    """``features_for(...).to_dict()``: what ``features.json`` holds; ``None`` without ``datasets``."""
    features = features_for(fmt, embed_images=embed_images, image_ext=image_ext)
    return None if features is None else features.to_dict()


def features_yaml(features: dict[str, Any]) -> dict[str, Any]:
    """The card's ``dataset_info`` for a ``features_dict``, as ``datasets`` writes it in its own cards."""
    import datasets

    return datasets.DatasetInfo(features=datasets.Features.from_dict(features))._to_yaml_dict()
