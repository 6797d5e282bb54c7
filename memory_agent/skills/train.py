"""Training a LoRA adapter (peft) on the local model, on CPU, with a held-out split and early
stopping. The shared base model is never touched: training runs on a copy of it."""

from __future__ import annotations

import copy
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from memory_agent.errors import DependencyMissingError
from memory_agent.skills.data import Example

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SKILLS_INSTALL = "pip install 'memory-agent[skills]'"


@dataclass(frozen=True)
class TrainOptions:
    """How a skill is trained. Defaults suit SmolLM2-135M on a few hundred cases on CPU."""

    steps: int = 200  # most optimiser steps; early stopping may end sooner
    rank: int = 8
    alpha: float | None = None  # default 2 * rank (peft's lora_alpha)
    learning_rate: float = 1e-3
    batch_size: int = 8
    max_length: int = 256  # longest conversation (tokens) an example may have
    held_out: float = 0.2  # share of the cases kept out of training to decide when to stop
    eval_every: int = 10  # steps between held-out evaluations
    patience: int = 3  # evaluations without improvement before stopping
    context_share: float = 0.3  # examples that show another case as a memory turn first
    dropout: float = 0.05
    seed: int = 0
    threads: int | None = None  # torch threads (None: torch's default)
    targets: tuple[str, ...] = TARGETS
    # Adapt only the last `layers` transformer blocks (None: all). The blocks below are frozen
    # and unadapted, so their outputs are computed once per example and a step runs only the
    # adapted blocks forward and back: on CPU the difference between minutes and hours.
    layers: int | None = 8

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "targets": list(self.targets)}


@dataclass
class TrainResult:
    modules: dict[str, tuple[Any, Any]]
    scaling: float
    metrics: dict[str, Any] = field(default_factory=dict)


Progress = Callable[[int, int, dict[str, float]], None]  # (step, steps, latest figures)


def _peft() -> Any:
    try:
        import peft
    except ImportError as exc:
        raise DependencyMissingError(
            f"Training skills needs peft: `{SKILLS_INSTALL}` (or `pip install peft`)."
        ) from exc
    return peft


def _batch(examples: Sequence[Example], states: Sequence[Any], pad_id: int) -> dict[str, Any]:
    """Right-padded ids, the cached inputs of the first adapted block, the attention mask and
    the positions whose next token is learned."""
    import torch

    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    hidden = torch.zeros((len(examples), width, states[0].shape[-1]), dtype=states[0].dtype)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    learn = torch.zeros((len(examples), width), dtype=torch.bool)
    for row, (example, state) in enumerate(zip(examples, states, strict=True)):
        ids[row, : len(example.ids)] = torch.tensor(example.ids)
        hidden[row, : len(example.ids)] = state
        mask[row, : len(example.ids)] = 1
        # position t predicts token t+1: learn the predictions of the reply's tokens
        learn[row, example.prompt_len - 1 : len(example.ids) - 1] = True
    return {"ids": ids, "states": hidden, "mask": mask, "learn": learn}


class _Captured(Exception):
    """Ends a forward pass once the wanted states are caught (the rest is not needed)."""


def lower_states(base_model: Any, examples: Sequence[Example], first: int) -> list[Any]:
    """Each example's hidden states entering block `first`. The blocks below it are frozen
    and unadapted, so these never change during training: computed once here (one example at
    a time, no padding), not again at every step. A pre-hook on block `first` catches them
    and stops the pass; it is removed before returning."""
    import torch

    caught: list[Any] = []

    def catch(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        caught.append((args[0] if args else kwargs["hidden_states"])[0].detach().clone())
        raise _Captured

    handle = base_model.model.layers[first].register_forward_pre_hook(catch, with_kwargs=True)
    try:
        with torch.inference_mode():
            for example in examples:
                try:
                    base_model.model(input_ids=torch.tensor([example.ids]), use_cache=False)
                except _Captured:
                    pass
    finally:
        handle.remove()
    if len(caught) != len(examples):
        raise RuntimeError("the model did not reach the first adapted block")
    return caught


def upper_blocks(base_model: Any, first: int) -> Any:
    """A copy of the model that runs only blocks `first`.. (fed the cached states), then the
    final norm and the vocabulary head."""
    import torch

    top = copy.deepcopy(base_model)
    top.model.layers = torch.nn.ModuleList(list(top.model.layers)[first:])
    top.config.num_hidden_layers = len(top.model.layers)
    return top


def _losses(causal_lm: Any, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(per-token losses, predicted ids, target ids) at the learned positions only: the
    vocabulary projection of every prompt position would cost more than the rest together."""
    import torch.nn.functional as F  # noqa: N812

    hidden = causal_lm.model(
        inputs_embeds=batch["states"], attention_mask=batch["mask"], use_cache=False
    )
    states = hidden.last_hidden_state[batch["learn"]]
    targets = batch["ids"][:, 1:][batch["learn"][:, :-1]]
    logits = causal_lm.lm_head(states)
    return F.cross_entropy(logits, targets, reduction="none"), logits.argmax(-1), targets


def evaluate(
    causal_lm: Any, examples: Sequence[Example], states: Sequence[Any], pad_id: int
) -> dict[str, float]:
    """Held-out loss per reply token, next-token accuracy, and the share of replies whose
    every token is the model's first choice (= greedy decoding writes the reply exactly)."""
    import torch

    total, correct, tokens, exact = 0.0, 0, 0, 0
    with torch.no_grad():
        for start in range(0, len(examples), 8):
            chunk = examples[start : start + 8]
            batch = _batch(chunk, states[start : start + 8], pad_id)
            losses, predicted, targets = _losses(causal_lm, batch)
            total += float(losses.sum())
            hits = predicted == targets
            correct += int(hits.sum())
            tokens += int(hits.numel())
            counts = batch["learn"].sum(dim=1).tolist()
            offset = 0
            for count in counts:
                exact += bool(hits[offset : offset + count].all())
                offset += count
    return {
        "loss": total / max(tokens, 1),
        "token_accuracy": correct / max(tokens, 1),
        "exact": exact / max(len(examples), 1),
    }


def train_adapter(
    base_model: Any,
    pad_id: int,
    train: Sequence[Example],
    held_out: Sequence[Example],
    options: TrainOptions,
    progress: Progress | None = None,
) -> TrainResult:
    """Train a LoRA adapter on `train`, evaluate on `held_out` every `eval_every` steps and
    keep the best adapter by held-out loss; stop after `patience` evaluations without gain."""
    import torch

    peft = _peft()
    if not train or not held_out:
        raise ValueError("training needs examples on both sides of the split")
    previous_threads = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    rng = random.Random(options.seed)
    alpha = options.alpha if options.alpha is not None else 2.0 * options.rank
    blocks = int(base_model.config.num_hidden_layers)
    first = blocks - options.layers if options.layers is not None else 0
    first = min(max(first, 0), blocks - 1)
    train_states = lower_states(base_model, train, first)
    held_states = lower_states(base_model, held_out, first)
    config = peft.LoraConfig(
        r=options.rank, lora_alpha=alpha, lora_dropout=options.dropout,
        target_modules=list(options.targets), bias="none",
    )  # fmt: skip
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing`: not ours to fix
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        model = peft.get_peft_model(upper_blocks(base_model, first), config)
    causal_lm = model.base_model.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=options.learning_rate, weight_decay=0.0)
    started = time.perf_counter()
    try:
        model.eval()
        baseline = evaluate(
            causal_lm, held_out, held_states, pad_id
        )  # B = 0: the base model itself
        best, best_step, best_state = baseline["loss"], 0, _lora_state(model)
        last = baseline
        evals_without_gain, step = 0, 0
        recent: list[float] = []
        order: list[int] = []
        stopped_early = False
        train_seconds = 0.0
        while step < options.steps:
            step += 1
            if len(order) < options.batch_size:
                extra = list(range(len(train)))
                rng.shuffle(extra)
                order.extend(extra)
            picked, order = order[: options.batch_size], order[options.batch_size :]
            tick = time.perf_counter()
            model.train()
            batch = _batch([train[i] for i in picked], [train_states[i] for i in picked], pad_id)
            losses, _, _ = _losses(causal_lm, batch)
            loss = losses.mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            train_seconds += time.perf_counter() - tick
            recent = [*recent[-9:], loss.item()]
            figures = {"loss": sum(recent) / len(recent)}
            if step % options.eval_every == 0 or step == options.steps:
                model.eval()
                last = evaluate(causal_lm, held_out, held_states, pad_id)
                figures["held_out_loss"] = last["loss"]
                if last["loss"] < best - 1e-4:
                    best, best_step, best_state = last["loss"], step, _lora_state(model)
                    evals_without_gain = 0
                else:
                    evals_without_gain += 1
                if evals_without_gain >= options.patience:
                    stopped_early = step < options.steps
                    if progress is not None:
                        progress(step, options.steps, figures)
                    break
            if progress is not None:
                progress(step, options.steps, figures)
        _load_lora_state(model, best_state)
        model.eval()
        final = evaluate(causal_lm, held_out, held_states, pad_id)
        modules = _modules(model, first)
    finally:
        torch.set_num_threads(previous_threads)
    elapsed = time.perf_counter() - started
    metrics = {
        "steps": step,
        "best_step": best_step,
        "stopped_early": stopped_early,
        "train_examples": len(train),
        "held_out_examples": len(held_out),
        "train_loss": recent[-1] if recent else None,
        "held_out_loss_base": baseline["loss"],
        "held_out_loss": final["loss"],
        "held_out_token_accuracy_base": baseline["token_accuracy"],
        "held_out_token_accuracy": final["token_accuracy"],
        "held_out_exact_base": baseline["exact"],
        "held_out_exact": final["exact"],
        "seconds": elapsed,
        "seconds_per_step": train_seconds / max(step, 1),
        "threads": options.threads or torch.get_num_threads(),
        "parameters": sum(int(a.numel()) + int(b.numel()) for a, b in modules.values()),
    }
    if not math.isfinite(final["loss"]):
        raise ValueError("training diverged (held-out loss is not finite); lower --lr")
    return TrainResult(modules=modules, scaling=alpha / options.rank, metrics=metrics)


def _lora_state(model: Any) -> dict[str, Any]:
    return {
        name: param.detach().clone() for name, param in model.named_parameters() if "lora_" in name
    }


def _load_lora_state(model: Any, state: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in state:
                param.copy_(state[name])


def _modules(model: Any, first: int) -> dict[str, tuple[Any, Any]]:
    """(A, B) per adapted layer, named as in the base model (peft's wrapper prefix and
    adapter name stripped, block numbers counted from the bottom of the full model)."""
    pairs: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in name:
                module = name.split(marker)[0].removeprefix("base_model.model.")
                head, _, rest = module.partition("model.layers.")
                number, _, tail = rest.partition(".")
                module = f"{head}model.layers.{int(number) + first}.{tail}"
                pairs.setdefault(module, {})[part] = param.detach().clone().float()
    return {m: (p["lora_A"], p["lora_B"]) for m, p in sorted(pairs.items())}
