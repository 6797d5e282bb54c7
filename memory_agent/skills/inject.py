"""Skills in an agent's runs: fixed ones (`--skill NAME[:SCALE]`) or the router's choice per
task, injected into the local model around each run and removed after it, with what was
chosen (and why) written to the run log."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from memory_agent.errors import InvalidInputError
from memory_agent.skills import router
from memory_agent.skills.adapter import LoraWeights
from memory_agent.skills.library import SkillLibrary, SkillSpec

if TYPE_CHECKING:
    from memory_agent.skills.base import BaseModel
    from memory_agent.store import CaseMemory
    from memory_agent.store.run_log import RunLog

SkillsOption = bool | str | Sequence[str | tuple[str, float]] | None
"""`MemoryAgent(skills=...)`: None or True: the router over the stored skills (if any);
False or []: none; names ("gcd", "gcd:0.8", ("gcd", 0.8)): always these, at these scales."""


def _specs(choice: Sequence[str | tuple[str, float]] | str) -> list[SkillSpec]:
    items = [choice] if isinstance(choice, str) else list(choice)
    specs = []
    for item in items:
        if isinstance(item, tuple):
            name, scale = item
            parsed = SkillSpec.parse(str(name))
            specs.append(SkillSpec(parsed.name, parsed.version, float(scale)))
        else:
            specs.append(SkillSpec.parse(item))
    return specs


class SkillInjector:
    """Decides and applies the skills of each run of one agent."""

    def __init__(
        self,
        choice: SkillsOption,
        memory: CaseMemory,
        llm: Any,
        *,
        threshold: float = router.THRESHOLD,
        top: int = router.TOP,
        max_skills: int = router.MAX_SKILLS,
    ) -> None:
        self.memory = memory
        self.llm = llm
        self.threshold, self.top, self.max_skills = threshold, top, max_skills
        self.fixed: list[SkillSpec] | None = None
        self.enabled = choice is not False
        if choice not in (None, True, False):
            assert choice is not None and not isinstance(choice, bool)
            self.fixed = _specs(choice)
            self.enabled = bool(self.fixed)
        self._library: SkillLibrary | None = None
        self._loaded: dict[str, tuple[LoraWeights, float]] = {}
        self._candidates: list[tuple[str, Any]] | None = None
        self.skipped: dict[str, str] = {}  # skills the router could not load, and why
        if self.fixed:
            self._require_local()
            for spec in self.fixed:
                self._load(spec)  # fail now, with a clear message, not in the middle of a run

    @property
    def library(self) -> SkillLibrary:
        if self._library is None:
            self._library = SkillLibrary.of(self.memory)
        return self._library

    def _local(self) -> bool:
        return callable(getattr(self.llm, "inject", None)) and hasattr(self.llm, "gguf")

    def _require_local(self) -> None:
        if not self._local():
            raise InvalidInputError(
                f"Skills are LoRA adapters for the embedded local model; {self.llm.name!r} "
                "runs behind an endpoint that cannot take them (export a skill as a GGUF "
                "adapter for llama.cpp: `memory-agent skills export NAME --gguf FILE`)."
            )

    def _base(self) -> BaseModel:
        from memory_agent.skills.base import base_of

        return base_of(self.llm.name, self.llm.gguf)

    def _load(self, spec: SkillSpec) -> tuple[LoraWeights, float]:
        record = self.library.get(spec)
        key = record.label
        if key not in self._loaded:
            self._loaded[key] = (self.library.load(record, self._base()), record.scale)
        weights, default_scale = self._loaded[key]
        return weights, spec.scale if spec.scale is not None else default_scale

    def _router_candidates(self) -> list[tuple[str, Any]]:
        """The stored skills the router may pick: for this base model, with case vectors
        from this memory's embedder."""
        if self._candidates is None:
            records = self.library.newest()
            if not records:
                return []  # not cached: a skill trained meanwhile is seen at the next run
            base, embedder = self._base(), self.memory.embedder.name
            self._candidates = []
            for record in records:
                info = record.metrics.get("router") or {}
                if record.base_hash != base.sha256 or info.get("embedder") != embedder:
                    continue
                if record.prompt_style != getattr(self.llm, "prompt_style", None):
                    continue  # trained on another chat format than the model is prompted with
                try:
                    weights, _scale = self._load(SkillSpec(record.name, record.version))
                except InvalidInputError as exc:  # one damaged skill must not stop the runs
                    self.skipped[record.label] = str(exc)
                    continue
                if weights.router_vectors is not None:
                    self._candidates.append((record.label, weights.router_vectors))
        return self._candidates

    def choose(self, task: str) -> tuple[list[tuple[LoraWeights, float]], dict[str, Any]]:
        """The adapters (with scales) for `task`, and what to log about the choice."""
        if not self.enabled:
            return [], {"mode": "off"}
        if self.fixed is not None:
            chosen = [self._load(spec) for spec in self.fixed]
            return chosen, {"mode": "fixed", "skills": _described(chosen)}
        if not self._local():
            return [], {"mode": "off", "reason": "the model cannot take adapters"}
        candidates = self._router_candidates()
        if not candidates:
            return [], {"mode": "router", "skills": [], "scores": {}}
        vector = self.memory.embedder.embed([task])[0]
        routed = router.route(
            vector, candidates, threshold=self.threshold, max_skills=self.max_skills, top=self.top
        )
        chosen = [self._load(SkillSpec.parse(r.name)) for r in routed if r.chosen]
        return chosen, {
            "mode": "router",
            "skills": _described(chosen),
            "scores": {r.name: round(r.score, 4) for r in routed},
            "threshold": self.threshold,
            **({"skipped": dict(self.skipped)} if self.skipped else {}),
        }

    @contextlib.contextmanager
    def applied(self, run_id: str, task: str, log: RunLog) -> Iterator[None]:
        """Inject the task's skills for the block, log the choice, remove them after."""
        if not self.enabled:
            yield
            return
        chosen, details = self.choose(task)
        if details.get("mode") != "off" and (chosen or details.get("scores")):
            log.event(run_id, "skills", details["mode"], **details)
        for weights, scale in chosen:
            self.llm.inject(weights, scale)
        try:
            yield
        finally:
            for weights, _scale in chosen:
                self.llm.remove(weights.name)


def _described(chosen: Sequence[tuple[LoraWeights, float]]) -> list[dict[str, Any]]:
    return [{"skill": weights.name, "scale": scale} for weights, scale in chosen]
