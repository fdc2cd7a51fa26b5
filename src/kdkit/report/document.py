"""A report as plain data (sections of text, tables and images), so the HTML and Markdown writers show
exactly the same content and neither knows where the numbers came from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Text:
    text: str
    note: bool = False  # a caveat (something missing or inconsistent), shown highlighted


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    groups: list[tuple[str, int]] = field(default_factory=list)  # (title, number of columns) above the headers


@dataclass
class Image:
    name: str  # file stem when written next to the Markdown
    png: bytes
    alt: str
    caption: str = ""


Block = Text | Table | Image


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)

    def images(self) -> list[Image]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Image)]
