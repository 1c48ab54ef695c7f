"""Figures for the continuum lab: install time (cold on request), warm `up`, RSS, first route.

    python bench/lab_bench.py            # warm install check, warm up, RSS, first routed request
    python bench/lab_bench.py --cold     # also a cold build into a temporary cache (~7 min)
    python bench/lab_bench.py --ups 3    # repeat the warm up/down cycle

Prints figures; asserts nothing. Every lab it starts is stopped (by PID) before it exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.lab.lab import Lab  # noqa: E402
from tests.lab.workloads import ml_service, namespace, ready_pod_on, wait_for  # noqa: E402

INSTALL = REPO / "tests" / "lab" / "install.sh"


def timed_install(cache: Path | None) -> float:
    env = {**os.environ, **({"GREENWISE_LAB_CACHE": str(cache)} if cache else {})}
    t0 = time.monotonic()
    subprocess.run(["bash", str(INSTALL)], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL if cache is None else None)
    return time.monotonic() - t0


def first_route(lab: Lab) -> float:
    """Seconds from creating an ML Deployment + Service + IngressRoute to a routed answer."""
    import httpx
    kube = lab.kube("edge")
    ingress = lab.info()["clusters"]["edge"]["ingress"]
    t0 = time.monotonic()
    namespace(kube, "bench")
    ml_service(kube, "bench", "ml", node="edge0", host="bench.continuum.test")
    wait_for("pod Ready", lambda: ready_pod_on(kube, "bench", "ml", "edge0"))

    def routed() -> bool:
        try:
            return httpx.get(f"http://{ingress}/predictions/resnet-18", timeout=2, trust_env=False,
                             headers={"Host": "bench.continuum.test"}).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("routed answer", routed, timeout=60, every=0.02)
    return time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cold", action="store_true", help="time a cold build into a temp cache")
    p.add_argument("--ups", type=int, default=1, help="warm up/down cycles to time")
    a = p.parse_args()
    print(f"machine: {os.cpu_count()} cores")
    if a.cold:
        cache = Path(tempfile.mkdtemp(prefix="lab-cold-cache-"))
        try:
            print(f"cold install+build (packages present, empty cache): "
                  f"{timed_install(cache):.1f} s")
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    print(f"warm install check: {timed_install(None):.2f} s")
    for i in range(a.ups):
        state = Path(tempfile.mkdtemp(prefix="lab-bench-"))
        lab = Lab(state)
        try:
            t0 = time.monotonic()
            lab.up(quiet=True)
            up = time.monotonic() - t0
            print(f"warm up #{i + 1} (3 clusters, bind9, 4 Prometheus): {up:.1f} s")
            if i == 0:
                route = first_route(lab)
                print(f"Deployment created -> first routed answer: {route:.2f} s")
                time.sleep(5)  # let Prometheus and the pods settle before measuring memory
                rss = lab.rss_mb()
                for name, mb in sorted(rss.items(), key=lambda kv: -kv[1]):
                    print(f"  {name:28} {mb:7.1f} MB")
                print(f"total RSS of the running lab: {sum(rss.values()) / 1024:.2f} GB "
                      f"({len(rss)} recorded processes, pods included)")
        finally:
            t0 = time.monotonic()
            lab.down()
            print(f"down: {time.monotonic() - t0:.1f} s")
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
