"""Vector indexes over case embeddings. Indexes are derived state: rebuilt from the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Set
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from memory_agent.errors import InvalidInputError
from memory_agent.store.embedder import Vectors

Ids = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]


class VectorIndex(Protocol):
    """Inner-product search over unit vectors, keyed by case id."""

    kind: str
    dim: int

    def add(self, ids: Ids, vectors: Vectors) -> None: ...

    def remove(self, ids: Ids) -> None: ...

    def search(self, queries: Vectors, k: int, allowed: Ids | None = None) -> tuple[Scores, Ids]:
        """Top-k (scores, ids) per query row; missing slots have id -1."""
        ...

    def __len__(self) -> int: ...

    def nbytes(self) -> int:
        """Bytes the index holds in memory (vectors or codes, and the id map)."""
        ...


_FLOAT32_MAX = float(np.finfo(np.float32).max)
A_VECTOR = "a vector of numbers (a list or numpy array of floats)"


def as_vectors(values: Any, what: str = "vectors", accepted: str = A_VECTOR) -> Vectors:
    """`values` as a float32 array, or a clear error saying what is accepted: numbers only
    (not text, mappings, sets or None), finite, and within float32's range. Checked before
    the cast, so numpy never warns about an overflow: a value past float32 is refused."""
    if isinstance(values, np.ndarray) and values.dtype == np.float32:
        wide: npt.NDArray[Any] = values  # the usual case, and already in range: no copy
    elif values is None or isinstance(values, str | bytes | bytearray | Mapping | Set):
        raise InvalidInputError(f"{what} must be {accepted}; got {type(values).__name__}.")
    else:
        try:
            wide = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInputError(
                f"{what} must be {accepted}; got {type(values).__name__} that is not one ({exc})."
            ) from None
    if wide.ndim == 0:
        raise InvalidInputError(
            f"{what} must be {accepted}; got {type(values).__name__} (a single number)."
        )
    if not np.all(np.isfinite(wide)):
        raise InvalidInputError(f"{what} contain NaN or infinite values; pass finite numbers.")
    if wide.dtype != np.float32 and wide.size and float(np.max(np.abs(wide))) > _FLOAT32_MAX:
        raise InvalidInputError(
            f"{what} hold values beyond the float32 range (magnitude up to {_FLOAT32_MAX:.3g}),"
            " which is how vectors are stored; pass embeddings (unit-length vectors)."
        )
    return wide.astype(np.float32, copy=False)


def check_vectors(vectors: npt.ArrayLike, dim: int, what: str = "vectors") -> Vectors:
    """A (n, dim) contiguous float32 array, or a clear error about the shape or values."""
    array = as_vectors(vectors, what)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        got = array.shape[-1] if array.ndim >= 1 else 0
        raise InvalidInputError(
            f"{what} have dimension {got}, but this store holds {dim}-dimensional vectors. "
            "Embed with the store's embedder (see `memory-agent memory stats`), or use a new "
            "store for a different model."
        )
    return np.ascontiguousarray(array)


def search_faiss(
    index: Any,
    queries: Vectors,
    dim: int,
    k: int,
    allowed: Ids | None,
    filtered: Callable[[Any], Any],
) -> tuple[Scores, Ids]:
    """Top-k of a FAISS index with the checks every index kind needs: valid queries, no
    search of an empty index or an empty filter, k no larger than the index. With `allowed`
    the search keeps to those ids, through the search parameters `filtered(selector)`."""
    import faiss

    queries = check_vectors(queries, dim, "query vectors")
    n = len(queries)
    size = int(index.ntotal)
    if k <= 0 or size == 0 or (allowed is not None and len(allowed) == 0):
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    k = min(k, size)
    with one_thread_for(n):
        if allowed is None:
            scores, ids = index.search(queries, k)
        else:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            scores, ids = index.search(queries, k, params=filtered(selector))
    return np.asarray(scores, np.float32), np.asarray(ids, np.int64)


# Below this many queries FAISS's OpenMP threads cost more than they save.
_THREADED_FROM = 16


@contextmanager
def one_thread_for(queries: int) -> Iterator[None]:
    """Search a few queries on the calling thread alone. FAISS splits even one query over
    OpenMP threads; waking them costs milliseconds, and on a busy machine tens of them (a
    10k-case search took 40 ms instead of 1 ms on the shared 2-core box): the ~8 ms of
    `search()` that the query's embedding and the index did not explain. The thread count is
    a per-thread OpenMP setting, so other threads (a codebook training) keep theirs."""
    if queries >= _THREADED_FROM:
        yield
        return
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def remove_faiss(index: Any, ids: Ids) -> None:
    """Remove `ids` from a FAISS index (nothing to do, and no FAISS call, for no ids)."""
    if len(ids) == 0:
        return
    import faiss

    index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))


class ExactIndex:
    """Exact inner-product search (FAISS flat index with an id map)."""

    kind = "flat"

    def __init__(self, dim: int) -> None:
        import faiss

        self.dim = dim
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def add(self, ids: Ids, vectors: Vectors) -> None:
        if len(ids) == 0:
            return
        vectors = check_vectors(vectors, self.dim)
        self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: Ids) -> None:
        remove_faiss(self._index, ids)

    def search(self, queries: Vectors, k: int, allowed: Ids | None = None) -> tuple[Scores, Ids]:
        return search_faiss(self._index, queries, self.dim, k, allowed, self._filtered)

    @staticmethod
    def _filtered(selector: Any) -> Any:
        import faiss

        return faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def nbytes(self) -> int:
        # float32 vectors plus the int64 id map.
        return len(self) * (self.dim * 4 + 8)


def make_index(kind: str, dim: int) -> VectorIndex:
    """The exact index; `auto` stores serve from it until their first codebook is trained."""
    if kind in ("flat", "auto"):
        return ExactIndex(dim)
    raise InvalidInputError(f"Unknown index kind {kind!r}; choose one of: auto, flat.")
