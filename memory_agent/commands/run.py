"""`memory-agent run TASK` and `memory-agent chat`: the agent from the command line."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from memory_agent.commands.common import clip_line, print_json, state
from memory_agent.errors import InvalidInputError, RunFailedError

if TYPE_CHECKING:
    from rich.console import Console

    from memory_agent.agent import MemoryAgent, RunResult

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="smollm2-135m (embedded) or a model at --base-url."),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="OpenAI-compatible endpoint (env MEMORY_AGENT_BASE_URL)."),
]
PolicyOpt = Annotated[
    str | None, typer.Option("--policy", "-p", help="similarity, value, neural, track, or none.")
]
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", "-n", help="Case namespace.")]
StyleOpt = Annotated[
    str | None, typer.Option("--prompt-style", help="auto, code (small models) or react.")
]
KOpt = Annotated[int | None, typer.Option("-k", min=0, max=50, help="Cases shown per task.")]
SkillOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--skill",
        help="Inject the LoRA skill NAME[:SCALE] into the local model (repeatable). Default: "
        "a router picks stored skills per task.",
    ),
]
NoSkillsOpt = Annotated[
    bool | None, typer.Option("--no-skills", help="Inject no skill (the router is off).")
]


_SHARED_FLAGS: dict[str, Any] = {
    "model": ModelOpt,
    "base_url": BaseUrlOpt,
    "policy": PolicyOpt,
    "namespace": NamespaceOpt,
    "prompt_style": StyleOpt,
    "k": KOpt,
    "skill": SkillOpt,
    "no_skills": NoSkillsOpt,
}


@dataclass(frozen=True)
class AgentOptions:
    """The flags `run` and `chat` share: which model, policy and cases the agent uses."""

    model: str | None = None
    base_url: str | None = None
    policy: str | None = None
    namespace: str | None = None
    prompt_style: str | None = None
    k: int | None = None
    skill: list[str] | None = None
    no_skills: bool | None = None

    def agent(self, ctx: typer.Context) -> MemoryAgent:
        from memory_agent.agent import MemoryAgent

        overrides = {"runtime.model": self.model, "runtime.base_url": self.base_url,
                     "policy.name": self.policy, "runtime.prompt_style": self.prompt_style,
                     "policy.k": self.k}  # fmt: skip
        if self.skill and self.no_skills:
            raise InvalidInputError("--skill and --no-skills contradict each other; give one.")
        skills = False if self.no_skills else (list(self.skill) if self.skill else None)
        return MemoryAgent(state(ctx).settings(overrides), skills=skills)


def with_agent_options(command: Callable[..., None]) -> Callable[..., None]:
    """Puts the shared flags on `command`'s command line where its `options` parameter
    stands (so `--help` lists them there); the command gets them as one `AgentOptions`."""
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=flag)
        for name, flag in _SHARED_FLAGS.items()
    ]
    signature = inspect.signature(command, eval_str=True)
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        parameters.extend(shared if parameter.name == "options" else [parameter])

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        options = AgentOptions(**{name: kwargs.pop(name, None) for name in _SHARED_FLAGS})
        command(*args, options=options, **kwargs)

    # Typer reads the flags from the signature (and plain types from the annotations).
    setattr(wrapper, "__signature__", signature.replace(parameters=parameters))  # noqa: B010
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def progress_printer(console: Console) -> Any:
    """A run-log listener that shows the run as it happens."""

    def show(kind: str, data: dict[str, Any]) -> None:
        if kind == "retrieval":
            found = data.get("candidates", [])
            console.print(f"[dim]retrieved {len(found)} candidate case(s)[/dim]")
        elif kind == "selection":
            console.print(f"[cyan]cases shown[/cyan] {data.get('shown')} ({data.get('stage')})")
        elif kind == "llm":
            tokens = data.get("completion_tokens")
            console.print(
                f"[magenta]model[/magenta] {clip_line(data.get('reply'))} "
                f"[dim]({tokens} tokens, {data.get('duration_s') or 0:.1f} s)[/dim]"
            )
        elif kind == "tool":
            mark = "ok" if data.get("ok") else "error"
            console.print(
                f"[yellow]tool {data.get('name')}[/yellow] {mark}: {clip_line(data.get('output'))}"
            )
        elif kind == "refine":
            console.print(f"[red]refining[/red]: {clip_line(data.get('reason'))}")
        elif kind == "error":
            console.print(f"[red]error[/red] {data.get('message')}")
        elif kind == "credit":
            console.print(
                f"[green]credit[/green] reward {data.get('reward')} to cases "
                f"{data.get('used')} ({data.get('citation')})"
            )
        elif kind == "memory":
            console.print(f"[dim]stored as case {data.get('case_id')}[/dim]")
        elif kind == "skills":
            chosen = ", ".join(f"{s['skill']}:{s['scale']:g}" for s in data.get("skills", []))
            console.print(f"[blue]skills[/blue] {chosen or 'none'} ({data.get('name')})")

    return show


_SUMMARY = ("run_id", "answer", "reward", "cases_used", "cases_shown", "citation", "case_id",
            "error")  # fmt: skip


def _summary(result: RunResult) -> dict[str, Any]:
    record = result.to_json()
    return {**{key: record[key] for key in _SUMMARY}, "elapsed_s": round(result.elapsed_s, 3)}


@with_agent_options
def run(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="The task or question.")],
    file: Annotated[
        list[Path] | None, typer.Option("--file", "-f", help="Attach a file. Repeatable.")
    ] = None,
    answer: Annotated[
        str | None, typer.Option("--answer", help="Ground truth: scores the run and teaches.")
    ] = None,
    *,
    options: AgentOptions,
    no_learn: Annotated[
        bool, typer.Option("--no-learn", help="Frozen memory: store nothing, update nothing.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run the agent on TASK with its case memory, and print the answer.

    Exits non-zero (7) when the run ended with an error (the model endpoint unreachable, a
    tool or the runtime failing), after printing what it has."""
    from rich.console import Console

    _check_task(task)
    console = Console(stderr=True, quiet=json_out)
    with options.agent(ctx) as agent:
        console.print(f"[dim]model {agent.llm.name} · policy {agent.policy_name}[/dim]")
        result = agent.run(
            task,
            files=file or [],
            ground_truth=answer,
            namespace=options.namespace,
            learn=not no_learn,
            on_event=progress_printer(console),
        )
    if json_out:
        print_json(_summary(result))
    else:
        typer.echo(f"FINAL ANSWER: {result.answer if result.answer is not None else ''}")
        if result.reward is not None:
            console.print(f"reward {result.reward:g} · run {result.run_id}")
        elif not result.error:
            console.print(f"run {result.run_id} (give feedback in `memory-agent chat` or the API)")
    if result.error:
        raise RunFailedError(
            f"The run ended early: {result.error} (run {result.run_id}; "
            f"`memory-agent logs show {result.run_id[:8]}` has its events)."
        )


def _check_task(task: str) -> None:
    """A clear error for a task that is not valid text (undecodable bytes on the command
    line arrive as lone surrogates) instead of a failure deep inside the run."""
    try:
        task.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"The task is not valid UTF-8 text (undecodable byte at position {exc.start}); "
            "check the terminal's or the script's encoding."
        ) from exc
    if not task.strip():
        raise InvalidInputError("The task is empty; give the task or question as text.")


CHAT_HELP = "Type a task. /good or /bad rates the last answer, /cases shows its cases, /quit."


@with_agent_options
def chat(ctx: typer.Context, *, options: AgentOptions) -> None:
    """An interactive session: each line is a task; rate answers so the memory learns."""
    from rich.console import Console

    console = Console()
    last: RunResult | None = None
    with options.agent(ctx) as agent:
        console.print(f"[dim]model {agent.llm.name} · policy {agent.policy_name}[/dim]")
        console.print(CHAT_HELP)
        while True:
            try:
                line = console.input("[bold]task>[/bold] ").strip()
            except (EOFError, KeyboardInterrupt):
                break
            if not line:
                continue
            if line in ("/quit", "/exit", "/q"):
                break
            if line in ("/good", "/bad"):
                if last is None:
                    console.print("Nothing to rate yet.")
                    continue
                agent.feedback(last.run_id, 1.0 if line == "/good" else 0.0)
                console.print(f"Recorded {line[1:]} feedback for run {last.run_id[:8]}.")
                continue
            if line == "/cases":
                _show_cases(console, agent, last)
                continue
            if line.startswith("/"):
                console.print(f"Unknown command {line}. {CHAT_HELP}")
                continue
            last = agent.run(line, namespace=options.namespace, on_event=progress_printer(console))
            if last.error:
                console.print(f"[red]The run ended early:[/red] {last.error}")
            console.print(f"[bold]FINAL ANSWER:[/bold] {last.answer or ''}")
    console.print("Bye.")


def _show_cases(console: Console, agent: MemoryAgent, last: RunResult | None) -> None:
    if last is None or not last.cases_shown:
        console.print("No cases were retrieved for the last task.")
        return
    for case in agent.memory.get_many(last.cases_shown):
        used = "used" if case.id in last.cases_used else "shown"
        console.print(
            f"[cyan]case {case.id}[/cyan] ({used}, {case.outcome or 'unrated'}): "
            f"{clip_line(case.task, 80)} → {clip_line(case.plan, 60)}"
        )
