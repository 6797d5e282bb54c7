"""`CaseStore`, the LangGraph `BaseStore` in the case memory. The installed langgraph ships
no store conformance suite, so these are the same cases written for this store: get/put/
delete, batches, search by prefix, filter and query, namespace listing, the async API,
namespace validation, persistence, and vector search through the compressed index."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from compressed_store import compressed_settings
from hash_embedder import HashEmbedder
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    PutOp,
    SearchOp,
)

from memory_agent.langgraph import CaseStore
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase


@pytest.fixture
def memory(isolated_home: Path) -> Iterator[CaseMemory]:
    with CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder()) as mem:  # type: ignore[arg-type]
        yield mem


@pytest.fixture
def store(memory: CaseMemory) -> CaseStore:
    return CaseStore(memory)


def test_put_get_update_delete(store: CaseStore) -> None:
    assert store.get(("users", "u1"), "prefs") is None
    store.put(("users", "u1"), "prefs", {"theme": "dark", "size": 3})
    item = store.get(("users", "u1"), "prefs")
    assert item is not None
    assert item.value == {"theme": "dark", "size": 3}
    assert item.namespace == ("users", "u1") and item.key == "prefs"
    assert item.created_at == item.updated_at or item.created_at <= item.updated_at
    time.sleep(0.01)
    store.put(("users", "u1"), "prefs", {"theme": "light"})
    updated = store.get(("users", "u1"), "prefs")
    assert updated is not None and updated.value == {"theme": "light"}
    assert updated.created_at == item.created_at and updated.updated_at > item.updated_at
    # Same key, other namespace: another item.
    assert store.get(("users", "u2"), "prefs") is None
    assert store.get(("users",), "prefs") is None
    store.delete(("users", "u1"), "prefs")
    assert store.get(("users", "u1"), "prefs") is None
    store.delete(("users", "u1"), "prefs")  # deleting a missing item is not an error
    store.put(("users", "u1"), "prefs", {"theme": "again"})
    again = store.get(("users", "u1"), "prefs")
    assert again is not None and again.value == {"theme": "again"}
    assert len(store.search(("users",))) == 1  # one live item per key


def test_batch_reads_see_the_store_before_its_writes(store: CaseStore) -> None:
    store.put(("a",), "k", {"v": 1})
    results = store.batch([
        GetOp(("a",), "k"),
        PutOp(("a",), "k", {"v": 2}),
        PutOp(("a",), "new", {"v": 3}),
        GetOp(("a",), "new"),
        SearchOp(("a",)),
        PutOp(("a",), "new", {"v": 4}),  # the last put of a key wins
        ListNamespacesOp(),
    ])  # fmt: skip
    assert results[0].value == {"v": 1}  # type: ignore[union-attr]
    assert results[1] is None and results[2] is None and results[5] is None
    assert results[3] is None
    assert [i.value for i in results[4]] == [{"v": 1}]  # type: ignore[union-attr]
    assert results[6] == [("a",)]
    assert store.get(("a",), "k").value == {"v": 2}  # type: ignore[union-attr]
    assert store.get(("a",), "new").value == {"v": 4}  # type: ignore[union-attr]
    store.batch([PutOp(("a",), "k", None), PutOp(("a",), "gone", None)])
    assert store.get(("a",), "k") is None


def test_search_by_prefix_filter_limit_and_offset(store: CaseStore) -> None:
    docs = {
        ("docs", "u1"): [("d1", {"kind": "report", "score": 4.5, "meta": {"lang": "en"}}),
                         ("d2", {"kind": "note", "score": 2.0, "tags": ["x", "y"]})],
        ("docs", "u2"): [("d3", {"kind": "report", "score": 3.0, "meta": {"lang": "fr"}})],
        ("other",): [("o1", {"kind": "report", "score": 5.0})],
    }  # fmt: skip
    for ns, items in docs.items():
        for key, value in items:
            store.put(ns, key, value)

    def keys(*args: Any, **kwargs: Any) -> set[str]:
        return {i.key for i in store.search(*args, **kwargs)}

    assert keys(("docs",)) == {"d1", "d2", "d3"}
    assert keys(("docs", "u1")) == {"d1", "d2"}
    assert keys(()) == {"d1", "d2", "d3", "o1"}
    assert keys(("doc",)) == set()  # labels match whole, not as string prefixes
    assert keys(("docs",), filter={"kind": "report"}) == {"d1", "d3"}
    assert keys((), filter={"score": {"$gt": 3.0}}) == {"d1", "o1"}
    assert keys((), filter={"score": {"$gte": 3.0, "$lt": 5.0}}) == {"d1", "d3"}
    assert keys((), filter={"score": {"$lte": 2.0}}) == {"d2"}
    assert keys((), filter={"kind": {"$ne": "report"}}) == {"d2"}
    assert keys((), filter={"kind": {"$eq": "note"}}) == {"d2"}
    assert keys((), filter={"meta": {"lang": "fr"}}) == {"d3"}
    assert keys((), filter={"tags": ["x", "y"]}) == {"d2"}
    assert keys((), filter={"kind": "report", "score": {"$gt": 4.0}}) == {"d1", "o1"}
    assert keys((), filter={"missing": 1}) == set()
    page1 = store.search(("docs",), limit=2)
    page2 = store.search(("docs",), limit=2, offset=2)
    assert len(page1) == 2 and len(page2) == 1
    assert {i.key for i in page1} | {i.key for i in page2} == {"d1", "d2", "d3"}
    assert all(i.score is None for i in page1)  # no query: no score
    filtered_page = store.search((), filter={"kind": "report"}, limit=1, offset=1)
    assert len(filtered_page) == 1 and filtered_page[0].key in {"d1", "d3", "o1"}


def test_list_namespaces(store: CaseStore) -> None:
    for ns in [("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f"),
               ("a", "c", "f"), ("b", "a", "f"), ("users", "123"), ("users", "456", "settings"),
               ("admin", "users", "789")]:  # fmt: skip
        store.put(ns, "k", {"x": 1})
    assert store.list_namespaces(prefix=("a", "b")) == [
        ("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f")]  # fmt: skip
    assert store.list_namespaces(suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f"),
                                                    ("b", "a", "f")]  # fmt: skip
    assert store.list_namespaces(prefix=("a",), suffix=("f",)) == [("a", "b", "f"),
                                                                   ("a", "c", "f")]  # fmt: skip
    assert store.list_namespaces(prefix=("a", "*", "f")) == [("a", "b", "f"), ("a", "c", "f")]
    assert store.list_namespaces(suffix=("*", "f")) == [("a", "b", "f"), ("a", "c", "f"),
                                                        ("b", "a", "f")]  # fmt: skip
    assert store.list_namespaces(prefix=("nope",)) == []
    assert store.list_namespaces(prefix=("users",)) == [("users", "123"),
                                                        ("users", "456", "settings")]  # fmt: skip
    assert store.list_namespaces(prefix=("a", "b"), max_depth=3) == [
        ("a", "b", "c"), ("a", "b", "d"), ("a", "b", "f")]  # fmt: skip
    assert store.list_namespaces(max_depth=1) == [("a",), ("admin",), ("b",), ("users",)]
    everything = store.list_namespaces(limit=100)
    assert len(everything) == 9 and everything == sorted(everything)
    assert store.list_namespaces(limit=3) == everything[:3]
    assert store.list_namespaces(limit=3, offset=3) == everything[3:6]
    store.delete(("a", "c", "f"), "k")
    assert ("a", "c", "f") not in store.list_namespaces()


def test_namespace_labels_are_checked(store: CaseStore) -> None:
    for bad in [(), ("a.b",), ("",), ("langgraph", "x")]:
        with pytest.raises(InvalidNamespaceError):
            store.put(bad, "k", {"x": 1})
    with pytest.raises(InvalidNamespaceError):
        store.batch([GetOp(("a.b",), "k")])  # ops given directly are checked too
    with pytest.raises(InvalidNamespaceError):
        store.batch([PutOp(("langgraph",), "k", {"x": 1})])
    # Labels with spaces, slashes and other scripts are fine and come back unchanged.
    odd = ("user name", "a/b", "ünï", "x:y")
    store.put(odd, "key with spaces", {"v": "ok"})
    assert store.get(odd, "key with spaces").value == {"v": "ok"}  # type: ignore[union-attr]
    assert odd in store.list_namespaces()


def test_async_api(store: CaseStore) -> None:
    async def flow() -> tuple[Any, ...]:
        await store.aput(("x", "y"), "k", {"text": "async"})
        got = await store.aget(("x", "y"), "k")
        found = await store.asearch(("x",))
        names = await store.alist_namespaces()
        await store.adelete(("x", "y"), "k")
        gone = await store.aget(("x", "y"), "k")
        results = await store.abatch([PutOp(("x",), "b", {"n": 1}), GetOp(("x",), "b")])
        return got, found, names, gone, results

    got, found, names, gone, results = asyncio.run(flow())
    assert got.value == {"text": "async"} and [i.key for i in found] == ["k"]
    assert names == [("x", "y")] and gone is None and results == [None, None]
    assert store.get(("x",), "b").value == {"n": 1}  # type: ignore[union-attr]


def test_items_persist_and_stores_with_other_namespaces_are_separate(
    isolated_home: Path,
) -> None:
    settings = Settings(home=isolated_home)
    with CaseMemory(settings, embedder=HashEmbedder()) as memory:  # type: ignore[arg-type]
        CaseStore(memory).put(("p",), "k", {"kept": True})
        other = CaseStore(memory, namespace="other-app")
        assert other.get(("p",), "k") is None and other.list_namespaces() == []
        other.put(("p",), "k", {"other": True})
        assert CaseStore(memory).get(("p",), "k").value == {"kept": True}  # type: ignore[union-attr]
        # Cases the agent stored in the same memory namespace are not items.
        memory.add("an agent's case", namespace="langgraph")
        assert [i.key for i in CaseStore(memory).search(())] == ["k"]
    with CaseMemory(settings, embedder=HashEmbedder()) as memory:  # type: ignore[arg-type]
        assert CaseStore(memory).get(("p",), "k").value == {"kept": True}  # type: ignore[union-attr]
        assert CaseStore(memory, namespace="other-app").get(("p",), "k").value == {"other": True}  # type: ignore[union-attr]


FOODS = {
    "pizza": "I love eating pizza with extra cheese",
    "cat": "My cat sleeps on the sofa all afternoon",
    "rust": "Rust's borrow checker prevents data races",
    "beach": "We spent the summer holiday swimming at the beach",
}


@pytest.mark.slow
def test_semantic_search_ranks_by_meaning_and_skips_unindexed_items(
    isolated_home: Path, minilm: Any
) -> None:
    with CaseMemory(Settings(home=isolated_home), embedder=minilm) as memory:
        store = CaseStore(memory, fields=["text"])
        for key, text in FOODS.items():
            store.put(("u1", "memories"), key, {"text": text, "kind": "memory"})
        store.put(("u2", "memories"), "pizza2", {"text": FOODS["pizza"], "kind": "memory"})
        store.put(("u1", "memories"), "hidden", {"text": "pizza pizza pizza"}, index=False)
        store.put(("u1", "memories"), "title", {"title": "Favourite food: pizza", "text": "x"},
                  index=["title"])  # fmt: skip

        hits = store.search(("u1",), query="what food do I like?", limit=3)
        assert hits[0].key in {"pizza", "title"} and {"pizza", "title"} <= {h.key for h in hits}
        assert all(h.namespace[0] == "u1" for h in hits)  # u2's copy is out of scope
        assert hits[0].score is not None and hits[0].score >= hits[-1].score  # type: ignore[operator]
        assert "hidden" not in {h.key for h in store.search(("u1",), query="pizza", limit=10)}
        assert store.get(("u1", "memories"), "hidden") is not None
        assert "hidden" in {h.key for h in store.search(("u1",), filter={}, limit=10)}
        pets = store.search(("u1", "memories"), query="animals at home", limit=1)
        assert [h.key for h in pets] == ["cat"]
        code = store.search((), query="programming language memory safety", limit=2)
        assert code[0].key == "rust"
        # A filter applies to the ranked hits; offset pages through them.
        filtered = store.search(("u1",), query="pizza", filter={"kind": "memory"}, limit=10)
        assert filtered[0].key == "pizza" and "title" not in {h.key for h in filtered}
        ranked = [h.key for h in store.search(("u1",), query="holiday", limit=4)]
        assert [h.key for h in store.search(("u1",), query="holiday", limit=2, offset=2)] == (
            ranked[2:4]
        )
        # An update re-embeds: the item is now found by its new meaning.
        store.put(("u1", "memories"), "cat", {"text": "Paris is the capital of France"})
        assert store.search(("u1",), query="French capital city", limit=1)[0].key == "cat"


def test_vector_search_through_the_compressed_index(isolated_home: Path) -> None:
    """Past codebook_min_cases the memory keeps PQ codes only; the store searches those. The
    hash embedder: only an item's own text is near it, so the right hit is known."""
    settings = compressed_settings(isolated_home, code_bytes=8, codebook_dim=32)
    embedder = HashEmbedder()
    with CaseMemory(settings, embedder=embedder) as memory:  # type: ignore[arg-type]
        # 1,100 cases in the store's namespace that are not items, then the items.
        memory.add_many([NewCase(task=f"distractor {i}") for i in range(1100)],
                        namespace="langgraph")  # fmt: skip
        store = CaseStore(memory, fields=["text"])
        texts = {f"k{i}": f"item text number {i}" for i in range(40)}
        store.batch([PutOp(("u1", "notes"), key, {"text": text}) for key, text in texts.items()])
        memory.reindex()
        cases = memory.list_cases("langgraph", limit=40)
        assert all(c.codebook_version is not None for c in cases)  # kept as codes
        for key in ("k0", "k17", "k39"):
            hits = store.search(("u1",), query=texts[key], limit=3)
            assert hits[0].key == key and hits[0].score > hits[1].score  # type: ignore[operator]
        assert store.search(("u2",), query=texts["k0"]) == []


@pytest.mark.slow
def test_langgraph_example_app_remembers_across_runs(isolated_home: Path) -> None:
    """docs/examples/langgraph_memory.py, run as a user runs it (real MiniLM, two processes):
    the second run recalls what the first stored, by meaning, and only for its user."""
    import os
    import subprocess
    import sys

    import memory_agent

    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "langgraph_memory.py"
    source = str(Path(memory_agent.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": source, "HF_HUB_OFFLINE": "1"}

    def run(user: str, *messages: str) -> list[dict[str, Any]]:
        done = subprocess.run(
            [sys.executable, str(example), "--home", str(isolated_home), "--user", user,
             *messages],
            env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    first = run("ada", "I moved to Lisbon last spring", "My favourite food is grilled sardines",
                "I play the cello in an orchestra")  # fmt: skip
    assert first[0]["recalled"] == [] and "don't know" in first[0]["reply"]
    assert len(first[2]["recalled"]) == 2  # the two earlier notes
    second = run("ada", "Which city do I live in now?", "What do I like to eat?")
    assert second[0]["recalled"][0]["text"] == "I moved to Lisbon last spring"
    assert second[1]["recalled"][0]["text"] == "My favourite food is grilled sardines"
    assert "Lisbon" in second[0]["reply"]
    other = run("bob", "Which city do I live in now?")
    assert other[0]["recalled"] == []  # another user's namespace holds none of ada's notes
