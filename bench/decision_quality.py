"""Decision quality (issue 2): every strategy on the test pattern, as `greenwise-mc evaluate`
computes it, for several training seeds, on the paper's scenario and on a different one.

    python bench/decision_quality.py [--seeds 0,1,2] [--episodes 40]
Paper margins (simulation): MaskablePPO >= 97% of the oracle, >= +30% over round-robin,
>= +206% over random; and it should beat every operator baseline (stay, cloud, threshold,
rules): its share of the oracle's headroom over the best of them is printed.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from orchestrator.config import load_scenario
from strategies import rl
from strategies.base import StrategyContext, create
from strategies.evaluation import OPERATOR_BASELINES, comparison, run_episodes

SCENARIOS = ["paper", str(Path(__file__).parent.parent / "docs/scenarios/edge-fog-cloud.yaml")]
BASES = (*OPERATOR_BASELINES, "random", "round-robin", "greedy", "oracle")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--steps", type=int, default=5500)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    for spec in SCENARIOS:
        sc = load_scenario(spec)
        base = {n: run_episodes(create(n, StrategyContext(sc)), sc, args.episodes, 0).summary()
                for n in BASES}
        print(f"\n== {sc.name}: {args.episodes} test episodes, eval seed 0, "
              f"{args.steps} training steps")
        for row in comparison(base):
            print(f"{row['strategy']:12s} mean reward {row['mean_reward']:7.3f}  SLA violations "
                  f"{row['sla_violations']:3d}  moves {row['migrations']:4d}  of headroom "
                  f"{100 * (row['of_headroom'] or 0):+6.1f}%")
        for algo in ("maskppo", "a2c"):
            for seed in [int(s) for s in args.seeds.split(",")]:
                path = tmp / f"{algo}-{seed}.zip"
                rl.train(algo, sc, "power-latency", args.steps, seed, path)
                agent = create(algo, StrategyContext(sc), {"model": path})
                res = {**base, algo: run_episodes(agent, sc, args.episodes, 0).summary()}
                row = next(r for r in comparison(res) if r["strategy"] == algo)
                print(f"{algo:8s} train seed {seed}: reward {row['mean_reward']:7.3f}  "
                      f"of oracle {100 * row['of_oracle']:5.1f}%  "
                      f"vs round-robin {100 * row['vs_round-robin']:+6.1f}%  "
                      f"vs random {100 * row['vs_random']:+7.1f}%  "
                      f"of headroom {100 * (row['of_headroom'] or 0):+6.1f}%  "
                      f"SLA violations {row['sla_violations']}")


if __name__ == "__main__":
    main()
