"""Write measurements-example.csv: synthetic power measurements of the GreenWise paper's hosts.

Idle and max watts are the paper's Table 3 (edge0 19.0/58.5, edge1 36.6/69.7, edge2 21.4/102,
cloud 162/280). Between them each host follows a different non-linear shape of CPU utilization
u, plus seeded Gaussian noise of 0.3 W + 1 % of max:

  edge0  concave cubic   1.8u - 1.1u^2 + 0.3u^3
  edge1  convex cubic    0.3u + 0.2u^2 + 0.5u^3
  edge2  S-shaped        a logistic step around u = 0.55 (turbo above half load)
  cloud  saturating      (1 - e^(-3u)) / (1 - e^(-3))

    python3 docs/power/make_example.py            # -> docs/power/measurements-example.csv
    greenwise-mc power-model fit docs/power/measurements-example.csv --out /tmp/pm.yaml
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

HOSTS: dict[str, tuple[float, float, Callable[[float], float]]] = {
    "edge0": (19.0, 58.5, lambda u: 1.8 * u - 1.1 * u**2 + 0.3 * u**3),
    "edge1": (36.6, 69.7, lambda u: 0.3 * u + 0.2 * u**2 + 0.5 * u**3),
    "edge2": (21.4, 102.0,
              lambda u: (_logistic(u) - _logistic(0.0)) / (_logistic(1.0) - _logistic(0.0))),
    "cloud": (162.0, 280.0, lambda u: (1 - math.exp(-3 * u)) / (1 - math.exp(-3))),
}
ROWS_PER_HOST = 150
SEED = 7


def _logistic(u: float) -> float:
    return 1.0 / (1.0 + math.exp(-14.0 * (u - 0.55)))


def main(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["host", "cpu_utilization", "watts"])
        for host, (idle, top, shape) in HOSTS.items():
            for u in np.round(rng.uniform(0.0, 1.0, ROWS_PER_HOST), 3):
                watts = idle + (top - idle) * shape(float(u)) + rng.normal(0.0, 0.3 + 0.01 * top)
                w.writerow([host, f"{u:.3f}", f"{watts:.2f}"])


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else
         Path(__file__).with_name("measurements-example.csv"))
