"""Reading attached files as text: txt, md, csv, json, xlsx, pdf, docx (what GAIA attaches)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from memory_agent.errors import DependencyMissingError, InvalidInputError
from memory_agent.tools.base import ToolContext, ToolResult

TEXT_SUFFIXES = {".txt", ".md", ".py", ".log", ".xml", ".html", ".htm", ".tsv", ".yaml", ".yml"}
SUFFIXES = TEXT_SUFFIXES | {".csv", ".json", ".jsonl", ".xlsx", ".pdf", ".docx"}
MAX_CHARS = 20_000


def read_attachment(path: Path, max_chars: int = MAX_CHARS) -> str:
    """The text of `path`; tables come as comma-separated rows."""
    if not path.is_file():
        raise InvalidInputError(f"Attachment {path} does not exist or is not a file.")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInputError(
            f"Cannot read {path.name}: supported types are {', '.join(sorted(SUFFIXES))}."
        )
    if suffix in TEXT_SUFFIXES or suffix == ".jsonl":
        text = path.read_text(encoding="utf-8", errors="replace")
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            text = "\n".join(",".join(row) for row in csv.reader(handle))
    elif suffix == ".json":
        try:
            text = json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=1)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path.name} is not valid JSON: {exc}.") from exc
    elif suffix == ".xlsx":
        text = _read_xlsx(path)
    elif suffix == ".pdf":
        text = _read_pdf(path)
    else:
        text = _read_docx(path)
    if len(text) > max_chars:
        return text[:max_chars] + f"\n…[{len(text) - max_chars} more characters]"
    return text


def _read_xlsx(path: Path) -> str:
    try:
        from openpyxl import load_workbook
    except ImportError as exc:
        raise DependencyMissingError("Reading .xlsx needs openpyxl: pip install openpyxl") from exc
    workbook = load_workbook(path, read_only=True, data_only=True)
    parts = []
    for sheet in workbook.worksheets:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in sheet.iter_rows(values_only=True):
            writer.writerow(["" if v is None else v for v in row])
        parts.append(f"# sheet {sheet.title}\n{buffer.getvalue().rstrip()}")
    workbook.close()
    return "\n\n".join(parts)


def _read_pdf(path: Path) -> str:
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise DependencyMissingError("Reading .pdf needs pypdf: pip install pypdf") from exc
    reader = PdfReader(path)
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)


def _read_docx(path: Path) -> str:
    try:
        import docx
    except ImportError as exc:
        raise DependencyMissingError(
            "Reading .docx needs python-docx: pip install python-docx"
        ) from exc
    document = docx.Document(str(path))
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append(",".join(cell.text for cell in row.cells))
    return "\n".join(lines)


class ReadFileTool:
    name = "read_file"
    description = "Reads an attached file (txt, csv, json, xlsx, pdf, docx) as text."
    parameters = {"name": "the attachment's file name (or a path inside the workspace)"}

    def run(self, args: Mapping[str, Any], context: ToolContext) -> ToolResult:
        name = args.get("name") or args.get("path")
        if not isinstance(name, str) or not name:
            attached = ", ".join(p.name for p in context.files) or "none"
            return ToolResult(False, f'read_file needs {{"name": "..."}}; attached: {attached}')
        target = _resolve(name, context)
        if target is None:
            attached = ", ".join(p.name for p in context.files) or "none"
            return ToolResult(False, f"No attachment called {name!r}; attached: {attached}")
        try:
            return ToolResult(True, read_attachment(target), {"path": str(target)})
        except (InvalidInputError, DependencyMissingError) as exc:
            return ToolResult(False, str(exc))
        except Exception as exc:  # a corrupt file is an observation, not a crash
            return ToolResult(False, f"Could not read {target.name}: {type(exc).__name__}: {exc}")


def _resolve(name: str, context: ToolContext) -> Path | None:
    for path in context.files:
        if path.name == name or str(path) == name:
            return path
    workspace = context.workspace.resolve()
    candidate = (workspace / name).resolve()
    if candidate.is_relative_to(workspace) and candidate.is_file():
        return candidate
    return None
