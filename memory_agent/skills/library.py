"""`SkillLibrary`: the skills of one store — rows in its database (store/skills.py), adapter
files under `<data dir>/skills/` — and everything done to them: train, combine, load (checked
against the base model and the file's checksum), delete, export, import."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memory_agent.errors import InvalidInputError
from memory_agent.skills import adapter as files
from memory_agent.skills.adapter import LoraWeights
from memory_agent.skills.base import BaseModel
from memory_agent.skills.errors import (
    SkillBaseMismatchError,
    SkillFileError,
    SkillNotFoundError,
)

if TYPE_CHECKING:
    from memory_agent.settings import Settings
    from memory_agent.skills.data import CaseFilter
    from memory_agent.skills.train import Progress, TrainOptions
    from memory_agent.store import CaseMemory
    from memory_agent.store.skills import SkillRecord

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SPEC = re.compile(r"^(?P<name>[^@:]+)(?:@(?P<version>\d+))?(?::(?P<scale>[-+0-9.eE]+))?$")
PROMPT_STYLE = "code"  # the chat format skills are trained in (the local model's)


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InvalidInputError(
            f"Invalid skill name {name!r}: use 1-64 letters, digits, '_', '.' or '-' "
            "(starting with a letter or digit)."
        )
    return name


@dataclass(frozen=True)
class SkillSpec:
    """`NAME[@VERSION][:SCALE]` as given on a command line."""

    name: str
    version: int | None = None
    scale: float | None = None

    @classmethod
    def parse(cls, text: str) -> SkillSpec:
        match = _SPEC.match(text.strip())
        if match is None:
            raise InvalidInputError(
                f"Cannot read the skill {text!r}: write NAME, NAME:SCALE or NAME@VERSION:SCALE "
                "(e.g. gcd:0.8)."
            )
        try:
            scale = float(match["scale"]) if match["scale"] is not None else None
        except ValueError:
            raise InvalidInputError(f"The scale in {text!r} is not a number.") from None
        version = int(match["version"]) if match["version"] is not None else None
        return cls(check_name(match["name"]), version, scale)

    def __str__(self) -> str:
        version = f"@{self.version}" if self.version is not None else ""
        scale = f":{self.scale:g}" if self.scale is not None else ""
        return f"{self.name}{version}{scale}"


class SkillLibrary:
    """The skills stored with a case memory."""

    def __init__(self, settings: Settings, engine: Any) -> None:
        from memory_agent.store.skills import SkillRecords

        self.settings = settings
        self.records = SkillRecords(engine)
        self.folder = settings.home / "skills"

    @classmethod
    def of(cls, memory: CaseMemory) -> SkillLibrary:
        return cls(memory.settings, memory.engine)

    # ------------------------------------------------------------------ reading

    def get(self, spec: str | SkillSpec) -> SkillRecord:
        chosen = SkillSpec.parse(spec) if isinstance(spec, str) else spec
        record = self.records.get(chosen.name, chosen.version)
        if record is None:
            known = ", ".join(r.name for r in self.newest()) or "none yet"
            what = str(SkillSpec(chosen.name, chosen.version))
            raise SkillNotFoundError(
                f"No skill {what!r} in this store (skills: {known}); list them with "
                "`memory-agent skills list`, train one with `memory-agent skills train`."
            )
        return record

    def newest(self) -> list[SkillRecord]:
        """The newest version of every skill."""
        return self.records.latest()

    def path(self, record: SkillRecord) -> Path:
        return self.settings.home / record.file

    def load(self, record: SkillRecord, base: BaseModel) -> LoraWeights:
        """The adapter of `record`, checked: made for `base`, and its file unchanged since it
        was stored."""
        if record.base_hash != base.sha256:
            raise SkillBaseMismatchError(
                f"Skill {record.label} was made for the base model {record.base_model} "
                f"(sha256 {record.base_hash[:12]}), not for the loaded {base.short}; a LoRA "
                "adapter only fits the weights it was trained on. Train it again on this model "
                f"(`memory-agent skills train {record.name} ...`) or use the model it was made for."
            )
        path = self.path(record)
        if not path.is_file():
            raise SkillFileError(
                f"The adapter file of skill {record.label} is missing ({path}); import it again "
                f"(`memory-agent skills import`) or `memory-agent skills delete {record.name}`."
            )
        if files.file_sha256(path) != record.file_sha256:
            raise SkillFileError(
                f"The adapter file of skill {record.label} ({path}) changed since it was stored "
                "(checksum mismatch: damaged or overwritten); import it again from an export or "
                f"`memory-agent skills delete {record.name}` and train it again."
            )
        return files.load(path, name=record.label)

    # ------------------------------------------------------------------ writing

    def add_adapter(
        self, name: str, weights: LoraWeights, base: BaseModel, *, scale: float = 1.0,
        recipe: dict[str, Any] | None = None, cases: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None, namespace: str | None = None,
        router: dict[str, Any] | None = None,
    ) -> SkillRecord:  # fmt: skip
        """Store `weights` as the next version of skill `name`: the adapter file first, then
        its row; a failed insert removes the file again, so nothing half-stored remains."""
        from memory_agent.store.skills import IntegrityError, SkillRecord

        check_name(name)
        recipe, cases = recipe or {"kind": "added"}, cases or {}
        metrics, router = metrics or {}, router or {}
        for _attempt in range(5):
            version = self.records.next_version(name)
            relative = f"skills/{name}-v{version}.safetensors"
            path = self.settings.home / relative
            description = {
                "name": name, "version": version, "namespace": namespace,
                "base_model": base.model_id, "base_hash": base.sha256,
                "prompt_style": PROMPT_STYLE, "rank": weights.rank, "scale": scale,
                "recipe": recipe, "cases": cases, "metrics": metrics, "router": router,
            }  # fmt: skip
            if path.exists():  # a file a crashed write left behind, or another writer's
                continue
            files.save(weights, path, description)
            record = SkillRecord(
                name=name, version=version, base_model=base.model_id, base_hash=base.sha256,
                prompt_style=PROMPT_STYLE, rank=weights.rank, scale=scale, file=relative,
                file_sha256=files.file_sha256(path), file_bytes=path.stat().st_size,
                namespace=namespace, recipe=recipe, cases=cases,
                metrics={**metrics, "router": router},
            )  # fmt: skip
            try:
                return self.records.add(record)
            except IntegrityError:
                path.unlink(missing_ok=True)  # another process stored this version first
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        raise InvalidInputError(f"Could not store skill {name!r}: its versions kept changing.")

    def train(
        self,
        name: str,
        memory: CaseMemory,
        llm: Any,
        chosen: CaseFilter,
        options: TrainOptions,
        *,
        scale: float = 1.0,
        progress: Progress | None = None,
    ) -> SkillRecord:
        """Train skill `name` from the successful cases `chosen` selects, on `llm`'s weights
        (a LocalChatModel), and store it as the name's next version."""
        import torch

        from memory_agent.skills import data
        from memory_agent.skills.base import base_of
        from memory_agent.skills.train import train_adapter

        check_name(name)
        cases = data.successful_cases(memory, chosen)
        split = data.split_cases(cases, options.held_out, options.seed, chosen.describe())
        tokenizer, model = llm.loaded()
        train = data.build_examples(
            tokenizer, split.train, split.train, seed=options.seed,
            max_length=options.max_length, context_share=options.context_share,
        )  # fmt: skip
        held = data.build_examples(
            tokenizer, split.held_out, split.train, seed=options.seed + 1,
            max_length=options.max_length, context_share=options.context_share,
        )  # fmt: skip
        if not train or not held:
            raise InvalidInputError(
                f"Every case is longer than --max-length {options.max_length} tokens on one side "
                "of the split; raise --max-length."
            )
        pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        result = train_adapter(model, pad, train, held, options, progress)
        embedder = memory.embedder
        vectors = embedder.embed([c.task for c in split.train])
        weights = LoraWeights(
            name=name, modules=result.modules, scaling=result.scaling,
            router_vectors=torch.as_tensor(vectors, dtype=torch.float32),
        )  # fmt: skip
        return self.add_adapter(
            name, weights, base_of(llm.name, llm.gguf), scale=scale,
            recipe={"kind": "trained", "filter": chosen.describe(), "options": options.to_json()},
            cases={"train": [c.id for c in split.train],
                   "held_out": [c.id for c in split.held_out]},
            metrics=result.metrics, namespace=chosen.namespace,
            router={"embedder": embedder.name, "dim": int(vectors.shape[1])},
        )  # fmt: skip

    def combine(
        self, name: str, terms: Sequence[tuple[str, float]], base: BaseModel
    ) -> SkillRecord:
        """Store `sum_i weight_i * skill_i` (each at its own stored scale) as skill `name`."""
        check_name(name)
        if not terms:
            raise InvalidInputError("Give at least one --from SKILL:WEIGHT.")
        loaded: list[tuple[LoraWeights, float]] = []
        sources = []
        routers = set()
        for spec, weight in terms:
            record = self.get(spec)
            loaded.append((self.load(record, base), weight * record.scale))
            sources.append({"skill": record.label, "weight": weight, "scale": record.scale})
            router = record.metrics.get("router") or {}
            routers.add((router.get("embedder"), router.get("dim")))
        combined = files.combine(loaded, name)
        embedder, dim = routers.pop() if len(routers) == 1 else (None, None)
        if embedder is None:
            combined.router_vectors = None  # cases embedded by different models: no routing
        return self.add_adapter(
            name, combined, base, scale=1.0, recipe={"kind": "combined", "terms": sources},
            cases={}, metrics={"parameters": combined.parameter_count()}, namespace=None,
            router={"embedder": embedder, "dim": dim} if embedder else {},
        )  # fmt: skip

    def delete(self, name: str, version: int | None = None) -> list[SkillRecord]:
        gone = self.records.delete(check_name(name), version)
        if not gone:
            raise SkillNotFoundError(
                f"No skill {str(SkillSpec(name, version))!r} to delete; see "
                "`memory-agent skills list`."
            )
        for record in gone:
            self.path(record).unlink(missing_ok=True)
        return gone

    def export(self, spec: str | SkillSpec, target: Path) -> SkillRecord:
        """Copy the skill's file (checked) to `target`; it carries its own description."""
        import shutil

        record = self.get(spec)
        path = self.path(record)
        if not path.is_file() or files.file_sha256(path) != record.file_sha256:
            raise SkillFileError(
                f"The adapter file of skill {record.label} ({path}) is missing or damaged; "
                "nothing to export."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return record

    def import_file(
        self, source: Path, base: BaseModel, *, name: str | None = None,
        allow_other_base: bool = False,
    ) -> SkillRecord:  # fmt: skip
        """Store the skill in `source` (a `skills export` file) as the next version of `name`
        (default: its own name). A skill for another base model is refused unless
        `allow_other_base` (it will then refuse to load until that model is used)."""
        weights = files.load(source)
        info = weights.info
        target = check_name(name or str(info.get("name") or ""))
        for key in ("base_model", "base_hash"):
            if not isinstance(info.get(key), str):
                raise SkillFileError(f"{source} does not say which base model it is for ({key}).")
        if info["base_hash"] != base.sha256 and not allow_other_base:
            raise SkillBaseMismatchError(
                f"{source} is a skill for {info['base_model']} (sha256 {info['base_hash'][:12]}), "
                f"not for the local {base.short}; it would not load. Pass --allow-other-base to "
                "store it anyway."
            )
        other = BaseModel(str(info["base_model"]), str(info["base_hash"]))
        weights.name = target
        return self.add_adapter(
            target, weights, other, scale=float(info.get("scale", 1.0)),
            recipe={**dict(info.get("recipe") or {}), "imported_from": str(source)},
            cases=dict(info.get("cases") or {}), metrics=dict(info.get("metrics") or {}),
            namespace=info.get("namespace"), router=dict(info.get("router") or {}),
        )  # fmt: skip
