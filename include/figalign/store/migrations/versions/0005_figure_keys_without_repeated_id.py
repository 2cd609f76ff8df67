"""figure keys without the repeated paper id

Figure keys were ``<source>:<external id><version>:<external id>:<local>``, e.g.
``arxiv:1706.03762:1706.03762:fig1``, because the parser's figure id already starts with the
paper key. They become ``<source>:<external id><version>:<local>`` (``arxiv:1706.03762:fig1``),
and a duplicate's ``filter_reason`` (``duplicate-of:<key>``) follows its original's new key.
A key whose new form is already taken is left as it was. Downgrade gives every key of a paper
the repeated form again (keys the parse stage wrote all had it).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_DUPLICATE = "duplicate-of:"
_figures = sa.table("figures", sa.column("id", sa.Integer), sa.column("paper_id", sa.Integer),
                    sa.column("figure_key", sa.String), sa.column("filter_reason", sa.String))
_papers = sa.table("papers", sa.column("id", sa.Integer), sa.column("source", sa.String),
                   sa.column("external_id", sa.String), sa.column("version", sa.String))


def _prefix(source: str, external_id: str, version: str | None) -> str:
    """The paper part of a key, as ``store.papers._save_figure`` writes it."""
    return f"{source}:{external_id}{version and 'v' + version.lstrip('v')}:"


def _shorten(key: str, prefix: str, external_id: str) -> str | None:
    doubled = f"{prefix}{external_id}:"
    return prefix + key[len(doubled):] if key.startswith(doubled) and len(key) > len(doubled) else None


def _lengthen(key: str, prefix: str, external_id: str) -> str | None:
    return None if key.startswith(f"{prefix}{external_id}:") or not key.startswith(prefix) else \
        f"{prefix}{external_id}:{key[len(prefix):]}"


def _rewrite(rename) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_figures.c.id, _figures.c.figure_key, _papers.c.source, _papers.c.external_id,
                                  _papers.c.version).join(_papers, _papers.c.id == _figures.c.paper_id)).all()
    taken = {row.figure_key for row in rows}
    renamed: dict[str, str] = {}
    for row in rows:
        new = rename(row.figure_key, _prefix(row.source, row.external_id, row.version), row.external_id)
        if new is None or new in taken:
            continue
        taken.add(new)
        renamed[row.figure_key] = new
        bind.execute(_figures.update().where(_figures.c.id == row.id).values(figure_key=new))
    if not renamed:
        return
    reasons = bind.execute(sa.select(_figures.c.id, _figures.c.filter_reason)
                           .where(_figures.c.filter_reason.like(f"{_DUPLICATE}%"))).all()
    for fid, reason in reasons:
        original = renamed.get(reason[len(_DUPLICATE):])
        if original is not None:
            bind.execute(_figures.update().where(_figures.c.id == fid).values(filter_reason=_DUPLICATE + original))


def upgrade() -> None:
    _rewrite(_shorten)


def downgrade() -> None:
    _rewrite(_lengthen)
