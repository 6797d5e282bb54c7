"""Calculator, attachment reader, document search and the tool registry."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from memory_agent import Settings
from memory_agent.errors import InvalidInputError
from memory_agent.tools import (
    ToolContext,
    ToolRegistry,
    ToolResult,
    UnknownToolError,
    default_tools,
)
from memory_agent.tools.attachments import read_attachment
from memory_agent.tools.calculator import CalculatorTool, evaluate
from memory_agent.tools.docsearch import SearchDocsTool, search_folder


def test_calculator_evaluates_arithmetic_and_refuses_code(tmp_path: Path) -> None:
    assert evaluate("(3 + 4) * 2 ** 3") == 56
    assert evaluate("sqrt(16) + floor(2.7)") == 6.0
    for bad in ("__import__('os')", "x + 1", "2 ** 999999", "open('f')"):
        with pytest.raises(ValueError):
            evaluate(bad)
    context = ToolContext(workspace=tmp_path)
    assert CalculatorTool().run({"expression": "1/0"}, context).ok is False
    assert CalculatorTool().run({}, context).ok is False


def _pdf_bytes(text: str) -> bytes:
    """A one-page PDF with `text`, offsets computed so the cross-reference table is valid."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref,
    )  # fmt: skip
    return bytes(out)


def test_attachments_of_every_supported_type_read_as_text(tmp_path: Path) -> None:
    import docx
    from openpyxl import Workbook

    (tmp_path / "a.txt").write_text("plain words")
    (tmp_path / "b.csv").write_text("name,count\nowls,3\n")
    (tmp_path / "c.json").write_text(json.dumps({"planet": "Mars", "moons": 2}))
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Sales"
    sheet.append(["item", "amount"])
    sheet.append(["apples", 3])
    book.save(tmp_path / "d.xlsx")
    document = docx.Document()
    document.add_paragraph("The meeting is on Tuesday.")
    document.save(str(tmp_path / "e.docx"))
    (tmp_path / "f.pdf").write_bytes(_pdf_bytes("Invoice total 1234"))

    assert read_attachment(tmp_path / "a.txt") == "plain words"
    assert read_attachment(tmp_path / "b.csv") == "name,count\nowls,3"
    assert '"moons": 2' in read_attachment(tmp_path / "c.json")
    assert read_attachment(tmp_path / "d.xlsx") == "# sheet Sales\nitem,amount\napples,3"
    assert "meeting is on Tuesday" in read_attachment(tmp_path / "e.docx")
    assert "Invoice total 1234" in read_attachment(tmp_path / "f.pdf")
    (tmp_path / "g.exe").write_bytes(b"MZ")
    with pytest.raises(InvalidInputError, match="supported types"):
        read_attachment(tmp_path / "g.exe")


def test_document_search_ranks_the_matching_passage_first(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "birds.md").write_text("Owls hunt at night.\n\nParrots can mimic speech.")
    (docs / "fish.txt").write_text("Salmon swim upstream to spawn.")
    found = search_folder(docs, "which birds mimic speech", k=2)
    assert found[0].path.name == "birds.md" and "Parrots" in found[0].text
    tool = SearchDocsTool(docs)
    result = tool.run({"query": "salmon spawn"}, ToolContext(workspace=tmp_path))
    assert result.ok and result.output.startswith("[fish.txt]")
    assert default_tools(Settings(home=tmp_path, runtime={"docs_dir": docs})).names() == [
        "calculator", "python", "read_file", "search_docs",
    ]  # fmt: skip
    assert "search_docs" not in default_tools(Settings(home=tmp_path)).names()


class EchoTool:
    name = "echo"
    description = "Repeats its text."
    parameters = {"text": "what to repeat"}

    def run(self, args: Mapping[str, Any], context: ToolContext) -> ToolResult:
        return ToolResult(True, str(args.get("text")))


def test_registry_by_name() -> None:
    registry = ToolRegistry([EchoTool()])
    assert registry.get("echo").name == "echo" and "echo" in registry
    assert '- echo: Repeats its text. Arguments: {"text": what to repeat}' == registry.describe()
    with pytest.raises(InvalidInputError, match="already registered"):
        registry.register(EchoTool())
    with pytest.raises(UnknownToolError, match="available tools: echo"):
        registry.get("shell")
