"""LoRA skill vectors for the embedded local model.

A skill is a small low-rank delta trained (peft, CPU) from the memory's successful cases in
the chat format the runtime prompts with, stored as a versioned row of the store's `skills`
table with its adapter file in the data directory. It is injected at inference by forward
hooks, never merged: the base weights stay bit-identical. Skills combine exactly (weighted
sums, PaST-style differences), a router picks them per task from task similarity, and a
skill exports as a GGUF LoRA adapter for llama.cpp.

Modules: `adapter` (tensors, file format, arithmetic), `base` (which model a skill fits),
`data` (cases -> examples), `train` (peft loop), `library` (store access), `router`,
`inject` (per-run injection), `gguf_export`, `bench` (the measurement).
"""
