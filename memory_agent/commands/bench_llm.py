"""`memory-agent bench llm`: load time, time to first token and tokens/s of a chat backend."""

from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from memory_agent.commands.common import print_json, state
from memory_agent.commands.outputs import OutOption, bench_folder, write_json

PROMPTS = (
    "How many 1 bits are in the binary representation of 987?",
    "Spell the word 'memory' backward.",
    "Write a short sentence about the sea.",
    "What is the capital of France?",
    "List three prime numbers.",
)


def llm(
    ctx: typer.Context,
    runs: Annotated[int, typer.Option(min=1, max=50, help="Prompts to time.")] = 5,
    max_tokens: Annotated[int, typer.Option(min=8, max=1024, help="New tokens per call.")] = 64,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name.")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI endpoint.")] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, max=256, help="CPU threads of the local model.")
    ] = None,
    out: OutOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Time the chat backend: load, time to first token, decode tokens/s (greedy).

    The report also goes to report.json in --out (default HOME/bench/llm).
    """
    from rich.progress import Progress

    from memory_agent.llm import make_chat_model

    settings = state(ctx).settings(
        {"runtime.model": model, "runtime.base_url": base_url, "runtime.local_threads": threads}
    )
    started = time.perf_counter()
    chat_model = make_chat_model(settings)
    load = getattr(chat_model, "load", None)
    if callable(load):
        load()
    load_s = time.perf_counter() - started
    rows: list[dict[str, Any]] = []
    with Progress(disable=json_out, transient=True) as progress:
        task = progress.add_task("timing", total=runs)
        for i in range(runs):
            prompt = PROMPTS[i % len(PROMPTS)]
            reply = chat_model.chat([{"role": "user", "content": prompt}], max_tokens=max_tokens)
            decode_s = reply.elapsed_s - (reply.first_token_s or 0.0)
            rows.append(
                {
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens,
                    "elapsed_s": reply.elapsed_s,
                    "first_token_s": reply.first_token_s,
                    "decode_tokens_per_s": (reply.completion_tokens - 1) / decode_s
                    if reply.first_token_s is not None
                    and decode_s > 0
                    and reply.completion_tokens > 1
                    else None,
                    "tokens_per_s": reply.completion_tokens / reply.elapsed_s,
                }
            )
            progress.advance(task)

    def median(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return round(statistics.median(values), 4) if values else None

    report = {
        "model": chat_model.name,
        "backend": type(chat_model).__name__,
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores",
        "local_threads": settings.runtime.local_threads,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "runs": runs,
        "max_tokens": max_tokens,
        "load_s": round(load_s, 3),
        "first_token_s_median": median("first_token_s"),
        "decode_tokens_per_s_median": median("decode_tokens_per_s"),
        "tokens_per_s_median": median("tokens_per_s"),
        "completion_tokens_median": median("completion_tokens"),
        "calls": rows,
    }
    report["report"] = str(write_json(bench_folder(settings, out, "llm") / "report.json", report))
    if json_out:
        print_json(report)
        return
    for key, value in report.items():
        if key != "calls":
            typer.echo(f"{key}: {value}")
