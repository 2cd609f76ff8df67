"""`doc_md` of each DAG, shown on its page in the Airflow UI."""

COMMON = """
**Store**: every item's outcome is a row in figalign's `stage_runs` table (status, reason,
error, and this run's dag/run/task/try ids). XCom carries counts only; the `summary` task's
XCom shows claimed/done/failed per stage and the top failure reasons for this run.
Re-running is safe: work already done is skipped; a batch whose worker died comes back when
its lease expires.
"""

DOCS = {
    "harvest_arxiv": """### figalign · harvest arXiv
Daily incremental OAI-PMH harvest (`metadataPrefix=arXiv`, licence included) of the run's data
interval: the run at 00:00 UTC harvests the day that just ended (a manual run: the last day
complete before its logical date), after re-listing the two days before it so late-stamped
records are still collected. A day is closed only 6 h after it ended; until then it is listed
but left open. At most one request every 3 s to arXiv; `resumptionToken` progress is saved
after every page, so a crashed run resumes where it stopped. Publishes
`figalign://papers/arxiv`, which triggers **figalign_process**.

**Backfill** a range (one run per day; runs start only while the DAG is unpaused):
`airflow backfill create --dag-id figalign_harvest_arxiv --from-date 2026-11-01 --to-date 2026-11-03`
""" + COMMON,
    "harvest_pmc": """### figalign · harvest PubMed Central
Daily incremental harvest of PMC Open Access articles from the PMC Cloud Service (JATS XML,
PDF, figure files, licence and retraction flags). Publishes `figalign://papers/pmc`.
""" + COMMON,
    "harvest_biorxiv": """### figalign · harvest bioRxiv
Daily incremental harvest of bioRxiv from `api.biorxiv.org/details/biorxiv/{from}/{until}/{cursor}`
(licence included; one entry per posted version, keyed by DOI and version). The cursor offset is
saved after every page, so a crashed run resumes where it stopped. Papers without a reuse licence
(`cc_no`) are recorded with the reason and not fetched. Fetch downloads the PDF (parsed with GROBID
or PyMuPDF) and the JATS XML when listed (kept for its text; the API gives no figure images).
Publishes `figalign://papers/biorxiv`. The `sets` parameter must stay empty.
""" + COMMON,
    "harvest_medrxiv": """### figalign · harvest medRxiv
As **figalign_harvest_biorxiv**, for medRxiv (`api.biorxiv.org/details/medrxiv/…`, PDFs from
www.medrxiv.org); every medRxiv category counts as Medicine. Publishes `figalign://papers/medrxiv`.
""" + COMMON,
    "harvest_bulk": """### figalign · harvest from a bulk bucket
Manual backfill from a provider's requester-pays bucket: arXiv source tars
(`s3://arxiv/src/arXiv_src_YYMM_NNN.tar`, set `from_yymm`/`until_yymm`) or bioRxiv/medRxiv MECA
packages (`Current_Content/<Month>_<Year>`, set `months` or `from_month`/`until_month`, or
`folders`). `plan` queues each tar/package as one work item; `workers` mapped tasks claim them from
the shared queue, so each is read once however many workers run. Tars are md5-checked against the
manifest and resumable per tar; refused archive members are listed with reasons in the item's
output. Credentials: connection `figalign_bulk_aws` (login = key id, password = secret) or the
workers' AWS environment; the downloader pays AWS for the transfer (docs/operations.md, Bulk sources).
""" + COMMON,
    "ingest_local": """### figalign · ingest a local folder
Stores every paper of a folder (PDFs, JATS XML with figure files, LaTeX e-prints) and queues
it for parsing. Publishes `figalign://papers/local`. `folder` is a local path or an fsspec URL
(`s3://bucket/papers`). The task runs on whichever worker picks it up, so on a cluster a local
folder must be a mount every worker shares (NFS, a shared volume); otherwise give a URL.
""" + COMMON,
    "process": """### figalign · process papers
`fetch → parse → filter`, each a mapped task over batches of `batch_size` items claimed from the
store. Parsing uses JATS, LaTeX, GROBID TEI (pool `grobid` bounds concurrent GROBID calls) or
the PyMuPDF-only PDF path. Runs when a harvest publishes new papers, and every 6 hours.
Publishes `figalign://figures`.
""" + COMMON,
    "recaption": """### figalign · recaption figures
Asks the vision-language model behind the `figalign_vllm` connection (or `FIGALIGN_VLLM_*`)
to rewrite each kept figure's caption from the image, title, abstract, caption and citation
contexts. Pool `vllm` bounds concurrent tasks across workers. Without an endpoint every figure
is recorded `skipped: no endpoint configured`.
""" + COMMON,
    "score": """### figalign · score captions
SciBERT pseudo-perplexity and CLIP image–text score of original and recaptioned captions
(pool `gpu`). Without model weights every caption is recorded skipped with the reason.
""" + COMMON,
    "export": """### figalign · export the dataset
Writes the S1-MMAlign JSONL + image tar layout, WebDataset shards and Parquet, each with a
`manifest.json` and a dataset card, and records the export in the store.
""" + COMMON,
}
