"""Writes the hand-made GAIA sample beside this file (stdlib + pyarrow; tiny, reproducible).

validation/: metadata.jsonl with known answers and one attachment of each supported type
(txt, csv, json, xlsx, pdf, docx). test/: metadata.parquet with hidden answers ("?") and
string levels, as the upstream dataset ships them. Run: python tests/data/gaia/make_gaia_sample.py
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXED_TIME = (2024, 1, 1, 0, 0, 0)

VALIDATION = [
    ("v-txt", 1, "What is the secret code written in the attached text file?", "4721", "notes.txt"),
    ("v-csv", 1, "Which fruit in the attached table has the highest count?", "mango", "fruits.csv"),
    (
        "v-json",
        2,
        "List the server names in the attached configuration, comma-separated, in the order given.",
        "alpha, beta, gamma",
        "servers.json",
    ),
    (
        "v-xlsx",
        2,
        "What is the total of the Amount column in the attached spreadsheet?",
        "1500",
        "sales.xlsx",
    ),
    ("v-pdf", 3, "What is the project codename in the attached report?", "Bluebird", "report.pdf"),
    (
        "v-docx",
        1,
        "To which weekday was the meeting moved, according to the attached memo?",
        "Thursday",
        "memo.docx",
    ),
    ("v-plain", 1, "What is 6 times 7?", "42", ""),
]

TEST = [
    ("t-1", "1", "How many legs does a spider have?", "?", ""),
    ("t-2", "2", "What is the secret code written in the attached text file?", "?", "notes.txt"),
]


OOXML = "application/vnd.openxmlformats-"
PACKAGE = "http://schemas.openxmlformats.org/package/2006"
OFFICE_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>'


def write_zip(path: Path, members: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)


def content_types(parts: dict[str, str]) -> str:
    rels = f"{OOXML}package.relationships+xml"
    overrides = "".join(
        f'<Override PartName="{name}" ContentType="{OOXML}{kind}"/>' for name, kind in parts.items()
    )
    return (
        f'{XML_HEAD}<Types xmlns="{PACKAGE}/content-types">'
        f'<Default Extension="rels" ContentType="{rels}"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f"{overrides}</Types>"
    )


def relationships(kind: str, target: str) -> str:
    return (
        f'{XML_HEAD}<Relationships xmlns="{PACKAGE}/relationships">'
        f'<Relationship Id="rId1" Type="{OFFICE_REL}/{kind}" Target="{target}"/>'
        "</Relationships>"
    )


def write_xlsx(path: Path, rows: list[tuple[str, str | int]]) -> None:
    def cell(ref: str, value: str | int) -> str:
        if isinstance(value, int):
            return f'<c r="{ref}"><v>{value}</v></c>'
        return f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>'

    sheet_rows = "".join(
        f'<row r="{i}">{cell(f"A{i}", a)}{cell(f"B{i}", b)}</row>'
        for i, (a, b) in enumerate(rows, start=1)
    )
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    sheet = "officedocument.spreadsheetml"
    write_zip(
        path,
        {
            "[Content_Types].xml": content_types(
                {
                    "/xl/workbook.xml": f"{sheet}.sheet.main+xml",
                    "/xl/worksheets/sheet1.xml": f"{sheet}.worksheet+xml",
                }
            ),
            "_rels/.rels": relationships("officeDocument", "xl/workbook.xml"),
            "xl/workbook.xml": (
                f'{XML_HEAD}<workbook xmlns="{main}" xmlns:r="{OFFICE_REL}">'
                '<sheets><sheet name="Sales" sheetId="1" r:id="rId1"/></sheets></workbook>'
            ),
            "xl/_rels/workbook.xml.rels": relationships("worksheet", "worksheets/sheet1.xml"),
            "xl/worksheets/sheet1.xml": (
                f'{XML_HEAD}<worksheet xmlns="{main}"><sheetData>{sheet_rows}</sheetData>'
                "</worksheet>"
            ),
        },
    )


def write_docx(path: Path, paragraphs: list[str]) -> None:
    word = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    write_zip(
        path,
        {
            "[Content_Types].xml": content_types(
                {"/word/document.xml": "officedocument.wordprocessingml.document.main+xml"}
            ),
            "_rels/.rels": relationships("officeDocument", "word/document.xml"),
            "word/document.xml": (
                f'{XML_HEAD}<w:document xmlns:w="{word}"><w:body>{body}</w:body></w:document>'
            ),
        },
    )


def write_pdf(path: Path, lines: list[str]) -> None:
    """A one-page PDF with Helvetica text and a correct cross-reference table."""
    text = "BT /F1 12 Tf 72 720 Td " + " ".join(f"({line}) Tj 0 -16 Td" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(text)} >>\nstream\n{text}\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("latin-1")
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode("latin-1")
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode("latin-1")
    path.write_bytes(bytes(out))


def write_attachments(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("Reminder for the team.\nThe secret code is 4721.\n")
    (folder / "fruits.csv").write_text("fruit,count\napple,12\nmango,31\npear,7\n")
    (folder / "servers.json").write_text(
        json.dumps({"servers": [{"name": "alpha"}, {"name": "beta"}, {"name": "gamma"}]}, indent=1)
        + "\n"
    )
    write_xlsx(
        folder / "sales.xlsx", [("Region", "Amount"), ("North", 700), ("South", 500), ("West", 300)]
    )
    write_pdf(folder / "report.pdf", ["Quarterly report", "Project codename: Bluebird"])
    write_docx(
        folder / "memo.docx", ["Memo to all staff.", "The meeting has been moved to Thursday."]
    )


def main() -> None:
    validation = HERE / "validation"
    write_attachments(validation)
    with (validation / "metadata.jsonl").open("w") as handle:
        for task_id, level, question, answer, file_name in VALIDATION:
            row = {
                "task_id": task_id,
                "Question": question,
                "Level": level,
                "Final answer": answer,
                "file_name": file_name,
                "Annotator Metadata": {"Steps": "hand-made sample", "Tools": "none"},
            }
            handle.write(json.dumps(row) + "\n")

    import pyarrow as pa
    import pyarrow.parquet as pq

    test = HERE / "test"
    test.mkdir(exist_ok=True)
    (test / "notes.txt").write_text((validation / "notes.txt").read_text())
    table = pa.Table.from_pylist(
        [
            {
                "task_id": t,
                "Question": q,
                "Level": lvl,
                "Final answer": a,
                "file_name": f,
                "Annotator Metadata": {"Steps": "", "Tools": ""},
            }
            for t, lvl, q, a, f in TEST
        ]
    )
    pq.write_table(table, test / "metadata.parquet")


if __name__ == "__main__":
    main()
