"""The report page: one self-contained HTML file (figures inlined as PNG) with the verdict tables."""
import base64
import html
import math

import yaml

from tgo.claims import NOT_APPLICABLE, in_words

COLOURS = {"observed": "#1a7f37", "partly observed": "#9a6700", "not observed": "#cf222e",
           "inconclusive": "#3e6c9c"}


def _number(value, ci=(math.nan, math.nan)):
    """A value in bold, then its interval where it has one."""
    if not math.isfinite(value):
        return "<b>n/a</b>"
    low, high = ci
    return f"<b>{value:.3g}</b>" + (f" [{low:.3g}, {high:.3g}]" if math.isfinite(low) and math.isfinite(high) else "")


def _null_cell(v):
    """The same claim on the untrained network, and the difference that decides the origin."""
    if v["init_verdict"] is None:
        return "none: a change over training"
    if v["init_verdict"] == "not computable" and not math.isfinite(v["init_value"]):
        return html.escape(f"not computable ({v.get('null_words', '')})")
    return (f"{html.escape(v['null_words'])}: {_number(v['init_value'])}, "
            f"<span style='color:{COLOURS.get(v['init_verdict'], '#555')}'>{html.escape(v['init_verdict'])}</span>"
            f"<br>trained minus untrained: {_number(v['effect'], v['effect_ci'])}")


def _stand_in(v, layout):
    """Where a claim's words name the CLS token and the model has none, what stood in for it (the
    sample set tgo.activations.image_set picks: the head's input), on its own line."""
    if "CLS" not in v["claim"] or "cls" in layout["prefix_tokens"]:
        return ""
    words = f"no class token: the head's input ({layout['head_input']}) stands in for CLS"
    return f"<br><i>{html.escape(words)}</i>"


def _value(v):
    """The deciding value with its interval, and the rule it is held to."""
    return f"{_number(v['value'], v['ci'])} (observed when {html.escape(v['rule'])})"


def _verdict(v):
    """The verdict in words, in its colour."""
    return f"<span style='color:{COLOURS.get(v['verdict'], '#555')};font-weight:bold'>{html.escape(in_words(v))}</span>"


def _verdict_table(verdicts, layout):
    """verdicts: the records of tgo.claims.judge; layout: the model's token layout."""
    rows = "".join(
        f"<tr><td>{html.escape(v['claim'])}{_stand_in(v, layout)}<br><code>{html.escape(v['id'])}</code></td>"
        f"<td>{_verdict(v)}</td><td>{html.escape(v['statistic'])}: {_value(v)}</td><td>{_null_cell(v)}</td>"
        f"<td>{html.escape(v['evidence'])}</td></tr>"
        for v in verdicts)
    return ("<table><tr><th>claim</th><th>verdict</th><th>decided on</th><th>untrained network</th>"
            f"<th>numbers behind it</th></tr>{rows}</table>")


def _model_cell(v, layout):
    """One model's verdict on a claim in the zoo's table: the verdict, its value against the rule, the
    stand-in for the CLS token, the untrained network; not computable with the reason."""
    if v["verdict"] == NOT_APPLICABLE:
        return _verdict(v)
    if v["verdict"] == "not computable":
        return f"{_verdict(v)}: {html.escape(v['evidence'])}{_stand_in(v, layout)}"
    return f"{_verdict(v)}<br>{_value(v)}{_stand_in(v, layout)}<br>untrained: {_null_cell(v)}"


def _zoo_verdict_table(judged, layouts):
    """judged: {model id: its records of tgo.claims.judge, in registry order}; layouts: {model id: its
    token layout}. A row per claim with what it is decided on, a column per model."""
    ids = list(judged)
    rows = "".join(
        f"<tr><td>{html.escape(v['claim'])}<br><code>{html.escape(v['id'])}</code><br><span style='color:#555'>"
        f"decided on: {html.escape(v['statistic'])}</span></td>"
        + "".join(f"<td>{_model_cell(judged[m][i], layouts[m])}</td>" for m in ids) + "</tr>"
        for i, v in enumerate(judged[ids[0]]))
    head = "".join(f"<th>{html.escape(m)}</th>" for m in ids)
    return f"<table><tr><th>claim</th>{head}</tr>{rows}</table>"


def _table(columns, rows):
    """A plain table: rows of texts."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    return f"<table><tr>{head}</tr>" + "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows) + "</table>"


def render_html(title, summary, sections, params):
    """sections: [{"title", "subsection", "text", "links": [(href, words)], "table": (columns, rows),
    "verdicts" with the model's "layout", "zoo_verdicts" ({model id: records}) with "layouts" ({model
    id: layout}), "figures": [(caption, png bytes)]}]; a subsection (true) continues the section
    before it."""
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(summary)}</p>"]
    for s in sections:
        tag = "h3" if s.get("subsection") else "h2"
        parts.append(f"<{tag}>{html.escape(s['title'])}</{tag}>")
        if s.get("text"):
            parts.append(f"<p>{html.escape(s['text'])}</p>")
        for href, words in s.get("links", []):
            parts.append(f"<p><a href='{html.escape(href)}'>{html.escape(words)}</a></p>")
        if s.get("table"):
            parts.append(_table(*s["table"]))
        if s.get("verdicts"):
            parts.append(_verdict_table(s["verdicts"], s["layout"]))
        if s.get("zoo_verdicts"):
            parts.append(_zoo_verdict_table(s["zoo_verdicts"], s["layouts"]))
        for caption, png in s.get("figures", []):
            data = base64.b64encode(png).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("<h2>Parameters of this run</h2><pre>"
                 + html.escape(yaml.safe_dump(params, sort_keys=False)) + "</pre>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "img{max-width:100%}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px;text-align:left;vertical-align:top}"
             "figure{margin:1.5em 0}figcaption{color:#555;font-size:13px}pre{background:#f6f8fa;padding:1em}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
