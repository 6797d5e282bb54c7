"""LoRA skills without loading the model: the versioned store, the file format and its checks,
exact skill arithmetic, the router, and the clear errors for bad input (nothing stored
changes). The model-level behaviour is in test_skills_model.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hash_embedder import HashEmbedder
from typer.testing import CliRunner

from memory_agent.cli import app
from memory_agent.errors import InvalidInputError
from memory_agent.settings import Settings
from memory_agent.skills import router
from memory_agent.skills.adapter import LoraWeights, combine
from memory_agent.skills.base import BaseModel
from memory_agent.skills.data import CaseFilter, successful_cases
from memory_agent.skills.errors import (
    NoTrainingCasesError,
    SkillBaseMismatchError,
    SkillFileError,
    SkillNotFoundError,
)
from memory_agent.skills.library import SkillLibrary, SkillSpec
from memory_agent.store import CaseMemory

BASE = BaseModel("smollm2-135m:test.gguf", "a" * 64)
OTHER = BaseModel("other-model:x.gguf", "b" * 64)
LAYERS = {"model.layers.0.self_attn.q_proj": (6, 5), "model.layers.1.mlp.down_proj": (4, 7)}


def adapter(
    name: str, seed: int, rank: int = 2, vectors: torch.Tensor | None = None
) -> LoraWeights:
    generator = torch.Generator().manual_seed(seed)
    modules = {
        layer: (torch.randn(rank, cols, generator=generator),
                torch.randn(rows, rank, generator=generator))
        for layer, (rows, cols) in LAYERS.items()
    }  # fmt: skip
    return LoraWeights(name, modules, scaling=0.5, router_vectors=vectors)


def delta(weights: LoraWeights, layer: str) -> torch.Tensor:
    a, b = weights.modules[layer]
    return weights.scaling * b @ a


@pytest.fixture
def memory(isolated_home: Path) -> Iterator[CaseMemory]:
    with CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder()) as store:  # type: ignore[arg-type]
        yield store


@pytest.fixture
def library(memory: CaseMemory) -> SkillLibrary:
    return SkillLibrary.of(memory)


def stored_files(home: Path) -> list[str]:
    folder = home / "skills"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_skill_specs() -> None:
    assert SkillSpec.parse("gcd") == SkillSpec("gcd")
    assert SkillSpec.parse("gcd:0.5") == SkillSpec("gcd", None, 0.5)
    assert SkillSpec.parse("gcd@3:-1") == SkillSpec("gcd", 3, -1.0)
    for bad in ("", "gcd:x", "bad name", "a@b", "-lead"):
        with pytest.raises(InvalidInputError):
            SkillSpec.parse(bad)


def test_versions_files_and_delete(library: SkillLibrary, isolated_home: Path) -> None:
    first = library.add_adapter("gcd", adapter("gcd", 1), BASE, metrics={"x": 1})
    second = library.add_adapter("gcd", adapter("gcd", 2), BASE, scale=0.7)
    library.add_adapter("lcm", adapter("lcm", 3), BASE)
    assert (first.version, second.version) == (1, 2)
    assert [r.label for r in library.newest()] == ["gcd@2", "lcm@1"]
    assert library.get("gcd").version == 2 and library.get("gcd@1").metrics == {
        "x": 1,
        "router": {},
    }
    assert library.get("gcd").scale == 0.7
    assert stored_files(isolated_home) == ["gcd-v1.safetensors", "gcd-v2.safetensors",
                                           "lcm-v1.safetensors"]  # fmt: skip
    loaded = library.load(library.get("gcd@1"), BASE)
    for layer in LAYERS:
        assert torch.equal(loaded.modules[layer][0], adapter("gcd", 1).modules[layer][0])
    assert loaded.scaling == 0.5
    assert [r.label for r in library.delete("gcd", 1)] == ["gcd@1"]
    assert library.get("gcd").version == 2
    library.delete("gcd")
    with pytest.raises(SkillNotFoundError, match="skills list"):
        library.get("gcd")
    assert stored_files(isolated_home) == ["lcm-v1.safetensors"]


def test_combine_is_exact_and_a_difference_of_equals_is_zero(library: SkillLibrary) -> None:
    a, b = adapter("a", 1), adapter("b", 2, rank=3)
    library.add_adapter("a", a, BASE, scale=0.8)
    library.add_adapter("b", b, BASE)
    record = library.combine("mix", [("a", 1.5), ("b", -1.0)], BASE)
    assert record.rank == 5 and record.recipe["kind"] == "combined"
    mix = library.load(record, BASE)
    for layer in LAYERS:
        expected = 1.5 * 0.8 * delta(a, layer) - delta(b, layer)
        assert torch.allclose(delta(mix, layer), expected, atol=1e-5)
    zero = combine([(a, 1.0), (a, -1.0)], "zero")
    for layer in LAYERS:
        assert torch.allclose(delta(zero, layer), torch.zeros(LAYERS[layer]), atol=1e-5)


def test_a_skill_for_another_base_model_does_not_load(
    library: SkillLibrary, isolated_home: Path, tmp_path: Path
) -> None:
    library.add_adapter("gcd", adapter("gcd", 1), BASE)
    with pytest.raises(SkillBaseMismatchError, match="was made for the base model"):
        library.load(library.get("gcd"), OTHER)
    exported = tmp_path / "gcd.skill"
    library.export("gcd", exported)
    with pytest.raises(SkillBaseMismatchError, match="--allow-other-base"):
        library.import_file(exported, OTHER, name="copy")
    assert [r.label for r in library.newest()] == ["gcd@1"]
    stored = library.import_file(exported, OTHER, name="copy", allow_other_base=True)
    assert stored.base_hash == BASE.sha256
    with pytest.raises(SkillBaseMismatchError):
        library.load(stored, OTHER)
    assert library.load(stored, BASE).modules.keys() == LAYERS.keys()


def test_a_damaged_skill_file_is_refused_and_nothing_changes(
    library: SkillLibrary, isolated_home: Path, tmp_path: Path
) -> None:
    record = library.add_adapter("gcd", adapter("gcd", 1), BASE)
    path = library.path(record)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SkillFileError, match="changed since it was stored"):
        library.load(record, BASE)
    with pytest.raises(SkillFileError, match="missing or damaged"):
        library.export("gcd", tmp_path / "out.skill")
    garbage = tmp_path / "garbage.skill"
    garbage.write_bytes(b"\x00\x01 not a safetensors file" * 10)
    before = (library.newest(), stored_files(isolated_home))
    with pytest.raises(SkillFileError, match="damaged or not a safetensors file"):
        library.import_file(garbage, BASE)
    truncated = tmp_path / "truncated.skill"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(SkillFileError):
        library.import_file(truncated, BASE)
    assert (library.newest(), stored_files(isolated_home)) == before
    path.unlink()
    with pytest.raises(SkillFileError, match="missing"):
        library.load(record, BASE)


def test_training_without_successful_cases_is_a_clear_error(
    library: SkillLibrary, memory: CaseMemory, isolated_home: Path
) -> None:
    memory.add("What is 2+2?", plan="2+2", outcome="failure", reward=0.0)
    memory.add("What is 3+3?", plan=None, outcome="success", reward=1.0)
    memory.add("What is 4+4?", plan="4+4", outcome="success", reward=1.0)
    chosen = CaseFilter("default")
    assert [c.task for c in successful_cases(memory, chosen)] == ["What is 4+4?"]
    with pytest.raises(NoTrainingCasesError, match="found 1 for namespace 'default'"):
        library.train("sums", memory, llm=None, chosen=chosen, options=_options())
    with pytest.raises(NoTrainingCasesError, match="found 0"):
        library.train("sums", memory, None, CaseFilter("nowhere"), _options())
    assert library.newest() == [] and stored_files(isolated_home) == []


def _options() -> object:
    from memory_agent.skills.train import TrainOptions

    return TrainOptions(steps=1)


def test_case_filters(memory: CaseMemory) -> None:
    memory.add("Find the GCD of 4, 6.", plan="math.gcd(4, 6)", outcome="success",
               meta={"task_id": "worked-0-0001-gcd"})  # fmt: skip
    memory.add("Find the LCM of 4, 6.", plan="math.lcm(4, 6)", outcome="success",
               meta={"family": "lcm"})  # fmt: skip
    memory.add("Find the GCD of 8, 6.", plan="math.gcd(8, 6)", outcome="success")
    tasks = lambda f: [c.task for c in successful_cases(memory, f)]  # noqa: E731
    assert tasks(CaseFilter("default", family="gcd")) == ["Find the GCD of 4, 6."]
    assert tasks(CaseFilter("default", family="lcm")) == ["Find the LCM of 4, 6."]
    assert tasks(CaseFilter("default", text="gcd")) == ["Find the GCD of 4, 6.",
                                                        "Find the GCD of 8, 6."]  # fmt: skip


def test_router_picks_skills_by_task_similarity() -> None:
    gcd = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0]])
    words = torch.tensor([[0.0, 1.0, 0.0]])
    routed = router.route(torch.tensor([1.0, 0.05, 0.0]), [("gcd@1", gcd), ("words@1", words)])
    assert [(r.name, r.chosen) for r in routed] == [("gcd@1", True), ("words@1", False)]
    assert routed[0].score > 0.9 and routed[1].score < 0.1
    nothing = router.route(torch.tensor([0.0, 0.0, 1.0]), [("gcd@1", gcd), ("words@1", words)])
    assert not any(r.chosen for r in nothing)
    assert router.score(torch.ones(4), gcd) == float("-inf")  # another embedder's vectors


def test_router_knobs_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    gcd = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]])
    lcm = torch.tensor([[0.95, 0.31, 0.0]])
    task = torch.tensor([1.0, 0.05, 0.0])
    both = router.route(task, [("gcd@1", gcd), ("lcm@1", lcm)], threshold=0.5, top=1)
    assert [r.chosen for r in both] == [True, True]
    # averaging over two training tasks pulls gcd below lcm; a stricter threshold drops both
    assert [r.name for r in router.route(task, [("gcd@1", gcd), ("lcm@1", lcm)], top=2)] == [
        "lcm@1", "gcd@1"]  # fmt: skip
    strict = router.route(task, [("gcd@1", gcd), ("lcm@1", lcm)], threshold=0.999, top=1)
    assert not any(r.chosen for r in strict)
    one = router.route(task, [("gcd@1", gcd), ("lcm@1", lcm)], threshold=0.5, max_skills=1)
    assert sum(r.chosen for r in one) == 1
    monkeypatch.setenv("MEMORY_AGENT_SKILL_ROUTER_THRESHOLD", "0.75")
    monkeypatch.setenv("MEMORY_AGENT_SKILL_ROUTER_MAX", "1")
    runtime = Settings().runtime
    assert (runtime.skill_router_threshold, runtime.skill_router_max) == (0.75, 1)
    monkeypatch.setenv("MEMORY_AGENT_SKILL_ROUTER_THRESHOLD", "3")
    with pytest.raises(ValueError, match="skill_router_threshold"):
        Settings()


def test_cli_bad_input(isolated_home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["skills", "list"])
    assert result.exit_code == 0 and "No skills yet" in result.output
    result = runner.invoke(app, ["skills", "train", "sums", "--steps", "1"])
    assert result.exit_code == 2, result.output
    assert "at least 2 successful cases" in result.output
    result = runner.invoke(app, ["skills", "show", "nope"])
    assert result.exit_code == 3 and "No skill 'nope'" in result.output
    result = runner.invoke(app, ["skills", "delete", "nope"])
    assert result.exit_code == 3
    garbage = tmp_path / "x.skill"
    garbage.write_bytes(b"junk")
    result = runner.invoke(app, ["skills", "import", str(garbage)])
    assert result.exit_code == 2 and "damaged or not a safetensors file" in result.output
    result = runner.invoke(app, ["skills", "train", "bad name"])
    assert result.exit_code == 2 and "Invalid skill name" in result.output
    result = runner.invoke(app, ["run", "hi", "--skill", "nope", "--no-skills"])
    assert result.exit_code == 2 and "contradict" in result.output
    result = runner.invoke(app, ["run", "hi", "--skill", "nope"])
    assert result.exit_code == 3 and "No skill 'nope'" in result.output
    assert stored_files(isolated_home) == []


def test_cli_combine_show_export_import_delete(isolated_home: Path, tmp_path: Path) -> None:
    import json

    from memory_agent.llm.local import LocalChatModel
    from memory_agent.skills.base import base_of

    local = LocalChatModel()
    base = base_of(local.name, local.gguf)  # the real base: the CLI checks skills against it
    with CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder()) as memory:  # type: ignore[arg-type]
        library = SkillLibrary.of(memory)
        library.add_adapter("a", adapter("a", 1), base, scale=2.0)
        library.add_adapter("b", adapter("b", 2), base)
    runner = CliRunner()
    result = runner.invoke(app, ["skills", "combine", "past", "--from", "a:1", "--from", "b:-1"])
    assert result.exit_code == 0, result.output
    assert "past@1 (rank 4) = 1·a@1 + -1·b@1" in result.output
    listed = json.loads(runner.invoke(app, ["skills", "list", "--json"]).output)
    assert [(s["skill"], s["kind"], s["rank"]) for s in listed] == [
        ("a@1", "added", 2), ("b@1", "added", 2), ("past@1", "combined", 4)]  # fmt: skip
    shown = json.loads(runner.invoke(app, ["skills", "show", "past"]).output)
    assert shown["recipe"]["terms"][0] == {"skill": "a@1", "weight": 1.0, "scale": 2.0}
    assert shown["base_hash"] == base.sha256 and shown["versions"] == [1]
    exported = tmp_path / "past.skill"
    assert runner.invoke(app, ["skills", "export", "past", str(exported)]).exit_code == 0
    result = runner.invoke(app, ["skills", "import", str(exported), "--name", "copy"])
    assert result.exit_code == 0 and "Imported copy@1" in result.output
    with CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder()) as memory:  # type: ignore[arg-type]
        library = SkillLibrary.of(memory)
        copy, past = (
            library.load(library.get("copy"), base),
            library.load(library.get("past"), base),
        )
        for layer in LAYERS:
            assert torch.equal(delta(copy, layer), delta(past, layer))
            expected = 2.0 * delta(adapter("a", 1), layer) - delta(adapter("b", 2), layer)
            assert torch.allclose(delta(past, layer), expected, atol=1e-5)
    result = runner.invoke(app, ["skills", "delete", "copy"])
    assert result.exit_code == 0 and "Deleted copy@1" in result.output
    result = runner.invoke(app, ["skills", "combine", "x", "--from", "nope:1"])
    assert result.exit_code == 3 and "No skill 'nope'" in result.output
    assert stored_files(isolated_home) == ["a-v1.safetensors", "b-v1.safetensors",
                                           "past-v1.safetensors"]  # fmt: skip
