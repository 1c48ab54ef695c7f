"""The one control loop: observe -> decide -> gate -> plan -> execute, on any continuum.

`run` (simulated and real), `plan`, `evaluate` and the Gymnasium environment all go through
`Loop.tick` / `Loop.act`. Per service and tick:
- no decision on an invalid observation (the reason is kept), nor on a service still moving
  or not yet observed where it moved to;
- an action the mask forbids is refused: the service stays and the decision says so (the
  evaluation scores it -1, as the paper's environment does); the masks count the capacity
  that the moves already accepted in the tick take;
- a move must pass the gates (cooldown, minimum predicted gain, concurrent migrations) unless
  the loop runs without gates (the paper's reproduction), then it is planned; a dry run stops
  there; otherwise the continuum carries the plans out.
"""

from __future__ import annotations

import bisect
import gc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any, Protocol

import numpy as np

from orchestrator.config import ControllerConfig
from orchestrator.continuum import Clairvoyant, Continuum, Plan
from orchestrator.control.gates import Gates
from orchestrator.errors import GreenwiseError
from orchestrator.model import STAY, Move, Observation, ServiceState, Snapshot, target_host
from orchestrator.workload import TICK_S
from strategies.base import Strategy
from strategies.prediction import Prediction, Predictor, compare
from strategies.reward import INVALID_ACTION_PENALTY


@dataclass
class Decision:
    """What happened for one service in one tick: the structured log line."""

    service: str
    tick: int
    action: str  # stay | move | held (a gate held it back) | refused (infeasible) | none
    target: str | None = None  # cluster/node
    kind: str | None = None  # intra | inter
    outcome: str = "no action"  # stay | migration started | dry run: not applied | no action
    reason: str | None = None
    steps: list[str] = field(default_factory=list)
    masked: bool = False  # the action asked was masked (Eq. 7): evaluation scores it -1
    # Staying and the chosen action as predicted, when the decision is explained: computed
    # when first read (a gate reads a move's gain; a decision line all of it)
    predictions: Callable[[], tuple[Prediction, Prediction]] | None = field(
        default=None, repr=False, compare=False)
    # The service's observed state (`Loop.state`), made when first read: a tick of a thousand
    # services writes few decision lines in full
    observed: Callable[[], dict[str, Any]] | None = field(default=None, repr=False,
                                                           compare=False)

    @cached_property
    def state(self) -> dict[str, Any] | None:
        return None if self.observed is None else self.observed()

    @cached_property
    def predicted(self) -> dict[str, dict[str, float]] | None:
        """Staying vs the chosen action (strategies.prediction.compare)."""
        return None if self.predictions is None else compare(*self.predictions())

    @property
    def predicted_gain(self) -> float | None:
        return None if self.predicted is None else self.predicted["reward"]["change"]

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "tick": self.tick, "action": self.action,
                "state": None if self.state is None else dict(self.state),
                "target": self.target, "kind": self.kind, "predicted_gain": self.predicted_gain,
                "predicted": None if self.predicted is None else
                {q: dict(v) for q, v in self.predicted.items()},
                "outcome": self.outcome, "reason": self.reason, "steps": list(self.steps),
                "masked": self.masked}


@dataclass(frozen=True)
class Tick:
    """One tick: what was seen, the actions asked, the decisions and the plans carried out."""

    snapshot: Snapshot
    actions: tuple[int, ...]
    decisions: tuple[Decision, ...]
    plans: tuple[Plan, ...]

    def masked(self, service: int) -> bool:
        """Whether the service's action was masked (it stayed; the paper scores it -1)."""
        return self.decisions[service].masked


class Learner(Protocol):
    """Online training's view of the loop (strategies.online.OnlineLearner)."""

    def observed(self, service: str, obs: Observation) -> None: ...

    def acted(self, service: str, obs: Observation, mask: np.ndarray, action: int) -> None: ...


# Moves whose gains are predicted together: a call costs about as much as a few dozen pairs,
# and every pair predicted beyond the tick's last gated move is wasted (orchestrator default:
# one migration at a time, after which the gain gate asks none).
GAINS_AT_ONCE = 64


def _finite(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


class Loop:
    def __init__(self, continuum: Continuum, strategy: Strategy | None, predictor: Predictor,
                 gates: Gates | None = None, dry_run: bool = False,
                 learner: Learner | None = None, explain: bool = True,
                 contain_errors: bool = False) -> None:
        """`strategy` None: actions come from outside (`act`, the Gymnasium env). `explain`
        False skips the predictions a decision carries when no gate needs them (training).
        `contain_errors`: an exception in one service's decision becomes that decision's
        reason instead of stopping the tick (policy mode on clusters)."""
        self.continuum = continuum
        self.strategy = strategy
        self.predictor = predictor
        self.gates = gates
        self.dry_run = dry_run
        self.learner = learner
        self.explain = explain or gates is not None
        self.contain_errors = contain_errors
        self.ticks = 0

    def tick(self) -> Tick:
        assert self.strategy is not None, "a loop without a strategy is driven by act()"
        snapshot = self.continuum.snapshot()
        masks = self.continuum.masks(snapshot)
        return self.act(snapshot, masks, self.strategy.decide(snapshot, masks))

    def act(self, snapshot: Snapshot, masks: np.ndarray, actions: Sequence[int]) -> Tick:
        """Gate, plan and (unless a dry run) carry out `actions`, one per service."""
        self.ticks += 1
        decisions, plans = [], []
        claims = self.continuum.claims(snapshot)  # what the moves accepted so far take
        gains = self._gains(snapshot, actions)
        for i, state in enumerate(snapshot.services):
            a = int(actions[i])
            try:
                # the mask it is decided on counts the moves accepted before it in the tick
                allowed = 0 <= a < masks.shape[1] and (claims.allows(i, a) if plans
                                                      else bool(masks[i, a]))
                d, plan = self._decide(snapshot, i, allowed, a, partial(gains, i))
            except Exception as e:
                if not self.contain_errors:
                    raise
                # Policy mode: one service's failure (a bug, an unexpected API answer) must
                # not stop the others; it is said in its decision line.
                d, plan = Decision(state.name, self.ticks, "none",
                                   observed=partial(self.state, state),
                                   reason=f"internal error: {type(e).__name__}: {e}"), None
            decisions.append(d)
            if self.learner and state.valid and d.action != "none":
                executed = actions[i] if plan is not None and not self.dry_run else STAY
                self.learner.acted(state.name, snapshot.view(i), masks[i], int(executed))
            if plan is not None:
                plans.append(plan)
                claims.add(plan.move)  # the next see what this move takes
        if not self.dry_run:
            self.continuum.apply(plans, self._done)
        return Tick(snapshot, tuple(int(a) for a in actions), tuple(decisions), tuple(plans))

    def _done(self, plan: Plan, outcome: str) -> None:
        if self.gates:
            service = self.continuum.specs[plan.move.service].name
            to = self.continuum.topology.locations[plan.move.host]
            self.gates.finished(service, to if outcome == "done" else None)

    def state(self, s: ServiceState) -> dict[str, Any]:
        """The observed state of a service, valid or not (None where nothing usable)."""
        where = self.continuum.topology.locations[s.host] if s.host >= 0 else None
        return {"location": None if where is None else str(where),
                "users": s.users, "latency_ms": _finite(s.latency_ms, 1),
                "power_w": _finite(s.power_w, 2), "cpu": _finite(s.cpu, 3),
                "throughput_rps": _finite(s.throughput_rps, 2)}

    def _gains(self, snapshot: Snapshot, actions: Sequence[int]) -> Callable[[int], float]:
        """Service i's predicted gain (its decision's `predicted_gain`) for the minimum-gain
        gate: predicted for the next `GAINS_AT_ONCE` moves asked at once when first asked (a
        tick may ask hundreds, and once the migration limit binds the gate asks none)."""
        n = len(snapshot.hosts)
        movers = [i for i, a in enumerate(actions) if 0 < a <= n and snapshot.services[i].valid]
        known: dict[int, float] = {}

        def gain(i: int) -> float:
            if i not in known:
                first = bisect.bisect_left(movers, i)
                batch = movers[first:first + GAINS_AT_ONCE]
                known.update(zip(batch, self.predictor.gains(
                    snapshot, batch, [int(actions[j]) for j in batch]), strict=True))
            return known[i]
        return gain

    def _decide(self, snapshot: Snapshot, i: int, allowed: bool, action: int,
                gain: Callable[[], float]) -> tuple[Decision, Plan | None]:
        """Service i's decision on `action`, which its mask `allowed` or not."""
        s = snapshot.services[i]
        topology = self.continuum.topology
        d = Decision(s.name, self.ticks, "none",
                     observed=partial(self.state, s) if self.explain else None)
        if not s.valid:
            d.reason = f"observation invalid: {s.reason}"
            return d, None
        if self.gates:
            if s.name in self.gates.in_flight:
                d.reason = "a migration of it is in progress"
                return d, None
            d.reason = self.gates.unsettled(s.name, topology.locations[s.host])
            if d.reason:
                return d, None
        if self.learner:
            self.learner.observed(s.name, snapshot.view(i))
        target = target_host(action)
        if not allowed:
            d.masked, d.outcome = True, "stay"
            if target == s.host:  # Eq. 7 masks the current host: asking for it is staying
                d.action, d.reason = "stay", "asked for its current host"
            else:
                where = (str(topology.locations[target]) if target is not None and
                         0 <= target < len(topology) else f"action {action}")
                d.action, d.reason = "refused", f"{where} cannot take it (masked): it stays"
            return d, None
        if self.explain:
            d.predictions = partial(self._predict, snapshot, i, action)
        if target is None:
            d.action, d.outcome = "stay", "stay"
            return d, None
        d.action, d.target = "move", str(topology.locations[target])
        d.kind = topology.move_kind(s.host, target)
        if self.gates:
            d.reason = self.gates.hold(s.name, gain)
            if d.reason:
                d.action = "held"
                return d, None
        try:
            plan = self.continuum.plan(Move(i, target))
        except GreenwiseError as e:
            d.action, d.reason = "held", f"cannot plan the move: {e}"
            return d, None
        d.kind, d.steps = plan.kind, list(plan.steps)
        d.outcome = "dry run: not applied" if self.dry_run else "migration started"
        if self.gates and not self.dry_run:  # counted now: the next service's gate sees it
            self.gates.started(s.name)
        return d, plan


    def _predict(self, snapshot: Snapshot, i: int, action: int) -> tuple[Prediction, Prediction]:
        """Service i staying and taking `action`, as predicted from the snapshot."""
        obs = snapshot.view(i)
        chosen = self.predictor.predict(obs, action, i)
        return chosen if action == STAY else self.predictor.predict(obs, STAY, i), chosen


def rewards(predictor: Predictor, tick: Tick, after: Snapshot) -> tuple[float, ...]:
    """Each service's reward for the tick (Eq. 9-11 on what followed; a masked action -1)."""
    return tuple(INVALID_ACTION_PENALTY if tick.masked(i) else
                 predictor.reward(s.power_w, s.latency_ms, i)
                 for i, s in enumerate(after.services))


@dataclass(frozen=True)
class Step:
    """One tick and what followed it: the next snapshot and each service's reward."""

    tick: Tick
    after: Snapshot
    rewards: tuple[float, ...]


def step(loop: Loop) -> Step:
    """Tick, then observe what followed (on the simulated continuum: the next step, as it truly
    is, whatever lag its snapshots have)."""
    tick = loop.tick()
    c = loop.continuum
    after = c.current() if isinstance(c, Clairvoyant) else c.snapshot()
    return Step(tick, after, rewards(loop.predictor, tick, after))


def keep_long_lived() -> None:
    """Exempt every object alive now from the garbage collector's full passes (gc.freeze),
    garbage collected first so none of it is kept: called by a policy loop after its first
    tick, when the scenario, models, caches and tables it keeps for its whole run exist. At
    1,000 services a full pass over them took 270-290 ms, one every 10 ticks or so; 13-21
    ms without them (bench/sim_bench.py, tick). What is exempt and later ends in a cycle
    is not freed: at most what existed at the first tick, once."""
    gc.collect()
    gc.freeze()


def simulated(continuum: Clairvoyant, strategy: Strategy | None, predictor: Predictor,
              gates: ControllerConfig | None, dry_run: bool = False,
              explain: bool = False) -> Loop:
    """The loop on a simulated continuum, with `gates` (None: off) on its clock (TICK_S a
    step): how `run`, `evaluate` and the oracle's replays tick."""
    clock = Gates(gates, clock=lambda: continuum.t * TICK_S) if gates else None
    return Loop(continuum, strategy, predictor, clock, dry_run=dry_run, explain=explain)
