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
