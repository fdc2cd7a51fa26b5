"""Render a Document as one self-contained HTML file: inline CSS, images as base64 data URIs, no scripts and
no external resources, so it opens offline and can be mailed or archived as a single file."""

from __future__ import annotations

import base64
from html import escape

from kdkit.report.document import Block, Document, Image, Table, Text

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:1.5rem;color:#1d2330;background:#fff}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.2rem;border-bottom:1px solid #d8dde6;padding-bottom:.3rem;
margin-top:2rem}.subtitle{color:#5a6375;margin:0 0 1rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d8dde6;padding:.3rem .6rem;text-align:right}
th{background:#f2f4f8}td:first-child,th:first-child{text-align:left;white-space:nowrap}
tr.group th{text-align:center;background:#e6eaf2}
caption{caption-side:top;text-align:left;color:#5a6375;padding-bottom:.3rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eceff4}
figcaption{color:#5a6375;font-size:.9rem}.note{background:#fff6db;border-left:4px solid #e0a800;padding:.4rem .7rem}
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(t: Table) -> str:
    parts = ["<table>"]
    if t.caption:
        parts.append(f"<caption>{escape(t.caption)}</caption>")
    parts.append("<thead>")
    if t.groups:
        cells = "".join(f'<th colspan="{n}">{escape(title)}</th>' for title, n in t.groups)
        parts.append(f'<tr class="group">{cells}</tr>')
    parts.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in t.headers) + "</tr></thead><tbody>")
    parts += ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in t.rows]
    parts.append("</tbody></table>")
    return "".join(parts)


def _image(img: Image) -> str:
    caption = f"<figcaption>{escape(img.caption)}</figcaption>" if img.caption else ""
    return f'<figure><img src="{data_uri(img.png)}" alt="{escape(img.alt)}">{caption}</figure>'


def _text(t: Text) -> str:
    return f'<p class="note">{escape(t.text)}</p>' if t.note else f"<p>{escape(t.text)}</p>"


RENDER = {Text: _text, Table: _table, Image: _image}


def _block(block: Block) -> str:
    return RENDER[type(block)](block)


def render_html(doc: Document) -> str:
    body = [f"<h1>{escape(doc.title)}</h1>"]
    if doc.subtitle:
        body.append(f'<p class="subtitle">{escape(doc.subtitle)}</p>')
    for section in doc.sections:
        body.append(f"<section><h2>{escape(section.title)}</h2>")
        body += [_block(b) for b in section.blocks]
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(doc.title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
