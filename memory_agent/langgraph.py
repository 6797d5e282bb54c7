"""`CaseStore`: a LangGraph `BaseStore` kept in the case memory.

A LangGraph app compiled with `store=CaseStore(...)` keeps its long-term memory in the same
database as the agent's cases, searchable through the same compressed vector index::

    store = CaseStore(CaseMemory(settings))
    graph = builder.compile(store=store)

How items map to cases: every item is one case in a single memory namespace (default
`langgraph`; one per store, so two stores with different namespaces never see each other).
The item's tuple namespace, key and value live in the case's `meta`; its `task` is the text
the item is searched by (the item's `fields`, `$` meaning the whole value as JSON), which the
memory embeds and indexes like any task. Each prefix of the tuple namespace is also kept as
its own meta field, so a search under a namespace prefix is an exact-match filter the store
applies inside its vector search.

Semantics follow `BaseStore`: a put replaces the value (created_at kept), a put of None or
`delete` removes the item (a tombstone, as every delete in the memory), `index=False` keeps
the item out of vector search (it is still found by get, by filters and by listing), the
reads of a batch see the store as it was before the batch's writes, and filters take plain
values or the operators $eq, $ne, $gt, $gte, $lt, $lte. One vector per item: the texts of
several fields are joined, not embedded one by one. No TTL support (`supports_ttl` False).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    get_text_at_path,
    validate_op_namespace,
)

from memory_agent.errors import InvalidInputError

if TYPE_CHECKING:
    from memory_agent.settings import Settings
    from memory_agent.store import Case, CaseMemory

SOURCE = "langgraph"
NS, KEY, VALUE, INDEXED, DEPTH = "lg_ns", "lg_key", "lg_value", "lg_indexed", "lg_depth"
SEP = "."  # LangGraph forbids periods in labels, so joining on one is reversible


def _prefix_field(depth: int) -> str:
    return f"lg_p{depth}"


def _ns_text(namespace: Sequence[str]) -> str:
    return SEP.join(namespace)


def _compare(actual: Any, wanted: Any) -> bool:
    """A filter value against an item's value: nested dicts field by field, lists element by
    element, `{"$op": x}` as a comparison, anything else by equality."""
    if isinstance(wanted, Mapping):
        if wanted and all(str(k).startswith("$") for k in wanted):
            return all(_operator(actual, op, x) for op, x in wanted.items())
        return isinstance(actual, Mapping) and all(
            _compare(actual.get(k), v) for k, v in wanted.items()
        )
    if isinstance(wanted, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(wanted)
            and all(_compare(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)


def _operator(actual: Any, op: str, wanted: Any) -> bool:
    if op == "$eq":
        return bool(actual == wanted)
    if op == "$ne":
        return bool(actual != wanted)
    if op not in ("$gt", "$gte", "$lt", "$lte"):
        raise InvalidInputError(
            f"Unknown filter operator {op!r}; use $eq, $ne, $gt, $gte, $lt or $lte."
        )
    if isinstance(actual, bool) or not isinstance(actual, int | float | str):
        return False
    if isinstance(actual, str) != isinstance(wanted, str):
        return False  # numbers compare with numbers, strings with strings
    if op == "$gt":
        return bool(actual > wanted)
    if op == "$gte":
        return bool(actual >= wanted)
    if op == "$lt":
        return bool(actual < wanted)
    return bool(actual <= wanted)


def _matches(namespace: tuple[str, ...], condition: MatchCondition) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
    if not path:
        return True
    return all(p == "*" or p == n for p, n in zip(path, part, strict=True))


@dataclass(frozen=True)
class _Stored:
    """An item as the memory holds it."""

    case_id: int
    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def item(self) -> Item:
        return Item(value=self.value, key=self.key, namespace=self.namespace,
                    created_at=self.created_at, updated_at=self.updated_at)  # fmt: skip

    def search_item(self, score: float | None) -> SearchItem:
        return SearchItem(self.namespace, self.key, self.value, self.created_at,
                          self.updated_at, score)  # fmt: skip


def _stored(case: Case) -> _Stored:
    meta = case.meta
    return _Stored(case.id, tuple(str(meta[NS]).split(SEP)), str(meta[KEY]), dict(meta[VALUE]),
                   case.created_at, case.updated_at)  # fmt: skip


class CaseStore(BaseStore):
    """A LangGraph store whose items are cases of a `CaseMemory` (see the module docstring).

    `memory`: the case memory (opened from `settings` when not given, and then closed with
    the store). `namespace`: the memory namespace the items live in. `fields`: the default
    paths of an item's value that are embedded for search (`["$"]`: the whole value).
    """

    supports_ttl = False

    def __init__(
        self,
        memory: CaseMemory | None = None,
        *,
        settings: Settings | None = None,
        namespace: str = "langgraph",
        fields: Sequence[str] = ("$",),
    ) -> None:
        from memory_agent.store import CaseMemory
        from memory_agent.store.validation import check_namespace

        self._owns_memory = memory is None
        self.memory = memory if memory is not None else CaseMemory(settings)
        self.space = check_namespace(namespace)
        self.fields = list(fields)
        self._lock = threading.RLock()

    def close(self) -> None:
        if self._owns_memory:
            self.memory.close()

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ batch

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        for op in ops:
            validate_op_namespace(op)
        results: list[Result] = [None] * len(ops)
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        with self._lock:
            for i, op in enumerate(ops):  # reads see the store as it was before the batch
                if isinstance(op, GetOp):
                    found = self._find(op.namespace, op.key)
                    results[i] = None if found is None else found.item()
                elif isinstance(op, SearchOp):
                    results[i] = self._search(op)
                elif isinstance(op, ListNamespacesOp):
                    results[i] = self._list_namespaces(op)
                elif isinstance(op, PutOp):
                    puts.pop((op.namespace, op.key), None)  # the last put of a key wins
                    puts[(op.namespace, op.key)] = op
                else:
                    raise InvalidInputError(f"Unknown store operation {type(op).__name__}.")
            if puts:
                self._apply(list(puts.values()))
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        # The memory is synchronous (SQL and FAISS): run the batch off the event loop.
        return await asyncio.to_thread(self.batch, list(ops))

    # ------------------------------------------------------------------ reading

    def _live(self) -> Any:
        from sqlalchemy import select

        from memory_agent.store.models import CaseRow

        # Cases of the namespace not written by a CaseStore (no item address) are not items.
        return select(CaseRow).where(
            CaseRow.namespace == self.space,
            CaseRow.deleted_at.is_(None),
            CaseRow.meta[NS].as_string().is_not(None),
        )

    def _rows(self, query: Any) -> list[_Stored]:
        from sqlalchemy.orm import Session

        with Session(self.memory.engine) as session:
            ids = [row.id for row in session.scalars(query)]
        return [_stored(c) for c in self.memory.get_many(ids, namespace=self.space)]

    def _find(self, namespace: tuple[str, ...], key: str) -> _Stored | None:
        from memory_agent.store.models import CaseRow

        query = (
            self._live()
            .where(CaseRow.meta[NS].as_string() == _ns_text(namespace),
                   CaseRow.meta[KEY].as_string() == key)
            .order_by(CaseRow.id.desc())
            .limit(1)
        )  # fmt: skip
        found = self._rows(query)
        return found[0] if found else None

    def _prefix_filter(self, prefix: tuple[str, ...]) -> dict[str, Any]:
        return {_prefix_field(len(prefix)): _ns_text(prefix)} if prefix else {}

    def _search(self, op: SearchOp) -> list[SearchItem]:
        if op.limit < 1 or op.offset < 0:
            return []
        wanted = op.offset + op.limit
        if op.query:
            return self._vector_search(op, wanted)[op.offset : wanted]
        from memory_agent.store.models import CaseRow

        query = self._live().order_by(CaseRow.updated_at.desc(), CaseRow.id.desc())
        for field, value in self._prefix_filter(op.namespace_prefix).items():
            query = query.where(CaseRow.meta[field].as_string() == value)
        if not op.filter:
            query = query.offset(op.offset).limit(op.limit)
            return [s.search_item(None) for s in self._rows(query)]
        matched = [s for s in self._rows(query) if self._passes(s, op.filter)]
        return [s.search_item(None) for s in matched[op.offset : wanted]]

    @staticmethod
    def _passes(stored: _Stored, condition: Mapping[str, Any] | None) -> bool:
        return not condition or all(_compare(stored.value.get(k), v) for k, v in condition.items())

    def _vector_search(self, op: SearchOp, wanted: int) -> list[SearchItem]:
        """Nearest indexed items to the query under the prefix, through the memory's
        (compressed) index; with a value filter, asks for more until enough pass it."""
        assert op.query is not None
        if self.space not in self.memory.namespaces():
            return []
        vector = self.memory.embedder.embed([op.query])[0]
        filters: dict[str, Any] = {INDEXED: True, **self._prefix_filter(op.namespace_prefix)}
        total = self.memory.count(self.space)
        k = min(max(wanted * (4 if op.filter else 1), 10), max(total, 1))
        while True:
            scores, ids = self.memory.nearest(vector, k, namespace=self.space, filters=filters)
            hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            stored = {s.case_id: s for s in
                      (_stored(c) for c in self.memory.get_many([i for i, _ in hits],
                                                                namespace=self.space))}  # fmt: skip
            found = [
                stored[i].search_item(score)
                for i, score in hits
                if i in stored and self._passes(stored[i], op.filter)
            ]
            if len(found) >= wanted or len(hits) < k or k >= total:
                return found
            k = min(k * 4, total)

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from memory_agent.store.models import CaseRow

        query = (
            select(CaseRow.meta[NS].as_string())
            .where(CaseRow.namespace == self.space, CaseRow.deleted_at.is_(None))
            .distinct()
        )
        with Session(self.memory.engine) as session:
            names = {tuple(str(text).split(SEP)) for text in session.scalars(query) if text}
        conditions = op.match_conditions or ()
        kept = {n for n in names if all(_matches(n, c) for c in conditions)}
        if op.max_depth is not None:
            kept = {n[: op.max_depth] for n in kept}
        return sorted(kept)[op.offset : op.offset + op.limit]

    # ------------------------------------------------------------------ writing

    def _text(self, value: Mapping[str, Any], index: Literal[False] | list[str] | None) -> str:
        """The text an item is searched by: its index fields' text, joined."""
        if index is False:
            return ""
        parts: list[str] = []
        for path in index or self.fields:
            if path == "$":
                parts.append(json.dumps(value, ensure_ascii=False, default=str))
            else:
                parts.extend(t for t in get_text_at_path(dict(value), path) if t)
        # The embedder reads only the first few hundred tokens; the rest need not be stored.
        return "\n".join(parts)[: self.memory.settings.store.max_task_chars].strip()

    def _meta(self, op: PutOp, indexed: bool) -> dict[str, Any]:
        assert op.value is not None
        meta: dict[str, Any] = {NS: _ns_text(op.namespace), KEY: op.key,
                                VALUE: dict(op.value), INDEXED: indexed,
                                DEPTH: len(op.namespace)}  # fmt: skip
        for depth in range(1, len(op.namespace) + 1):
            meta[_prefix_field(depth)] = _ns_text(op.namespace[:depth])
        return meta

    def _apply(self, puts: list[PutOp]) -> None:
        from memory_agent.store import NewCase

        new: list[NewCase] = []
        for op in puts:
            if op.value is not None:
                if not isinstance(op.value, Mapping):
                    raise InvalidInputError(
                        f"A store value must be a dict; got {type(op.value).__name__}."
                    )
                if not op.namespace:
                    raise InvalidNamespaceError("Namespace cannot be empty.")
                if op.namespace[0] == "langgraph":
                    raise InvalidNamespaceError(
                        f'Root label for namespace cannot be "langgraph". Got: {op.namespace}'
                    )
            existing = self._find(op.namespace, op.key)
            if op.value is None:
                if existing is not None:
                    self.memory.delete(existing.case_id, namespace=self.space,
                                       reason="deleted")  # fmt: skip
                continue
            text = self._text(op.value, op.index)
            # An item kept out of search still needs a task: its address, never matched
            # (vector search asks for indexed items only).
            task = text or f"{_ns_text(op.namespace)}/{op.key}"
            meta = self._meta(op, indexed=bool(text))
            if existing is not None:
                self.memory.update(existing.case_id, namespace=self.space, task=task, meta=meta)
            else:
                new.append(NewCase(task=task, source=SOURCE, meta=meta))
        if new:
            self.memory.add_many(new, namespace=self.space)
