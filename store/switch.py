"""The switch from exact float32 vectors to codes: the first codebook is trained on the stored
raw vectors and replaces them, in one transaction (store/upkeep.py decides when)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select

from memory_agent.store.code_storage import CodebookMoved, check_in_force, storing, write_codes
from memory_agent.store.codebook import Codebook, training_sample
from memory_agent.store.embedder import Vectors
from memory_agent.store.models import CaseRow
from memory_agent.store.rerank import copies_fit, mark_dropped

if TYPE_CHECKING:
    from memory_agent.store.compression import Compression


def store_first_codebook(
    keeper: Compression, vectors: Vectors, ids: list[int]
) -> tuple[Codebook, bool]:
    """Train the first codebook on `vectors` (every stored case's, in `ids` order) and store
    it with every case's code in place of its raw vector. Returns the codebook and whether
    the store keeps no float16 re-rank copies from now on.

    One transaction: either every case has a code and no raw vector, or nothing changed
    (`CodebookMoved`: another process switched first, or wrote a raw vector meanwhile).
    """
    store = keeper.settings.store
    book = Codebook.train(
        training_sample(vectors, store.codebook_train_sample),
        version=keeper.next_version,
        m=store.code_bytes,
        opq=True,
        cases=len(vectors),
        reduce_to=store.codebook_dim,
    )
    codes = book.encode(vectors)
    # Every stored case gets a copy at the switch, so a store already past the copies' disk
    # budget starts without them (and says so, in the same transaction).
    keep = keeper.reranks and copies_fit(keeper.settings, len(vectors), book.dim)
    dropped = keeper.copies_dropped or (store.rerank and not keep)
    with storing(keeper.sessions, book, "active", "first") as session:
        rerank = vectors if keep else None
        write_codes(session, ids, codes, book.version, column="code", rerank=rerank)
        if dropped and not keeper.copies_dropped:
            mark_dropped(session, len(vectors), book.dim, store.rerank_disk_budget_mb)
        check_in_force(session, (book.version, None, dropped))
        # A raw vector another process committed after `vectors` were read would outlive
        # the switch: then switch again later, from all of them.
        raw_left = session.scalar(
            select(func.count()).select_from(CaseRow).where(CaseRow.embedding.is_not(None))
        )
        if raw_left:
            raise CodebookMoved(f"{raw_left} raw vector(s) arrived during the switch")
    return book, dropped
