"""Policy-mode tick latency on the lab: observe (the global Prometheus) + decide (the strategy,
with the action mask's check_node calls) + plan (Migrator.plan of the chosen move), for one
service, then as the number of services and of clusters grows. Prints figures, asserts nothing.

    python -m bench.tick_bench [--repeat 5] [--services 1,2,4,8]
    # uses the running lab at $GREENWISE_LAB_DIR, or brings one up and down

Round-robin decides (it always wants a move, and no gate holds it back), so every tick plans a
migration per service; it is a dry run, nothing changes. Every service gets a light closed-loop
load (2 users) through the lab's DNS and ingress so that its observation is real; where it is
still not valid (e.g. an exporter missing), decide and plan run on a stand-in observation at the
service's real placement, and the table says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config import load_continuum
from orchestrator.kube.continuum import KubernetesContinuum
from orchestrator.migration.executor import locate
from orchestrator.model import Location
from orchestrator.monitoring import (
    HostReading,
    Readings,
    Sample,
    ServiceReading,
    observe,
)
from orchestrator.policy import EventLog, Guard, PolicyLoop
from strategies.base import StrategyOptions, create
from strategies.prediction import Predictor
from tests.lab.lab import Lab
from tests.test_migrate import deploy, load, teardown


def stand_in(continuum: KubernetesContinuum, readings: Readings) -> tuple[Readings, int]:
    """Readings with every invalid service replaced by nominal values at its real place."""
    fresh = Sample(1.0, 0.0)
    hosts = tuple(HostReading(h.cluster, h.name, h.power_w or fresh, h.cpu or fresh, ())
                  for h in readings.hosts)
    services, replaced = [], 0
    for s in readings.services:
        if s.valid:
            services.append(s)
            continue
        replaced += 1
        p = locate(continuum.clusters, continuum.config.service(s.key))
        services.append(ServiceReading(s.key, Location(p.cluster, p.nodes[0]), Sample(5.0, 0),
                                       Sample(0.1, 0), Sample(100.0, 0), Sample(10.0, 0),
                                       Sample(10.0, 0), ()))
    return Readings(hosts, tuple(services)), replaced


def measure(config: Path, repeat: int) -> dict[str, Any]:
    cfg = load_continuum(config)
    continuum = KubernetesContinuum(cfg)
    scenario = cfg.scenario()
    strategy = create("round-robin", StrategyOptions(scenario))
    guard = Guard(cfg.controller.model_copy(update={"min_predicted_gain": None}))
    loop = PolicyLoop(continuum, strategy, "round-robin", Predictor(scenario), guard,
                      EventLog(open(os.devnull, "w")), dry_run=True)  # noqa: SIM115
    observe_s, decide_s, stand_ins, planned = [], [], 0, 0
    for _ in range(repeat + 1):  # the first warms connections up and is dropped
        t0 = time.perf_counter()
        readings = continuum.refresh()
        t1 = time.perf_counter()
        continuum.readings, stand_ins = stand_in(continuum, readings)
        t2 = time.perf_counter()
        decisions = loop.decide_all(continuum.readings)
        t3 = time.perf_counter()
        observe_s.append(t1 - t0)
        decide_s.append(t3 - t2)
        planned = sum(bool(d.steps) for d in decisions)
    observe_s, decide_s = observe_s[1:], decide_s[1:]
    total = [a + b for a, b in zip(observe_s, decide_s, strict=True)]
    return {"observe_ms": 1000 * statistics.median(observe_s),
            "decide_plan_ms": 1000 * statistics.median(decide_s),
            "tick_ms": 1000 * statistics.median(total), "tick_max_ms": 1000 * max(total),
            "planned": planned, "stand_ins": stand_ins}


def wait_valid(config: Path, timeout: float = 120) -> int:
    """Wait until every service's observation is valid (or the timeout); how many are."""
    cfg = load_continuum(config)
    deadline = time.monotonic() + timeout
    while True:
        valid = sum(s.valid for s in observe(cfg.prometheus.url, cfg).services)
        if valid == len(cfg.services) or time.monotonic() > deadline:
            return valid
        time.sleep(3)


def write_config(base: dict[str, Any], services: list[dict[str, Any]], clusters: int,
                 path: Path) -> Path:
    doc = {**base, "services": services, "clusters": base["clusters"][:clusters]}
    path.write_text(yaml.safe_dump(doc))
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--services", default="1,2,4,8")
    args = ap.parse_args()
    counts = sorted({int(n) for n in args.services.split(",")})
    given = os.environ.get("GREENWISE_LAB_DIR")
    lab = Lab(given) if given and Lab(given).running() else None
    own = lab is None
    with tempfile.TemporaryDirectory() as tmp:
        if lab is None:
            lab = Lab(Path(tmp) / "lab")
            lab.up(quiet=True)
        deployed: list[Any] = []
        loads: list[Any] = []
        try:
            for i in range(max(counts)):
                (Path(tmp) / f"svc{i}").mkdir()
                deployed.append(deploy(lab, Path(tmp) / f"svc{i}"))
            loads += [load(d, rate=20, duration=600, users=2) for d in deployed]
            base = yaml.safe_load(deployed[0].config.read_text())
            specs = [yaml.safe_load(d.config.read_text())["services"][0] for d in deployed]
            print(f"policy tick on the lab (dry run, round-robin; median of {args.repeat})")
            print(f"{'services':>8} {'clusters':>8} {'observe ms':>11} {'decide+plan ms':>15} "
                  f"{'tick ms':>8} {'max ms':>7} {'planned':>8}  note")
            cases = [(n, 3) for n in counts] + [(1, c) for c in (1, 2)]
            everything = write_config(base, specs, 3, Path(tmp) / "all.yaml")
            print(f"  ({wait_valid(everything)} of {len(specs)} services observed valid)")
            for n, c in cases:
                cfg = write_config(base, specs[:n], c, Path(tmp) / f"c{n}-{c}.yaml")
                r = measure(cfg, args.repeat)
                note = (f"stand-in observation for {r['stand_ins']} (invalid on the lab)"
                        if r["stand_ins"] else "")
                print(f"{n:>8} {c:>8} {r['observe_ms']:>11.1f} {r['decide_plan_ms']:>15.1f} "
                      f"{r['tick_ms']:>8.1f} {r['tick_max_ms']:>7.1f} {r['planned']:>8}  {note}")
        finally:
            for handle in loads:
                handle.stop()
            for d in deployed:
                teardown(d)
            if own:
                lab.down()


if __name__ == "__main__":
    main()
