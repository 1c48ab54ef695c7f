"""Decision quality (issues 2 and 13): every strategy on the test pattern, as `greenwise-mc
evaluate` computes it (strategies/experiment.py), the RL strategies over several training
seeds, on the paper's scenario and on others.

    python bench/decision_quality.py [--seeds 0,1,2] [--episodes 40] [--scenarios paper,...]
                                     [--gates auto|on|off]
Prints per scenario `evaluate`'s tables: each strategy's mean ± sd over seeds, its share of the
oracle's headroom over the best operator baseline (stay, cloud, threshold, descheduler,
rules), fleet energy (kWh per simulated day) and what it saves, SLA-violation minutes, and the
paper's margins (simulation: MaskablePPO +206.28 % over random, +29.77 % over round-robin);
then each trained agent per seed.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from orchestrator.cli.common import gates_for
from orchestrator.cli.evaluate import tables
from orchestrator.config import load_scenario
from orchestrator.output import console
from strategies import experiment
from strategies.base import names

SCENARIOS = f"paper,{Path(__file__).parent.parent / 'docs/scenarios/edge-fog-cloud.yaml'}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2", help="training seeds")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--steps", type=int, default=5500, help="training steps per agent")
    ap.add_argument("--scenarios", default=SCENARIOS, help="built-in names or YAML files")
    ap.add_argument("--gates", choices=("auto", "on", "off"), default="auto",
                    help="policy gates; auto: as evaluate (off on paper, on otherwise)")
    args = ap.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    for spec in args.scenarios.split(","):
        sc = load_scenario(spec)
        setup = experiment.Setup(sc, tuple(names()), Path(tempfile.mkdtemp()),
                                 train_seeds=seeds, episodes=args.episodes,
                                 train_steps=args.steps,
                                 gates=gates_for(sc, {"on": True, "off": False}.get(args.gates)))
        rows, training = experiment.run(setup)
        for t in tables(experiment.document(setup, rows, training)):
            console.print(t)


if __name__ == "__main__":
    main()
