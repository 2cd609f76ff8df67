"""A reader written against the *published* S1-MMAlign layout, knowing nothing of figalign.

What someone with code for the released dataset does: in every source folder, join any
``images*.tar.gz.part??`` pieces and extract the archives there with the system ``tar``
(``cat … | tar -xzf -``), then read ``jsonl/*_recaption.jsonl`` and open each record's
``image_path`` relative to the source folder. ``categories`` is used as the published
string type. It imports no figalign module on purpose.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
from collections.abc import Iterator

PART = re.compile(r"^(?P<base>.+\.tar\.gz)\.part[a-z]{2}$")


def archives(source_dir: str) -> dict[str, list[str]]:
    """Archive name → its files in order (one file, or its ``.partaa``, ``.partab`` … pieces)."""
    out: dict[str, list[str]] = {}
    for path in sorted(glob.glob(os.path.join(source_dir, "images*.tar.gz*"))):
        name = os.path.basename(path)
        match = PART.match(name)
        out.setdefault(match.group("base") if match else name, []).append(path)
    return out


def extract(root: str) -> list[str]:
    """Extract every source folder's archives in place; return the source folders."""
    sources = sorted(os.path.dirname(d) for d in glob.glob(os.path.join(root, "*", "jsonl")))
    for source_dir in sources:
        for files in archives(source_dir).values():
            cat = subprocess.Popen(["cat", *files], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-xzf", "-", "-C", source_dir], stdin=cat.stdout, check=True)
            cat.stdout.close()
            if cat.wait() != 0:
                raise OSError(f"cat {files} failed")
    return sources


def records(root: str) -> Iterator[tuple[str, dict, str]]:
    """(source folder, record, image file) for every line of every ``*_recaption.jsonl``."""
    for jsonl in sorted(glob.glob(os.path.join(root, "*", "jsonl", "*_recaption.jsonl"))):
        source_dir = os.path.dirname(os.path.dirname(jsonl))
        with open(jsonl, encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                yield source_dir, rec, os.path.join(source_dir, rec["image_path"])


def load(root: str) -> list[dict]:
    """What training code does with a sample: the image decoded, both captions, the categories split."""
    from PIL import Image

    extract(root)
    out = []
    for _, rec, image_file in records(root):
        with Image.open(image_file) as img:
            img.load()
            size = img.size
        out.append({"image_file": image_file, "size": size, "caption": rec["caption"].strip(),
                    "recaption": rec["recaption"].strip(), "categories": rec["categories"].split(),
                    "title": rec["title"], "arxiv_id": rec["arxiv_id"], "doi": rec["doi"]})
    return out
