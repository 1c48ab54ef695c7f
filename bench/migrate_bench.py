"""Migration timings on the lab (issue 4): time per step and end to end for an intra-cluster
move and an inter-cluster migration, the orchestrator's own overhead (time not spent waiting
for pods, DNS TTL or drain), failed requests under 100 req/s, and how long after the DNS change
the traffic was fully on the target.

    python -m bench.migrate_bench [--rounds 3]       # uses $GREENWISE_LAB_DIR or starts a lab
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from orchestrator.config import load_continuum
from orchestrator.migration.executor import Migrator
from tests.lab.lab import Lab
from tests.test_migrate import deploy, load, teardown

# Waiting for pods, Traefik (route: until the target ingress serves the name) and the DNS TTL +
# drain: not the orchestrator's own work.
WAITS = {"wait_ready", "route", "drain", "rollout"}


def one(lab: Lab, to: str, tmp: Path) -> dict[str, float]:
    d = deploy(lab, tmp)
    try:
        m = Migrator(load_continuum(d.config))
        handle = load(d, rate=100, duration=120)
        time.sleep(1)
        t0 = time.monotonic()
        rec = m.execute(m.plan(d.key, to))
        total = time.monotonic() - t0
        time.sleep(1)
        handle.stop()
        report = handle.result()
        steps = {s.name: (s.ended or s.began) - s.began for s in rec.steps}
        cloud_dns = [t for t, a in report.dns_changes[1:]]
        last_old = max((x.t for x in report.samples
                        if x.backend and not x.backend.startswith(to.split("/")[0] + "/")),
                       default=0.0)
        out = {**steps, "total": total,
               "overhead": total - sum(v for k, v in steps.items() if k in WAITS),
               "failed": float(report.failed), "sent": float(report.sent)}
        if cloud_dns:
            out["old_after_dns_s"] = max(0.0, last_old - cloud_dns[0])
        return out
    finally:
        teardown(d)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    given = os.environ.get("GREENWISE_LAB_DIR")
    lab = Lab(given) if given and Lab(given).running() else None
    started = lab is None
    if lab is None:
        lab = Lab(tempfile.mkdtemp(prefix="greenwise-lab-"))
        lab.up(quiet=True)
    try:
        for kind, to in (("intra-cluster edge0 -> edge1", "edge/edge1"),
                         ("inter-cluster edge -> cloud", "cloud")):
            runs = [one(lab, to, Path(tempfile.mkdtemp())) for _ in range(args.rounds)]
            print(f"\n== {kind}: {args.rounds} rounds, 100 req/s during each")
            for key in runs[0]:
                vals = [r[key] for r in runs if key in r]
                if key in ("failed", "sent"):
                    print(f"  {key:16s} {[int(v) for v in vals]}")
                else:
                    print(f"  {key:16s} median {statistics.median(vals):7.3f} s  "
                          f"(min {min(vals):.3f}, max {max(vals):.3f})")
    finally:
        if started:
            lab.down()


if __name__ == "__main__":
    main()
