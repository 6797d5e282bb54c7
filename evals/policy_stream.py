"""A simulated task stream that isolates case selection, built so similarity misleads.

Each task family has near-identical past cases (same template, other numbers: the most
similar cases there are) that are useless or harmful for it, and "method" cases written
differently (only moderately similar) that actually help. Rewards are noisy; the best
helpful case of each family stops helping half-way (non-stationarity); some families only
appear later (cold start); new cases arrive as the stream goes (a growing memory). Which
cases help is hidden from the policies: only an oracle sees the utilities.

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


@dataclass(frozen=True)
class Topic:
    name: str
    task: str
    slots: dict[str, tuple[str, ...]]
    methods: tuple[str, ...]


_NUMS = tuple(str(n) for n in (12, 17, 24, 36, 48, 55, 64, 72, 81, 96, 120, 144, 250, 360))
TOPICS: tuple[Topic, ...] = (
    Topic(
        "unit conversion",
        "Convert {a} {u} into {v} and round the answer to two decimals.",
        {"a": _NUMS, "u": ("miles", "pounds", "gallons", "inches"),
         "v": ("kilometres", "kilograms", "litres", "centimetres")},
        ("multiply the quantity by the conversion factor between the two measurement systems",
         "look up the exact ratio between imperial and metric units before rounding",
         "write the unit fraction so the old unit cancels, then round at the very end"),
    ),
    Topic(
        "weekday arithmetic",
        "What day of the week is it {a} days after a {d}?",
        {"a": _NUMS, "d": ("Monday", "Tuesday", "Friday", "Sunday")},
        ("weekdays repeat every seven days, so take the remainder modulo seven",
         "count forward in the calendar using the offset modulo the week length",
         "map weekdays to numbers 0-6 and add the offset with wrap-around"),
    ),
    Topic(
        "prime factorisation",
        "Find the prime factorisation of the number {a}.",
        {"a": _NUMS},
        ("divide repeatedly by the smallest prime that divides evenly",
         "trial division by 2, 3, 5, 7 until the remaining quotient is prime",
         "build a factor tree and collect the prime leaves with exponents"),
    ),
    Topic(
        "percentage change",
        "By what percentage did the price change from {a} dollars to {b} dollars?",
        {"a": _NUMS, "b": _NUMS},
        ("subtract old from new and divide the difference by the original value",
         "relative change is the difference over the starting amount, times one hundred",
         "compute new over old, subtract one and express it as a percent"),
    ),
    Topic(
        "reversing a word",
        "Reverse the letters of the word '{w}' and report the result.",
        {"w": ("planet", "orchid", "lantern", "meadow", "quartz", "harbour", "violin")},
        ("read the string from its last character to its first",
         "write the characters out and emit them in the opposite order",
         "use slicing with a negative step to flip a sequence of characters"),
    ),
    Topic(
        "sorting numbers",
        "Sort the numbers {a}, {b} and {c} in ascending order.",
        {"a": _NUMS, "b": _NUMS, "c": _NUMS},
        ("compare pairs and swap them until every neighbour is in order",
         "pick the smallest remaining value each time and append it to the output",
         "order the list from lowest to highest with a stable comparison sort"),
    ),
    Topic(
        "capital cities",
        "What is the capital city of {c}?",
        {"c": ("Australia", "Canada", "Brazil", "Nigeria", "Turkey", "Switzerland", "Morocco")},
        ("the seat of government is often not the largest city, check an atlas",
         "look the country up in a reference list of national governments",
         "beware of confusing the biggest metropolis with the administrative centre"),
    ),
    Topic(
        "greatest common divisor",
        "Compute the greatest common divisor of {a} and {b}.",
        {"a": _NUMS, "b": _NUMS},
        ("apply Euclid's algorithm: replace the larger number by the remainder",
         "repeated modulo steps until the remainder is zero give the shared factor",
         "intersect the prime factorisations and multiply the common primes"),
    ),
    Topic(
        "counting vowels",
        "How many vowels are in the sentence '{s}'?",
        {"s": ("the quick brown fox", "a stitch in time", "every cloud has a lining",
               "practice makes perfect", "fortune favours the bold")},
        ("scan each character and count those among a, e, i, o and u",
         "lowercase the text first, then tally letters that are vowels",
         "filter the characters by membership in the vowel set and take the length"),
    ),
    Topic(
        "compound interest",
        "How much are {a} dollars worth after {b} years at 5 percent annual compound interest?",
        {"a": _NUMS, "b": ("2", "3", "5", "8", "10")},
        ("use principal times one plus the rate raised to the number of years",
         "grow the balance year by year, applying the interest to the new total",
         "the compound growth factor is (1 + r) to the power n; multiply it by the deposit"),
    ),
)  # fmt: skip
_FRAMES = (
    "Worked method for {t}: {m}.",
    "Lesson from a solved {t} case: {m}.",
    "{T}, strategy that worked: {m}.",
    "Checklist for {t}: {m}.",
)


def _fill(topic: Topic, rng: np.random.Generator) -> str:
    return topic.task.format(**{k: v[int(rng.integers(len(v)))] for k, v in topic.slots.items()})


@dataclass
class SimCase:
    """A case the stream adds to memory, with its hidden utility for its own family."""

    text: str
    family: int
    kind: str  # "helpful" or "lookalike"
    utility: float
    stored_reward: float
    breaks_at: int | None = None  # episode from which it stops helping

    def utility_at(self, family: int, episode: int) -> float:
        if family != self.family:
            return 0.0
        if self.breaks_at is not None and episode >= self.breaks_at:
            return 0.0
        return self.utility


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
    family: int, rng: np.random.Generator, helpful: int, lookalikes: int, method_offset: int
) -> list[SimCase]:
    topic = TOPICS[family]
    out = []
    combos = list(itertools.product(range(len(_FRAMES)), range(len(topic.methods))))
    for j in range(helpful):
        frame, method = combos[(method_offset + j) % len(combos)]
        out.append(
            SimCase(
                _FRAMES[frame].format(
                    m=topic.methods[method], t=topic.name, T=topic.name.capitalize()
                ),
                family,
                "helpful",
                float(rng.uniform(0.6, 1.0)),
                float(rng.random() < 0.8),
            )
        )
    for _ in range(lookalikes):
        harmful = rng.random() < 0.3
        out.append(
            SimCase(
                _fill(topic, rng),
                family,
                "lookalike",
                -0.3 if harmful else 0.0,
                float(rng.random() < 0.5),
            )
        )
    return out


def make_stream(episodes: int, seed: int, k: int = 3) -> Stream:
    """Six families from the start, two more at 40% and two at 60% of the stream."""
    rng = np.random.default_rng(seed)
    start = dict.fromkeys(range(6), 0)
    start.update({6: int(0.4 * episodes), 7: int(0.4 * episodes)})
    start.update({8: int(0.6 * episodes), 9: int(0.6 * episodes)})
    arrivals: dict[int, list[SimCase]] = {}
    used_methods = dict.fromkeys(range(len(TOPICS)), 0)
    for family, first in start.items():
        cases = _family_cases(family, rng, 4, 8, 0)
        used_methods[family] = 4
        arrivals.setdefault(first, []).extend(cases)
    # A growing memory: every 20 episodes one more helpful case and three look-alikes arrive
    # for an active family.
    for episode in range(20, episodes, 20):
        active = [f for f, first in start.items() if first <= episode]
        family = int(rng.choice(active))
        cases = _family_cases(family, rng, 1, 3, used_methods[family])
        used_methods[family] += 1
        arrivals.setdefault(episode, []).extend(cases)
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
        family = int(rng.choice(active))
        tasks.append((family, _fill(TOPICS[family], rng)))
    stream = Stream(
        episodes=episodes,
        tasks=tasks,
        arrivals=dict(sorted(arrivals.items())),
        noise=rng.normal(0.0, NOISE, size=episodes),
        use_draws=rng.random(size=(episodes, k)),
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
