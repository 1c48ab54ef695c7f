"""Policy-mode tick cost on the lab as the number of managed services grows: latency per phase and
HTTP requests per tick (counted at the client), then a profile of the largest tick. Prints
figures, asserts nothing.

    GREENWISE_LAB_DIR=DIR python -m bench.tick_bench [--services 1,8,32,128] [--repeat 5]
    # DIR: a lab brought up from this checkout (`tests/lab/run-lab up --dir DIR`), whose fake
    # kubelet knows the idle image; without GREENWISE_LAB_DIR it brings one up and down.

Services are cheap: Deployments of the lab's idle image (`greenwise.io/idle`, no process, with
synthetic per-pod metrics under the catalog's names), spread over every host of the three
clusters, in one namespace of the bench's own (deleted at the end). A tick is what
Controller.tick does: observe (the global Prometheus), decide (action masks from the watch-fed
caches, the strategy, the gates) and plan (Migrator.plan for each move: it runs only for
services that move, and reads the API itself). Round-robin always wants a move and no gate holds
it back in this dry run, so every service plans every tick: the plan column is the cost per
moved service, not a per-tick constant (a real run starts at most max_concurrent_migrations).

Requests are counted by wrapping requests' Session.send: per phase, Kubernetes apart from
Prometheus, and the caches' own LIST/WATCH (background threads, per cluster, not per tick).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from requests import Session

from orchestrator.config import load_continuum, parse_yaml
from orchestrator.control.gates import Gates
from orchestrator.control.loop import Loop
from orchestrator.kube.clusters import Clusters
from orchestrator.kube.continuum import KubePlan, KubernetesContinuum
from orchestrator.model import Move
from orchestrator.monitoring import HostReading, Readings, Sample, ServiceReading, observe
from strategies.base import StrategyContext, create
from strategies.prediction import Predictor
from tests.lab.lab import REPO, Lab

IDLE_IMAGE = "greenwise.io/idle:lab"


class RequestCounter:
    """HTTP requests at the client, by (phase, target): target `kubernetes`, `prometheus`, or
    `caches` (requests made in the informers' threads)."""

    def __init__(self, prometheus_url: str) -> None:
        self.prometheus = urlsplit(prometheus_url).netloc
        self.phase = "setup"
        self.counts: Counter[tuple[str, str]] = Counter()
        self._send = Session.send

    @contextmanager
    def installed(self) -> Iterator[RequestCounter]:
        counter, send = self, self._send

        def counted(session: Session, request: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name.startswith("informer-"):
                target = "caches"
            elif urlsplit(request.url).netloc == counter.prometheus:
                target = "prometheus"
            else:
                target = "kubernetes"
            counter.counts[counter.phase, target] += 1
            return send(session, request, *args, **kwargs)

        Session.send = counted  # type: ignore[method-assign]
        try:
            yield self
        finally:
            Session.send = send  # type: ignore[method-assign]

    def take(self) -> Counter[tuple[str, str]]:
        taken, self.counts = self.counts, Counter()
        return taken


def idle_deployment(ns: str, name: str, node: str, hostname: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels, "annotations": {
                    "greenwise.io/idle-rps": "10", "greenwise.io/idle-latency-ms": "25",
                    "greenwise.io/idle-cpu": "0.02", "greenwise.io/idle-users": "2",
                    "greenwise.io/idle-hostname": hostname}},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                         "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "ml", "image": IDLE_IMAGE, "resources": {
                             "requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}}


def deploy(lab: Lab, ns: str, count: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`count` idle services over every host in turn; (the lab's config, the services' entries)."""
    doc = parse_yaml(lab.continuum_file.read_text())
    clusters = Clusters(load_continuum(lab.continuum_file))
    hosts = [(c["name"], h["name"]) for c in doc["clusters"] for h in c["hosts"]]
    for c in clusters:
        c.ensure_namespace(ns, {})
    zone = doc["dns"]["zone"].rstrip(".")
    services = []
    for i in range(count):
        cluster, node = hosts[i % len(hosts)]
        hostname = f"svc{i}.{ns}.{zone}"
        clusters[cluster].create(idle_deployment(ns, f"svc{i}", node, hostname))
        services.append({"namespace": ns, "name": f"svc{i}", "hostname": hostname})
    return doc, services


def remove(lab: Lab, ns: str) -> None:
    for c in Clusters(load_continuum(lab.continuum_file), retry_seconds=2):
        if c.namespace_labels(ns) is not None:
            c.delete_namespace(ns)


def stand_in(continuum: KubernetesContinuum, readings: Readings) -> tuple[Readings, int]:
    """Readings with every invalid service replaced by nominal values where the caches see it."""
    fresh = Sample(1.0, 0.0)
    hosts = tuple(HostReading(h.cluster, h.name, h.power_w or fresh, h.cpu or fresh, ())
                  for h in readings.hosts)
    services, replaced = [], 0
    for s in readings.services:
        place = None if s.valid else continuum.place(s.key)
        if place is None:
            services.append(s)
            continue
        replaced += 1
        services.append(ServiceReading(s.key, place, Sample(5.0, 0), Sample(0.1, 0),
                                       Sample(100.0, 0), Sample(10.0, 0), Sample(10.0, 0), ()))
    return Readings(hosts, tuple(services)), replaced


def wait_valid(config: Path, timeout: float) -> int:
    """Wait until every service's observation is valid (or the timeout); how many are."""
    cfg = load_continuum(config)
    assert cfg.prometheus is not None
    deadline = time.monotonic() + timeout
    while True:
        valid = sum(s.valid for s in observe(cfg.prometheus.url, cfg).services)
        if valid == len(cfg.services) or time.monotonic() > deadline:
            return valid
        time.sleep(3)


def measure(config: Path, repeat: int, counter: RequestCounter,
            profile: cProfile.Profile | None = None, moves: bool = True) -> dict[str, Any]:
    """Median figures of `repeat` ticks (after one to warm up); the last one profiled if asked.
    Without `moves` the gain gate holds every move back: nothing is planned."""
    cfg = load_continuum(config)
    continuum = KubernetesContinuum(cfg)
    scenario = continuum.scenario
    strategy = create("round-robin", StrategyContext(scenario, on_clusters=True))
    gates = Gates(cfg.controller.model_copy(
        update={"min_predicted_gain": None if moves else float("inf")}))
    loop = Loop(continuum, strategy, Predictor(scenario), gates, dry_run=True)
    plan_s: list[float] = []
    plan = continuum.plan

    def timed_plan(move: Move) -> KubePlan:
        before, t0 = counter.phase, time.perf_counter()
        counter.phase = "plan"
        try:
            return plan(move)
        finally:
            plan_s.append(time.perf_counter() - t0)
            counter.phase = before

    continuum.plan = timed_plan  # type: ignore[method-assign]
    ticks: list[dict[str, Any]] = []
    try:
        for i in range(repeat + 1):  # the first starts the caches and warms up: dropped
            counter.take()
            plan_s.clear()
            if profile is not None and i == repeat:
                profile.enable()
            t0 = time.perf_counter()
            counter.phase = "observe"
            readings = continuum.refresh()
            t1 = time.perf_counter()
            continuum.readings, stand_ins = stand_in(continuum, readings)
            snapshot = continuum.snapshot_of(continuum.readings)
            counter.phase = "decide"
            t2 = time.perf_counter()
            masks = continuum.masks(snapshot)
            decisions = loop.act(snapshot, masks, strategy.decide(snapshot, masks)).decisions
            t3 = time.perf_counter()
            if profile is not None and i == repeat:
                profile.disable()
            counts = counter.take()
            ticks.append({"observe": t1 - t0, "decide": t3 - t2 - sum(plan_s),
                          "plan": sum(plan_s), "plans": len(plan_s),
                          "planned": sum(bool(d.steps) for d in decisions),
                          "stand_ins": stand_ins, "counts": counts})
    finally:
        continuum.close()
    started = sum(v for (_, k), v in ticks[0]["counts"].items() if k == "caches")
    ticks = ticks[1:]

    def median(f: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(f(t) for t in ticks)

    last = ticks[-1]
    return {
        "observe_ms": 1000 * median(lambda t: t["observe"]),
        "decide_ms": 1000 * median(lambda t: t["decide"]),
        "tick_ms": 1000 * median(lambda t: t["observe"] + t["decide"]),
        "plan_ms": 1000 * median(lambda t: t["plan"] / max(1, t["plans"])),
        "plans": last["plans"], "planned": last["planned"], "stand_ins": last["stand_ins"],
        "prom_req": median(lambda t: sum(v for (_, k), v in t["counts"].items()
                                          if k == "prometheus")),
        "kube_req": median(lambda t: t["counts"]["observe", "kubernetes"]
                           + t["counts"]["decide", "kubernetes"]),
        "plan_req": median(lambda t: t["counts"]["plan", "kubernetes"] / max(1, t["plans"])),
        "cache_req": sum(v for t in ticks for (_, k), v in t["counts"].items() if k == "caches"),
        "start_req": started,
    }


def own_lab(given: str | None) -> tuple[Lab | None, str | None]:
    """The lab to use (None: bring one up) or why the given one cannot serve."""
    if not given or not Lab(given).running():
        return None, None
    lab = Lab(given)
    kubelet = next((p for p in lab.procs() if p.name.endswith("-kubelet")), None)
    if kubelet is None or kubelet.cwd != str(REPO):
        return lab, (f"the lab at {given} runs the fake kubelet of "
                     f"{kubelet.cwd if kubelet else '?'}, not of {REPO}: it does not know the "
                     f"idle image; bring up a lab from this checkout "
                     f"({REPO}/tests/lab/run-lab up --dir DIR) and set GREENWISE_LAB_DIR=DIR")
    return lab, None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", default="1,8,32,128")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile-top", type=int, default=15)
    args = ap.parse_args()
    counts = sorted({int(n) for n in args.services.split(",")})
    lab, problem = own_lab(os.environ.get("GREENWISE_LAB_DIR"))
    if problem:
        print(problem, file=sys.stderr)
        return 2
    started = lab is None
    with tempfile.TemporaryDirectory() as tmp:
        if lab is None:
            lab = Lab(Path(tmp) / "lab")
            lab.up(quiet=True)
        ns = f"tick-{uuid.uuid4().hex[:6]}"
        try:
            t0 = time.monotonic()
            base, services = deploy(lab, ns, max(counts))
            base["state_dir"] = str(Path(tmp) / "state")
            everything = Path(tmp) / "all.yaml"
            everything.write_text(yaml.safe_dump({**base, "services": services}))
            valid = wait_valid(everything, timeout=180)
            print(f"{len(services)} idle services deployed in {ns}; {valid} observed valid "
                  f"after {time.monotonic() - t0:.0f} s")
            counter = RequestCounter(base["prometheus"]["url"])
            profile = cProfile.Profile()
            print(f"\npolicy tick on the lab (dry run, round-robin; median of {args.repeat})")
            print(f"{'services':>8} {'observe':>8} {'decide':>7} {'tick':>7} {'plan/move':>9} "
                  f"{'prom':>5} {'kube':>5} {'plan':>5} {'bg':>4}  note")
            print(f"{'':>8} {'ms':>8} {'ms':>7} {'ms':>7} {'ms':>9} {'req':>5} {'req':>5} "
                  f"{'req':>5} {'req':>4}")
            with counter.installed():
                for n in counts:
                    cfg = Path(tmp) / f"c{n}.yaml"
                    cfg.write_text(yaml.safe_dump({**base, "services": services[:n]}))
                    r = measure(cfg, args.repeat, counter)
                    note = f"{r['plans']} plans/tick; caches started with {r['start_req']} req"
                    if r["stand_ins"]:
                        note += f"; stand-in observation for {r['stand_ins']} (invalid)"
                    print(f"{n:>8} {r['observe_ms']:>8.1f} {r['decide_ms']:>7.1f} "
                          f"{r['tick_ms']:>7.1f} {r['plan_ms']:>9.1f} {r['prom_req']:>5.0f} "
                          f"{r['kube_req']:>5.0f} {r['plan_req']:>5.1f} {r['cache_req']:>4}  "
                          f"{note}")
                held = measure(cfg, 1, counter, profile, moves=False)
            print("  tick = observe + decide (masks, strategy, gates); plan/move and plan req: "
                  "per moved service;\n  kube req: Kubernetes requests in observe + decide; "
                  "bg: the caches' LIST/WATCH during all measured ticks")
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out).sort_stats("cumulative")
            stats.print_stats("orchestrator|strategies|monitoring|cache", args.profile_top)
            print(f"\nprofile of one tick with {counts[-1]} services, every move held by the "
                  f"gain gate (nothing planned; {held['tick_ms']:.0f} ms, "
                  f"{held['kube_req']:.0f} Kubernetes requests), by cumulative time:")
            print("\n".join(line for line in out.getvalue().splitlines()[5:] if line.strip()))
        finally:
            remove(lab, ns)
            if started:
                lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
