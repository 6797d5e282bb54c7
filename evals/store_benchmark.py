"""`memory-agent bench store`: the compressed case store against exact FAISS and a
Memento-style re-embedding baseline, on seeded synthetic vectors or real text.

Every figure is measured here in one run: bytes per case from the store's own accounting
(RAM and disk apart) and how it ranks (`rerank_mode`: exact float32, codes re-ranked by
float16 copies, or codes alone past the copies' disk budget), recall against exact k-NN of
the same vectors (the policy's shortlist through `nearest`, and `search(k=10)` through the
public call), single-query latency, add throughput and the time to open a store of N cases.

Latencies, one query at a time: `search_p50_ms` is the shortlist (`nearest`, top 50, vector
in: index and re-rank); `vector_search_p50_ms` is the public `search(vector, k=10)`, the SQL
that reads the hits' rows included; with text, `text_search_p50_ms` is `search(text, k=10)`
and `query_embed_p50_ms` the same query embedded alone right before it, so
`search_overhead_p50_ms` (their difference, query by query) is what the store adds to the
embedding.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from memory_agent.evals.synthetic_vectors import SyntheticSpace, exact_top_k, recall
from memory_agent.settings import Settings
from memory_agent.store.embedder import Vectors

Say = Callable[[str], None]


@dataclass
class Workload:
    """Stored vectors (with their task text) and held-out queries."""

    name: str
    base: Vectors
    queries: Vectors
    texts: list[str] | None  # task text per stored vector (None: synthetic)
    query_texts: list[str] | None


def synthetic_workload(cases: int, queries: int, seed: int = 0) -> Workload:
    space = SyntheticSpace(seed=seed)
    return Workload(
        name=f"synthetic (clustered, seed {seed})",
        base=space.sample(cases, seed=seed + 1),
        queries=space.sample(queries, seed=seed + 2),
        texts=None,
        query_texts=None,
    )


def text_workload(path: Path, cases: int, queries: int, settings: Settings, say: Say) -> Workload:
    from memory_agent.evals.text_vectors import embed_file_cached, read_texts

    texts = read_texts(path)
    if len(texts) < queries + 1:
        from memory_agent.errors import InvalidInputError

        raise InvalidInputError(f"{path} has {len(texts)} lines; need more than {queries}.")
    say(f"Embedding {len(texts)} lines of {path.name} with {settings.store.embedder} (cached)...")
    vectors, seconds = embed_file_cached(path, settings)
    say(f"  {len(texts) / max(seconds, 1e-9):.0f} texts/s when first embedded")
    # The last lines are held out as queries; the store gets the first `cases`.
    stored = min(cases, len(texts) - queries)
    return Workload(
        name=f"text: {path.name}",
        base=vectors[:stored],
        queries=vectors[-queries:],
        texts=texts[:stored],
        query_texts=texts[-queries:],
    )


def _latencies(
    search: Callable[[Vectors], npt.NDArray[np.int64]], queries: Vectors
) -> tuple[npt.NDArray[np.int64], list[float]]:
    found, times = [], []
    for query in queries:
        start = time.perf_counter()
        ids = search(query[None, :])
        times.append((time.perf_counter() - start) * 1000.0)
        found.append(ids[0])
    return np.vstack(found), times


def _figures(
    found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64], times: list[float]
) -> dict[str, float]:
    return {
        "shortlist_recall": recall(found, truth),
        "recall_at_10": recall(found[:, :10], truth),
        "search_p50_ms": float(np.percentile(times, 50)),
        "search_p95_ms": float(np.percentile(times, 95)),
    }


def measure_store(
    work: Workload,
    settings: Settings,
    truth: npt.NDArray[np.int64],
    say: Say,
    batch: int = 20_000,
    grow_in: int = 1,
) -> dict[str, Any]:
    """Build a real SQLite store of the workload, reopen it, and search it.

    With `grow_in` > 1 the cases arrive in that many `add_many` calls, as in a store that
    grows: the first codebook is shaped for the first call's cases, and each growth retrain
    is re-encoded (`reindex`) before the next call.
    """
    from memory_agent.store import CaseMemory, NewCase

    with tempfile.TemporaryDirectory(prefix="bench-store-") as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        n = len(work.base)
        memory = CaseMemory(settings, database_url=url)
        tasks = work.texts if work.texts else [f"case {i}" for i in range(n)]
        done = [0]

        def progress(count: int) -> None:
            done[0] += count
            if done[0] % (10 * batch) < count or done[0] == n:
                say(f"  added {done[0]}/{n}")

        # By default one bulk add, as an import would do: batches commit one by one, and the
        # codebook is trained once the store knows how big it is (sized for n cases).
        start = time.perf_counter()
        ids = []
        versions = []
        dropped_at: int | None = None  # cases stored when the re-rank copies went
        for part in np.array_split(np.arange(n), max(1, grow_in)):
            if len(part) == 0:
                continue
            ids += memory.add_many(
                [NewCase(task=tasks[i]) for i in part],
                embeddings=work.base[part],
                batch_size=batch,
                on_progress=progress,
            )
            if memory.reindex_remaining():
                memory.reindex()
            grown = memory.stats()
            versions.append(grown["codebook_version"])
            if dropped_at is None and grown["rerank_copies_dropped"]:
                dropped_at = len(ids)
        add_seconds = time.perf_counter() - start
        memory.close()
        start = time.perf_counter()
        memory = CaseMemory(settings, database_url=url)
        open_s = time.perf_counter() - start
        stats = memory.stats()
        position = np.full(max(ids) + 1, -1, dtype=np.int64)
        position[np.asarray(ids)] = np.arange(n)
        k = settings.store.shortlist_size

        def shortlist(query: Vectors) -> npt.NDArray[np.int64]:
            return memory.nearest(query, k)[1]

        shortlist(work.queries[:1])  # warm-up
        found, times = _latencies(shortlist, work.queries)
        found = np.where(found >= 0, position[np.clip(found, 0, None)], -1)
        top = _search_top10(memory, work, position)
        memory.close()
        db_bytes = (Path(folder) / "bench.db").stat().st_size
    return {
        "bytes_per_case": stats["bytes_per_case"],
        "ram_bytes_per_case": stats["ram_bytes_per_case"],
        "disk_bytes_per_case": stats["disk_bytes_per_case"],
        "total_bytes_per_case": stats["total_bytes_per_case"],
        **_figures(found, truth, times),
        **top.figures(truth),
        "add_per_s": n / add_seconds,
        "open_s": open_s,
        "index_kind": stats["index_kind"],
        "code_bytes": stats["code_bytes"],
        "codebook_version": stats["codebook_version"],
        "distortion": stats["distortion"],
        "rerank": stats["rerank"],
        "rerank_mode": stats["rerank_mode"],
        "rerank_copies_dropped_at_cases": dropped_at,
        "rerank_copy_bytes": stats["rerank_copy_bytes"],
        "bytes_breakdown": {
            key: stats[key]
            for key in (
                "vector_bytes_stored",
                "rerank_copy_bytes",
                "index_bytes",
                "codebook_bytes",
                "codebook_disk_bytes",
                "reservoir_bytes",
            )
        },
        "database_file_bytes_per_case": db_bytes / n,
        "add_calls": max(1, grow_in),
        "codebook_versions_made": len({v for v in versions if v is not None}),
        "coarse_lists": stats["coarse_lists"],
    }


@dataclass
class SearchTimes:
    """`search(k=10)` through the public call, query by query: by vector always (the ids
    found and the call's time), and with text queries by text too, beside the time embedding
    the same query alone takes (measured right before, so the pair shares its conditions)."""

    vector_found: npt.NDArray[np.int64]
    vector_ms: list[float]
    text_found: npt.NDArray[np.int64] | None
    text_ms: list[float]
    embed_ms: list[float]

    def figures(self, truth: npt.NDArray[np.int64]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "vector_search_recall_at_10": recall(self.vector_found, truth),
            "vector_search_p50_ms": float(np.percentile(self.vector_ms, 50)),
            "vector_search_p95_ms": float(np.percentile(self.vector_ms, 95)),
        }
        # What a user's call finds: by text where the workload has text.
        found = self.text_found if self.text_found is not None else self.vector_found
        out["search_recall_at_10"] = recall(found, truth)
        if self.embed_ms:
            overhead = np.asarray(self.text_ms) - np.asarray(self.embed_ms)
            out |= {
                "text_search_p50_ms": float(np.percentile(self.text_ms, 50)),
                "text_search_p95_ms": float(np.percentile(self.text_ms, 95)),
                "query_embed_p50_ms": float(np.percentile(self.embed_ms, 50)),
                "search_overhead_p50_ms": float(np.percentile(overhead, 50)),
                "search_overhead_p95_ms": float(np.percentile(overhead, 95)),
            }
        return out


def _search_top10(memory: Any, work: Workload, position: npt.NDArray[np.int64]) -> SearchTimes:
    """`memory.search(query, k=10)` for every query, by vector, and by text when the
    workload has text (the store embeds the query itself, as a user's call does; the query
    is also embedded alone right before, by the same embedder, to split that call's time
    into embedding and the rest)."""

    def positions(hits: list[Any]) -> npt.NDArray[np.int64]:
        row = np.full(10, -1, np.int64)
        row[: len(hits)] = [position[h.case.id] for h in hits]
        return row

    def timed(query: Any) -> tuple[list[Any], float]:
        start = time.perf_counter()
        hits = memory.search(query, 10)
        return hits, (time.perf_counter() - start) * 1000.0

    texts = work.query_texts
    embedder = memory.embedder if texts else None
    if embedder is not None and texts:
        embedder.embed([texts[0]])  # load the model before timing
        memory.search(texts[0], 10)  # warm-up
    memory.search(work.queries[0], 10)
    by_vector, vector_ms, by_text, text_ms, embed_ms = [], [], [], [], []
    for number, vector in enumerate(work.queries):
        if embedder is not None and texts:
            start = time.perf_counter()
            embedder.embed([texts[number]])
            embed_ms.append((time.perf_counter() - start) * 1000.0)
            hits, ms = timed(texts[number])
            by_text.append(positions(hits))
            text_ms.append(ms)
        hits, ms = timed(vector)
        by_vector.append(positions(hits))
        vector_ms.append(ms)
    return SearchTimes(
        np.vstack(by_vector), vector_ms, np.vstack(by_text) if by_text else None, text_ms, embed_ms
    )


def measure_exact(work: Workload, truth: npt.NDArray[np.int64], k: int) -> dict[str, Any]:
    """Exact float32 FAISS (flat inner product with an id map), opened from a .npy file."""
    import faiss

    with tempfile.TemporaryDirectory(prefix="bench-exact-") as folder:
        path = Path(folder) / "vectors.npy"
        np.save(path, work.base)
        ids = np.arange(len(work.base), dtype=np.int64)
        start = time.perf_counter()
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(work.base.shape[1]))
        index.add_with_ids(work.base, ids)
        add_seconds = time.perf_counter() - start
        start = time.perf_counter()
        reopened = faiss.IndexIDMap2(faiss.IndexFlatIP(work.base.shape[1]))
        reopened.add_with_ids(np.load(path), ids)
        open_s = time.perf_counter() - start
    found, times = _latencies(lambda q: index.search(q, k)[1], work.queries)
    return {
        # At rest the .npy file (float32 per case); in RAM the vectors and the id map.
        "bytes_per_case": float(work.base.shape[1] * 4),
        "ram_bytes_per_case": float(work.base.shape[1] * 4 + 8),
        "total_bytes_per_case": float(work.base.shape[1] * 8 + 8),
        **_figures(found, truth, times),
        "add_per_s": len(work.base) / max(add_seconds, 1e-9),
        "open_s": open_s,
    }


def measure_reembedding(
    work: Workload, settings: Settings, cases: int, queries: int, k: int, say: Say
) -> dict[str, Any]:
    """Memento-style retrieval: embed every stored case's text again for each query."""
    from memory_agent.store.embedder import embedder_from_settings

    if work.texts is None or work.query_texts is None:
        return {"skipped": "needs --text: the baseline re-embeds case text"}
    embedder = embedder_from_settings(settings)
    texts = work.texts[:cases]
    truth = exact_top_k(work.queries[:queries], work.base[: len(texts)], 10)
    found, times, query_ms = [], [], []
    embedder.embed([work.query_texts[0]])  # load the model before timing
    for number, query in enumerate(work.query_texts[:queries]):
        say(f"  re-embedding {len(texts)} cases for query {number + 1}/{queries}...")
        start = time.perf_counter()
        stored = embedder.embed(texts)
        middle = time.perf_counter()
        q = embedder.embed([query])
        query_ms.append((time.perf_counter() - middle) * 1000.0)
        order = np.argsort(-(stored @ q[0]))[:k]
        times.append((time.perf_counter() - start) * 1000.0)
        found.append(order)
    return {
        "cases": len(texts),
        "queries": queries,
        # Like the store's text_search_p50_ms, search_p50_ms here includes the query's
        # embedding; that part alone:
        "query_embed_p50_ms": float(np.percentile(query_ms, 50)),
        # Nothing but the text is stored; the model's weights are not counted.
        "bytes_per_case": 0.0,
        "ram_bytes_per_case": 0.0,
        "total_bytes_per_case": 0.0,
        **_figures(np.vstack(found), truth, times),
        "add_per_s": None,
        "open_s": 0.0,
    }


def run_store_benchmark(
    *,
    cases: int,
    text: Path | None,
    queries: int,
    settings: Settings,
    baseline_cases: int,
    baseline_queries: int,
    say: Say,
    grow_in: int = 1,
    sizes: list[int] | None = None,
) -> dict[str, Any]:
    if sizes:
        return run_sizes(
            sizes=sizes, text=text, queries=queries, settings=settings,
            baseline_cases=baseline_cases, baseline_queries=baseline_queries, say=say,
        )  # fmt: skip
    work = (
        text_workload(text, cases, queries, settings, say)
        if text is not None
        else synthetic_workload(cases, queries)
    )
    k = settings.store.shortlist_size
    say(f"Exact top-10 of {len(work.queries)} queries over {len(work.base)} vectors...")
    truth = exact_top_k(work.queries, work.base, 10)
    say("Compressed store (SQLite):")
    result = measure_store(work, settings, truth, say, grow_in=grow_in)
    say("Baseline: exact float32 FAISS...")
    baselines: dict[str, Any] = {"exact_float32_faiss": measure_exact(work, truth, k)}
    if baseline_cases > 0:
        say("Baseline: Memento-style re-embedding...")
        baselines["memento_reembed"] = measure_reembedding(
            work, settings, baseline_cases, baseline_queries, k, say
        )
    return {
        "workload": work.name,
        "cases": len(work.base),
        "queries": len(work.queries),
        "shortlist_size": k,
        "settings": store_settings(settings),
        **result,
        "baselines": baselines,
    }


def store_settings(settings: Settings) -> dict[str, Any]:
    """The store knobs that shape the figures (what a run is to be compared by)."""
    keys = (
        "exact_ram_budget_mb",
        "codebook_min_cases",
        "code_bytes",
        "codebook_dim",
        "ivf_nprobe",
        "rerank",
        "rerank_candidates",
        "rerank_disk_budget_mb",
    )
    return {key: getattr(settings.store, key) for key in keys}


def run_sizes(
    *,
    sizes: list[int],
    text: Path | None,
    queries: int,
    settings: Settings,
    baseline_cases: int,
    baseline_queries: int,
    say: Say,
) -> dict[str, Any]:
    """The store at each size (the first n cases of one workload, the same held-out
    queries), beside exact FAISS at that size; the re-embedding baseline once."""
    largest = max(sizes)
    work = (
        text_workload(text, largest, queries, settings, say)
        if text is not None
        else synthetic_workload(largest, queries)
    )
    k = settings.store.shortlist_size
    rows = []
    for size in sorted(sizes):
        part = Workload(
            name=work.name,
            base=work.base[:size],
            queries=work.queries,
            texts=work.texts[:size] if work.texts else None,
            query_texts=work.query_texts,
        )
        say(f"{len(part.base)} cases: exact top-10, then the store (SQLite)...")
        truth = exact_top_k(part.queries, part.base, 10)
        row = {"cases": len(part.base), **measure_store(part, settings, truth, say)}
        row["exact_float32_faiss"] = measure_exact(part, truth, k)
        rows.append(row)
    baselines: dict[str, Any] = {}
    if baseline_cases > 0 and text is not None:
        say("Baseline: Memento-style re-embedding...")
        baselines["memento_reembed"] = measure_reembedding(
            work, settings, baseline_cases, baseline_queries, k, say
        )
        store_row = min(rows, key=lambda r: abs(r["cases"] - baseline_cases))
        if "text_search_p50_ms" in store_row:
            baselines["memento_reembed"]["store_cases"] = store_row["cases"]
            baselines["memento_reembed"]["speedup_vs_store_search"] = (
                baselines["memento_reembed"]["search_p50_ms"] / store_row["text_search_p50_ms"]
            )
    return {
        "workload": work.name,
        "queries": len(work.queries),
        "shortlist_size": k,
        "settings": store_settings(settings),
        "sizes": rows,
        "baselines": baselines,
    }


def index_frontier(
    cases: int, text: Path | None, queries: int, settings: Settings, say: Say
) -> list[dict[str, Any]]:
    """Recall vs bytes of the index kinds tried, in plain FAISS over the same vectors.

    Bytes per case are what a store of that kind would hold, per resource as the store
    counts them: at rest the code in the database (with its coarse list number) and in RAM
    the code and its int64 id, each plus the trained parameters amortised over the cases
    (the store's reservoir, 512 vectors, would add 786 KB to both).
    """
    import faiss

    work = (
        text_workload(text, cases, queries, settings, say)
        if text is not None
        else synthetic_workload(cases, queries)
    )
    dim = work.base.shape[1]
    n = len(work.base)
    truth = exact_top_k(work.queries, work.base, 10)
    nlist = 1024 if n >= 400_000 else 256
    kinds = [
        ("flat float32", "Flat"),
        ("PQ16x4 fast-scan, flat", "PQ16x4fs"),
        (f"IVF{nlist},PQ8", f"IVF{nlist},PQ8"),
        (f"OPQ8,IVF{nlist},PQ8", f"OPQ8,IVF{nlist},PQ8"),
        (f"OPQ16,IVF{nlist},PQ16", f"OPQ16,IVF{nlist},PQ16"),
        (f"OPQ16_128,IVF{nlist},PQ16", f"OPQ16_128,IVF{nlist},PQ16"),
        (f"OPQ20_120,IVF{nlist},PQ20 (default)", f"OPQ20_120,IVF{nlist},PQ20"),
        (f"OPQ20_160,IVF{nlist},PQ20", f"OPQ20_160,IVF{nlist},PQ20"),
        (f"OPQ24_96,IVF{nlist},PQ24", f"OPQ24_96,IVF{nlist},PQ24"),
        (f"OPQ32,IVF{nlist},PQ32", f"OPQ32,IVF{nlist},PQ32"),
        (f"OPQ32,IVF{nlist},PQ32x4fs", f"OPQ32,IVF{nlist},PQ32x4fs"),
    ]
    rows = []
    train = work.base[: min(n, settings.store.codebook_train_sample)]
    for label, spec in kinds:
        say(f"  {label}...")
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        ivf: Any = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf = faiss.downcast_index(ivf)
            if hasattr(ivf, "do_polysemous_training"):
                ivf.do_polysemous_training = False
            ivf.nprobe = settings.store.ivf_nprobe
        if not index.is_trained:
            index.train(train)
        index.add(work.base)
        found, times = _latencies(_searcher(index, settings.store.shortlist_size), work.queries)
        if spec == "Flat":
            code, params = dim * 4, 0
        else:
            code = int(index.sa_code_size())
            params = len(faiss.serialize_index(_empty_clone(index)))
        memory_code = code - (ivf.coarse_code_size() if ivf is not None else 0)
        ids = 8 if ivf is not None or spec == "Flat" else 0
        rows.append(
            {
                "kind": label,
                "bytes_per_case": code + params / n,
                "ram_bytes_per_case": memory_code + ids + params / n,
                **_figures(found, truth, times),
            }
        )
    return rows


def _searcher(index: Any, k: int) -> Callable[[Vectors], npt.NDArray[np.int64]]:
    def search(query: Vectors) -> npt.NDArray[np.int64]:
        return np.asarray(index.search(query, k)[1], np.int64)

    return search


def _empty_clone(index: Any) -> Any:
    import faiss

    clone = faiss.clone_index(index)
    clone.reset()
    return clone
