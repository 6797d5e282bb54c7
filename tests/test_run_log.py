"""The run log's schema (migration 0004_run_log) matches its models on both backends, and the
log keeps events in order; prompt helpers that decide credit."""

from __future__ import annotations

from sqlalchemy import inspect

from memory_agent.runtime import prompts
from memory_agent.runtime.prompts import ShownCase
from memory_agent.store import CaseMemory
from memory_agent.store.run_log_models import RunEventRow, RunRow


def test_migration_matches_the_models(memory: CaseMemory) -> None:
    inspector = inspect(memory.engine)
    for model in (RunRow, RunEventRow):
        table = model.__table__
        columns = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, column.name
    indexes = {i["name"] for i in inspector.get_indexes("run_events")}
    assert "ix_run_events_run_seq" in indexes


def test_events_are_numbered_in_order_and_reach_the_listener(memory: CaseMemory) -> None:
    heard: list[tuple[str, dict[str, object]]] = []
    log = memory.run_log(lambda kind, data: heard.append((kind, data)))
    log.start("r1", namespace="default", task="t", model="m", policy="similarity",
              prompt_style="code", learn=True, ground_truth=None)  # fmt: skip
    log.event("r1", "llm", "m", duration_s=0.5, prompt_tokens=10, completion_tokens=3, reply="x")
    log.event("r1", "tool", "python", ok=True)
    events = log.events("r1")
    assert [(e.seq, e.kind) for e in events] == [(1, "llm"), (2, "tool")]
    assert events[0].data == {"reply": "x"} and events[0].completion_tokens == 3
    assert heard[0][0] == "llm" and heard[0][1]["completion_tokens"] == 3
    log.update("r1", status="done", answer="42")
    assert log.get("r1").answer == "42" and [r.id for r in log.recent()] == ["r1"]


def test_citation_is_parsed_or_inferred() -> None:
    bits = ShownCase(3, "Count bits of 777", "bin(777).count('1')", "4", "success")
    spell = ShownCase(9, "Spell 'planet' backward", "'planet'[::-1]", "tenalp", "success")
    assert prompts.parse_used_cases("PLAN: x\nUSED CASES: 9, 12", [3, 9]) == [9]
    assert prompts.parse_used_cases("USED CASES: none", [3, 9]) == []
    assert prompts.parse_used_cases("PLAN: x", [3, 9]) is None
    assert prompts.infer_used("bin(987).count('1')", [bits, spell]) == [3]
    assert prompts.infer_used("'memory'[::-1]", [bits, spell]) == [9]
    assert prompts.infer_used("The answer is seven.", [bits, spell]) == []


def test_inferred_citation_with_a_margin_keeps_only_the_case_copied_most() -> None:
    """A failed zero-bits answer copied the one-bits twin's line, not the right example's."""
    right = ShownCase(2, "How many 0 bits in 1910974046?", "bin(1910974046)[2:].count('0')",
                      "12", "success")  # fmt: skip
    twin = ShownCase(10, "How many 1 bits in 1669360679?", "bin(1669360679).count('1')",
                     "17", "success")  # fmt: skip
    output = "bin(1633494372).count('0')"
    assert prompts.infer_used(output, [right, twin]) == [2, 10]
    assert prompts.infer_used(output, [right, twin], margin=0.1) == [10]
    assert prompts.infer_used(output, [right, twin], margin=0.5) == [2, 10]
    fixed = "bin(1633494372)[2:].count('0')"
    assert prompts.infer_used(fixed, [right, twin], margin=0.1) == [2]
    assert prompts.infer_used("The answer is seven.", [right, twin], margin=0.1) == []


def test_code_prompt_puts_the_best_case_last_and_skips_failures() -> None:
    best = ShownCase(1, "Spell 'planet' backward", "'planet'[::-1]", "tenalp", "success")
    other = ShownCase(2, "Count bits of 777", "bin(777).count('1')", "4", "success")
    failed = ShownCase(3, "Spell 'rocket' backward", "'rocket'.reverse()", None, "failure")
    messages = prompts.code_messages("Spell 'memory' backward", [best, other, failed], [])
    contents = [m["content"] for m in messages[1:]]
    assert contents == [other.task, other.plan, best.task, best.plan, "Spell 'memory' backward"]


def test_small_model_replies_are_read_as_code_or_as_an_answer() -> None:
    assert prompts.extract_code("bin(987).count('1')") == "bin(987).count('1')"
    assert prompts.extract_code("```python\nprint(2 + 2)\n```") == "print(2 + 2)"
    assert prompts.extract_code("12345 in binary is 101011.") is None  # prose that parses
    assert prompts.extract_code("8") is None
