"""A LoRA adapter as plain tensors, its file format and exact skill arithmetic.

A skill changes each target linear layer W (out x in) by `scaling * B @ A`, A (r x in),
B (out x r): what peft trains and what llama.cpp applies. The file is a safetensors archive:
`lora.<module>.A/B` per layer, `router.vectors` (the embeddings of the tasks it was trained
on, for the router) and the skill's description as JSON metadata, so a file carries all a
store needs to import it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memory_agent.skills.errors import SkillFileError

FILE_FORMAT = "memory-agent-skill/1"


@dataclass
class LoraWeights:
    """Per target module (its name in the base model) the pair (A, B); `scaling` multiplies
    every B @ A (peft's lora_alpha / r)."""

    name: str
    modules: dict[str, tuple[Any, Any]]
    scaling: float
    router_vectors: Any = None  # (n, dim) float32 torch tensor or None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return max((int(a.shape[0]) for a, _ in self.modules.values()), default=0)

    def parameter_count(self) -> int:
        return sum(int(a.numel()) + int(b.numel()) for a, b in self.modules.values())


def combine(terms: Sequence[tuple[LoraWeights, float]], name: str) -> LoraWeights:
    """The weighted sum of adapters, exactly: sum_i w_i s_i B_i A_i equals B A with A the
    rows of every A_i stacked and B the columns of every w_i s_i B_i side by side (the rank
    is the sum of the ranks). A difference is a sum with a weight of -1 (PaST's vector)."""
    import torch

    if not terms:
        raise ValueError("combine needs at least one adapter")
    names = sorted({m for adapter, _ in terms for m in adapter.modules})
    modules: dict[str, tuple[Any, Any]] = {}
    for module in names:
        parts = [(a, w, adapter) for adapter, w in terms if (a := adapter.modules.get(module))]
        a_rows = torch.cat([pair[0] for pair, _, _ in parts], dim=0)
        b_cols = torch.cat([pair[1] * (w * adapter.scaling) for pair, w, adapter in parts], dim=1)
        modules[module] = (a_rows.contiguous(), b_cols.contiguous())
    vectors = [t.router_vectors for t, w in terms if t.router_vectors is not None and w > 0]
    router = torch.cat(vectors, dim=0) if vectors else None
    return LoraWeights(name=name, modules=modules, scaling=1.0, router_vectors=router)


def save(weights: LoraWeights, path: Path, description: Mapping[str, Any]) -> None:
    """Write `weights` and the skill's `description` to `path` (via a temporary file, so a
    crash never leaves half a file under the final name)."""
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    for module, (a, b) in weights.modules.items():
        tensors[f"lora.{module}.A"] = a.detach().to("cpu").float().contiguous()
        tensors[f"lora.{module}.B"] = b.detach().to("cpu").float().contiguous()
    if weights.router_vectors is not None:
        tensors["router.vectors"] = weights.router_vectors.detach().float().contiguous()
    metadata = {
        "format": FILE_FORMAT,
        "scaling": repr(float(weights.scaling)),
        "skill": json.dumps(dict(description), default=str),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(path)


def load(path: Path, name: str | None = None) -> LoraWeights:
    """Read a skill file; SkillFileError if it is missing, damaged or not a skill."""
    from safetensors import safe_open

    if not path.is_file():
        raise SkillFileError(
            f"The skill file {path} is missing; re-import the skill (`memory-agent skills "
            "import`) or delete it (`memory-agent skills delete`)."
        )
    try:
        with safe_open(str(path), framework="pt") as archive:
            metadata = archive.metadata() or {}
            tensors = {key: archive.get_tensor(key) for key in archive.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types, and OSError
        raise SkillFileError(
            f"The skill file {path} is damaged or not a safetensors file ({exc}); re-export it "
            "from a store that has it, or delete the skill and train it again."
        ) from exc
    if metadata.get("format") != FILE_FORMAT:
        raise SkillFileError(
            f"{path} is not a memory-agent skill file (format {metadata.get('format')!r}, "
            f"expected {FILE_FORMAT!r}); export skills with `memory-agent skills export`."
        )
    try:
        description = json.loads(metadata.get("skill", "{}"))
        scaling = float(metadata["scaling"])
    except (ValueError, KeyError) as exc:
        raise SkillFileError(f"The skill file {path} has unreadable metadata ({exc}).") from exc
    modules: dict[str, tuple[Any, Any]] = {}
    for key in tensors:
        if key.startswith("lora.") and key.endswith(".A"):
            module = key[len("lora.") : -len(".A")]
            b = tensors.get(f"lora.{module}.B")
            a = tensors[key]
            if b is None or a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
                raise SkillFileError(f"The skill file {path} has a malformed layer {module!r}.")
            modules[module] = (a, b)
    if not modules:
        raise SkillFileError(f"The skill file {path} holds no adapter layers.")
    return LoraWeights(
        name=name or str(description.get("name") or path.stem),
        modules=modules,
        scaling=scaling,
        router_vectors=tensors.get("router.vectors"),
        info=description,
    )


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
