"""A self-contained HTML report page: sections of HTML, PNG figures embedded as data URIs."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from stsa_bench.core.paths import atomic_write_text

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d1d1f;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: .3em .65em; }
th { background: #f2f2f4; }
tr:nth-child(even) td { background: #fafafa; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .9em; background: #f2f2f4;
       padding: 0 .2em; border-radius: 3px; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
footer { margin-top: 3em; border-top: 1px solid #ddd; padding-top: .5em; color: #666; font-size: .85em; }
""".strip()


def _img_tag(path: Path) -> str | None:
    data = Path(path).read_bytes()
    if not data.startswith(PNG_MAGIC):
        return None
    stem = html.escape(Path(path).stem)
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<figure><img src="{uri}" alt="{stem}"><figcaption>{stem}</figcaption></figure>'


def write_html(
    out_path: Path,
    title: str,
    sections: list[tuple[str, str]],
    images: list[Path],
    footer_html: str = "",
    css: str = "",
    script: str = "",
) -> Path:
    """Write one page: the escaped title, each (heading, html) section, then every PNG of `images`
    embedded (other files, e.g. the SVG twins, are left out), then the footer; extra CSS and a script
    (inline) when given."""
    out_path = Path(out_path)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>\n{CSS}\n{css}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, body in sections:
        parts += ["<section>", f"<h2>{html.escape(heading)}</h2>", body, "</section>"]
    figures = [tag for p in images if Path(p).suffix.lower() == ".png" and (tag := _img_tag(p))]
    if figures:
        parts += ["<section>", "<h2>Figures</h2>", *figures, "</section>"]
    if footer_html:
        parts.append(f"<footer>{footer_html}</footer>")
    if script:
        parts.append(f"<script>\n{script}\n</script>")
    parts += ["</body>", "</html>", ""]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, "\n".join(parts))
    return out_path


_DELIM_CELL = re.compile(r"^\s*(:?)-+(:?)\s*$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def _split_row(line: str) -> list[str]:
    """The cells of a pipe-table row, undoing escape.md_cell: `\\|` and `\\\\` escapes, then HTML entities."""
    cells, cur, i = [], [], 0
    line = line.strip().removeprefix("|")
    while i < len(line):
        if line[i] == "\\" and line[i + 1 : i + 2] in ("\\", "|"):
            cur.append(line[i + 1])
            i += 2
            continue
        if line[i] == "|":
            cells.append("".join(cur))
            cur = []
        else:
            cur.append(line[i])
        i += 1
    if cur or not cells:
        cells.append("".join(cur))
    return [html.unescape(c.strip()) for c in cells]


def inline_html(text: str) -> str:
    """Escape text, then render **bold**, `code` and <u>/<ins> underline."""
    out = html.escape(text, quote=False)
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    for tag in ("u", "ins"):
        out = out.replace(f"&lt;{tag}&gt;", f"<{tag}>").replace(f"&lt;/{tag}&gt;", f"</{tag}>")
    return out


def _align(cell: str) -> str | None:
    m = _DELIM_CELL.match(cell)
    if m is None:
        raise ValueError(f"not a Markdown table delimiter cell: {cell!r}")
    left, right = bool(m.group(1)), bool(m.group(2))
    return "center" if left and right else "right" if right else "left" if left else None


def _table(lines: list[str]) -> str:
    if len(lines) < 2:
        raise ValueError("a Markdown table needs a header line and a delimiter line")
    head = _split_row(lines[0])
    aligns = [_align(c) for c in _split_row(lines[1])]
    if len(aligns) != len(head):
        raise ValueError(f"header has {len(head)} cells, delimiter line {len(aligns)}")

    def cells(tag: str, values: list[str]) -> str:
        values = (values + [""] * len(head))[: len(head)]
        styles = [f' style="text-align:{a}"' if a else "" for a in aligns]
        return "".join(f"<{tag}{st}>{inline_html(v)}</{tag}>" for v, st in zip(values, styles))

    body = "\n".join(f"<tr>{cells('td', _split_row(line))}</tr>" for line in lines[2:])
    return f"<table>\n<thead>\n<tr>{cells('th', head)}</tr>\n</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def markdown_table_to_html(md: str) -> str:
    """A GitHub-flavoured Markdown pipe table (header, ---/---: delimiter, rows) as an HTML <table>.

    Cells may hold **bold**, `code` and <u>underline</u>; everything else is escaped. Lines around the
    table become headings (`#`), list items (`- `) or paragraphs, so a whole summary can be passed through."""
    out: list[str] = []
    block: list[str] = []
    items: list[str] = []
    found = False
    for line in md.splitlines() + [""]:
        text = line.strip()
        if text.startswith("|"):
            block.append(text)
            continue
        if block:
            out.append(_table(block))
            found = True
            block = []
        if text.startswith("- "):
            items.append(f"<li>{inline_html(html.unescape(text[2:]))}</li>")
            continue
        if items:
            out.append("<ul>\n" + "\n".join(items) + "\n</ul>")
            items = []
        if text.startswith("#"):
            out.append(f"<h3>{inline_html(html.unescape(text.lstrip('#').strip()))}</h3>")
        elif text:
            out.append(f"<p>{inline_html(html.unescape(text))}</p>")
    if not found:
        raise ValueError("no Markdown pipe table found")
    return "\n".join(out)
