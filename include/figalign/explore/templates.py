"""Server-rendered HTML of the explorer: Jinja2 templates with autoescaping, plain CSS.

Templates live here as strings (no build step, no package-data to forget). Every link is
built from ``base`` (the ASGI root path), so the same pages work at ``/`` standalone and at
``/figalign/`` inside the Airflow api-server.
"""

from __future__ import annotations

from urllib.parse import urlencode

from jinja2 import DictLoader, Environment, select_autoescape

from figalign.metrics.describe import tooltip
from markupsafe import Markup, escape

CSS = """
*{box-sizing:border-box}body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#17324d;color:#fff;padding:.6rem 1rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}header .brand{font-size:1.1rem}
main{padding:1rem}a{color:#0b5cad}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;background:#fff;padding:.6rem;border:1px solid #dde1e6;border-radius:6px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#555}
form.filters input,form.filters select{font:inherit;padding:.2rem .3rem;min-width:7rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:.8rem;margin-top:1rem}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.5rem;display:flex;flex-direction:column;gap:.3rem}
.card img{width:100%;height:170px;object-fit:contain;background:#fafafa}
.card .cap{font-size:12px;color:#333;max-height:5.8em;overflow:hidden}
.meta{font-size:12px;color:#666}.badge{display:inline-block;padding:0 .35rem;border-radius:3px;background:#e8eef5;font-size:11px}
.badge.bad{background:#fde2e1}.noimg{height:170px;display:flex;align-items:center;justify-content:center;color:#999;background:#fafafa}
.cols{display:grid;grid-template-columns:minmax(300px,1fr) minmax(300px,1fr);gap:1rem}
.panel{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.8rem;margin-bottom:1rem}
.panel h2{font-size:1rem;margin:.1rem 0 .6rem}.crop{max-width:100%;max-height:480px;display:block;margin:auto}
.pageimg{max-width:100%;border:1px solid #ccc}
table{border-collapse:collapse;width:100%;font-size:13px}td,th{border-bottom:1px solid #eee;padding:.25rem .4rem;text-align:left;vertical-align:top}
mark{background:#ffe58a;padding:0 .1rem}.pager{margin:1rem 0}.empty{color:#777;padding:2rem;text-align:center}
.caption-text{white-space:pre-wrap}
"""

LAYOUT = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{% block title %}figalign explorer{% endblock %}</title>
<style>{{ css }}</style></head><body>
<header><a class="brand" href="{{ base }}/">figalign explorer</a><a href="{{ base }}/">Figures</a>
<a href="{{ base }}/stages">Stages</a><a href="{{ base }}/compare">Compare</a></header>
<main>{% block main %}{% endblock %}</main></body></html>"""

GRID = """{% extends "layout" %}{% block main %}
<form class="filters" method="get" action="{{ base }}/">
{% for name, label, options in selects %}<label>{{ label }}<select name="{{ name }}"><option value="">any</option>
{% for o in options %}<option value="{{ o }}"{% if params.get(name) == o %} selected{% endif %}>{{ o }}</option>{% endfor %}
</select></label>{% endfor %}
<label>stage status<select name="status"><option value="">any</option>{% for o in statuses %}
<option{% if params.get('status') == o %} selected{% endif %}>{{ o }}</option>{% endfor %}</select></label>
<label>failure reason<input name="reason" value="{{ params.get('reason', '') }}"></label>
<label>caption text<input name="q" value="{{ params.get('q', '') }}" placeholder="search captions"></label>
<label>metric<select name="metric"><option value="">none</option>{% for o in facets.metrics %}
<option title="{{ metric_tip(o, '') }}"{% if params.get('metric') == o %} selected{% endif %}>{{ o }}</option>{% endfor %}</select></label>
<label>min<input name="metric_min" size="5" value="{{ params.get('metric_min', '') }}"></label>
<label>max<input name="metric_max" size="5" value="{{ params.get('metric_max', '') }}"></label>
<label>show<select name="show">{% for value, label in shows %}
<option value="{{ value }}"{% if params.get('show', 'all') == value %} selected{% endif %}>{{ label }}</option>{% endfor %}</select></label>
<label>sort<select name="sort">{% for value, label in sorts %}
<option value="{{ value }}"{% if params.get('sort', '-id') == value %} selected{% endif %}>{{ label }}</option>{% endfor %}</select></label>
<button type="submit">Apply</button></form>
{% if items %}<div class="grid" id="grid">{% for f in items %}<div class="card" data-figure-id="{{ f.id }}">
<a href="{{ base }}/figure/{{ f.id }}">{% if f.image_sha256 %}<img loading="lazy" alt="{{ f.label or 'figure' }}" src="{{ base }}/image/{{ f.image_sha256 }}">
{% else %}<div class="noimg">no image</div>{% endif %}</a>
<div><a href="{{ base }}/figure/{{ f.id }}"><b>{{ f.label or f.kind }}</b></a> <span class="badge">{{ f.source }}</span>
{% if f.filter_reason %}<span class="badge bad">{{ f.filter_reason }}</span>{% endif %}
{% if f.sort_value is not none %}<span class="badge">{{ '%.4g' % f.sort_value }}</span>{% endif %}</div>
<div class="meta">{{ f.external_id }} · {{ f.licence or 'no licence' }}</div>
<div class="cap">{{ f.caption or '' }}</div></div>{% endfor %}</div>
{% else %}<div class="empty">No figures match these filters.</div>{% endif %}
<div class="pager">{% if next_url %}<a id="next" href="{{ next_url }}">Next page →</a>{% endif %}</div>
{% endblock %}"""

FIGURE = """{% extends "layout" %}{% block title %}{{ d.figure.label or 'figure' }} · figalign{% endblock %}{% block main %}
<h1>{{ d.figure.label or d.figure.kind }} <small class="meta">{{ d.figure.figure_key }}</small></h1>
<div class="cols"><div>
<div class="panel"><h2>Crop</h2>{% if d.figure.image_sha256 %}<img class="crop" id="crop" alt="figure crop" src="{{ base }}/image/{{ d.figure.image_sha256 }}">
{% else %}<div class="noimg">no image</div>{% endif %}
<div class="meta">{{ d.figure.width }}×{{ d.figure.height }} px{% if d.figure.filter_reason %} · <span class="badge bad">filtered: {{ d.figure.filter_reason }}</span>{% endif %}</div></div>
<div class="panel"><h2>Page in context</h2>{% if d.has_page %}<img class="pageimg" id="page" loading="lazy" alt="PDF page {{ d.figure.page + 1 }} with the figure box"
src="{{ base }}/figure/{{ d.figure.id }}/page.png"><div class="meta">page {{ d.figure.page + 1 }}, box {{ d.figure.bbox }}</div>
{% else %}<div class="meta">No PDF page geometry for this figure (JATS/LaTeX source or no PDF stored).</div>{% endif %}</div>
</div><div>
{% for c in d.captions %}<div class="panel caption" data-kind="{{ c.kind }}"><h2>{{ 'Original caption' if c.kind == 'original' else 'Recaption' }}
{% if c.status != 'accepted' %}<span class="badge bad">{{ c.status }}{% if c.reject_reason %}: {{ c.reject_reason }}{% endif %}</span>{% endif %}</h2>
<div class="caption-text">{{ c.text or '' }}</div>
{% if c.kind != 'original' %}<div class="meta">model {{ c.model or '—' }} · prompt <code>{{ c.prompt_hash[:12] }}</code> · params <code>{{ c.params_hash[:12] }}</code></div>{% endif %}
{% if c.metrics %}<table class="metrics"><tr><th>metric</th><th>model</th><th>value</th></tr>{% for m in c.metrics %}
<tr><td title="{{ metric_tip(m.metric, m.model) }}">{{ m.metric }}</td><td>{{ m.model }}{% if m.model_version %} ({{ m.model_version }}){% endif %}</td><td>{{ '%.4f' % m.value }}</td></tr>{% endfor %}</table>{% endif %}
</div>{% endfor %}
<div class="panel" id="contexts"><h2>Citation contexts ({{ d.contexts|length }})</h2>{% for c in d.contexts %}
<p class="context">{{ c.text|highlight(c.mention) }}{% if c.section %} <span class="meta">— {{ c.section }}</span>{% endif %}</p>
{% else %}<div class="meta">No sentence in the body references this figure.</div>{% endfor %}</div>
</div></div>
<div class="panel" id="provenance"><h2>Provenance</h2><table>
<tr><th>paper</th><td>{{ d.paper.title or '' }}<br><span class="meta">{{ d.paper.source }}:{{ d.paper.external_id }}{% if d.paper.version %} {{ d.paper.version }}{% endif %}{% if d.paper.doi %} · doi {{ d.paper.doi }}{% endif %}</span></td></tr>
<tr><th>licence</th><td>{% if d.paper.licence_url|safe_url %}<a href="{{ d.paper.licence_url }}" rel="noopener noreferrer">{{ d.paper.licence or d.paper.licence_url }}</a>{% else %}{{ d.paper.licence or 'unknown' }}{% endif %}</td></tr>
<tr><th>source URLs</th><td>{% for k, v in (d.paper.source_urls or {}).items() %}{{ k }}: {% if v|safe_url %}<a href="{{ v }}" rel="noopener noreferrer">{{ v }}</a>{% else %}{{ v }}{% endif %}<br>{% endfor %}</td></tr>
<tr><th>parser</th><td>figure: {{ d.figure.parser }} {{ d.figure.parser_version }} · paper: {{ d.paper.parser or '—' }} {{ d.paper.parser_version or '' }}</td></tr>
</table><h2>Stage runs</h2><table id="stage-runs"><tr><th>stage</th><th>entity</th><th>status</th><th>Airflow dag / run / task (try)</th><th>error / reason</th></tr>
{% for r in d.stage_runs %}<tr><td>{{ r.stage }}</td><td>{{ r.entity_type }} {{ r.entity_id }}</td><td>{{ r.status }}</td>
<td>{{ r.dag_id or '—' }} / {{ r.run_id or '—' }} / {{ r.task_id or '—' }}{% if r.try_number %} ({{ r.try_number }}){% endif %}</td>
<td>{{ r.error_class or '' }} {{ r.error_message or r.reason or '' }}</td></tr>{% else %}<tr><td colspan="5" class="meta">no stage runs recorded</td></tr>{% endfor %}
</table></div>{% endblock %}"""

STAGES = """{% extends "layout" %}{% block main %}<h1>Stages</h1>
<div class="panel"><h2>Items per stage and status</h2><table id="stage-counts"><tr><th>stage</th>{% for s in statuses %}<th>{{ s }}</th>{% endfor %}</tr>
{% for stage, row in table %}<tr><td>{{ stage }}</td>{% for s in statuses %}<td>{% if row.get(s) %}<a href="{{ base }}/?{{ {'stage': stage, 'status': s}|qs }}">{{ row.get(s) }}</a>{% else %}0{% endif %}</td>{% endfor %}</tr>{% endfor %}
</table><div class="meta">Counts are cached for {{ ttl }} s.</div></div>
<div class="panel"><h2>Top failure and skip reasons</h2><table id="failures"><tr><th>stage</th><th>status</th><th>reason</th><th>count</th><th>examples</th></tr>
{% for f in failures %}<tr><td>{{ f.stage }}</td><td>{{ f.status }}</td><td>{{ f.reason }}</td><td>{{ f.count }}</td>
<td>{% if f.entity_type in ('figure', 'caption') %}<a href="{{ base }}/?{{ {'stage': f.stage, 'status': f.status, 'reason': f.reason}|qs }}">figures</a>{% elif f.entity_type == 'paper' %}<a href="{{ base }}/papers?{{ {'stage': f.stage, 'status': f.status, 'reason': f.reason}|qs }}">papers</a>{% else %}{{ f.entity_type }} {{ f.example_entity }}{% endif %}{% if f.entity_type == 'figure' %} · <a href="{{ base }}/figure/{{ f.example_entity }}">one example</a>{% endif %}</td></tr>
{% else %}<tr><td colspan="4" class="meta">no failures recorded</td></tr>{% endfor %}</table></div>{% endblock %}"""

PAPERS = """{% extends "layout" %}{% block main %}<h1>Papers: {{ stage }}{% if status %} · {{ status }}{% endif %}</h1>
{% if reason %}<div class="meta">reason: {{ reason }}</div>{% endif %}
<div class="panel"><table id="papers"><tr><th>paper</th><th>title</th><th>status</th><th>attempts</th><th>reason</th></tr>
{% for p in items %}<tr data-paper-id="{{ p.id }}"><td>{{ p.source }}:{{ p.external_id }}{% if p.version %} v{{ p.version }}{% endif %}</td>
<td>{{ p.title or '' }}</td><td>{{ p.status }}</td><td>{{ p.attempts }}</td><td>{{ p.reason }}</td></tr>
{% else %}<tr><td colspan="5" class="meta">no papers match</td></tr>{% endfor %}</table></div>
<div class="pager">{% if next_url %}<a id="next" href="{{ next_url }}">Next page →</a>{% endif %}</div>{% endblock %}"""

COMPARE = """{% extends "layout" %}{% block main %}<h1>Compare recaptions</h1>
<form class="filters" method="get" action="{{ base }}/compare"><label>by<select name="by">
{% for o in ['prompt_hash', 'model'] %}<option{% if by == o %} selected{% endif %}>{{ o }}</option>{% endfor %}</select></label>
<label>A<input name="a" list="choices" value="{{ a or '' }}"></label><label>B<input name="b" list="choices" value="{{ b or '' }}"></label>
<datalist id="choices">{% for o in choices %}<option value="{{ o }}">{% endfor %}</datalist><button type="submit">Compare</button></form>
{% if items %}<table id="comparison"><tr><th>figure</th><th>original</th><th>A: {{ a }}</th><th>B: {{ b }}</th></tr>
{% for it in items %}<tr><td><a href="{{ base }}/figure/{{ it.figure_id }}">{% if it.image_sha256 %}<img loading="lazy" width="160" alt="{{ it.label or 'figure' }}" src="{{ base }}/image/{{ it.image_sha256 }}">{% else %}{{ it.label or it.figure_id }}{% endif %}</a></td>
{% for c in [it.original, it.a, it.b] %}<td>{% if c %}<div class="caption-text">{{ c.text or '' }}</div>{% for m in c.metrics %}<span class="badge" title="{{ metric_tip(m.metric, m.model) }}">{{ m.metric }} {{ '%.4f' % m.value }}</span> {% endfor %}{% endif %}</td>{% endfor %}</tr>{% endfor %}</table>
{% elif a and b %}<div class="empty">No figure has recaptions under both.</div>{% endif %}
<div class="pager">{% if next_url %}<a id="next" href="{{ next_url }}">Next page →</a>{% endif %}</div>{% endblock %}"""


def highlight(text: str | None, mention: str | None) -> Markup:
    """Escape a context sentence and wrap each occurrence of its figure mention in <mark>."""
    text = text or ""
    if not mention or mention not in text:
        return escape(text)
    return Markup("<mark>{}</mark>".format(escape(mention))).join(escape(part) for part in text.split(mention))


def safe_url(value) -> bool:
    """Only http(s) links become anchors: a stored ``javascript:`` URL stays plain text."""
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _env() -> Environment:
    env = Environment(loader=DictLoader({"layout": LAYOUT, "grid": GRID, "figure": FIGURE, "stages": STAGES, "papers": PAPERS,
                                         "compare": COMPARE}),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["highlight"] = highlight
    env.filters["safe_url"] = safe_url
    env.filters["qs"] = lambda d: urlencode({k: v for k, v in d.items() if v is not None})
    env.globals["css"] = Markup(CSS)
    env.globals["metric_tip"] = tooltip  # how each number was measured (model, text strategy, image fit)
    return env


ENV = _env()


def render(name: str, **context) -> str:
    return ENV.get_template(name).render(**context)
