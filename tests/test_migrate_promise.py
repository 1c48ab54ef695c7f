"""Migrations that keep their promise when interrupted, run twice at once, or carry Secrets:
`greenwise-mc migrate` on the lab's real clusters (issue: migrations keep their promise)."""

from __future__ import annotations

import base64
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from orchestrator.kube.clusters import Clusters
from orchestrator.migration.dns.registry import owner_in, registry_name, release
from orchestrator.migration.objects import OWNER_LABEL
from orchestrator.migration.planner import locate
from orchestrator.migration.steps import INTER_STEPS
from orchestrator.migration.transfer import FENCED
from tests.lab.lab import Lab
from tests.lab.workloads import wait_for
from tests.test_migrate import (
    Deployed,
    assert_single_and_serving,
    cli,
    deploy,
    in_cluster_load,
    load,
    provider,
    serves,
    teardown,
)

pytestmark = pytest.mark.lab


def journal_of(d: Deployed) -> Path:
    return d.config.parent / "state" / "journal.sqlite"


def begun(d: Deployed, step: str) -> bool:
    journal = journal_of(d)
    if not journal.exists():
        return False
    return sqlite3.connect(journal).execute(
        "SELECT COUNT(*) FROM steps WHERE name=?", (step,)).fetchone()[0] > 0


def migrate(d: Deployed, to: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "migrate", d.key, "--to", to,
                             "--config", str(d.config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("to, step", [
    *(("cloud", s) for s in INTER_STEPS if s != "delete_old"),  # that one ends at once
    ("edge/edge1", "check"), ("edge/edge1", "rollout")])
def test_sigint_finishes_or_rolls_back_then_exits_130(service: Deployed, to: str,
                                                      step: str) -> None:
    proc = migrate(service, to)
    try:
        wait_for(f"the {step} step", lambda: begun(service, step), timeout=90, every=0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    db = sqlite3.connect(journal_of(service))
    [(state,)] = db.execute("SELECT state FROM migrations").fetchall()
    commit = "dns" if to == "cloud" else "patch"
    committed = db.execute("SELECT COUNT(*) FROM steps WHERE name=? AND state='done'",
                           (commit,)).fetchone()[0] == 1
    assert state == ("done" if committed else "rolled_back"), err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted ") and (
        "the migration was finished" if committed else "rolled back") in last, err
    if to == "cloud":
        assert_single_and_serving(service, "cloud" if committed else "edge")
    else:
        assert_single_and_serving(service, "edge")
        where = {p["spec"]["nodeName"] for p in Clusters(service.cfg())["edge"].list(
            "Pod", service.ns, "app=resnet") if not p["metadata"].get("deletionTimestamp")}
        assert where == ({"edge1"} if committed else {"edge0"})


def test_a_second_migrate_of_the_same_service_says_who_migrates_it(service: Deployed) -> None:
    doc = yaml.safe_load(service.config.read_text())
    doc["dns"]["ttl"] = 15  # the first waits out the TTL: time enough for the second to start
    service.config.write_text(yaml.safe_dump(doc))
    first = migrate(service, "cloud")
    try:
        wait_for("the first migration's copy", lambda: begun(service, "wait_ready"),
                 timeout=90, every=0.02)
        second = cli("migrate", service.key, "--to", "fog", "--config", str(service.config))
        assert second.returncode == 1, second.stderr
        assert f"being migrated now by process {first.pid}" in second.stderr, second.stderr
        assert "--resume" not in second.stderr
        _, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert_single_and_serving(service, "cloud")


def add_secret(d: Deployed, cluster: str, data: dict[str, str], owner: str | None = None) -> None:
    labels = {OWNER_LABEL: owner} if owner else {}
    Clusters(d.cfg())[cluster].create({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "resnet-token", "namespace": d.ns, "labels": labels},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


def use_secret(d: Deployed) -> None:
    """The Deployment reads the Secret into its environment (a rollout on edge)."""
    edge = Clusters(d.cfg())["edge"]
    edge.patch("Deployment", d.ns, "resnet", {"spec": {"template": {"spec": {"containers": [{
        "name": "ml", "envFrom": [{"configMapRef": {"name": "resnet-settings"}},
                                  {"secretRef": {"name": "resnet-token"}}]}]}}}})
    wait_for("the rollout with the Secret", lambda: (dep := edge.get(
        "Deployment", d.ns, "resnet")) and dep["status"].get("updatedReplicas") == 1
        and dep["status"].get("replicas") == 1 and dep["status"].get("availableReplicas") == 1,
        timeout=60)


def objects(d: Deployed, cluster: str, kind: str) -> dict[str, str | None]:
    """The service's objects of `kind` in `cluster`: name -> the migration that made it (not
    what the cluster puts in every namespace: a service-account token, the root CA)."""
    return {o["metadata"]["name"]: (o["metadata"].get("labels") or {}).get(OWNER_LABEL)
            for o in Clusters(d.cfg())[cluster].list(kind, d.ns)
            if o.get("type") != "kubernetes.io/service-account-token"
            and o["metadata"]["name"] != "kube-root-ca.crt"}


def test_secrets_travel_but_the_journal_never_holds_them(service: Deployed) -> None:
    token = "s3cr3t-token-value"
    add_secret(service, "edge", {"TOKEN": token})
    use_secret(service)
    for to in ("cloud", "edge"):  # out and back: the return finds cloud's copies in edge
        r = cli("migrate", service.key, "--to", to, "--config", str(service.config))
        assert r.returncode == 0, r.stderr
    assert_single_and_serving(service, "edge", pristine=False)
    encoded = base64.b64encode(token.encode()).decode()
    state = journal_of(service).parent
    for f in state.iterdir():
        content = f.read_bytes()
        assert encoded.encode() not in content and token.encode() not in content, f
        assert b"managedFields" not in content, f
    # Found objects stay where they were found; the copies a migration made are deleted when
    # the service leaves the cluster they were copied to.
    assert objects(service, "edge", "Secret") == {"resnet-token": None}
    assert objects(service, "edge", "ConfigMap") == {"resnet-settings": None}
    assert objects(service, "cloud", "Secret") == {}
    assert objects(service, "cloud", "ConfigMap") == {}


def test_a_foreign_secret_in_the_target_is_refused_before_anything_changes(
        service: Deployed) -> None:
    add_secret(service, "edge", {"TOKEN": "ours"})
    use_secret(service)
    Clusters(service.cfg())["cloud"].ensure_namespace(service.ns, {})
    add_secret(service, "cloud", {"TOKEN": "someone else's"})
    r = cli("migrate", service.key, "--to", "cloud", "--config", str(service.config))
    assert r.returncode == 2, r.stderr
    assert "different Secret" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert objects(service, "cloud", "Deployment") == {}
    assert_single_and_serving(service, "edge", pristine=False)
    # An earlier visit's copy (a migration's label) is ours to replace.
    Clusters(service.cfg())["cloud"].delete("Secret", service.ns, "resnet-token")
    add_secret(service, "cloud", {"TOKEN": "stale"}, owner="an-earlier-migration")
    r = cli("migrate", service.key, "--to", "cloud", "--config", str(service.config))
    assert r.returncode == 0, r.stderr
    secret = Clusters(service.cfg())["cloud"].get("Secret", service.ns, "resnet-token")
    assert base64.b64decode(secret["data"]["TOKEN"]).decode() == "ours"


class PinnedClient:
    """A client that keeps sending to edge's ingress whatever DNS says (a stale resolver, or a
    client inside edge): bounded, 20 requests/s for at most `seconds`."""

    def __init__(self, d: Deployed, seconds: float = 240) -> None:
        self.url = f"http://{d.cfg().cluster('edge').ingress}/predictions/resnet-18"
        self.host, self.seconds = d.hostname, seconds
        self.stop, self.sent, self.failed = threading.Event(), 0, []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        end = time.monotonic() + self.seconds
        with httpx.Client(trust_env=False, timeout=5) as client:
            while not self.stop.is_set() and time.monotonic() < end and self.sent < 5000:
                self.sent += 1
                try:
                    r = client.get(self.url, headers={"Host": self.host})
                    if r.status_code != 200:
                        self.failed.append(f"{time.monotonic():.2f} status {r.status_code}")
                except httpx.HTTPError as e:
                    self.failed.append(f"{time.monotonic():.2f} {type(e).__name__}")
                self.stop.wait(0.05)

    def end(self) -> None:
        self.stop.set()
        self.thread.join()


@pytest.mark.parametrize("hops", [("cloud", "edge"), ("cloud", "fog", "edge")])
def test_return_hops_under_load_lose_nothing(service: Deployed, hops: tuple[str, ...]) -> None:
    """Out and back (the target still holds the forwarder and the route of an earlier visit),
    under 50 req/s through bind9 and the ingresses, and a client that stays on edge's ingress
    (it reaches the service through edge's forwarder while the service is away)."""
    handle, pinned = load(service, rate=50, duration=240), PinnedClient(service)
    hops_at = []
    try:
        time.sleep(1)
        for to in hops:
            r = cli("migrate", service.key, "--to", to, "--config", str(service.config))
            assert r.returncode == 0, r.stderr
            hops_at.append(round(time.monotonic(), 2))
            time.sleep(1)
    finally:
        handle.stop()
        pinned.end()
    report = handle.result()
    failed = [(x.t, x.address, x.outcome) for x in report.samples if x.outcome != "ok"]
    assert report.sent > 100 and failed == [], (failed[:20], report.failures)
    assert pinned.sent > 50 and pinned.failed == [], (hops_at, pinned.failed[:20])
    assert_single_and_serving(service, hops[-1], pristine=False)


def in_cluster_names(d: Deployed) -> list[str]:
    """What a pod in the service's namespace may call it, through its cluster's DNS."""
    return ["resnet", f"resnet.{d.ns}", f"resnet.{d.ns}.svc", f"resnet.{d.ns}.svc.cluster.local"]


def test_in_cluster_clients_of_the_old_cluster_follow_the_service(service: Deployed) -> None:
    """Clients inside edge calling the service by each of its in-cluster names, before, during
    and after edge -> cloud -> fog: none fails, and once it left they are served where it runs
    (edge's forwarder: a CNAME to the hostname, routed by the in-cluster names there)."""
    clients = {n: in_cluster_load(service, "edge", n, rate=10, duration=200)
               for n in in_cluster_names(service)}
    moved_at = {}
    try:
        time.sleep(2)
        for to in ("cloud", "fog"):
            r = cli("migrate", service.key, "--to", to, "--config", str(service.config))
            assert r.returncode == 0, r.stderr
            moved_at[to] = time.monotonic()
            time.sleep(4)
    finally:
        reports = {n: c.stop() for n, c in clients.items()}
    ingress = {c.name: c.ingress_host for c in service.cfg().clusters}
    for name, report in reports.items():
        failed = [(x.t, x.address, x.outcome) for x in report.samples if x.outcome != "ok"]
        assert report.sent > 50 and failed == [], (name, failed[:20], report.dns_errors)
        assert set(report.by_cluster) == {"edge", "cloud", "fog"}, (name, report.by_cluster)
        # Before, through edge's ClusterIP; after, through the ingress the CNAME leads to
        addresses = [a for _, a in report.dns_changes]
        assert addresses[0] not in ingress.values() and ingress["cloud"] in addresses and \
            addresses[-1] == ingress["fog"], (name, report.dns_changes)
    assert_single_and_serving(service, "fog", pristine=False)


def frozen_mid_migration(d: Deployed, process: str, step: str,
                         seconds: float) -> tuple[int, str]:
    """`migrate --to cloud` with the lab's `process` stopped (SIGSTOP) for `seconds` once the
    migration begins `step`: its exit code and stderr."""
    frozen = next(p for p in d.lab.procs() if p.name.startswith(process))
    proc = migrate(d, "cloud")
    try:
        wait_for(f"the {step} step", lambda: begun(d, step), timeout=90, every=0.01)
        os.kill(frozen.pid, signal.SIGSTOP)
        time.sleep(seconds)
        os.kill(frozen.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=180)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def test_an_apiserver_frozen_40s_mid_step_is_ridden_out(lab: Lab, tmp_path: Path) -> None:
    """The target's API server stops answering for 40 s while the copy becomes Ready: shorter
    than the step's timeout (120 s), so the migration waits and finishes."""
    d = deploy(lab, tmp_path, api_timeout_s=2.0, api_retry_s=4.0)
    try:
        code, err = frozen_mid_migration(d, "cloud-apiserver", "wait_ready", 40)
        assert code == 0 and "trying again" in err, err
        assert_single_and_serving(d, "cloud")
    finally:
        teardown(d)


def test_a_cluster_down_holds_up_no_move_between_the_others(service: Deployed,
                                                             tmp_path: Path) -> None:
    """fog's API server does not answer: moves within edge and from edge to cloud go on (DNS
    says where the users are), and `status` still shows where the service runs."""
    doc = yaml.safe_load(service.config.read_text())
    fog = next(c for c in doc["clusters"] if c["name"] == "fog")
    kc = yaml.safe_load(Path(fog["kubeconfig"]).read_text())
    kc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    dead = tmp_path / "fog-dead.kubeconfig"
    dead.write_text(yaml.safe_dump(kc))
    fog["kubeconfig"] = str(dead)
    doc["api_retry_s"] = 1.0
    config = tmp_path / "fog-down.yaml"
    config.write_text(yaml.safe_dump(doc))
    for to in ("edge/edge1", "cloud"):
        r = cli("migrate", service.key, "--to", to, "--config", str(config))
        assert r.returncode == 0, r.stderr
    assert_single_and_serving(service, "cloud")
    r = cli("status", "--config", str(config), "-o", "json")
    assert r.returncode == 1 and "fog" in r.stderr, r.stderr
    [s] = yaml.safe_load(r.stdout)["services"]
    assert s["cluster"] == "cloud" and s["ready"] == 1, s
    # Where DNS does not settle it, a cluster down means the service cannot be located.
    provider(service).replace(service.hostname, "A", ("127.0.0.99",), 2)
    r = cli("migrate", service.key, "--to", "edge/edge0", "--config", str(config))
    assert r.returncode == 1 and "fog" in r.stderr and "unreachable" in r.stderr, r.stderr


def test_dns_values_and_names_that_are_not_ours(service: Deployed, tmp_path: Path) -> None:
    """A value no cluster serves stays on the name; a name greenwise-mc does not own is refused
    (the dry run too) unless the service says to adopt it, and then it says so."""
    cfg = service.cfg()
    edge, cloud = cfg.cluster("edge").ingress_host, cfg.cluster("cloud").ingress_host
    dns = provider(service)
    dns.replace(service.hostname, "A", (edge, "127.0.0.99"), 2)
    r = cli("migrate", service.key, "--to", "cloud", "--config", str(service.config))
    assert r.returncode == 0, r.stderr
    assert dns.get(service.hostname).values == tuple(sorted((cloud, "127.0.0.99")))
    # Someone else's name: no ownership record of ours.
    release(dns, service.hostname)
    for extra in (["--dry-run"], []):
        r = cli("migrate", service.key, "--to", "edge", *extra, "--config", str(service.config))
        assert r.returncode == 2 and "does not own it" in r.stderr, r.stderr
        assert "adopt_dns" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert dns.get(service.hostname).values == tuple(sorted((cloud, "127.0.0.99")))
    doc = yaml.safe_load(service.config.read_text())
    doc["services"][0]["adopt_dns"] = True
    adopt = tmp_path / "adopt.yaml"
    adopt.write_text(yaml.safe_dump(doc))
    r = cli("migrate", service.key, "--to", "edge", "--dry-run", "-o", "yaml", "--config",
            str(adopt))
    assert r.returncode == 0 and "adopted" in r.stdout, r.stdout + r.stderr
    r = cli("migrate", service.key, "--to", "edge", "--config", str(adopt))
    assert r.returncode == 0 and "adopting" in r.stderr, r.stderr
    assert dns.get(service.hostname).values == tuple(sorted((edge, "127.0.0.99")))
    assert owner_in(dns.get_txt(registry_name(service.hostname))) == cfg.dns.owner_id


def test_a_random_walk_of_ten_hops_loses_nothing_and_leaves_what_it_should(
        service: Deployed) -> None:
    """Ten random hops across edge/fog/cloud (within edge too) under 50 req/s and a client on
    edge's ingress: no request fails, and afterwards each cluster holds exactly what it should.
    Where the service runs: its Deployment, Service, route and ConfigMap; every other cluster it
    visited: a forwarder (ExternalName) and its route, nothing else but what was found there."""
    rng = random.Random(11)
    places = ["edge/edge0", "edge/edge1", "edge/edge2", "fog", "cloud"]
    here, visited, walk = "edge/edge0", {"edge"}, []
    handle, pinned = load(service, rate=50, duration=400), PinnedClient(service, seconds=400)
    # A pod in edge calling the old name all along, and one in each hop's source cluster
    home = in_cluster_load(service, "edge", "resnet", rate=10, duration=400)
    names, inside = in_cluster_names(service), []
    try:
        for i in range(10):
            to = rng.choice([p for p in places if p != here
                             and not (p.split("/")[0] == here.split("/")[0] and "/" not in p)])
            source = here.split("/")[0]
            client = in_cluster_load(service, source, names[i % 4], rate=10, duration=120)
            try:
                r = cli("migrate", service.key, "--to", to, "--config", str(service.config))
                time.sleep(1)
            finally:
                inside.append((source, to, client.stop()))
            assert r.returncode == 0, (walk, to, r.stderr)
            walk.append(to)
            here = to if "/" in to else f"{to}/{to}0" if to == "fog" else to
            visited.add(to.split("/")[0])
    finally:
        handle.stop()
        pinned.end()
        home.stop()
    report = handle.result()
    assert report.sent > 500 and report.failed == 0, (walk, report.failures)
    assert pinned.sent > 200 and pinned.failed == [], (walk, pinned.failed[:10])
    clients = [("edge, all along", home.result()), *((f"{a} -> {b}", r) for a, b, r in inside)]
    for where, r in clients:
        failed = [(x.t, x.address, x.outcome) for x in r.samples if x.outcome != "ok"]
        assert r.sent > 10 and failed == [], (walk, where, failed, r.dns_changes, r.dns_errors)
    final = here.split("/")[0]
    assert_single_and_serving(service, final, pristine=False)
    for cluster in ("edge", "fog", "cloud"):
        held = {kind: objects(service, cluster, kind)
                for kind in ("Deployment", "Service", "IngressRoute", "ConfigMap", "Secret")}
        found = {"resnet-settings": None} if cluster == "edge" else {}
        if cluster == final:  # the ConfigMap: edge's own, elsewhere a migration's copy
            assert set(held["Deployment"]) == {"resnet"}, held
            assert set(held["ConfigMap"]) == {"resnet-settings"}, held
            assert (held["ConfigMap"]["resnet-settings"] is None) == (cluster == "edge"), held
        elif cluster in visited:
            assert held["Deployment"] == {} and held["ConfigMap"] == found, (walk, held)
        else:
            assert all(v == {} for v in held.values()), (walk, held)
            continue
        assert set(held["Service"]) == set(held["IngressRoute"]) == {"resnet"}, held
        assert held["Secret"] == {}, held
        kind = Clusters(service.cfg())[cluster].get("Service", service.ns, "resnet")["spec"]
        assert (kind.get("type") == "ExternalName") == (cluster != final), (walk, cluster, kind)


def three_replicas_and_a_budget(d: Deployed) -> None:
    edge = Clusters(d.cfg())["edge"]
    edge.create({"apiVersion": edge.api_version("PodDisruptionBudget"),
                 "kind": "PodDisruptionBudget",
                 "metadata": {"name": "resnet", "namespace": d.ns},
                 "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "resnet"}}}})
    edge.patch("Deployment", d.ns, "resnet", {"spec": {"replicas": 3}})
    wait_for("3 replicas ready", lambda: (dep := edge.get("Deployment", d.ns, "resnet"))
             and dep["status"].get("availableReplicas") == 3
             and dep["status"].get("replicas") == 3, timeout=60)


@pytest.mark.parametrize("to", ["cloud", "edge/edge1"])
def test_three_replicas_with_a_budget_move_under_load(service: Deployed, to: str) -> None:
    """The budget travels with the service (the target's copy is a migration's, edge's own
    stays); every replica moves (an intra move puts all of them on the one node it names)."""
    three_replicas_and_a_budget(service)
    handle = load(service, rate=50, duration=120)
    try:
        time.sleep(1)
        r = cli("migrate", service.key, "--to", to, "--config", str(service.config))
        assert r.returncode == 0, r.stderr
        time.sleep(1)
    finally:
        handle.stop()
    report = handle.result()
    assert report.sent > 100 and report.failed == 0, report.failures
    cluster, _, node = to.partition("/")
    c = Clusters(service.cfg())[cluster]
    pods = [p for p in c.list("Pod", service.ns, "app=resnet")
            if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 3 and all(p["spec"]["nodeName"] == (node or "cloud") for p in pods)
    assert objects(service, "edge", "PodDisruptionBudget") == {"resnet": None}
    if cluster == "cloud":
        budget = c.get("PodDisruptionBudget", service.ns, "resnet")
        assert budget["spec"]["minAvailable"] == 2
        assert budget["metadata"]["labels"][OWNER_LABEL]


def test_bind9_frozen_at_the_dns_step_is_ridden_out(service: Deployed) -> None:
    """The DNS server stops answering (SIGSTOP) as the migration reaches its DNS step, for
    less than the step's timeout: the step tries again and the migration finishes."""
    code, err = frozen_mid_migration(service, "named-", "route", 10)
    assert code == 0 and "trying again" in err and "dns" in err, err
    assert_single_and_serving(service, "cloud")


@pytest.mark.parametrize("fenced_by", ["resume", "policy"])
def test_failover_out_of_a_dead_control_plane_then_its_copy_is_fenced(
        service: Deployed, tmp_path: Path, fenced_by: str) -> None:
    """edge's API server stops answering: `migrate --to cloud` recreates the service there from
    the manifests kept at its last migration and points DNS at cloud, while edge's pods (still
    running, as workloads do when a control plane dies) go on serving until then: no request
    fails. When edge answers again, `--resume` (or policy mode, at its next tick) fences its
    stale copy: one place serves."""
    r = cli("migrate", service.key, "--to", "edge/edge1", "--config", str(service.config))
    assert r.returncode == 0, r.stderr  # a migration: the manifests are kept
    doc = yaml.safe_load(service.config.read_text())
    doc.update(api_timeout_s=2.0, api_retry_s=2.0)
    config = tmp_path / "quick.yaml"
    config.write_text(yaml.safe_dump(doc))
    apiserver = next(p for p in service.lab.procs() if p.name == "edge-apiserver")
    handle = load(service, rate=50, duration=240)
    try:
        time.sleep(1)
        os.kill(apiserver.pid, signal.SIGSTOP)
        dead_at = time.time() - handle.started_at
        r = cli("migrate", service.key, "--to", "cloud", "--config", str(config), "-o", "json")
        assert r.returncode == 0, r.stderr
        assert yaml.safe_load(r.stdout)["kind"] == "failover"
        status = cli("status", "--config", str(config), "-o", "json")
        time.sleep(2)
    finally:
        os.kill(apiserver.pid, signal.SIGCONT)
        handle.stop()
    report = handle.result()
    assert report.failed == 0, report.failures
    first_cloud = min(x.t for x in report.samples if (x.backend or "").startswith("cloud/"))
    print(f"failover: cluster dead -> traffic served by the target {first_cloud - dead_at:.2f} s")
    assert status.returncode == 1 and "edge" in status.stderr, status.stderr
    assert yaml.safe_load(status.stdout)["services"][0]["cluster"] == "cloud"
    if fenced_by == "resume":
        r = cli("migrate", "--resume", "--config", str(config), "-o", "json")
        assert r.returncode == 0, r.stderr
        assert yaml.safe_load(r.stdout)["fenced"] == [
            {"service": service.key, "cluster": "edge", "state": "fenced"}]
    else:  # a controller that moves nothing (no gain is enough), for two ticks
        doc["controller"] = {"lease_cluster": "edge", "lease_name": f"greenwise-{service.ns}",
                             "lease_duration_s": 4, "min_predicted_gain": 1e9}
        config.write_text(yaml.safe_dump(doc))
        r = cli("run", "--config", str(config), "--strategy", "rules", "--ticks", "2",
                "--interval", "1s", "--metrics-address", "127.0.0.1:0")
        assert r.returncode == 0, r.stderr
        assert "the stale copy in edge: fenced" in r.stdout + r.stderr, (r.stdout, r.stderr)
    edge = Clusters(service.cfg())["edge"]
    stale = edge.get("Deployment", service.ns, "resnet")
    assert stale["spec"]["replicas"] == 0 and stale["metadata"]["annotations"][FENCED]
    assert edge.get("Service", service.ns, "resnet")["spec"]["type"] == "ExternalName"
    assert locate(Clusters(service.cfg()), service.cfg().services[0]).cluster == "cloud"
    record = provider(service).get(service.hostname)
    assert record is not None and record.values == (service.cfg().cluster("cloud").ingress_host,)
    assert serves(service)["cluster"] == "cloud"
