"""Seeded, clustered synthetic embeddings with exact ground truth (for store benchmarks/tests).

Text embeddings are unit vectors whose variance sits in a few dozen directions and which
form topical clusters. The generator mimics that: cluster centres in a `latent`-dim space
with a decaying spectrum (scale of direction i ~ 1/sqrt(i)), points scattered around their
centre, lifted into `dim` dimensions by a random orthonormal map, a little isotropic noise
added, and normalised. The same seed always gives the same vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SyntheticSpace:
    """A fixed clustered distribution; `sample` draws from it (optionally a shifted part)."""

    dim: int = 384
    latent: int = 64
    clusters: int = 2000
    spread: float = 0.6
    noise: float = 0.02
    seed: int = 0

    def _basis(self) -> tuple[Vectors, Vectors, Vectors]:
        rng = np.random.default_rng(self.seed)
        scales = (np.arange(1, self.latent + 1, dtype=np.float32) ** -0.5).astype(np.float32)
        lift = np.linalg.qr(rng.standard_normal((self.dim, self.latent)))[0].astype(np.float32)
        centres = rng.standard_normal((self.clusters, self.latent)).astype(np.float32)
        return scales, lift, centres

    def sample(
        self, n: int, *, seed: int, clusters: slice | None = None, chunk: int = 100_000
    ) -> Vectors:
        """`n` unit vectors; `clusters` restricts them to a range of the clusters (a shift)."""
        scales, lift, centres = self._basis()
        if clusters is not None:
            centres = centres[clusters]
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), np.float32)
        for start in range(0, n, chunk):
            end = min(n, start + chunk)
            labels = rng.integers(0, len(centres), end - start)
            z = centres[labels] + self.spread * rng.standard_normal(
                (end - start, self.latent)
            ).astype(np.float32)
            x = (z * scales) @ lift.T
            x += self.noise * rng.standard_normal((end - start, self.dim)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[start:end] = x
        return out


def exact_top_k(queries: Vectors, base: Vectors, k: int) -> npt.NDArray[np.int64]:
    """Positions in `base` of each query's exact top-k by inner product (FAISS brute force)."""
    import faiss

    _, found = faiss.knn(
        np.ascontiguousarray(queries), np.ascontiguousarray(base), k,
        metric=faiss.METRIC_INNER_PRODUCT,
    )  # fmt: skip
    return np.asarray(found, np.int64)


def recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    """Mean fraction of each row of `truth` that appears in the same row of `found`."""
    hits = [
        len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits)) if hits else 0.0
