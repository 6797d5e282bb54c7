"""Real task text for the store benchmark: the Memento questions and cases, plus questions
generated from them (seeded) to reach a given count.

Generation keeps the shape of real questions: each template is a Memento question with one
named entity cut out, and each fill is an entity seen in another question. The result reads
like the bank (same phrasing, same entity vocabulary) but is new text that the embedder has
to place, so the benchmark's neighbours are not trivial copies.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

_ENTITY = re.compile(r"\b[A-Z][\w'.-]+(?: (?:of |de |the )?[A-Z][\w'.-]+)*")
_FIELDS = ("question", "case", "task", "text")


def memento_texts(folder: Path) -> list[str]:
    """Every question/case text of the Memento JSONL files in `folder`, first occurrence only."""
    seen: dict[str, None] = {}
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                record = json.loads(line)
                for key in _FIELDS:
                    value = record.get(key)
                    if isinstance(value, str) and value.strip():
                        seen.setdefault(" ".join(value.split()), None)
                        break
    return list(seen)


def generated_questions(real: list[str], total: int, *, seed: int = 0) -> Iterator[str]:
    """`total` texts: the real ones first, then new ones from templates x entities."""
    rng = random.Random(seed)
    emitted = set(real[:total])
    yield from real[:total]
    templates: list[str] = []
    entities: list[str] = []
    for text in real:
        found = [m for m in _ENTITY.finditer(text) if m.start() > 0]
        entities.extend(m.group(0) for m in found)
        for match in found:
            templates.append(text[: match.start()] + "{}" + text[match.end() :])
    if not templates or not entities:
        return
    attempts = 0
    while len(emitted) < total and attempts < total * 20:
        attempts += 1
        text = rng.choice(templates).replace("{}", rng.choice(entities), 1)
        if text not in emitted:
            emitted.add(text)
            yield text


def main() -> None:
    """python -m memory_agent.evals.memento_questions MEMENTO_DIR OUT.txt [TOTAL]"""
    import sys

    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    total = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
    texts = list(generated_questions(memento_texts(folder), total))
    out.write_text("\n".join(texts) + "\n", encoding="utf-8")
    print(f"wrote {len(texts)} texts to {out}")


if __name__ == "__main__":
    main()
