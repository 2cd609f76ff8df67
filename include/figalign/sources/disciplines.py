"""arXiv (and bioRxiv/medRxiv) categories -> the discipline taxonomy of the S1-MMAlign dataset card.

The card groups papers into Mathematics, Physics, Chemistry, Biology, Astronomy, Earth
Science, Medicine, Engineering, Computer Science and Other. arXiv has no chemistry,
medicine or earth-science archives, so those come from the physics sub-categories that
hold them (physics.chem-ph, physics.med-ph, physics.geo-ph …). A paper takes the
discipline of its primary (first listed) category. Lookup is longest prefix first, so
``physics.chem-ph`` beats ``physics``.
"""

from __future__ import annotations

MATHEMATICS = "Mathematics"
PHYSICS = "Physics"
CHEMISTRY = "Chemistry"
BIOLOGY = "Biology"
ASTRONOMY = "Astronomy"
EARTH_SCIENCE = "Earth Science"
MEDICINE = "Medicine"
ENGINEERING = "Engineering"
COMPUTER_SCIENCE = "Computer Science"
OTHER = "Other"
DISCIPLINES = (MATHEMATICS, PHYSICS, CHEMISTRY, BIOLOGY, ASTRONOMY, EARTH_SCIENCE, MEDICINE,
               ENGINEERING, COMPUTER_SCIENCE, OTHER)

# category prefix -> discipline; more specific prefixes override their archive.
ARXIV_TABLE: dict[str, str] = {
    "math": MATHEMATICS,
    "math-ph": PHYSICS,  # arXiv files mathematical physics under its physics group
    "stat": MATHEMATICS,
    "cs": COMPUTER_SCIENCE,
    "cs.SY": ENGINEERING,  # alias of eess.SY
    "eess": ENGINEERING,
    "astro-ph": ASTRONOMY,
    "physics": PHYSICS,
    "physics.chem-ph": CHEMISTRY,
    "physics.bio-ph": BIOLOGY,
    "physics.med-ph": MEDICINE,
    "physics.geo-ph": EARTH_SCIENCE,
    "physics.ao-ph": EARTH_SCIENCE,
    "physics.space-ph": ASTRONOMY,
    "cond-mat": PHYSICS,
    "gr-qc": PHYSICS,
    "hep-ex": PHYSICS,
    "hep-lat": PHYSICS,
    "hep-ph": PHYSICS,
    "hep-th": PHYSICS,
    "nucl-ex": PHYSICS,
    "nucl-th": PHYSICS,
    "quant-ph": PHYSICS,
    "nlin": PHYSICS,
    "chao-dyn": PHYSICS,  # old archive names still seen in pre-2000 records
    "q-bio": BIOLOGY,
    "q-fin": OTHER,
    "econ": OTHER,
}


def arxiv_category_discipline(category: str) -> str:
    """Discipline of one arXiv category (``cs.CV``, ``astro-ph.CO``, ``hep-ex``)."""
    cat = category.strip()
    candidates = [cat]
    if "." in cat:
        candidates.append(cat.split(".", 1)[0])
    for key in candidates:
        if key in ARXIV_TABLE:
            return ARXIV_TABLE[key]
    return OTHER


def arxiv_discipline(categories: list[str]) -> str:
    """Discipline of a paper: that of its primary (first) category; Other when none."""
    return arxiv_category_discipline(categories[0]) if categories else OTHER


# bioRxiv / medRxiv subject categories (as the API spells them, lower case). medRxiv is a
# medical server, so all of it is Medicine. bioRxiv is Biology except where a category is
# another discipline's by its name: bioengineering is Engineering, and the clinical
# categories bioRxiv shares with medRxiv are Medicine. Anything unlisted takes the server's
# default, so a new category can only be too broad, never dropped.
PREPRINT_DEFAULT: dict[str, str] = {"biorxiv": BIOLOGY, "medrxiv": MEDICINE}
BIORXIV_TABLE: dict[str, str] = {
    "bioengineering": ENGINEERING,
    "clinical trials": MEDICINE,
    "epidemiology": MEDICINE,
    "pathology": MEDICINE,
    "pharmacology and toxicology": MEDICINE,
    "scientific communication and education": OTHER,
}


def preprint_discipline(server: str, category: str | None) -> str:
    """Discipline of a bioRxiv/medRxiv paper from its one category (``cancer biology``)."""
    key = " ".join((category or "").lower().replace("_", " ").replace("-", " ").split())
    if server == "biorxiv" and key in BIORXIV_TABLE:
        return BIORXIV_TABLE[key]
    return PREPRINT_DEFAULT.get(server, OTHER)


# JATS subject terms (PLOS/PMC subject taxonomies, free-text subject headings) and journal
# titles -> discipline. A term takes the discipline of the first stem it contains, in this
# order: specific life-science stems before the medical ones ("Medical Microbiology" is
# microbiology), medical before generic biology ("Biology and Medicine"-style terms do not
# occur; "Mental Health" is medicine), "computational biology" before "computer".
# Social sciences and humanities are Other; terms with no stem here ("Research Article",
# "People and places", "Research and Analysis Methods") give no vote at all.
SUBJECT_STEMS: tuple[tuple[str, str], ...] = (
    ("microbio", BIOLOGY), ("genet", BIOLOGY), ("genom", BIOLOGY), ("neurosci", BIOLOGY),
    ("bioinformat", BIOLOGY), ("biochem", BIOLOGY), ("pathogen", BIOLOGY), ("immunol", BIOLOGY),
    ("ecolog", BIOLOGY), ("evolution", BIOLOGY), ("zoolog", BIOLOGY), ("botan", BIOLOGY), ("plant", BIOLOGY),
    ("physiolog", BIOLOGY), ("anatomy", BIOLOGY), ("cell", BIOLOGY), ("molecular", BIOLOGY),
    ("life science", BIOLOGY), ("biolog", BIOLOGY),
    ("medic", MEDICINE), ("health", MEDICINE), ("clinic", MEDICINE), ("disease", MEDICINE), ("pediatr", MEDICINE),
    ("paediatr", MEDICINE), ("epidemiol", MEDICINE), ("oncol", MEDICINE), ("onco", MEDICINE), ("cancer", MEDICINE),
    ("patholog", MEDICINE), ("infect", MEDICINE), ("surg", MEDICINE), ("pharma", MEDICINE), ("nursing", MEDICINE),
    ("dental", MEDICINE), ("dentist", MEDICINE), ("oral", MEDICINE), ("cardio", MEDICINE), ("psychiatr", MEDICINE),
    ("neurolog", MEDICINE), ("veterinar", MEDICINE), ("tropical", MEDICINE),
    ("astro", ASTRONOMY), ("planetary", ASTRONOMY), ("space science", ASTRONOMY),
    ("earth", EARTH_SCIENCE), ("geolog", EARTH_SCIENCE), ("geophys", EARTH_SCIENCE), ("geoscien", EARTH_SCIENCE),
    ("climat", EARTH_SCIENCE), ("ocean", EARTH_SCIENCE), ("atmospher", EARTH_SCIENCE),
    ("chemi", CHEMISTRY), ("physic", PHYSICS), ("mathemat", MATHEMATICS), ("statistic", MATHEMATICS),
    ("computer", COMPUTER_SCIENCE), ("computing", COMPUTER_SCIENCE), ("informatics", COMPUTER_SCIENCE),
    ("engineer", ENGINEERING), ("robot", ENGINEERING), ("electronic", ENGINEERING), ("material", ENGINEERING),
    ("social", OTHER), ("politic", OTHER), ("econom", OTHER), ("psycholog", OTHER), ("sociolog", OTHER),
    ("humanit", OTHER), ("law", OTHER), ("education", OTHER),
)


def subject_discipline(term: str | None) -> str | None:
    """Discipline of one subject term or journal title; None when nothing in it says."""
    text = f" {(term or '').lower()} "
    for stem, discipline in SUBJECT_STEMS:
        if f" {stem}" in text or f"/{stem}" in text or f"-{stem}" in text:
            return discipline
    return None


def vote(terms: list[str], tie_break: str | None = None) -> str | None:
    """The discipline most of ``terms`` map to; a tie goes to ``tie_break`` (the journal's
    discipline) when it is among the tied, else to the earliest listed. Other wins only
    when no term names one of the nine."""
    found = [d for d in (subject_discipline(t) for t in terms) if d]
    named = [d for d in found if d != OTHER] or found
    if not named:
        return None
    counts = {d: named.count(d) for d in named}
    best = max(counts.values())
    tied = [d for d in dict.fromkeys(named) if counts[d] == best]
    return tie_break if tie_break in tied else tied[0]


def jats_discipline(taxonomy: list[str], flat: list[str], headings: list[str], journal: str | None) -> str | None:
    """A JATS paper's discipline, from the most structured evidence it has.

    ``taxonomy``: the top-level subjects of hierarchical subject taxonomies (PLOS
    ``Discipline-v2``/``-v3``: "Biology and Life Sciences", "Medicine and Health Sciences"),
    one vote each; else ``flat`` subjects (``Discipline`` groups, "Infectious Diseases/
    Bacterial Infections"); else the ``headings`` (``subj-group-type="heading"``, usually an
    article type with no vote); else the journal title ("Oncotarget", "BMC Microbiology").
    The journal's own discipline breaks ties. None when nothing maps.
    """
    by_journal = subject_discipline(journal)
    for terms in (taxonomy, flat, headings):
        found = vote(terms, by_journal)
        if found:
            return found
    return by_journal
