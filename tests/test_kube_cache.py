"""The watch-fed caches (orchestrator.kube.cache) against the lab's real apiservers: events
applied, a resync after 410 Gone and after a dropped watch, threads that end on close(); and a
policy tick whose API request count does not grow with the number of managed services."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import load_continuum
from orchestrator.kube.cache import (
    NODES,
    ClusterCache,
    Informer,
    Resource,
    deployments,
    interrupt,
)
from orchestrator.kube.clusters import Cluster, Clusters
from orchestrator.kube.continuum import KubernetesContinuum
from orchestrator.model import Location, Move
from orchestrator.monitoring import HostReading, Readings, Sample, ServiceReading
from tests.lab.lab import Lab
from tests.lab.workloads import wait_for

pytestmark = pytest.mark.lab
Obj = dict[str, Any]


def deployment(ns: str, name: str, replicas: int = 0, node: str = "edge0") -> Obj:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                         "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "main", "image": "busybox",
                                         "command": ["sleep", "3600"],
                                         "resources": {"requests": {"cpu": "100m"}}}]}}}}


@pytest.fixture
def edge(lab: Lab) -> Iterator[tuple[Cluster, str]]:
    """The edge cluster and a namespace of the test's own, deleted at the end."""
    cluster = Clusters(load_continuum(lab.continuum_file))["edge"]
    ns = f"cache-{uuid.uuid4().hex[:6]}"
    cluster.ensure_namespace(ns, {})
    try:
        yield cluster, ns
    finally:
        cluster.delete_namespace(ns)


def test_events_are_applied(edge: tuple[Cluster, str]) -> None:
    cluster, ns = edge
    cache = ClusterCache(cluster, [ns])
    cache.start()
    try:
        assert cache.wait_synced(10)
        view = cache.view()
        assert set(view.nodes) == {"edge0", "edge1", "edge2"}
        cluster.create(deployment(ns, "a"))
        got = wait_for("ADDED", lambda: cache.deployments[ns].get(ns, "a"), timeout=10)
        assert got["spec"]["replicas"] == 0
        cluster.patch("Deployment", ns, "a", {"spec": {"replicas": 1}})
        wait_for("MODIFIED", lambda: (d := cache.deployments[ns].get(ns, "a")) and
                 d["spec"]["replicas"] == 1, timeout=10)
        pod = wait_for("its pod, bound to edge0", lambda: [
            p for p in cache.view().pods_by_node.get("edge0", [])
            if p["metadata"]["namespace"] == ns], timeout=30)[0]
        assert cache.view().pods_of(cache.deployments[ns].get(ns, "a") or {}) == [pod]
        assert cache.age_s() < 60
        cluster.delete("Deployment", ns, "a")
        wait_for("DELETED", lambda: cache.deployments[ns].get(ns, "a") is None, timeout=10)
        wait_for("its pod gone", lambda: not [p for p in cache.pods.items()
                                              if p["metadata"]["namespace"] == ns], timeout=30)
    finally:
        cache.close()
    assert not any(i._thread and i._thread.is_alive() for i in cache.informers)


def test_expired_watch_resyncs(edge: tuple[Cluster, str]) -> None:
    cluster, ns = edge
    # IngressRoutes: a custom resource, whose watch cache starts when its CRD is installed, so
    # resourceVersion 1 is older than anything the apiserver can replay: 410 Gone, for real.
    routes = Resource("IngressRoute", "traefik.io/v1alpha1", "ingressroutes", ns)
    cluster.create({"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
                    "metadata": {"name": "kept", "namespace": ns},
                    "spec": {"routes": [{"kind": "Rule", "match": "Host(`kept.test`)",
                                         "services": [{"name": "kept", "port": 80}]}]}})
    # The server ends each watch after 1 s: the informer then watches again from its version.
    informer = Informer(cluster, routes, watch_timeout_s=1)
    informer.start()
    try:
        assert informer.wait_synced(10) and informer.lists == 1
        with informer._lock:  # as if events were missed, and the version compacted away
            informer._store.clear()
            informer._version = "1"
        wait_for("a resync", lambda: informer.lists == 2, timeout=15)
        assert informer.expired == 1 and informer.error is None  # a 410, not a dropped watch
        assert informer.synced and informer.get(ns, "kept") is not None
    finally:
        informer.close()


def test_dropped_watch_resyncs(edge: tuple[Cluster, str]) -> None:
    cluster, ns = edge
    cluster.create(deployment(ns, "kept"))
    informer = Informer(cluster, deployments(ns))
    informer.start()
    try:
        assert informer.wait_synced(10)
        wait_for("the watch open", lambda: informer._response is not None, timeout=10)
        with informer._lock:
            informer._store.clear()
        response = informer._response
        assert response is not None
        interrupt(response)  # the connection drops
        wait_for("a resync", lambda: informer.lists == 2, timeout=15)
        assert informer.synced and informer.get(ns, "kept") is not None
        cluster.create(deployment(ns, "after"))  # and it watches again
        wait_for("an event after the resync", lambda: informer.get(ns, "after"), timeout=10)
    finally:
        informer.close()
    assert informer._thread is not None and not informer._thread.is_alive()


def test_unreachable_cluster_is_not_synced(lab: Lab, tmp_path: Path) -> None:
    doc = yaml.safe_load(lab.continuum_file.read_text())
    kubeconfig = yaml.safe_load(Path(doc["clusters"][0]["kubeconfig"]).read_text())
    for c in kubeconfig["clusters"]:
        c["cluster"]["server"] = "https://127.0.0.1:1"  # nothing listens there
    (tmp_path / "kc.yaml").write_text(yaml.safe_dump(kubeconfig))
    doc["clusters"][0]["kubeconfig"] = str(tmp_path / "kc.yaml")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc))
    cluster = Clusters(load_continuum(tmp_path / "c.yaml"))[doc["clusters"][0]["name"]]
    informer = Informer(cluster, NODES)
    informer.start()
    try:
        assert not informer.wait_synced(1.0)
        wait_for("the error recorded", lambda: informer.error, timeout=10)
        assert "ConnectionError" in str(informer.error)
    finally:
        informer.close()


def standin(continuum: KubernetesContinuum) -> Readings:
    """Every service valid at edge/edge0: what Prometheus would say once it observes them."""
    s = Sample(1.0, 0.0)
    hosts = tuple(HostReading(loc.cluster, loc.node, s, s, ()) for loc in continuum.locations)
    return Readings(hosts, tuple(ServiceReading(k, Location("edge", "edge0"), s, s, s, s, s, ())
                                 for k in continuum.services))


def tick_requests(lab: Lab, tmp_path: Path, ns: str, services: int) -> tuple[int, int, int]:
    """Two ticks' observe + every action mask: (Kubernetes API requests the ticks made, the
    caches' own LIST + WATCH requests in all, feasible hosts)."""
    doc = yaml.safe_load(lab.continuum_file.read_text())
    zone = doc["dns"]["zone"].rstrip(".")
    doc["services"] = [{"namespace": ns, "name": f"svc{i}", "hostname": f"svc{i}.{ns}.{zone}"}
                       for i in range(services)]
    doc["state_dir"] = str(tmp_path / f"state{services}")
    path = tmp_path / f"c{services}.yaml"
    path.write_text(yaml.safe_dump(doc))
    continuum = KubernetesContinuum(load_continuum(path))
    try:
        assert continuum.caches.start(wait_s=10)  # they list and watch once, not per tick
        informers = [i for c in continuum.caches._caches.values() for i in c.informers]
        wait_for("every watch open", lambda: all(i._response for i in informers), timeout=10)
        ticks, feasible = 0, 0
        for _ in range(2):
            before = continuum.clusters.requests
            continuum.refresh()
            continuum.readings = standin(continuum)
            feasible += sum(continuum.can_host(k, h) for k in continuum.services
                            for h in range(len(continuum.hosts)))
            ticks += continuum.clusters.requests - before
        return ticks, continuum.caches.requests, feasible
    finally:
        continuum.close()


def test_tick_requests_do_not_grow_with_services(edge: tuple[Cluster, str], lab: Lab,
                                                 tmp_path: Path) -> None:
    cluster, ns = edge
    for i in range(8):
        cluster.create(deployment(ns, f"svc{i}", replicas=1))
    one, caches_one, feasible_one = tick_requests(lab, tmp_path, ns, 1)
    eight, caches_eight, feasible_eight = tick_requests(lab, tmp_path, ns, 8)
    assert one == eight == 0
    # per cluster: a LIST and a WATCH of nodes, of pods and of the one managed namespace's
    # Deployments, whatever the number of services
    assert caches_one == caches_eight == 3 * 3 * 2
    assert feasible_one > 0 and feasible_eight == 8 * feasible_one  # the masks were computed


def test_moves_of_one_tick_count_each_others_requests(edge: tuple[Cluster, str], lab: Lab,
                                                      tmp_path: Path) -> None:
    """Two services that each fit a node alone but not together: once a move of the first is
    accepted in the tick, the second's mask hides that node (the loop asks again)."""
    cluster, ns = edge
    doc = yaml.safe_load(lab.continuum_file.read_text())
    zone = doc["dns"]["zone"].rstrip(".")
    doc["services"] = [{"namespace": ns, "name": f"big{i}", "hostname": f"big{i}.{ns}.{zone}"}
                       for i in range(2)]
    doc["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(doc))
    continuum = KubernetesContinuum(load_continuum(path))
    try:
        assert continuum.caches.start(wait_s=10)
        target = next(h for h, loc in enumerate(continuum.locations) if loc.cluster != "edge")
        loc = continuum.locations[target]
        node = continuum.views[loc.cluster].nodes[loc.node]
        cores = float(node["status"]["allocatable"]["cpu"])
        for i in range(2):  # 0.6 of the node each; no replica runs (nothing to schedule)
            d = deployment(ns, f"big{i}")
            d["spec"]["replicas"] = 1
            d["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "none"}
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = (
                f"{int(600 * cores)}m")
            cluster.create(d)
        def both_cached() -> bool:
            continuum.refresh()
            return len(continuum.views["edge"].deployments) >= 2

        wait_for("both Deployments in the cache", both_cached, timeout=10)
        continuum.readings = standin(continuum)
        snapshot = continuum.snapshot_of(continuum.readings)
        alone = continuum.masks(snapshot)
        assert alone[0][1 + target] and alone[1][1 + target]
        after = continuum.masks(snapshot, [Move(0, target)])
        assert not after[1][1 + target]
        assert after[1].sum() == alone[1].sum() - 1  # only that node is taken
    finally:
        continuum.close()
