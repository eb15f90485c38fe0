"""Fault injection for data (and token) requests, replaceable while the simulator runs.

A fault is a rule; a rule fires on a matching request with probability ``rate`` (seeded, so a
run is reproducible) and at most ``count`` times (None: forever). "The next 3 data requests
answer 503" is ``{"kind": "error", "status": 503, "count": 3}``; "10% of Customers requests
are dropped" is ``{"kind": "drop", "rate": 0.1, "entity": "Customers"}``.

Kinds:

``error``          answer ``status`` (500, 503 ...) with the JSON error body, ``Retry-After``
                   when ``retry_after`` is set
``slow``           wait ``delay`` seconds before answering (the request stays in flight, which is
                   how tests hold the 429 concurrency limit); combines with the other kinds
``drop``           close the connection without answering
``drop_mid_body``  send the headers and half the body, then close the connection
``truncate``       a complete HTTP 200 whose JSON body is cut in half
``malformed``      a complete HTTP 200 whose JSON body has a syntax error

Rules are evaluated in order; every firing ``slow`` rule adds its delay and the first other rule
that fires decides the outcome.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from publisher.simulator.ids import seeded_random

FaultKind = Literal["error", "slow", "drop", "drop_mid_body", "truncate", "malformed"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "error",
    "slow",
    "drop",
    "drop_mid_body",
    "truncate",
    "malformed",
)
Endpoint = Literal["data", "token"]
_TYPES: dict[str, type | tuple[type, ...]] = {
    "kind": str,
    "rate": (int, float),
    "count": (int, type(None)),
    "entity": (str, type(None)),
    "endpoint": str,
    "status": int,
    "retry_after": (int, type(None)),
    "delay": (int, float),
}


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One fault: what happens, to which requests, how often."""

    kind: FaultKind
    rate: float = 1.0
    count: int | None = None
    entity: str | None = None
    endpoint: Endpoint = "data"
    status: int = 503
    retry_after: int | None = None
    delay: float = 1.0

    def problems(self) -> list[str]:
        """Why this rule is invalid (empty when it is fine)."""
        p = []
        for name, types in _TYPES.items():
            value = getattr(self, name)
            if not isinstance(value, types) or isinstance(value, bool):
                p.append(f"{name}: wrong type {type(value).__name__}")
        if p:
            return p
        if self.kind not in FAULT_KINDS:
            p.append(f"kind: one of {', '.join(FAULT_KINDS)}")
        if not 0 <= self.rate <= 1:
            p.append("rate: in [0, 1]")
        if self.count is not None and self.count < 0:
            p.append("count: >= 0 or null")
        if self.endpoint not in ("data", "token"):
            p.append("endpoint: data or token")
        if not 400 <= self.status <= 599:
            p.append("status: 400..599")
        if self.retry_after is not None and self.retry_after < 0:
            p.append("retry_after: >= 0 seconds")
        if self.delay < 0:
            p.append("delay: >= 0 seconds")
        return p


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """The whole fault configuration: a seed for the rate draws and the rules."""

    seed: int = 0
    rules: tuple[FaultRule, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> FaultSettings:
        """Build from decoded JSON; raise ValueError naming every problem."""
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object with 'seed' and 'rules'")
        unknown = set(data) - {"seed", "rules"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ValueError("rules must be a list")
        rules, problems = [], []
        allowed = set(FaultRule.__dataclass_fields__)
        for i, raw in enumerate(raw_rules):
            if not isinstance(raw, dict) or set(raw) - allowed or "kind" not in raw:
                problems.append(f"rules[{i}]: an object with 'kind' and only {sorted(allowed)}")
                continue
            try:
                rule = FaultRule(**raw)
            except TypeError as exc:
                problems.append(f"rules[{i}]: {exc}")
                continue
            problems.extend(f"rules[{i}].{p}" for p in rule.problems())
            rules.append(rule)
        seed = data.get("seed", 0)
        if not isinstance(seed, int):
            problems.append("seed: an integer")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(seed=seed, rules=tuple(rules))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (remaining counts included when read from a live injector)."""
        return {"seed": self.seed, "rules": [asdict(r) for r in self.rules]}


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do with one request: wait ``delay`` seconds, then ``outcome`` (None: normal)."""

    delay: float = 0.0
    outcome: FaultRule | None = None
    fired: tuple[str, ...] = field(default=())


class FaultInjector:
    """Thread-safe: draws decisions from the current rules and counts their firings down."""

    def __init__(self, settings: FaultSettings) -> None:
        self._lock = threading.Lock()
        self.replace(settings)

    def replace(self, settings: FaultSettings) -> None:
        """Swap in new rules (and restart the seeded draws)."""
        with self._lock:
            self._rules = list(settings.rules)
            self._seed = settings.seed
            self._rng = seeded_random(settings.seed)

    def current(self) -> FaultSettings:
        """The rules as they stand, with counts that have been used up so far."""
        with self._lock:
            return FaultSettings(self._seed, tuple(self._rules))

    def decide(self, endpoint: Endpoint, entity: str | None) -> FaultDecision:
        """Draw the faults for one request."""
        delay = 0.0
        outcome: FaultRule | None = None
        fired: list[str] = []
        with self._lock:
            for i, rule in enumerate(self._rules):
                if rule.endpoint != endpoint or (rule.entity and rule.entity != entity):
                    continue
                if rule.count == 0 or (rule.kind != "slow" and outcome is not None):
                    continue
                if rule.rate < 1 and self._rng.random() >= rule.rate:
                    continue
                if rule.count is not None:
                    self._rules[i] = replace(rule, count=rule.count - 1)
                fired.append(rule.kind)
                if rule.kind == "slow":
                    delay += rule.delay
                else:
                    outcome = rule
        return FaultDecision(delay, outcome, tuple(fired))
