"""Migration timings on the lab: time per step and end to end for an intra-cluster move and an
inter-cluster migration, each as a first hop and as a return hop (back to where the service was:
the target still holds its forwarder and route), the orchestrator's own overhead (time not
spent waiting for pods, Traefik, DNS TTL or drain), failed requests under 100 req/s through
bind9 and of a client inside edge calling `resnet` through edge's cluster DNS (10 req/s), and
how long after the DNS change the traffic was fully on the target. Then failover: edge's API
server frozen (SIGSTOP), `migrate --to cloud` from the manifests kept at the last move; the time
from "edge dead" to the first request served by cloud, and the failed requests.

    python -m bench.migrate_bench [--rounds 3]       # uses $GREENWISE_LAB_DIR or starts a lab
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from orchestrator.config import load_continuum
from orchestrator.migration.executor import Migrator
from tests.lab.lab import Lab
from tests.test_migrate import deploy, in_cluster_load, load, teardown

# Waiting for pods, Traefik (route: until the target ingress serves the name) and the DNS TTL
# (forward waits it once, drain again, with in-flight requests): not the orchestrator's own work.
WAITS = {"wait_ready", "route", "forward", "drain", "rollout"}


def one(lab: Lab, hops: list[str], tmp: Path) -> dict[str, float]:
    """The hops in turn under 100 req/s; timings of the last (a return hop when it goes back),
    failed requests over all of them."""
    d = deploy(lab, tmp)
    try:
        m = Migrator(load_continuum(d.config))
        handle = load(d, rate=100, duration=240)
        inside = in_cluster_load(d, "edge", "resnet", rate=10, duration=240)
        time.sleep(1)
        for to in hops:
            hop_started = time.time() - handle.started_at
            t0 = time.monotonic()
            rec = m.execute(m.plan(d.key, to))
            total = time.monotonic() - t0
            time.sleep(1)
        handle.stop()
        report, in_edge = handle.result(), inside.stop()
        steps = {s.name: (s.ended or s.began) - s.began for s in rec.steps}
        target = hops[-1].split("/")[0]
        dns_moves = [t for t, _ in report.dns_changes[1:] if t >= hop_started]
        last_old = max((x.t for x in report.samples if x.t >= hop_started and x.backend
                        and not x.backend.startswith(target + "/")), default=0.0)
        out = {**steps, "total": total,
               "overhead": total - sum(v for k, v in steps.items() if k in WAITS),
               "failed": float(report.failed), "sent": float(report.sent),
               "in_edge_failed": float(in_edge.failed), "in_edge_sent": float(in_edge.sent)}
        if dns_moves and len(hops[-1].split("/")) == 1:
            out["old_after_dns_s"] = max(0.0, last_old - dns_moves[0])
        return out
    finally:
        teardown(d)


def failover(lab: Lab, tmp: Path) -> dict[str, float]:
    d = deploy(lab, tmp)
    apiserver = next(p for p in lab.procs() if p.name == "edge-apiserver")
    try:
        first = Migrator(load_continuum(d.config))
        first.execute(first.plan(d.key, "edge/edge1"))  # a migration: the manifests are kept
        quick = load_continuum(d.config).model_copy(update={"api_timeout_s": 2.0,
                                                            "api_retry_s": 2.0})
        handle = load(d, rate=100, duration=240)
        time.sleep(1)
        os.kill(apiserver.pid, signal.SIGSTOP)
        dead_at = time.time() - handle.started_at
        try:
            t0 = time.monotonic()
            m = Migrator(quick)
            m.execute(m.plan(d.key, "cloud"))
            total = time.monotonic() - t0
            time.sleep(2)
        finally:
            os.kill(apiserver.pid, signal.SIGCONT)
        handle.stop()
        report = handle.result()
        Migrator(load_continuum(d.config)).fence_returned()
        served = min(x.t for x in report.samples if (x.backend or "").startswith("cloud/"))
        return {"migrate_s": total, "dead_to_served_s": served - dead_at,
                "failed": float(report.failed), "sent": float(report.sent)}
    finally:
        os.kill(apiserver.pid, signal.SIGCONT)
        teardown(d)


def show(kind: str, runs: list[dict[str, float]]) -> None:
    print(f"\n== {kind}: {len(runs)} rounds (failed, sent: over all its hops; the rest: the "
          "last hop)")
    for key in runs[0]:
        vals = [r[key] for r in runs if key in r]
        if key.endswith(("failed", "sent")):
            print(f"  {key:16s} {[int(v) for v in vals]}")
        else:
            print(f"  {key:16s} median {statistics.median(vals):7.3f} s  "
                  f"(min {min(vals):.3f}, max {max(vals):.3f})")


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
        for kind, hops in (("intra-cluster edge0 -> edge1", ["edge/edge1"]),
                           ("intra-cluster return edge1 -> edge0", ["edge/edge1", "edge/edge0"]),
                           ("inter-cluster edge -> cloud", ["cloud"]),
                           ("inter-cluster return hop cloud -> edge", ["cloud", "edge"])):
            show(f"{kind}, 100 req/s", [one(lab, hops, Path(tempfile.mkdtemp()))
                                        for _ in range(args.rounds)])
        show("failover edge (API server frozen) -> cloud, 100 req/s",
             [failover(lab, Path(tempfile.mkdtemp())) for _ in range(args.rounds)])
    finally:
        if started:
            lab.down()


if __name__ == "__main__":
    main()
