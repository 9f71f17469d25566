"""Text made safe where a report puts it: Markdown table cells, running Markdown and code spans, LaTeX, and CSV cells a
spreadsheet would otherwise run as formulas (OWASP, CSV injection)."""

from __future__ import annotations

import re


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell: backslashes and pipes escaped, line breaks as spaces, and `&`, `<`, `>`
    as HTML entities (a label `<img onerror=...>` is shown, never run, by renderers that pass HTML through)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def md_text(text: str) -> str:
    """Text safe in running Markdown (a list item, a paragraph): `&`, `<`, `>` as entities, line breaks as spaces."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", " ").replace("\n", " ")


def md_code(text: str) -> str:
    """Text as a Markdown code span (shown literally, never as HTML): fenced by more backticks than it holds."""
    text = text.replace("\r", " ").replace("\n", " ")
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if text.startswith("`") or text.endswith("`") else f"{fence}{text}{fence}"


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet reads a cell starting with these as a formula (OWASP, CSV injection)."""


def csv_safe(value):
    """A CSV cell a spreadsheet shows as text: strings that start a formula get a leading `'`, numbers stay numbers."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


TEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}", "^": r"\^{}",
    "~": r"\textasciitilde{}", "<": r"$<$", ">": r"$>$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "α": r"$\alpha$", "±": r"$\pm$",
    "−": "-", "—": "---",
}  # fmt: skip
"""Text -> LaTeX, applied in one pass (so the braces of \\textbackslash{} are not escaped again)."""
_TEX_CHARS = re.compile("|".join(map(re.escape, TEX_ESCAPES)))


def tex_escape(s: str) -> str:
    return _TEX_CHARS.sub(lambda m: TEX_ESCAPES[m.group()], s)
