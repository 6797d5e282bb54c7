"""Many processes, one store: real second processes (subprocesses) writing while this one
reads, importing the same file at once, and creating the same namespace at once, on SQLite
and PostgreSQL ("Many agents, one memory")."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hash_embedder import HashEmbedder

from memory_agent.settings import Settings
from memory_agent.store import CaseMemory

# A worker process: a tiny deterministic embedder (no model to load), so the processes start
# in a second and the race windows are what the store itself leaves open.
WORKER = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[6])  # the tests folder: the shared hash embedder
from hash_embedder import HashEmbedder
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory

mode, url, home, go = sys.argv[1:5]
args = json.loads(sys.argv[5])
settings = Settings(home=home, store={"embed_batch_size": args.get("batch", 64)})
memory = CaseMemory(settings, embedder=HashEmbedder(), database_url=url)
while not Path(go).exists():
    time.sleep(0.005)
result = {}
if mode == "add":
    ids = []
    for i in range(args["count"]):
        ids.append(memory.add(f"{args['label']} {i}", namespace=args.get("namespace")).id)
        time.sleep(args.get("pause", 0.0))
    result["ids"] = ids
elif mode == "import":
    report = memory.import_file(Path(args["file"]), namespace=args.get("namespace"))
    result = {"added": report.added, "skipped": report.skipped_duplicates}
memory.close()
print(json.dumps(result))
"""


def _start(mode: str, url: str, home: Path, go: Path, **args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WORKER,
            mode,
            url,
            str(home),
            str(go),
            json.dumps(args),
            str(Path(__file__).parent),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> dict[str, object]:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def _open(home: Path, url: str, **store: object) -> CaseMemory:
    """A store on `url` (`store`: store knobs) with the test's hash embedder."""
    return CaseMemory(Settings(home=home, store=store), embedder=HashEmbedder(), database_url=url)  # type: ignore[arg-type]


def test_a_long_lived_memory_finds_cases_another_process_adds(
    database_url: str, isolated_home: Path, tmp_path: Path
) -> None:
    interval = 0.5
    reader = _open(isolated_home, database_url, index_sync_interval=interval)
    try:
        reader.add("reader's own first case")  # the store exists and has its vector space
        go = tmp_path / "go"
        writer = _start(
            "add", database_url, isolated_home, go, count=8, label="written elsewhere", pause=0.05
        )
        go.touch()
        seen: set[int] = set()
        deadline = time.monotonic() + 120
        result: dict[str, object] | None = None
        while time.monotonic() < deadline:
            hits = reader.search("written elsewhere 7", 20)
            seen.update(h.case.id for h in hits if h.case.task.startswith("written elsewhere"))
            if result is None and writer.poll() is not None:
                result = _finish(writer)
                finished = time.monotonic()
            if result is not None and set(result["ids"]) <= seen:  # type: ignore[arg-type]
                break
            time.sleep(0.05)
        assert result is not None, "the writer process did not finish"
        assert set(result["ids"]) <= seen  # type: ignore[arg-type]
        # ... and within the sync interval (plus a search's worth of slack) of the last write.
        assert time.monotonic() - finished < interval + 2.0
        top = reader.search("written elsewhere 3", 1)[0].case
        assert top.task == "written elsewhere 3"
    finally:
        reader.close()


def test_two_imports_of_one_file_at_once_store_each_case_once(
    database_url: str, isolated_home: Path, tmp_path: Path
) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        "".join(
            json.dumps({"task": f"shared task {i}", "plan": f"plan {i}"}) + "\n" for i in range(300)
        )  # fmt: skip
    )
    _open(isolated_home, database_url).close()  # migrate once, outside the race
    go = tmp_path / "go"
    workers = [
        _start("import", database_url, isolated_home, go, file=str(cases), namespace="team",
               batch=16)
        for _ in range(2)
    ]  # fmt: skip
    time.sleep(1.0)
    go.touch()
    results = [_finish(w) for w in workers]
    # Together they add each case once (batch by batch, either may add a given batch).
    assert sum(r["added"] for r in results) == 300, results  # type: ignore[misc]
    assert all(r["added"] + r["skipped"] == 300 for r in results)  # type: ignore[operator]
    with _open(isolated_home, database_url) as memory:
        assert memory.count("team") == 300
        # A third import, after both, adds nothing either.
        again = memory.import_file(cases, namespace="team")
        assert (again.added, again.skipped_duplicates) == (0, 300)


def test_two_processes_creating_one_namespace_at_once_both_store_their_cases(
    database_url: str, isolated_home: Path, tmp_path: Path
) -> None:
    _open(isolated_home, database_url).close()
    go = tmp_path / "go"
    workers = [
        _start("add", database_url, isolated_home, go, count=10, label=f"writer {n}",
               namespace="brand-new")
        for n in range(2)
    ]  # fmt: skip
    time.sleep(1.0)
    go.touch()
    results = [_finish(w) for w in workers]
    with _open(isolated_home, database_url) as memory:
        assert memory.count("brand-new") == 20
        assert memory.namespaces().count("brand-new") == 1
        stored = {c.id for c in memory.list_cases("brand-new", limit=100)}
        assert stored == {i for r in results for i in r["ids"]}  # type: ignore[attr-defined]


@pytest.mark.parametrize("rounds", [3])
def test_new_namespace_race_repeated(
    database_url: str, isolated_home: Path, tmp_path: Path, rounds: int
) -> None:
    """The first write to a new namespace, raced a few times (each round a new name)."""
    _open(isolated_home, database_url).close()
    for r in range(rounds):
        go = tmp_path / f"go{r}"
        workers = [
            _start("add", database_url, isolated_home, go, count=1, label=f"w{n}",
                   namespace=f"fresh-{r}")
            for n in range(3)
        ]  # fmt: skip
        time.sleep(1.0)
        go.touch()
        for w in workers:
            _finish(w)
    with _open(isolated_home, database_url) as memory:
        assert [memory.count(f"fresh-{r}") for r in range(rounds)] == [3] * rounds
