"""The report as sections of blocks, rendered to one self-contained HTML page and to Markdown.

Every section is `<section class="ptbench-section" id=...>` with an `<h2>`, and holds content or
says why it has none (`<p class="ptbench-empty">`): a section never stands empty.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Text:
    text: str
    emphasis: bool = False


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    uri: str
    """A data: URI (see `plots.data_uri`)."""
    alt: str


@dataclass(frozen=True)
class Items:
    """A bulleted list."""

    items: list[str]


Block = Text | Table | Figure | Items


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    empty: str = ""
    """Why there is nothing to show (required when `blocks` is empty)."""

    def __post_init__(self) -> None:
        if not self.blocks and not self.empty:
            raise ValueError(f"section {self.id!r}: expected content or a reason it is empty")


@dataclass
class Report:
    title: str
    headline: str
    """The verdict, first thing read."""
    failed: bool
    sections: list[Section]


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.headline { font-size: 1.15em; padding: .6em 1em; border-radius: 6px; }
.ok { background: #e6f4ea; } .bad { background: #fce8e6; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } caption { text-align: left; font-weight: 600; padding: .3em 0; }
.ptbench-empty { color: #777; font-style: italic; } img { max-width: 100%; }
"""


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        text = html.escape(block.text)
        return f"<p><strong>{text}</strong></p>" if block.emphasis else f"<p>{text}</p>"
    if isinstance(block, Items):
        return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Figure):
        return f'<p><img src="{block.uri}" alt="{html.escape(block.alt)}"></p>'
    table = block.frame.to_html(index=False, escape=True, border=0, na_rep="")
    if block.caption:
        table = table.replace(">", f"><caption>{html.escape(block.caption)}</caption>", 1)
    return table


def to_html(report: Report) -> str:
    parts = [f"<h1>{html.escape(report.title)}</h1>",
             f'<p class="headline {"bad" if report.failed else "ok"}">{html.escape(report.headline)}</p>']
    for s in report.sections:
        body = "".join(_html_block(b) for b in s.blocks) or (
            f'<p class="ptbench-empty">{html.escape(s.empty)}</p>')
        parts.append(f'<section class="ptbench-section" id="{html.escape(s.id)}">'
                     f"<h2>{html.escape(s.title)}</h2>{body}</section>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(report.title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _md_cell(value: object) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(c) for c in frame.columns) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return lines


def to_markdown(report: Report, *, figures: str = "report.html") -> str:
    """The Markdown summary: the same sections, figures replaced by a pointer to the page."""
    lines = [f"# {report.title}", "", f"**{report.headline}**", ""]
    for s in report.sections:
        lines += [f"## {s.title}", ""]
        if not s.blocks:
            lines += [f"_{s.empty}_", ""]
        for b in s.blocks:
            if isinstance(b, Text):
                lines += [f"**{b.text}**" if b.emphasis else b.text, ""]
            elif isinstance(b, Items):
                lines += [f"- {i}" for i in b.items] + [""]
            elif isinstance(b, Figure):
                lines += [f"_(figure: {b.alt}; see {figures})_", ""]
            else:
                lines += ([f"_{b.caption}_", ""] if b.caption else []) + markdown_table(b.frame) + [""]
    return "\n".join(lines)
