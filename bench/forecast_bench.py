"""How much of the oracle's lead is knowing the future (issue 13)?

    python -m bench.forecast_bench [--scenarios continuum,docs/scenarios/two-sites.yaml,...]
                                   [--episodes 10] [--seed 0]

The oracle knows every future draw (users, co-tenants, latency noise) and plans every service's
whole episode; lookahead forecasts from what it has seen and plans each service over a short
horizon. Between them, lookahead told the truth over its horizon: each service's workload
pattern (without the noise on it), then the users exactly, then the co-tenants too (never the
latency noise; still planning service by service). Prints per
scenario, under the default gates: reward, share of the oracle's headroom over the best
operator baseline, SLA-violation minutes and moves per simulated day. `--no-gain-gate` runs
them all without the minimum-gain gate, which judges a move on its own step only.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.config import ControllerConfig, load_scenario
from orchestrator.continuum import Continuum
from orchestrator.model import Snapshot
from orchestrator.sim.continuum import SimulatedContinuum
from strategies.base import StrategyContext, create
from strategies.evaluation import OPERATOR_BASELINES, run_episodes
from strategies.lookahead import LookaheadOptions, LookaheadStrategy

DOCS = Path(__file__).parent.parent / "docs/scenarios"
SCENARIOS = (f"continuum,{DOCS / 'two-sites.yaml'},{DOCS / 'plant-depot.yaml'},"
             f"{DOCS / 'stores.yaml'}")


class ToldUsers(LookaheadStrategy):
    """Lookahead whose forecast of users is the episode's true future (simulation only)."""

    needs_future = True

    def reset(self, continuum: Continuum) -> None:
        assert isinstance(continuum, SimulatedContinuum)
        super().reset(continuum)
        self.sim = continuum

    def _ahead(self, row: Sequence[Any]) -> list[Any]:
        """row[t + 1 .. t + horizon] (the last step repeated past the episode's end)."""
        t, last = self.sim.t, len(row) - 1
        return [row[min(t + k, last)] for k in range(1, self.horizon + 1)]

    def forecast(self) -> list[list[int]]:
        return [[int(u) for u in self._ahead(row)] for row in self.sim.episode.users]


class ToldPattern(ToldUsers):
    """... told, instead, each service's workload pattern and where in it the episode runs (the
    offset that fits the episode's users best), but not the noise on it: what a forecast from
    a known daily pattern could know."""

    def reset(self, continuum: Continuum) -> None:
        super().reset(continuum)
        self.patterns = []
        for curve, users in zip(self.sim.curves, self.sim.episode.users, strict=True):
            ticks = np.arange(len(users))
            fits = [np.sum((curve[(o + ticks) % len(curve)] - users) ** 2)
                    for o in range(len(curve))]
            self.patterns.append(curve[(int(np.argmin(fits)) + ticks) % len(curve)])

    def forecast(self) -> list[list[int]]:
        return [[round(u) for u in self._ahead(row)] for row in self.patterns]


class ToldAll(ToldUsers):
    """... and whose forecast of the co-tenants is their true future too."""

    def forecast_background(self, snapshot: Snapshot) -> list[list[float]]:
        return [[float(b) for b in self._ahead(row)] for row in self.sim.episode.background]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", default=SCENARIOS, help="built-in names or YAML files")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-gain-gate", action="store_true",
                    help="every strategy without the minimum-gain gate (the other gates on)")
    args = ap.parse_args()
    gates = ControllerConfig(**({"min_predicted_gain": None} if args.no_gain_gate else {}))
    for spec in args.scenarios.split(","):
        sc = load_scenario(spec)
        context = StrategyContext(sc, seed=args.seed, gates=gates)
        told = {"lookahead told the users' pattern": ToldPattern,
                "lookahead told users": ToldUsers, "lookahead told users+co-tenants": ToldAll}
        agents = {name: create(name, context)
                  for name in (*OPERATOR_BASELINES, "greedy", "lookahead", "oracle")}
        agents.update({name: cls(context, LookaheadOptions()) for name, cls in told.items()})
        figures = {name: run_episodes(a, sc, args.episodes, args.seed, gates=gates).figures()
                   for name, a in agents.items()}
        best = max(OPERATOR_BASELINES, key=lambda b: figures[b]["reward"])
        low, high = figures[best]["reward"], figures["oracle"]["reward"]
        print(f"{spec}: {args.episodes} test episodes (seed {args.seed}), gates on"
              f"{' but the minimum-gain gate' if args.no_gain_gate else ''}; "
              f"best operator baseline {best}")
        print(f"  {'strategy':34s} {'reward':>8s} {'headroom':>9s} {'SLA min/day':>12s} "
              f"{'moves/day':>10s}")
        for name in (best, "greedy", "lookahead", *told, "oracle"):
            f = figures[name]
            share = (f["reward"] - low) / (high - low) if high > low else float("nan")
            print(f"  {name:34s} {f['reward']:8.2f} {100 * share:8.0f}% "
                  f"{f['sla_minutes_per_day']:12.1f} {f['migrations_per_day']:10.1f}")


if __name__ == "__main__":
    main()
