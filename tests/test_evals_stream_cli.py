"""`memory-agent eval stream --drift` end to end with the real agent, store and policies; the
model is a scripted OpenAI-compatible server on loopback that can follow a shown example of
the right procedure but not work one out alone."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_evals_e2e import ScriptedEndpoint
from test_evals_stream_drift import answer, kind_of
from typer.testing import CliRunner

from memory_agent.cli import app

pytestmark = pytest.mark.filterwarnings(
    r"ignore:The Result\.tuples\(\) method is deprecated:DeprecationWarning"
)


def follow_examples(prompt: str) -> str:
    """The answer when a shown case needs the same procedure as the task, else a guess."""
    shown, _, task = prompt.rpartition("Task:")
    kind, match = kind_of(task.strip())
    examples = [line for line in shown.splitlines() if line.startswith("[case ")]
    for line in examples:
        if kind_of(line.split("task:", 1)[1].strip())[0] == kind:
            return answer(kind, match)
    return "7"  # a number: a lenient judge accepts it on a counting task


@pytest.fixture
def endpoint() -> Iterator[str]:
    ScriptedEndpoint.prompts = []
    ScriptedEndpoint.answer = staticmethod(follow_examples)
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def stream(tmp_path: Path, endpoint: str, *extra: str) -> dict[str, Any]:
    args = [
        "--home", str(tmp_path / "home"), "eval", "stream", "--drift", "--tasks", "6",
        "--holdout", "6", "--seeds", "1", "--policies", "none,static,similarity,value",
        "--model", "scripted", "--base-url", endpoint, "--out", str(tmp_path / "out"),
        "--json", *extra,
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(result.stdout[result.stdout.index("{") :])
    return payload


def test_drift_stream_reports_intervals_and_resumes(endpoint: str, tmp_path: Path) -> None:
    out = stream(tmp_path, endpoint)
    assert out["complete"] and out["drift_index"] == 3 and out["lenient"] == 0.3
    assert out["drifted_families"] == ["count_bits", "spell_backward", "letter_counting"]
    policies = ["none", "static", "similarity", "value"]
    assert list(out["holdout_ci"]) == policies and out["holdout_n"]["value"] == 6
    for policy in policies:
        low, high = out["holdout_ci"][policy]
        assert 0.0 <= low <= out["holdout"][policy] <= high <= 1.0
    assert out["holdout"]["none"] == 0.0  # no example shown, no procedure
    assert out["holdout"]["static"] == 1.0  # every held-out kind has an example in the bank
    assert list(out["paired_vs_similarity"]) == ["value"]
    assert sorted(out["paired_vs_static"]) == ["similarity", "value"]
    cell = out["paired_vs_similarity"]["value"]
    assert cell["ci"][0] <= cell["mean"] <= cell["ci"][1] and cell["tasks"] == 6
    assert Path(out["plot"]).read_bytes()[:4] == b"\x89PNG"
    asked = len(ScriptedEndpoint.prompts)
    # resuming a finished run runs nothing again and reports the same figures
    again = stream(tmp_path, endpoint, "--resume")
    assert len(ScriptedEndpoint.prompts) == asked
    for key in ("holdout", "holdout_ci", "paired_vs_similarity", "paired_vs_static", "train"):
        assert again[key] == out[key]
