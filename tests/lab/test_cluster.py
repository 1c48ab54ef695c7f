"""The lab's clusters do what real ones do: schedule, serve, fill Endpoints, route, move."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import dns.exception
import dns.query
import dns.rcode
import dns.resolver
import dns.update
import httpx
import pytest
import yaml

from tests.lab import loadgen
from tests.lab.dns import keyring, resolver
from tests.lab.lab import Lab
from tests.lab.workloads import (
    endpoint_ips,
    ml_service,
    namespace,
    ready_pod_on,
    wait_for,
)

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]


def answer(address: str, host: str | None = None) -> dict[str, Any]:
    headers = {"Host": host} if host else {}
    r = httpx.get(f"http://{address}/predictions/resnet-18", headers=headers, timeout=5,
                  trust_env=False)
    r.raise_for_status()
    return dict(r.json())


def routed(address: str, host: str, pod: str) -> bool:
    try:
        return answer(address, host).get("pod") == pod
    except httpx.HTTPError:
        return False


def test_continuum_yaml_describes_three_clusters(lab: Lab) -> None:
    doc = yaml.safe_load(lab.continuum_file.read_text())
    assert [c["name"] for c in doc["clusters"]] == ["edge", "fog", "cloud"]
    assert [c["tier"] for c in doc["clusters"]] == ["edge", "fog", "cloud"]
    for c in doc["clusters"]:
        cfg = yaml.safe_load(Path(c["kubeconfig"]).read_text())
        assert c["context"] in [x["name"] for x in cfg["contexts"]]
        assert ipaddress.ip_address(c["ingress"].rsplit(":", 1)[0]).is_loopback
    edge = doc["clusters"][0]
    assert [h["name"] for h in edge["hosts"]] == ["edge0", "edge1", "edge2"]
    assert doc["clusters"][2]["hosts"][0]["cores"] == 12
    assert Path(doc["dns"]["tsig_key_file"]).stat().st_mode & 0o077 == 0
    assert doc["dns"]["zone"] == "continuum.test."


@pytest.mark.parametrize("cluster,nodes", [("edge", {"edge0", "edge1", "edge2"}),
                                           ("fog", {"fog0"}), ("cloud", {"cloud"})])
def test_nodes_ready_with_tier_and_zone(lab: Lab, cluster: str, nodes: set[str]) -> None:
    kube = lab.kube(cluster)
    items = kube.get("/api/v1/nodes")["items"]
    assert {n["metadata"]["name"] for n in items} == nodes
    for n in items:
        labels = n["metadata"]["labels"]
        assert labels["greenwise.io/tier"] == cluster
        assert labels["topology.kubernetes.io/zone"]
        conds = {c["type"]: c["status"] for c in n["status"]["conditions"]}
        assert conds["Ready"] == "True"
        lease = kube.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"
                         f"{n['metadata']['name']}")
        assert lease["spec"]["holderIdentity"] == n["metadata"]["name"]


def test_scheduled_pod_serves_fills_endpoints_and_is_routed(lab: Lab) -> None:
    kube = lab.kube("edge")
    info = lab.info()["clusters"]["edge"]
    namespace(kube, "place")
    ml_service(kube, "place", "ml", node="edge1", host="place.continuum.test")
    pod = wait_for("ml pod Ready on edge1", lambda: ready_pod_on(kube, "place", "ml", "edge1"))
    ip = pod["status"]["podIP"]
    # The real scheduler placed it; the fake kubelet gave it an address on edge1's /24.
    assert pod["spec"]["nodeName"] == "edge1"
    assert ipaddress.ip_address(ip).is_loopback
    node = kube.get("/api/v1/nodes/edge1")
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    assert ip.rsplit(".", 1)[0] == node_ip.rsplit(".", 1)[0]
    # The pod is a real process answering on its own address.
    direct = answer(f"{ip}:8080")
    assert (direct["pod"], direct["node"], direct["cluster"]) == (pod["metadata"]["name"],
                                                                   "edge1", "edge")
    # Endpoints hold the loopback address (the loopback-endpoints patch at work).
    wait_for("Endpoints with the pod IP", lambda: endpoint_ips(kube, "place", "ml") == {ip})
    # Traefik routes Host(...) on the cluster's ingress address to it.
    wait_for("Traefik routing", lambda: routed(info["ingress"], "place.continuum.test",
                                              pod["metadata"]["name"]), timeout=30)


def set_a_record(lab: Lab, name: str, address: str) -> None:
    d = lab.info()["dns"]
    update = dns.update.Update(d["zone"], keyring=keyring(d["tsig_key_file"]))
    update.replace(name, 2, "A", address)
    r = dns.query.tcp(update, d["server"], port=d["port"], timeout=5)
    assert r.rcode() == dns.rcode.NOERROR


def test_node_move_under_load_loses_no_request(lab: Lab) -> None:
    kube = lab.kube("edge")
    info = lab.info()
    edge = info["clusters"]["edge"]
    host = "move.continuum.test"
    namespace(kube, "move")
    ml_service(kube, "move", "ml", node="edge0", host=host, prestop_s=3)
    old = wait_for("ml Ready on edge0", lambda: ready_pod_on(kube, "move", "ml", "edge0"))
    ingress_ip, ingress_port = edge["ingress"].rsplit(":", 1)
    set_a_record(lab, "move", ingress_ip)
    wait_for("route to the pod", lambda: routed(edge["ingress"], host, old["metadata"]["name"]),
             timeout=30)

    load = loadgen.start(host, f"127.0.0.1:{ingress_port}", info["dns"]["server"],
                         info["dns"]["port"], rate=100, duration=20)
    moved = threading.Event()

    def move() -> None:
        # Let the load settle on the old pod, then patch the nodeSelector: a rolling update.
        if not moved.wait(3):
            kube.patch("/apis/apps/v1/namespaces/move/deployments/ml",
                       {"spec": {"template": {"spec": {"nodeSelector": {
                           "kubernetes.io/hostname": "edge2"}}}}}, kind="strategic")

    mover = threading.Thread(target=move)
    mover.start()
    try:
        new = wait_for("ml moved to edge2", lambda: ready_pod_on(kube, "move", "ml", "edge2"),
                       timeout=60)
    finally:
        moved.set()
        mover.join()
    report = load.result()
    assert report.sent >= 1000
    assert report.failed == 0, report.failures
    assert report.ok == report.sent
    # Both pods answered: the move happened while the load was running.
    assert set(report.by_node) == {"edge0", "edge2"}, report.by_node
    assert report.by_pod.get(new["metadata"]["name"], 0) > 0
    assert report.by_pod.get(old["metadata"]["name"], 0) > 0


def test_pods_in_every_cluster_land_on_its_nodes(lab: Lab) -> None:
    for cluster, node in (("fog", "fog0"), ("cloud", "cloud")):
        kube = lab.kube(cluster)
        namespace(kube, "spread")
        ml_service(kube, "spread", "ml", node=node, host=f"{cluster}.continuum.test")
        pod = wait_for(f"ml Ready on {node}", lambda k=kube, n=node: ready_pod_on(k, "spread",
                                                                                  "ml", n))
        ingress = lab.info()["clusters"][cluster]["ingress"]
        body = wait_for("routed answer",
                        lambda i=ingress, c=cluster: _try(i, f"{c}.continuum.test"), timeout=30)
        assert (body["cluster"], body["node"], body["pod"]) == (cluster, node,
                                                               pod["metadata"]["name"])


def _try(address: str, host: str) -> dict[str, Any] | None:
    try:
        return answer(address, host)
    except httpx.HTTPError:
        return None


def test_status_reports_a_crashed_process(lab: Lab) -> None:
    victim = next(p for p in lab.procs() if p.name == "cloud-scheduler")
    os.kill(victim.pid, signal.SIGKILL)  # a crash: no chance to shut down
    wait_for("the scheduler to die", lambda: not victim.alive(), timeout=10)
    entries = {e["name"]: e["alive"] for e in lab.status()}
    assert entries["cloud-scheduler"] is False
    assert sum(not alive for alive in entries.values()) == 1
    out = subprocess.run([str(REPO / "tests/lab/run-lab"), "status", "--dir", str(lab.dir)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "CRASHED" in out.stdout and "cloud-scheduler" in out.stdout
    lab.restart("cloud-scheduler")
    assert all(e["alive"] for e in lab.status())


def test_second_up_says_already_running(lab: Lab) -> None:
    out = subprocess.run([str(REPO / "tests/lab/run-lab"), "up", "--dir", str(lab.dir)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "already running" in out.stderr
    assert all(e["alive"] for e in lab.status())


def test_externalname_service_forwards_to_another_cluster(lab: Lab) -> None:
    """What an inter-cluster migration relies on: edge's Traefik hands a Host to fog's ingress."""
    info = lab.info()["clusters"]
    fog, edge = lab.kube("fog"), lab.kube("edge")
    host = "forward.continuum.test"
    namespace(fog, "forward")
    ml_service(fog, "forward", "ml", node="fog0", host=host)
    pod = wait_for("ml Ready on fog0", lambda: ready_pod_on(fog, "forward", "ml", "fog0"))
    fog_ip, port = info["fog"]["ingress"].rsplit(":", 1)
    namespace(edge, "forward")
    edge.create("/api/v1/namespaces/forward/services", {
        "metadata": {"name": "to-fog"},
        "spec": {"type": "ExternalName", "externalName": fog_ip,
                 "ports": [{"port": int(port)}]}})
    edge.create("/apis/traefik.io/v1alpha1/namespaces/forward/ingressroutes", {
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"name": "to-fog"},
        "spec": {"entryPoints": ["web"],
                 "routes": [{"kind": "Rule", "match": f"Host(`{host}`)",
                             "services": [{"name": "to-fog", "port": int(port)}]}]}})
    body = wait_for("answer through edge", lambda: _try(info["edge"]["ingress"], host),
                    timeout=30)
    assert (body["cluster"], body["pod"]) == ("fog", pod["metadata"]["name"])


def test_kubeconfig_contexts_work_with_the_kubernetes_client(lab: Lab) -> None:
    from kubernetes import client, config

    doc = yaml.safe_load(lab.continuum_file.read_text())
    for c in doc["clusters"]:
        api = config.new_client_from_config(config_file=c["kubeconfig"], context=c["context"])
        names = {n.metadata.name for n in client.CoreV1Api(api).list_node().items}
        assert names == {h["name"] for h in c["hosts"]}


def test_cluster_dns_names_services_and_the_clusterip_proxy_reaches_their_pods(lab: Lab) -> None:
    """As in a real cluster: `svc.ns.svc.cluster.local` resolves (the cluster's DNS) to the
    ClusterIP, which answers (the proxy) from the Service's pod; an ExternalName resolves as a
    CNAME to its name, followed into the lab's zone; and another cluster does not know it."""
    kube = lab.kube("edge")
    clusters = lab.info()["clusters"]
    dns_host, dns_port = clusters["edge"]["cluster_dns"].rsplit(":", 1)
    cluster_dns = resolver(dns_host, int(dns_port))
    namespace(kube, "cdns")
    ml_service(kube, "cdns", "ml", node="edge2", host="cdns.continuum.test")
    pod = wait_for("ml Ready on edge2", lambda: ready_pod_on(kube, "cdns", "ml", "edge2"))
    ip = kube.get("/api/v1/namespaces/cdns/services/ml")["spec"]["clusterIP"]
    name = "ml.cdns.svc.cluster.local"

    def resolves_to(want: str) -> bool:
        try:
            return [a.address for a in cluster_dns.resolve(name, "A")] == [want]
        except dns.exception.DNSException:
            return False

    wait_for("the Service's name", lambda: resolves_to(ip), timeout=10)
    wait_for("the ClusterIP to answer", lambda: routed(f"{ip}:80", name, pod["metadata"]["name"]),
             timeout=10)
    set_a_record(lab, "cdns-out", "127.0.0.77")
    kube.patch("/api/v1/namespaces/cdns/services/ml", {"spec": {
        "type": "ExternalName", "externalName": "cdns-out.continuum.test", "selector": None,
        "clusterIP": None, "ports": [{"port": 80, "protocol": "TCP"}]}})
    wait_for("the CNAME, followed", lambda: resolves_to("127.0.0.77"), timeout=10)
    answer_ = cluster_dns.resolve(name, "A")
    assert answer_.canonical_name.to_text() == "cdns-out.continuum.test."
    fog_host, fog_port = clusters["fog"]["cluster_dns"].rsplit(":", 1)
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver(fog_host, int(fog_port)).resolve(name, "A")
    kube.delete("/api/v1/namespaces/cdns")
