"""A skill as a GGUF LoRA adapter for llama.cpp (`--lora FILE`, llama-cpp-python's
`Llama(lora_path=...)`), written with the `gguf` package.

llama.cpp applies `scale * alpha / r * B @ A` per layer, with A stored as (r, in) and B as
(out, r) — torch's own layouts. Three things differ from the skill file:
- names: `model.layers.3.self_attn.q_proj` is `blk.3.attn_q.weight` there;
- llama.cpp keeps the query and key rows of each head in an interleaved rotary order (its
  converter permutes them, transformers' GGUF loader undoes that), so B's rows of q and k
  get the same permutation (A, on the input side, does not);
- layers of a combined skill may differ in rank while `alpha` is one number: every pair is
  zero-padded to the largest rank R (exact: zero rows add nothing) and the scaling is folded
  into B, with alpha = R, so llama.cpp's lora scale 1.0 is the skill at its stored scale.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from memory_agent.skills.adapter import LoraWeights

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)$")
_GGUF_NAMES = {
    "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
    "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
}  # fmt: skip


def gguf_tensor_name(module: str) -> str:
    match = _LAYER.match(module)
    if match is None or match.group(3) not in _GGUF_NAMES:
        raise ValueError(f"no llama.cpp tensor for layer {module!r}")
    return f"blk.{match.group(1)}.{_GGUF_NAMES[match.group(3)]}.weight"


def rotary_rows(rows: Any, heads: int) -> Any:
    """The rows of a query or key projection (or its LoRA B) in llama.cpp's order: within
    each head, the first and second halves of the rotary dimensions interleaved."""
    out = rows.shape[0]
    half = out // heads // 2
    return rows.reshape(heads, 2, half, *rows.shape[1:]).transpose(1, 2).reshape(rows.shape)


def write_gguf_lora(
    weights: LoraWeights, path: Path, *, scale: float, config: Any, name: str
) -> Path:
    """Write `weights` (at `scale`) for a llama-architecture model with `config`
    (transformers' config of the base model: head counts)."""
    import gguf
    import numpy as np
    import torch

    if getattr(config, "model_type", None) != "llama":
        raise ValueError(f"GGUF export knows the llama architecture, not {config.model_type!r}")
    rank = max(int(a.shape[0]) for a, _ in weights.modules.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), arch="llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    writer.add_name(name)
    heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}
    for module, (a, b) in sorted(weights.modules.items()):
        tensor = gguf_tensor_name(module)
        b = b * (scale * weights.scaling)
        kind = module.rsplit(".", 1)[1]
        if kind in heads:
            b = rotary_rows(b, int(heads[kind]))
        pad = rank - int(a.shape[0])
        if pad:
            a = torch.cat([a, a.new_zeros((pad, a.shape[1]))], dim=0)
            b = torch.cat([b, b.new_zeros((b.shape[0], pad))], dim=1)
        writer.add_tensor(f"{tensor}.lora_a", np.ascontiguousarray(a.float().numpy()))
        writer.add_tensor(f"{tensor}.lora_b", np.ascontiguousarray(b.float().numpy()))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    partial.replace(path)
    return path
