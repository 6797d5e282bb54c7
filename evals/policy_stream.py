"""A simulated task stream that isolates case selection, and that text alone cannot solve.

Ten task families in five twin pairs: a task and its twin read almost the same ("How many 1
bits ..." / "How many 0 bits ...") but need another procedure. Every case in memory is a
past task of some family, written by that family's template with other slot values, so
every case text is drawn from the same distribution as the tasks. Whether a case helps is
hidden and drawn independently of its text (another random stream): a stored success may be
wrong (a lenient judge), stale, or a working procedure. So a reader of the case text, or of
anything else a policy sees, cannot tell a helpful case from a look-alike of its own family;
only feedback on the policy's own choices can. The stored reward of every case is a draw
independent of its utility (the lenient judge called most of them successes).

What similarity gets wrong: the most similar cases of a task are the cases of its own family
and of its twin with the same slot values (MiniLM puts "1 bits in 777" and "0 bits in 777"
at cosine 0.96, two 1-bit tasks with other numbers at ~0.65), and within its own family it
cannot tell the helpful ones. A working procedure of the twin family is harmful (the planner
copies the wrong method). The rest as before: noisy rewards; the best helpful case of each
early family stops helping half-way (non-stationarity); some twin pairs only appear later
(cold start); new cases arrive as the stream goes (a growing memory).

The planner model: a shown case is used with probability 0.85 if it helps (u >= 0.5) and
0.3 otherwise (a look-alike fools it sometimes). The episode's reward is
0.5 u1 + 0.3 u2 + 0.2 u3 over the used cases' positive utilities in decreasing order, plus
the used cases' negative utilities, plus N(0, 0.15) noise, clipped to [0, 1].
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

USE_HELPFUL, USE_OTHER = 0.85, 0.3
WEIGHTS = (0.5, 0.3, 0.2)
NOISE = 0.15
HELPFUL_SHARE = 1 / 3  # of a family's cases, the share whose procedure works
HARMFUL_SHARE = 0.3  # of the others, the share that is wrong and misleads (u = -0.3)
TWIN_HARM = -0.3  # a working procedure of the twin family, copied: a wrong answer
STORED_SUCCESS = 0.75  # the lenient judge's rate of stored successes, whatever the case


@dataclass(frozen=True)
class Topic:
    name: str
    task: str
    slots: dict[str, tuple[str, ...]]
    twin: int


_NUMS = tuple(str(n) for n in range(11, 1000, 7))
_WORDS = (
    "planet", "orchid", "lantern", "meadow", "quartz", "harbour", "violin", "candle",
    "forest", "pepper", "silver", "basket", "rocket", "garden", "marble", "window",
    "thunder", "pillow", "castle", "mirror", "dragon", "ticket", "button", "copper",
)  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TOPICS: tuple[Topic, ...] = (
    Topic("one bits", "How many 1 bits are there in the binary representation of {n}?",
          {"n": _NUMS}, 1),
    Topic("zero bits", "How many 0 bits are there in the binary representation of {n}?",
          {"n": _NUMS}, 0),
    Topic("spell backward", "Spell the word '{w}' backward, last letter first.",
          {"w": _WORDS}, 3),
    Topic("sort letters", "Spell the word '{w}' with its letters in alphabetical order.",
          {"w": _WORDS}, 2),
    Topic("gcd", "What is the greatest common divisor of {a} and {b}?",
          {"a": _NUMS, "b": _NUMS}, 5),
    Topic("lcm", "What is the least common multiple of {a} and {b}?",
          {"a": _NUMS, "b": _NUMS}, 4),
    Topic("sort ascending", "Sort the numbers {a}, {b} and {c} in ascending order.",
          {"a": _NUMS, "b": _NUMS, "c": _NUMS}, 7),
    Topic("sort descending", "Sort the numbers {a}, {b} and {c} in descending order.",
          {"a": _NUMS, "b": _NUMS, "c": _NUMS}, 6),
    Topic("days after", "What day of the week is it {a} days after a {d}?",
          {"a": _NUMS, "d": _DAYS}, 9),
    Topic("days before", "What day of the week was it {a} days before a {d}?",
          {"a": _NUMS, "d": _DAYS}, 8),
)  # fmt: skip


def fill(topic: Topic, rng: np.random.Generator) -> str:
    """A task (or a case's task) of `topic`, with random slot values."""
    return topic.task.format(**{k: v[int(rng.integers(len(v)))] for k, v in topic.slots.items()})


@dataclass
class SimCase:
    """A case the stream adds to memory, with its hidden utility for its own family."""

    text: str
    family: int
    kind: str  # "helpful" or "lookalike" (hidden; not derivable from `text`)
    utility: float
    stored_reward: float
    breaks_at: int | None = None  # episode from which it stops helping

    def utility_at(self, family: int, episode: int) -> float:
        works = self.breaks_at is None or episode < self.breaks_at
        if family == self.family:
            return self.utility if works else 0.0
        if family == TOPICS[self.family].twin and self.kind == "helpful" and works:
            return TWIN_HARM
        return 0.0


@dataclass
class Stream:
    """Everything a run needs, fixed by the seed, so every policy faces the same stream."""

    episodes: int
    tasks: list[tuple[int, str]]  # (family, text) per episode
    arrivals: dict[int, list[SimCase]]  # episode -> cases added before it
    noise: np.ndarray  # reward noise per episode
    use_draws: np.ndarray  # uniform draws per episode and slot (the planner's use decisions)
    texts: list[str] = field(default_factory=list)


def _family_cases(
    family: int, text_rng: np.random.Generator, label_rng: np.random.Generator, n: int
) -> list[SimCase]:
    """`n` cases of a family: texts from `text_rng`, hidden kinds and stored rewards from
    `label_rng`, so the two are independent (a case's text says nothing of its kind)."""
    out = []
    for _ in range(n):
        text = fill(TOPICS[family], text_rng)
        if label_rng.random() < HELPFUL_SHARE:
            kind, utility = "helpful", float(label_rng.uniform(0.6, 1.0))
        else:
            kind, utility = "lookalike", -0.3 if label_rng.random() < HARMFUL_SHARE else 0.0
        stored = float(label_rng.random() < STORED_SUCCESS)
        out.append(SimCase(text, family, kind, utility, stored))
    return out


def _ensure_helpful(cases: list[SimCase], label_rng: np.random.Generator, at_least: int) -> None:
    """Every family starts with `at_least` working cases (else the oracle has nothing to show);
    the ones made helpful are chosen at random, so this says nothing about any text."""
    helpful = [c for c in cases if c.kind == "helpful"]
    others = [c for c in cases if c.kind != "helpful"]
    for i in label_rng.permutation(len(others))[: max(at_least - len(helpful), 0)]:
        others[int(i)].kind, others[int(i)].utility = "helpful", float(label_rng.uniform(0.6, 1.0))


def make_stream(episodes: int, seed: int, k: int = 3, *, label_seed: int | None = None) -> Stream:
    """Three twin pairs from the start, one more pair at 40% and one at 60% of the stream.

    `label_seed` (default: derived from `seed`) draws which cases help and their stored
    rewards; texts, tasks and arrivals depend on `seed` alone.
    """
    text_rng = np.random.default_rng(seed)
    label_rng = np.random.default_rng([seed, 1 if label_seed is None else 2 + label_seed])
    start = dict.fromkeys(range(6), 0)
    start.update({6: int(0.4 * episodes), 7: int(0.4 * episodes)})
    start.update({8: int(0.6 * episodes), 9: int(0.6 * episodes)})
    arrivals: dict[int, list[SimCase]] = {}
    for family, first in start.items():
        cases = _family_cases(family, text_rng, label_rng, 9)
        _ensure_helpful(cases, label_rng, 3)
        arrivals.setdefault(first, []).extend(cases)
    # A growing memory: every 20 episodes four more cases of an active family arrive.
    for episode in range(20, episodes, 20):
        active = [f for f, first in start.items() if first <= episode]
        family = int(text_rng.choice(active))
        arrivals.setdefault(episode, []).extend(_family_cases(family, text_rng, label_rng, 4))
    # Non-stationarity: half-way, each early family's best helpful case stops helping.
    half = episodes // 2
    for family in range(6):
        best = max(
            (c for c in arrivals[0] if c.family == family and c.kind == "helpful"),
            key=lambda c: c.utility,
        )
        best.breaks_at = half
    tasks = []
    for episode in range(episodes):
        active = [f for f, first in start.items() if first <= episode]
        family = int(text_rng.choice(active))
        tasks.append((family, fill(TOPICS[family], text_rng)))
    stream = Stream(
        episodes=episodes,
        tasks=tasks,
        arrivals=dict(sorted(arrivals.items())),
        noise=text_rng.normal(0.0, NOISE, size=episodes),
        use_draws=text_rng.random(size=(episodes, k)),
    )
    stream.texts = list(
        dict.fromkeys(
            [t for _, t in tasks] + [c.text for cs in stream.arrivals.values() for c in cs]
        )
    )
    return stream


def realised_reward(utilities: list[float], used: list[bool], noise: float) -> float:
    """The planner's episode reward for the used cases (see the module docstring)."""
    got = [u for u, flag in zip(utilities, used, strict=True) if flag]
    positive = sorted((u for u in got if u > 0), reverse=True)
    value = sum(w * u for w, u in zip(WEIGHTS, positive, strict=False))
    value += sum(u for u in got if u < 0)
    return float(np.clip(value + noise, 0.0, 1.0))


def use_probability(utility: float) -> float:
    return USE_HELPFUL if utility >= 0.5 else USE_OTHER


def expected_reward(utilities: list[float]) -> float:
    """Expected reward of showing cases with these utilities (over the planner's use; no noise)."""
    probs = [use_probability(u) for u in utilities]
    total = 0.0
    for pattern in itertools.product((False, True), repeat=len(utilities)):
        p = 1.0
        for flag, q in zip(pattern, probs, strict=True):
            p *= q if flag else 1.0 - q
        total += p * realised_reward(utilities, list(pattern), 0.0)
    return total
