"""The report page: one self-contained HTML file (figures inlined as PNG) with the verdict tables."""
import base64
import html
import math

import yaml

from tgo.claims import in_words

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


def _verdict_table(verdicts):
    """verdicts: the records of tgo.claims.judge."""
    rows = "".join(
        f"<tr><td>{html.escape(v['claim'])}<br><code>{html.escape(v['id'])}</code></td>"
        f"<td style='color:{COLOURS.get(v['verdict'], '#555')};font-weight:bold'>{html.escape(in_words(v))}</td>"
        f"<td>{html.escape(v['statistic'])}: {_number(v['value'], v['ci'])} (observed when "
        f"{html.escape(v['rule'])})</td><td>{_null_cell(v)}</td><td>{html.escape(v['evidence'])}</td></tr>"
        for v in verdicts)
    return ("<table><tr><th>claim</th><th>verdict</th><th>decided on</th><th>untrained network</th>"
            f"<th>numbers behind it</th></tr>{rows}</table>")


def _table(columns, rows):
    """A plain table: rows of cells, each a text or (text, colour of a verdict)."""
    def cell(c):
        text, colour = c if isinstance(c, tuple) else (c, None)
        style = f" style='color:{COLOURS.get(colour, '#555')};font-weight:bold'" if colour else ""
        return f"<td{style}>{html.escape(str(text))}</td>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    return f"<table><tr>{head}</tr>" + "".join(f"<tr>{''.join(map(cell, r))}</tr>" for r in rows) + "</table>"


def render_html(title, summary, sections, params):
    """sections: [{"title", "subsection", "text", "table": (columns, rows), "verdicts",
    "figures": [(caption, png bytes)]}]; a subsection (true) continues the section before it."""
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(summary)}</p>"]
    for s in sections:
        tag = "h3" if s.get("subsection") else "h2"
        parts.append(f"<{tag}>{html.escape(s['title'])}</{tag}>")
        if s.get("text"):
            parts.append(f"<p>{html.escape(s['text'])}</p>")
        if s.get("table"):
            parts.append(_table(*s["table"]))
        if s.get("verdicts"):
            parts.append(_verdict_table(s["verdicts"]))
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
