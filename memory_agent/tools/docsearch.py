"""Search over a local folder of documents (BM25 over paragraph chunks, no index to build)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory_agent.tools.attachments import SUFFIXES, read_attachment
from memory_agent.tools.base import ToolContext, ToolResult

_WORD = re.compile(r"[a-z0-9]+")
_CHUNK_CHARS = 800


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True, slots=True)
class Passage:
    path: Path
    text: str
    score: float


def _chunks(text: str) -> list[str]:
    chunks, current = [], ""
    for paragraph in re.split(r"\n\s*\n", text):
        if current and len(current) + len(paragraph) > _CHUNK_CHARS:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current.strip():
        chunks.append(current)
    return chunks


def search_folder(folder: Path, query: str, k: int = 3) -> list[Passage]:
    """The k passages of the folder's documents that best match `query` (BM25)."""
    passages: list[tuple[Path, str, Counter[str]]] = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in SUFFIXES:
            try:
                text = read_attachment(path, max_chars=2_000_000)
            except Exception:  # an unreadable file is skipped, not fatal
                continue
            passages.extend((path, c, Counter(_words(c))) for c in _chunks(text))
    terms = set(_words(query))
    if not passages or not terms:
        return []
    n = len(passages)
    average = sum(sum(c.values()) for _, _, c in passages) / n
    frequency = {t: sum(1 for _, _, c in passages if t in c) for t in terms}
    scored = []
    for path, text, counts in passages:
        length = sum(counts.values())
        score = 0.0
        for term in terms:
            tf = counts.get(term, 0)
            if tf:
                idf = math.log(1 + (n - frequency[term] + 0.5) / (frequency[term] + 0.5))
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / average))
        if score > 0:
            scored.append(Passage(path, text.strip(), score))
    scored.sort(key=lambda p: -p.score)
    return scored[:k]


class SearchDocsTool:
    name = "search_docs"
    description = "Searches the local document folder and returns the best matching passages."
    parameters = {"query": "words to look for", "k": "how many passages (default 3)"}

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def run(self, args: Mapping[str, Any], context: ToolContext) -> ToolResult:
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            return ToolResult(False, 'search_docs needs {"query": "..."}')
        k = args.get("k", 3)
        k = k if isinstance(k, int) and 1 <= k <= 20 else 3
        if not self.folder.is_dir():
            return ToolResult(False, f"The document folder {self.folder} does not exist.")
        found = search_folder(self.folder, query, k)
        if not found:
            return ToolResult(True, "No matching passages.")
        text = "\n\n".join(
            f"[{p.path.relative_to(self.folder)}] {p.text[:_CHUNK_CHARS]}" for p in found
        )
        return ToolResult(True, text, {"paths": [str(p.path) for p in found]})
