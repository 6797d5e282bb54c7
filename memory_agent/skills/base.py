"""Which base model a skill belongs to: a name and the sha256 of its weights file."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from memory_agent.skills.adapter import file_sha256

_HASHES: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class BaseModel:
    model_id: str  # e.g. "smollm2-135m:SmolLM2-135M-Instruct.Q4_1.gguf"
    sha256: str

    @property
    def short(self) -> str:
        return f"{self.model_id} (sha256 {self.sha256[:12]})"


def base_of(name: str, gguf: Path) -> BaseModel:
    """The identity of the local model `name` loaded from `gguf` (hashed once per process and
    file version: ~100 MB)."""
    stat = gguf.stat()
    key = (str(gguf.resolve()), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        if key not in _HASHES:
            _HASHES[key] = file_sha256(gguf)
        return BaseModel(f"{name}:{gguf.name}", _HASHES[key])
