"""Render a Document as Markdown; images become PNG files in a folder next to it (Markdown viewers such as
GitHub do not show data URIs)."""

from __future__ import annotations

from kdkit.report.document import Block, Document, Image, Table, Text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _headers(t: Table) -> list[str]:
    """Markdown has no spanning header cells: when column headers repeat under different groups (e.g. 'test
    data' under both agreement and KL), each header gets its group's title."""
    if len(set(t.headers)) == len(t.headers) or not t.groups:
        return t.headers
    titles = [title for title, n in t.groups for _ in range(n)]
    return [f"{g}: {h}" if g else h for g, h in zip(titles, t.headers, strict=True)]


def _table(t: Table, image_dir: str) -> str:
    lines = [f"*{t.caption}*", ""] if t.caption else []
    lines.append("| " + " | ".join(_cell(h) for h in _headers(t)) + " |")
    lines.append("|" + "---|" * len(t.headers))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def _image(img: Image, image_dir: str) -> str:
    out = f"![{img.alt}]({image_dir}/{img.name}.png)"
    return out + (f"\n\n*{img.caption}*" if img.caption else "")


def _text(t: Text, image_dir: str) -> str:
    return f"> **Note:** {t.text}" if t.note else t.text


RENDER = {Text: _text, Table: _table, Image: _image}


def _block(block: Block, image_dir: str) -> str:
    return RENDER[type(block)](block, image_dir)


def render_markdown(doc: Document, image_dir: str) -> str:
    """Markdown text; images are referenced as `image_dir/<name>.png` (the caller writes those files)."""
    parts = [f"# {doc.title}"]
    if doc.subtitle:
        parts.append(doc.subtitle)
    for section in doc.sections:
        parts.append(f"## {section.title}")
        parts += [_block(b, image_dir) for b in section.blocks]
    return "\n\n".join(parts) + "\n"
