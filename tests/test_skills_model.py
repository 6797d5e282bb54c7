"""LoRA skills on the real SmolLM2-135M: training stores a versioned skill, injection changes
the model's output and removal leaves the base model bit-identical (parameters and output),
hooks compute exactly the merged-weights delta for several skills at their own scales, the
agent's router picks skills per task and logs the choice, and the GGUF export loads in
llama.cpp (llama-cpp-python) with the base GGUF and shifts its logits as the skill does here.

Training runs a handful of steps on tiny examples: these tests check the machinery, not that
a skill helps (BENCHMARKS.md "Skills" measures that)."""

from __future__ import annotations

import copy
import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hash_embedder import HashEmbedder
from llama_server import llama_server as serve_gguf
from llama_server import require_llama_cpp
from typer.testing import CliRunner

from memory_agent import MemoryAgent, Settings
from memory_agent.cli import app
from memory_agent.llm.local import LocalChatModel, adapter_targets, adapters_applied
from memory_agent.skills.adapter import LoraWeights
from memory_agent.skills.base import base_of
from memory_agent.skills.data import CaseFilter
from memory_agent.skills.library import SkillLibrary
from memory_agent.skills.train import TrainOptions
from memory_agent.store import CaseMemory, NewCase

pytestmark = pytest.mark.slow

SYSTEM = (
    "You answer each question with one line of Python that computes the answer. "
    "Reply with the code only."
)
GCD = "Find the Greatest Common Divisor (GCD) of these numbers: {}, {}. Give only the GCD."
PROMPT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": GCD.format(30, 45)}]


@pytest.fixture(scope="module")
def local_model() -> LocalChatModel:
    model = LocalChatModel()
    model.load()
    return model


@pytest.fixture
def memory(isolated_home: Path) -> Iterator[CaseMemory]:
    with CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder()) as store:  # type: ignore[arg-type]
        yield store


def logits(llm: LocalChatModel, messages: list[dict[str, str]]) -> torch.Tensor:
    """The last position's logits for `messages`, with this instance's adapters applied."""
    tokenizer, model = llm.loaded()
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]  # fmt: skip
    with torch.inference_mode(), adapters_applied(model, list(llm.adapters.values())):
        return model(ids).logits[0, -1].clone()


def random_skill(model: Any, name: str, seed: int, kinds: set[str], size: float) -> LoraWeights:
    generator = torch.Generator().manual_seed(seed)
    modules = {
        layer: (torch.randn(4, linear.in_features, generator=generator) * size,
                torch.randn(linear.out_features, 4, generator=generator) * size)
        for layer, linear in adapter_targets(model).items()
        if layer.rsplit(".", 1)[1] in kinds
    }  # fmt: skip
    return LoraWeights(name, modules, scaling=1.0)


def hooks(model: Any) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_train_store_inject_and_remove_leaves_the_base_bit_identical(
    local_model: LocalChatModel, memory: CaseMemory, isolated_home: Path
) -> None:
    memory.add_many(
        [NewCase(task=GCD.format(a, b), plan=f"import math; math.gcd({a}, {b})", reward=1.0,
                 outcome="success") for a, b in [(12, 18), (40, 64), (99, 33), (7, 21)]]
    )  # fmt: skip
    memory.add("Spell 'cat' backward.", plan="'cat'[::-1]", outcome="failure", reward=0.0)
    library = SkillLibrary.of(memory)
    hooks_before = hooks(local_model.loaded()[1])
    options = TrainOptions(steps=3, rank=2, batch_size=2, eval_every=1, patience=5,
                           max_length=160, layers=2, held_out=0.25)  # fmt: skip
    seen: list[int] = []
    record = library.train(
        "gcd", memory, local_model, CaseFilter("default"), options,
        progress=lambda step, total, figures: seen.append(step),
    )  # fmt: skip
    assert seen == [1, 2, 3]
    assert (record.label, record.rank, record.prompt_style) == ("gcd@1", 2, "code")
    assert record.base_hash == base_of(local_model.name, local_model.gguf).sha256
    assert len(record.cases["train"]) == 3 and len(record.cases["held_out"]) == 1
    metrics = record.metrics
    assert metrics["steps"] == 3 and metrics["held_out_examples"] == 1
    assert metrics["held_out_loss"] <= metrics["held_out_loss_base"]
    assert metrics["router"] == {"embedder": "test-hash-32", "dim": 32}
    assert (isolated_home / record.file).stat().st_size == record.file_bytes
    skill = library.load(record, base_of(local_model.name, local_model.gguf))
    assert {m.split(".")[2] for m in skill.modules} == {"28", "29"}  # the last 2 blocks

    _tokenizer, model = local_model.loaded()
    assert hooks(model) == hooks_before  # training caught the frozen blocks' states and left
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    before_text = local_model.chat(PROMPT, max_tokens=20).text
    before = logits(local_model, PROMPT)

    local_model.inject(skill, 1.0)
    with_skill = logits(local_model, PROMPT)
    local_model.chat(PROMPT, max_tokens=20)
    assert not torch.equal(with_skill, before)
    local_model.remove(skill.name)

    assert torch.equal(logits(local_model, PROMPT), before)
    assert local_model.chat(PROMPT, max_tokens=20).text == before_text
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert hooks(model) == hooks_before


def test_hooks_add_exactly_the_merged_delta_of_several_skills(
    local_model: LocalChatModel,
) -> None:
    _tokenizer, model = local_model.loaded()
    first = random_skill(model, "a", 1, {"q_proj", "down_proj"}, 0.05)
    second = random_skill(model, "b", 2, {"v_proj", "down_proj"}, 0.05)
    second.scaling = 2.0
    merged = copy.deepcopy(model)
    layers = dict(merged.named_modules())
    with torch.no_grad():
        for skill, scale in ((first, 0.5), (second, -1.0)):
            for name, (a, b) in skill.modules.items():
                layers[name].weight += scale * skill.scaling * (b @ a)
    tokenizer, _ = local_model.loaded()
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]  # fmt: skip
    with torch.inference_mode():
        expected = merged(ids).logits[0, -1]
    plain = logits(local_model, PROMPT)
    local_model.inject(first, 0.5)
    local_model.inject(second, -1.0)
    try:
        assert set(local_model.adapters) == {"a", "b"}
        hooked = logits(local_model, PROMPT)
        # another thread using the same instance (agents of an eval sharing one model) does
        # not get this thread's skills
        with ThreadPoolExecutor(1) as pool:
            assert torch.equal(pool.submit(logits, local_model, PROMPT).result(), plain)
    finally:
        local_model.clear_adapters()
    assert torch.allclose(hooked, expected, atol=2e-3), (hooked - expected).abs().max()
    assert not torch.allclose(hooked, plain, atol=1e-2)
    assert torch.equal(logits(local_model, PROMPT), plain)
    with pytest.raises(ValueError, match="the model has no layer"):
        local_model.inject(LoraWeights("bad", {"model.layers.99.mlp.up_proj": (
            torch.zeros(1, 576), torch.zeros(1536, 1))}, 1.0))  # fmt: skip


def test_the_router_picks_skills_per_task_and_the_run_log_says_so(
    local_model: LocalChatModel, minilm: Any, isolated_home: Path
) -> None:
    _tokenizer, model = local_model.loaded()
    hooks_before = hooks(model)
    memory = CaseMemory(Settings(home=isolated_home), embedder=minilm)
    library = SkillLibrary.of(memory)
    base = base_of(local_model.name, local_model.gguf)
    gcd_tasks = [GCD.format(a, b) for a, b in [(30, 45), (12, 18), (40, 64), (99, 33), (7, 21)]]
    skill = random_skill(model, "gcd", 3, {"o_proj"}, 0.001)
    # the skill's cases: every gcd task but the one the agent gets
    skill.router_vectors = torch.as_tensor(minilm.embed(gcd_tasks[1:]))
    library.add_adapter("gcd", skill, base, scale=0.5,
                        router={"embedder": minilm.name, "dim": minilm.dim})  # fmt: skip
    settings = Settings(home=isolated_home, runtime={"max_attempts": 1, "max_new_tokens": 24})

    def skill_events(agent: MemoryAgent, run_id: str) -> list[dict[str, Any]]:
        return [e.data for e in agent.log.events(run_id) if e.kind == "skills"]

    with MemoryAgent(settings, llm=local_model, memory=memory, policy="none") as agent:
        routed = agent.run(gcd_tasks[0], learn=False)
        (event,) = skill_events(agent, routed.run_id)
        assert event["mode"] == "router", event
        assert event["skills"] == [{"skill": "gcd@1", "scale": 0.5}], event
        assert event["scores"]["gcd@1"] > 0.7
        other = agent.run("Spell the word 'planet' backward.", learn=False)
        (event,) = skill_events(agent, other.run_id)
        assert event["skills"] == [] and event["scores"]["gcd@1"] < 0.6
        assert local_model.adapters == {} and hooks(model) == hooks_before
    with MemoryAgent(settings, llm=local_model, memory=memory, policy="none", skills=False) as off:
        assert skill_events(off, off.run(gcd_tasks[0], learn=False).run_id) == []
    with MemoryAgent(
        settings, llm=local_model, memory=memory, policy="none", skills=["gcd:0.25"]
    ) as fixed:
        run = fixed.run("Spell the word 'planet' backward.", learn=False)
        (event,) = skill_events(fixed, run.run_id)
        assert event == {"mode": "fixed", "skills": [{"skill": "gcd@1", "scale": 0.25}]}
    assert local_model.adapters == {} and hooks(model) == hooks_before
    memory.close()


def test_gguf_export_loads_in_llama_cpp_and_moves_its_logits_as_here(
    local_model: LocalChatModel, memory: CaseMemory, isolated_home: Path, tmp_path: Path
) -> None:
    llama_cpp = require_llama_cpp()
    tokenizer, model = local_model.loaded()
    # Large enough to rise above llama.cpp's quantisation noise; q and k check the rotary
    # row order, v and down the plain layers.
    skill = random_skill(model, "shift", 4, {"q_proj", "k_proj", "v_proj", "down_proj"}, 0.1)
    SkillLibrary.of(memory).add_adapter("shift", skill, base_of(local_model.name, local_model.gguf))
    target = tmp_path / "shift.gguf"
    result = CliRunner().invoke(app, ["skills", "export", "shift", str(target), "--gguf"])
    assert result.exit_code == 0, result.output
    ids = list(tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True,
                                             return_dict=False))  # fmt: skip

    def llama_logits(lora: Path | None) -> np.ndarray:
        extra = {"lora_path": str(lora)} if lora else {}
        llm = llama_cpp.Llama(model_path=str(local_model.gguf), n_ctx=256, logits_all=True,
                              verbose=False, n_threads=1, **extra)  # fmt: skip
        llm.eval(ids)
        return np.array(llm.scores[len(ids) - 1])

    here = (logits_with(local_model, skill) - logits(local_model, PROMPT)).numpy()
    there = llama_logits(target) - llama_logits(None)
    assert np.corrcoef(here, there)[0, 1] > 0.8
    assert 0.7 < np.abs(there).mean() / np.abs(here).mean() < 1.4


def logits_with(llm: LocalChatModel, skill: LoraWeights) -> torch.Tensor:
    llm.inject(skill, 1.0)
    try:
        return logits(llm, PROMPT)
    finally:
        llm.remove(skill.name)


def test_llama_cpp_server_serves_the_base_gguf_with_the_exported_adapter(
    local_model: LocalChatModel, memory: CaseMemory, tmp_path: Path
) -> None:
    llama_cpp = require_llama_cpp()
    _tokenizer, model = local_model.loaded()
    skill = random_skill(model, "shift", 5, {"v_proj", "down_proj"}, 0.1)
    SkillLibrary.of(memory).add_adapter("shift", skill, base_of(local_model.name, local_model.gguf))
    target = tmp_path / "shift.gguf"
    assert (
        CliRunner().invoke(app, ["skills", "export", "shift", str(target), "--gguf"]).exit_code == 0
    )
    prompt = "The capital of France is"
    direct = llama_cpp.Llama(model_path=str(local_model.gguf), lora_path=str(target), n_ctx=256,
                             verbose=False, n_threads=1)  # fmt: skip
    expected = direct(prompt, max_tokens=8, temperature=0.0)["choices"][0]["text"]
    plain = llama_cpp.Llama(model_path=str(local_model.gguf), n_ctx=256, verbose=False,
                            n_threads=1)(prompt, max_tokens=8, temperature=0.0)  # fmt: skip
    assert plain["choices"][0]["text"][:8] != expected[:8]  # the adapter changes the reply
    log = tmp_path / "server.log"
    options = ("--lora_path", str(target))
    with serve_gguf(local_model.gguf, log, *options, n_ctx=256, threads=1) as url:
        body = json.dumps({"prompt": prompt, "max_tokens": 8, "temperature": 0.0}).encode()
        request = urllib.request.Request(f"{url}/completions", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        reply = json.loads(urllib.request.urlopen(request, timeout=60).read())
    assert "lora" in log.read_text(errors="replace").lower()  # it did load the adapter
    # The server's batching may round the last digits differently; the start is the adapter's.
    assert reply["choices"][0]["text"][:8] == expected[:8], (reply, expected)
