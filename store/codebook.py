"""Codebooks: the quantiser that turns a case embedding into a few bytes of code.

A codebook is an OPQ rotation, a coarse (IVF) quantiser and a product quantiser, trained
together by FAISS. A case's code is FAISS's standalone code for it: the coarse list number
followed by one byte per PQ sub-quantiser. Codes are the stored vectors; an index is rebuilt
from them without the original embeddings, and a code decodes to an approximate vector.

Upkeep follows MBC: each PQ codeword's usage is tracked as an EMA over the codes written;
codewords whose usage falls below a threshold are dead and are re-seeded from recent
embeddings. Any change to the codewords makes a new codebook version, because every code
means something only under the version that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from memory_agent.errors import InvalidInputError
from memory_agent.store.embedder import Vectors
from memory_agent.store.index import Ids, Scores, check_vectors, remove_faiss, search_faiss

Codes = npt.NDArray[np.uint8]
KSUB = 256  # 8-bit PQ: 256 codewords per sub-quantiser
MIN_TRAIN = 1000  # below this FAISS's OPQ/PQ training can abort the process


def nlist_for(cases: int, train_points: int | None = None) -> int:
    """Coarse lists for a store of `cases`: the power of two nearest sqrt(n).

    Capped at 1024 so the coarse centroids cost at most 1.5 MB (384-d) in every process,
    and halved until FAISS has at least 39 training points per list. (Rounding sqrt(n) down
    instead gave 512 lists at 1M cases: twice the codes scanned per probe, p50 1.1 ms.)
    """
    points = cases if train_points is None else train_points
    target = max(1.0, float(np.sqrt(max(cases, 1))))
    power = min(1 << max(0, round(float(np.log2(target)))), 1024)
    while power > 1 and points < 39 * power:
        power //= 2
    return int(power)


def training_sample(vectors: Vectors, limit: int) -> Vectors:
    """At most `limit` of these vectors, drawn without replacement (seeded by the count, so
    the same store trains on the same sample), in their stored order."""
    if len(vectors) <= limit:
        return vectors
    rng = np.random.default_rng(len(vectors))
    return vectors[np.sort(rng.choice(len(vectors), size=limit, replace=False))]


@dataclass
class Codebook:
    """One trained, versioned quantiser (an empty trained FAISS index) and its usage EMA."""

    version: int
    index: Any  # faiss.IndexPreTransform(OPQ, IndexIVFPQ), trained, holding no vectors
    usage: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    distortion: float = 0.0  # mean squared error on its training data
    trained_on: int = 0

    # ------------------------------------------------------------------ shape

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ivf(self) -> Any:
        import faiss

        return faiss.downcast_index(faiss.extract_index_ivf(self.index))

    @property
    def nlist(self) -> int:
        return int(self.ivf.nlist)

    @property
    def m(self) -> int:
        """PQ sub-quantisers (one byte each in the code)."""
        return int(self.ivf.pq.M)

    @property
    def pq_dim(self) -> int:
        """Dimensions the PQ encodes: the OPQ rotation's output (may be fewer than `dim`)."""
        return int(self.ivf.d)

    @property
    def code_size(self) -> int:
        return int(self.index.sa_code_size())

    @property
    def coarse_size(self) -> int:
        return self.code_size - self.m

    def nbytes(self) -> int:
        """Bytes this codebook holds: rotation, coarse centroids and PQ codewords."""
        rotation = self.dim * self.pq_dim * 4 if self.index.chain.size() else 0
        return rotation + self.nlist * self.pq_dim * 4 + self.m * KSUB * (self.pq_dim // self.m) * 4

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        vectors: Vectors,
        *,
        version: int,
        m: int,
        opq: bool = True,
        cases: int | None = None,
        reduce_to: int | None = None,
    ) -> Codebook:
        """Train a codebook on unit vectors (at least 1000), sized for a store of `cases`.

        With `reduce_to` (and `opq`) the OPQ rotation also projects to that many dimensions,
        so each PQ byte encodes fewer of them: at 1M cases, 20 bytes over 120 learned
        dimensions find 0.96 of the exact top-10 in the top 50 where 16 bytes over all 384
        find 0.88 (BENCHMARKS.md).
        """
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        if n < MIN_TRAIN:
            raise InvalidInputError(
                f"A codebook needs at least {MIN_TRAIN} vectors to train; got {n}. Add more cases "
                "first (MEMORY_AGENT_CODEBOOK_MIN_CASES sets when the switch happens)."
            )
        out = min(reduce_to, dim) if (opq and reduce_to) else dim
        if out % m:
            raise InvalidInputError(
                f"MEMORY_AGENT_CODE_BYTES={m} must divide the {out} dimensions the codebook "
                f"encodes; pick a divisor of {out}, or set MEMORY_AGENT_CODEBOOK_DIM to a "
                f"multiple of {m} (at most {dim})."
            )
        nlist = nlist_for(cases or n, n)
        rotation = f"OPQ{m}_{out}," if out < dim else f"OPQ{m},"
        spec = f"{rotation if opq else ''}IVF{nlist},PQ{m}"
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        if not isinstance(index, faiss.IndexPreTransform):
            # Keep one shape (a pre-transform around the IVF) whether or not OPQ is used.
            index = faiss.IndexPreTransform(index)
        opq_matrix: Any = None
        if opq:
            # FAISS's default of 50 OPQ rounds takes minutes on a shared 2-core machine;
            # 20 bounds the pause of the automatic switch (the bench reports the recall).
            opq_matrix = faiss.downcast_VectorTransform(index.chain.at(0))  # type: ignore[attr-defined]
            opq_matrix.niter = 20
        ivf: Any = cast(Any, faiss.downcast_index(faiss.extract_index_ivf(index)))
        # Polysemous training (Hamming-ordered codewords) costs ~20 s and we never search
        # by Hamming distance.
        ivf.do_polysemous_training = False
        # k-means with fewer than 39 points per centroid is fine here (the first codebook
        # trains on a few thousand cases), but FAISS prints a warning per sub-quantiser and
        # OPQ round: hundreds of lines on the user's terminal at the automatic switch.
        ivf.cp.min_points_per_centroid = 1
        ivf.pq.cp.min_points_per_centroid = 1
        opq_pq = None
        if opq_matrix is not None:
            opq_pq = faiss.ProductQuantizer(out, m, 8)
            opq_pq.cp.min_points_per_centroid = 1
            opq_matrix.pq = opq_pq  # OPQ trains this one instead of a default it builds
        index.train(vectors)
        if opq_matrix is not None:
            opq_matrix.pq = None  # only borrowed for training; do not keep a Python object
        book = cls(version=version, index=index, usage=np.full((m, KSUB), 1.0 / KSUB))
        # The store size it was shaped for (coarse lists), not the sample it saw.
        book.trained_on = cases or n
        book.distortion = book.measure_distortion(vectors)
        book.usage = book.codeword_frequencies(book.encode(vectors))
        return book

    # ------------------------------------------------------------------ coding

    def encode(self, vectors: Vectors) -> Codes:
        vectors = check_vectors(vectors, self.dim)
        if len(vectors) == 0:
            return np.zeros((0, self.code_size), np.uint8)
        return np.asarray(self.index.sa_encode(vectors), dtype=np.uint8)

    def decode(self, codes: Codes) -> Vectors:
        codes = self.check_codes(codes)
        if len(codes) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.asarray(self.index.sa_decode(codes), dtype=np.float32)

    def check_codes(self, codes: npt.ArrayLike) -> Codes:
        array = np.ascontiguousarray(codes, dtype=np.uint8)
        if array.ndim != 2 or array.shape[1] != self.code_size:
            raise InvalidInputError(
                f"codes must be (n, {self.code_size}) bytes for codebook v{self.version}; "
                f"got shape {array.shape}. Run `memory-agent memory reindex`."
            )
        if self.coarse_size and len(array):
            lists = self.coarse_lists(array)
            if int(lists.max()) >= self.nlist:
                raise InvalidInputError(
                    f"codes name coarse lists beyond {self.nlist - 1}; they were not made by "
                    f"codebook v{self.version}. Run `memory-agent memory reindex`."
                )
        return array

    def coarse_lists(self, codes: Codes) -> npt.NDArray[np.int64]:
        # FAISS writes the list number little-endian in the first coarse_size bytes.
        lists = np.zeros(len(codes), np.int64)
        for byte in range(self.coarse_size):
            lists |= codes[:, byte].astype(np.int64) << (8 * byte)
        return lists

    def pq_part(self, codes: Codes) -> Codes:
        return codes[:, self.coarse_size :]

    def measure_distortion(self, vectors: Vectors) -> float:
        """Mean squared reconstruction error of these vectors under this codebook."""
        if len(vectors) == 0:
            return 0.0
        error = vectors - self.decode(self.encode(vectors))
        return float(np.mean(np.sum(error * error, axis=1)))

    # ------------------------------------------------------------------ usage (MBC)

    def codeword_frequencies(self, codes: Codes) -> npt.NDArray[np.float64]:
        """Per sub-quantiser, the fraction of these codes that use each codeword."""
        pq = self.pq_part(codes)
        freq = np.zeros((self.m, KSUB), np.float64)
        if len(pq) == 0:
            return freq
        for j in range(self.m):
            freq[j] = np.bincount(pq[:, j], minlength=KSUB) / len(pq)
        return freq

    def observe(self, codes: Codes, decay: float) -> None:
        """Fold a batch of freshly written codes into the usage EMA.

        The decay applies per code, so a batch of b codes moves the EMA as b single writes
        would: usage <- decay^b * usage + (1 - decay^b) * batch frequencies.
        """
        if len(codes) == 0:
            return
        weight = float(decay) ** len(codes)
        self.usage = weight * self.usage + (1.0 - weight) * self.codeword_frequencies(codes)

    def dead_mask(self, threshold: float) -> npt.NDArray[np.bool_]:
        """Codewords whose usage EMA is below `threshold` times uniform usage (1/256)."""
        return np.asarray(self.usage < threshold / KSUB)

    def dead_codewords(self, threshold: float) -> int:
        return int(self.dead_mask(threshold).sum())

    def with_dead_codes_reset(
        self, recent: Vectors, threshold: float, *, version: int, seed: int = 0, refine: int = 8
    ) -> Codebook:
        """A new version whose dead codewords are re-seeded from recent embeddings (MBC).

        Each dead codeword of a sub-quantiser becomes the residual sub-vector of a randomly
        drawn recent embedding, then `refine` k-means rounds on the recent data move the
        codewords it uses to the mean of what they encode. Codewords the recent data does not
        use keep their values, so codes of regions the stream left stay as good as before.
        """
        import faiss

        dead = self.dead_mask(threshold)
        clone = faiss.clone_index(self.index)
        ivf: Any = cast(Any, faiss.downcast_index(faiss.extract_index_ivf(clone)))
        pq = ivf.pq
        dsub = self.pq_dim // self.m
        centroids = faiss.vector_to_array(pq.centroids).reshape(self.m, KSUB, dsub).copy()
        recent = check_vectors(recent, self.dim)
        if len(recent) and dead.any():
            residuals = self._residuals(recent)
            rng = np.random.default_rng(seed)
            for j in range(self.m):
                slots = np.flatnonzero(dead[j])
                if len(slots) == 0:
                    continue
                picks = rng.choice(
                    len(residuals), size=len(slots), replace=len(slots) > len(residuals)
                )
                centroids[j, slots] = residuals[picks, j * dsub : (j + 1) * dsub]
            for j in range(self.m):
                _refine(centroids[j], residuals[:, j * dsub : (j + 1) * dsub], rounds=refine)
            faiss.copy_array_to_vector(centroids.ravel(), pq.centroids)
            if pq.sdc_table.size():
                pq.compute_sdc_table()
            if ivf.use_precomputed_table:
                ivf.precompute_table()
        book = Codebook(version=version, index=clone, usage=self.usage.copy())
        book.usage[dead] = 1.0 / KSUB  # a re-seeded codeword gets a fresh chance
        book.trained_on = self.trained_on
        book.distortion = book.measure_distortion(recent) if len(recent) else self.distortion
        return book

    def _residuals(self, vectors: Vectors) -> Vectors:
        """Rotated vectors minus their coarse centroid: what the PQ actually encodes."""
        import faiss

        rotated = np.ascontiguousarray(vectors, dtype=np.float32)
        for i in range(self.index.chain.size()):
            transform: Any = faiss.downcast_VectorTransform(self.index.chain.at(i))
            rotated = np.asarray(transform.apply(rotated), dtype=np.float32)
        ivf = self.ivf
        _, lists = ivf.quantizer.search(rotated, 1)
        centroids = np.asarray(ivf.quantizer.reconstruct_batch(lists[:, 0]), dtype=np.float32)
        return np.ascontiguousarray(rotated - centroids)

    # ------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        import faiss

        return bytes(faiss.serialize_index(self.index).tobytes())

    @classmethod
    def from_bytes(
        cls,
        blob: bytes,
        *,
        version: int,
        usage: bytes | None,
        distortion: float,
        trained_on: int,
    ) -> Codebook:
        import faiss

        index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
        book = cls(version=version, index=index, distortion=distortion, trained_on=trained_on)
        if usage:
            book.usage = np.frombuffer(usage, dtype=np.float64).reshape(book.m, KSUB).copy()
        else:
            book.usage = np.full((book.m, KSUB), 1.0 / KSUB)
        return book

    def usage_bytes(self) -> bytes:
        return np.ascontiguousarray(self.usage, dtype=np.float64).tobytes()


def _refine(codewords: Vectors, points: Vectors, *, rounds: int) -> None:
    """Lloyd rounds in place; a codeword no point is assigned to keeps its value."""
    for _ in range(rounds):
        distances = (
            np.sum(points * points, axis=1)[:, None]
            - 2.0 * points @ codewords.T
            + np.sum(codewords * codewords, axis=1)[None, :]
        )
        nearest = np.argmin(distances, axis=1)
        counts = np.bincount(nearest, minlength=len(codewords))
        sums = np.zeros_like(codewords)
        np.add.at(sums, nearest, points)
        used = counts > 0
        codewords[used] = sums[used] / counts[used, None]


class CodeIndex:
    """Search over one namespace's codes, all from one codebook version (never mixed)."""

    def __init__(self, codebook: Codebook, nprobe: int) -> None:
        import faiss

        self.codebook = codebook
        self.kind = "ivfpq"
        self.dim = codebook.dim
        self.nprobe = min(nprobe, codebook.nlist)
        self._index: Any = faiss.clone_index(codebook.index)
        self._ivf: Any = cast(Any, faiss.downcast_index(faiss.extract_index_ivf(self._index)))
        self._ivf.nprobe = self.nprobe

    @property
    def version(self) -> int:
        return self.codebook.version

    def add(self, ids: Ids, vectors: Vectors) -> None:
        self.add_codes(ids, self.codebook.encode(vectors))

    def add_codes(self, ids: Ids, codes: Codes) -> None:
        if len(ids) == 0:
            return
        codes = self.codebook.check_codes(codes)
        self._ivf.add_sa_codes(codes, np.ascontiguousarray(ids, dtype=np.int64))
        # Codes go straight into the IVF; the OPQ wrapper only learns the count from us.
        self._index.ntotal = self._ivf.ntotal

    def remove(self, ids: Ids) -> None:
        # Without a direct map FAISS scans every list; removals are rare (deletes, merges,
        # evictions) and a map would cost more bytes per case than the code itself.
        remove_faiss(self._ivf, ids)
        self._index.ntotal = self._ivf.ntotal

    def search(self, queries: Vectors, k: int, allowed: Ids | None = None) -> tuple[Scores, Ids]:
        return search_faiss(self._index, queries, self.dim, k, allowed, self._filtered)

    def _filtered(self, selector: Any) -> Any:
        import faiss

        # A filter may leave few cases in the probed lists: probe them all.
        inner = faiss.SearchParametersIVF(sel=selector, nprobe=self.codebook.nlist)  # type: ignore[call-arg]
        return faiss.SearchParametersPreTransform(index_params=inner)  # type: ignore[call-arg]

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def nbytes(self) -> int:
        # Per case: the PQ code and the int64 id FAISS keeps in the inverted list; the
        # codebook is shared by every namespace and counted once, apart.
        return len(self) * (self.codebook.m + 8)
