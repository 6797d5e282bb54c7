"""`neural`: a small torch Q(state, case) over frozen embeddings, learned online.

Episodes are one decision long (show cases, get the episode's reward), so the Bellman target
of a shown case is its credited reward and the objective is pointwise regression (MSE) of
Q(state, case) onto it: the soft-Q target with a discount of zero. Pointwise targets keep Q
on the reward's scale, so scores are comparable across tasks and usable for eviction.

Inputs: the task embedding times the case embedding (which parts of meaning match), the case
embedding (what kind of case it is), and cheap scalars: similarity, the case's learned
value and visit count at the stage (conditioned on the task, policies/context.py), the
reward its own episode earned, and the `value` policy's score. A case below
`policy_min_similarity` with no outcome on tasks like this one ranks after all others
(MemRL's phase-A threshold), so case-level features cannot put an unrelated case first.
The network is a linear head over the scalars plus a one-hidden-layer MLP
over everything; the head starts as a positive mix of the tabular value and the `value`
score and the MLP's output layer starts at zero, so a new policy ranks like `value` on day
one (the warm start; a saved network is loaded instead when there is one) and the MLP
learns what the task changes and what generalises to cases never shown before (their
embeddings and rewards, not their visits).

Training is online: each feedback adds one example per credited case to a replay buffer and
takes one Adam step on a minibatch of the newest examples plus a random sample of older
ones. Weights, optimiser and buffer are saved to the store every `policy_save_every` updates
and on `save()`; the per-case values are written through on every update as in `value`.
torch is imported only when a NeuralPolicy is created.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from memory_agent.policies.base import (
    Candidate,
    Feedback,
    Stage,
    Vector,
)
from memory_agent.policies.context import TaskContext
from memory_agent.policies.exploration import demote, zscore
from memory_agent.policies.learned import LearnedPolicy, Values
from memory_agent.policies.scoring import (
    margin_rule_holds,
    task_values,
    unrelated,
    value_scores,
)
from memory_agent.store.policy_state import tenant_key

if TYPE_CHECKING:
    import torch

    from memory_agent.policies.credit import CreditMode
    from memory_agent.policies.exploration import Exploration
    from memory_agent.settings import Settings
    from memory_agent.store import CaseMemory

STATE_KEY = "neural"
STATE_FORMAT = 3  # 3: value features are task-conditioned (policies/context.py)
CONTEXT_KEY = "neural_context"
SCALARS = (
    "similarity", "z_similarity", "q", "z_q", "visited", "log_visits", "reward", "rated",
    "value_score",
)  # fmt: skip
_Q, _VALUE = SCALARS.index("q"), SCALARS.index("value_score")
_LOG_VISITS = SCALARS.index("log_visits")
_CACHE = 64
Array = npt.NDArray[np.float32]


def candidate_features(
    state: Vector,
    candidates: Sequence[Candidate],
    stage: Stage,
    settings: Settings,
    context: TaskContext | None = None,
    *,
    case_embedding: bool = True,
) -> tuple[Array, Array]:
    """(embedding part, scalar part) of the network input, one row per candidate.

    With a `context` the value and visit features are the case's values on tasks like this
    one (see policies/context.py), not its global ones, so a case that earned a high value
    on another family's tasks does not look valuable here. Without `case_embedding` the
    embedding part is only the task-case product (the ablation `bench policy` reports: the
    case embedding alone lets the network memorise cases).
    """
    s = np.asarray(state, dtype=np.float32)
    s = s / max(float(np.linalg.norm(s)), 1e-12)
    emb = np.stack([c.embedding for c in candidates]).astype(np.float32)
    sims = np.asarray([c.similarity for c in candidates], dtype=np.float64)
    q, visits = task_values(state, candidates, stage, settings, context)
    rewards = [c.reward for c in candidates]
    drift = margin_rule_holds(state, stage, settings, context)
    scalars = np.stack(
        [
            sims,
            zscore(sims),
            q,
            zscore(q),
            (visits > 0).astype(np.float64),
            np.log1p(visits) / 5.0,
            np.asarray([r if r is not None else 0.0 for r in rewards], dtype=np.float64),
            np.asarray([r is not None for r in rewards], dtype=np.float64),
            value_scores(candidates, stage, settings, (q, visits), drift_rules=drift),
        ],
        axis=1,
    ).astype(np.float32)
    product = emb * s[None, :]
    if not case_embedding:
        return product, scalars
    return np.concatenate([product, emb], axis=1), scalars


def _build_net(width: int, hidden: int) -> torch.nn.Module:
    import torch
    from torch import nn

    class QNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            n = len(SCALARS)
            self.head = nn.Linear(n, 1)
            self.body = nn.Sequential(nn.Linear(width + n, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            with torch.no_grad():
                self.head.weight.zero_()
                self.head.bias.zero_()
                self.head.weight[0, _Q] = 0.5
                self.head.weight[0, _VALUE] = 0.1
                last = self.body[2]
                assert isinstance(last, nn.Linear)
                last.weight.zero_()
                last.bias.zero_()

        def forward(self, emb: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
            both = torch.cat([emb, scalars], dim=1)
            out: torch.Tensor = (self.head(scalars) + self.body(both)).squeeze(1)
            return out

    return QNet()


def _pairwise_loss(q: torch.Tensor, y: torch.Tensor, episodes: torch.Tensor) -> torch.Tensor | None:
    """RankNet/BPR: for two cases shown in one feedback, the one with the higher target
    should score higher; -log sigmoid of the score difference, averaged over such pairs."""
    import torch

    same = episodes[:, None] == episodes[None, :]
    better = y[:, None] > y[None, :]
    pairs = same & better
    if not bool(pairs.any()):
        return None
    margin = q[:, None] - q[None, :]
    out: torch.Tensor = torch.nn.functional.softplus(-margin[pairs]).mean()
    return out


class NeuralPolicy(LearnedPolicy):
    """Q(state, case) by a small MLP trained online from a replay buffer."""

    name = "neural"
    context_key = CONTEXT_KEY
    scale_ucb = True
    # One network, optimiser and replay buffer per namespace: one tenant's feedback never
    # moves another's scores.
    tenant_fields = (
        "context", "_torch_gen", "_features", "updates", "version", "dim", "net", "optimizer",
        "_buf_emb", "_buf_sc", "_buf_y", "_buf_ep", "_filled", "_next",
    )  # fmt: skip

    def __init__(
        self,
        memory: CaseMemory,
        settings: Settings | None = None,
        *,
        credit: CreditMode | None = None,
        exploration: Exploration | None = None,
        seed: int | None = None,
        case_embedding: bool = True,
    ) -> None:
        self.case_embedding = case_embedding
        """Feed the case embedding to the network (False: the ablation without it)."""
        super().__init__(memory, settings, credit=credit, exploration=exploration, seed=seed)

    def start(self) -> None:
        """The network, optimiser and replay buffer of the namespace in force, loaded from the
        store if saved."""
        import torch

        self._torch_gen = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        self._features: OrderedDict[tuple[bytes, str], dict[int, tuple[Array, Array]]] = (
            OrderedDict()
        )
        self.updates = 0
        self.version = 0
        self.dim: int | None = None
        self.net: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._buf_emb: Array = np.zeros((0, 0), np.float32)
        self._buf_sc: Array = np.zeros((0, len(SCALARS)), np.float32)
        self._buf_y: Array = np.zeros(0, np.float32)
        # Which feedback each example came from: the pairwise loss compares cases shown together.
        self._buf_ep: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        self._filled = 0
        self._next = 0
        self._load()

    # ------------------------------------------------------------------ model and buffer

    def _init_model(self, dim: int) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.rng.integers(2**31)))
            self.net = _build_net(self._width(dim), self.settings.policy.hidden)
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=self.settings.policy.learning_rate
        )
        size = self.settings.policy.replay_size
        self.dim = dim
        self._buf_emb = np.zeros((size, self._width(dim)), np.float32)
        self._buf_sc = np.zeros((size, len(SCALARS)), np.float32)
        self._buf_y = np.zeros(size, np.float32)
        self._buf_ep = np.zeros(size, np.int64)
        self._filled = self._next = 0

    def _width(self, dim: int) -> int:
        return 2 * dim if self.case_embedding else dim

    def _ensure_model(self, dim: int) -> torch.nn.Module:
        if self.net is None or self.dim != dim:
            self._init_model(dim)
        assert self.net is not None
        return self.net

    def _load(self) -> None:
        import torch

        saved = self.memory.policy_states.load(tenant_key(STATE_KEY, self.namespace))
        if saved is None and self.namespace == "default":
            # Saved before networks were kept per namespace (one network for all): the
            # default namespace, where single-tenant stores keep their cases, carries it on.
            saved = self.memory.policy_states.load(STATE_KEY)
        if saved is None or saved.format != STATE_FORMAT:
            return
        meta = saved.meta
        if meta.get("case_embedding", True) != self.case_embedding:
            return  # the ablation's network and the full one have other inputs
        if meta.get("hidden") != self.settings.policy.hidden or (
            self.memory.dim is not None and meta.get("dim") != self.memory.dim
        ):
            return  # a different architecture or vector space: start afresh (values remain)
        blob = torch.load(io.BytesIO(saved.payload), weights_only=True)
        self._init_model(int(meta["dim"]))
        assert self.net is not None and self.optimizer is not None
        self.net.load_state_dict(blob["net"])
        self.optimizer.load_state_dict(blob["optimizer"])
        n = min(int(blob["emb"].shape[0]), self._buf_y.shape[0])
        self._buf_emb[:n] = blob["emb"][-n:].float().numpy()
        self._buf_sc[:n] = blob["scalars"][-n:].float().numpy()
        self._buf_y[:n] = blob["targets"][-n:].float().numpy()
        # Saved before episodes were kept: each example its own episode (no pairs among them).
        episodes = blob.get("episodes")
        self._buf_ep[:n] = episodes[-n:].numpy() if episodes is not None else -1 - np.arange(n)
        self._filled = n
        self._next = n % self._buf_y.shape[0]
        self.updates = int(meta.get("updates", 0))
        self.version = saved.version

    def save_namespace(self) -> None:
        """Write the namespace's weights, optimiser state and replay buffer as a new version,
        atomically."""
        import torch

        super().save_namespace()  # the task context
        if self.net is None or self.optimizer is None:
            return
        order = np.arange(self._filled)
        if self._filled == self._buf_y.shape[0]:
            order = (order + self._next) % self._filled  # oldest first
        blob = {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "emb": torch.from_numpy(self._buf_emb[order]).half(),
            "scalars": torch.from_numpy(self._buf_sc[order]),
            "targets": torch.from_numpy(self._buf_y[order]),
            "episodes": torch.from_numpy(self._buf_ep[order]),
        }
        out = io.BytesIO()
        torch.save(blob, out)
        meta = {
            "dim": self.dim,
            "hidden": self.settings.policy.hidden,
            "case_embedding": self.case_embedding,
            "updates": self.updates,
            "buffer": int(self._filled),
        }
        self.version = self.memory.policy_states.save(
            tenant_key(STATE_KEY, self.namespace), out.getvalue(), format=STATE_FORMAT,
            meta={**meta, "namespace": self.namespace},
        )  # fmt: skip

    # ------------------------------------------------------------------ scoring

    def _q(self, emb: Array, scalars: Array) -> npt.NDArray[np.float64]:
        import torch

        net = self._ensure_model(emb.shape[1] // (2 if self.case_embedding else 1))
        with torch.no_grad():
            out = net(torch.from_numpy(emb), torch.from_numpy(scalars))
        q: npt.NDArray[np.float64] = out.numpy().astype(np.float64)
        return q

    def evaluate(
        self, state: Vector, candidates: Sequence[Candidate], stage: Stage
    ) -> tuple[Vector, Values]:
        if not candidates:
            empty = np.zeros(0, np.float64)
            return np.zeros(0, np.float32), (empty, empty)
        emb, scalars = candidate_features(
            state, candidates, stage, self.settings, self.context,
            case_embedding=self.case_embedding,
        )  # fmt: skip
        key = (
            hashlib.blake2b(np.asarray(state, np.float32).tobytes(), digest_size=16).digest(),
            stage,
        )
        self._features[key] = {c.case_id: (emb[i], scalars[i]) for i, c in enumerate(candidates)}
        self._features.move_to_end(key)
        while len(self._features) > _CACHE:
            self._features.popitem(last=False)
        # As in `value`: a case unrelated to the task never outranks a related one, whatever
        # the network makes of its case-level features.
        sims = np.asarray([c.similarity for c in candidates], dtype=np.float64)
        relevant = self.context.relevance(
            state, candidates, stage, self.settings.policy.context_cos
        )
        q = demote(self._q(emb, scalars), unrelated(sims, relevant, self.settings))
        # The value features the network saw: the task-conditioned value and its evidence.
        values = (
            scalars[:, _Q].astype(np.float64),
            np.expm1(scalars[:, _LOG_VISITS].astype(np.float64) * 5.0),
        )
        return q.astype(np.float32), values

    # ------------------------------------------------------------------ learning

    def _shown_features(
        self, feedback: Feedback, ids: Sequence[int]
    ) -> dict[int, tuple[Array, Array]]:
        """The inputs the cases had when they were scored (rebuilt from the store if evicted)."""
        state = np.asarray(feedback.state, np.float32)
        key = (hashlib.blake2b(state.tobytes(), digest_size=16).digest(), feedback.stage)
        cached = self._features.get(key, {})
        if all(i in cached for i in ids):
            return cached
        cases = {c.id: c for c in self.memory.get_many(list(ids))}
        vectors = self.memory.vectors(list(ids))
        unit = state / max(float(np.linalg.norm(state)), 1e-12)
        candidates = [
            Candidate(
                i,
                float(vectors[p] @ unit),
                vectors[p],
                cases[i].reward,
                cases[i].stats,
                feedback.namespace,
            )
            for p, i in enumerate(ids)
            if i in cases
        ]
        emb, scalars = candidate_features(
            state, candidates, feedback.stage, self.settings, self.context,
            case_embedding=self.case_embedding,
        )  # fmt: skip
        return {c.case_id: (emb[p], scalars[p]) for p, c in enumerate(candidates)}

    def learn_targets(self, feedback: Feedback, targets: Mapping[int, float]) -> None:
        """After the values moved: one training step on the credited cases."""
        if not targets:
            self.context.add(feedback.stage, feedback.state, targets, feedback.reward)
            return
        # Features first: they are the inputs the cases had when scored, before this outcome.
        features = self._shown_features(feedback, list(targets))
        self.context.add(feedback.stage, feedback.state, targets, feedback.reward)
        fresh = [(features[i], y) for i, y in targets.items() if i in features]
        if not fresh:
            return
        self._ensure_model(fresh[0][0][0].shape[0] // (2 if self.case_embedding else 1))
        newest = [self._push(emb, sc, y, self.updates) for (emb, sc), y in fresh]
        for _ in range(self.settings.policy.train_steps):
            self._train(newest)
        self.updates += 1
        if self.updates % self.settings.policy.save_every == 0:
            self.save_namespace()

    def _push(self, emb: Array, scalars: Array, target: float, episode: int) -> int:
        slot = self._next
        self._buf_emb[slot], self._buf_sc[slot], self._buf_y[slot] = emb, scalars, target
        self._buf_ep[slot] = episode
        self._next = (slot + 1) % self._buf_y.shape[0]
        self._filled = min(self._filled + 1, self._buf_y.shape[0])
        return slot

    def _train(self, newest: list[int]) -> None:
        import torch

        assert self.net is not None and self.optimizer is not None
        extra = max(self.settings.policy.batch_size - len(newest), 0)
        if self.settings.policy.objective != "pointwise":
            # Whole past feedbacks, so the sampled cases come with the ones shown beside them.
            episodes = self._buf_ep[: self._filled]
            past = np.unique(episodes)
            picked = self.rng.choice(past, size=min(max(extra // 3, 1), past.size), replace=False)
            sample = np.flatnonzero(np.isin(episodes, picked))
            sample = sample[~np.isin(sample, newest)][:extra]
        else:
            sample = self.rng.integers(0, self._filled, size=min(extra, self._filled))
        batch = np.concatenate([np.asarray(newest, dtype=np.int64), sample.astype(np.int64)])
        emb = torch.from_numpy(self._buf_emb[batch])
        scalars = torch.from_numpy(self._buf_sc[batch])
        y = torch.from_numpy(self._buf_y[batch])
        self.net.train()
        q = self.net(emb, scalars)
        objective = self.settings.policy.objective
        pair = None
        if objective != "pointwise":
            pair = _pairwise_loss(q, y, torch.from_numpy(self._buf_ep[batch]))
        if objective == "pairwise":
            if pair is None:  # no two cases of one feedback with different targets
                self.net.eval()
                return
            loss = pair
        else:
            loss = torch.nn.functional.mse_loss(q, y)
            if pair is not None:
                loss = loss + self.settings.policy.pairwise_weight * pair
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.net.eval()

    def describe(self) -> dict[str, Any]:
        """What `memory-agent policy stats` shows about the network."""
        params = sum(p.numel() for p in self.net.parameters()) if self.net is not None else 0
        return {
            "version": self.version,
            "updates": self.updates,
            "replay": int(self._filled),
            "parameters": int(params),
        }
