"""greenwise-mc's role on the lab's RBAC-enabled apiservers: enough for a full migration, and
nothing more.

The identity is what manifests/ deploys: the ServiceAccount greenwise-system/greenwise-mc of
every cluster, with the token its manifests/rbac Secret asks the token controller for, bound by
manifests/rbac (ClusterRoleBinding, and a RoleBinding per managed namespace) and, in one cluster,
manifests/controller/leader-election.yaml. The tests apply those files as they are (a managed
namespace's RoleBinding retargeted to the test's namespace, as a user writes one per namespace),
give `greenwise-mc` kubeconfigs with that token only, and run it: `clusters`, `status`, an
intra- and an inter-cluster `migrate`, and policy mode's leader election. Then: the identity
holds exactly the manifests' rules, is refused the rest, and without any one rule the migration
(or the Lease) fails - and rolls back.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import ControllerConfig, load_continuum
from orchestrator.control.lease import Lease
from orchestrator.errors import GreenwiseError
from orchestrator.kube.cache import KubeCaches
from orchestrator.kube.clusters import Clusters
from orchestrator.migration.planner import locate
from orchestrator.migration.steps import INTER_STEPS
from tests.lab.cluster import Kube, KubeError, write_secret
from tests.lab.lab import Lab
from tests.lab.workloads import namespace, wait_for
from tests.test_migrate import (
    Deployed,
    assert_single_and_serving,
    cli,
    deploy,
    inventory,
    provider,
    serves,
    teardown,
)

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[1]
RBAC = REPO / "manifests" / "rbac"
MANAGED_NAMESPACE = RBAC / "managed-namespace.yaml"
LEADER = REPO / "manifests" / "controller" / "leader-election.yaml"
SYSTEM_NS = "greenwise-system"
ACCOUNT = "greenwise-mc"
TOKEN_SECRET = "greenwise-mc-token"
LEASE = "greenwise-mc"
CLUSTERS = ("edge", "fog", "cloud")
LEADER_CLUSTER = "edge"
RBAC_API = "/apis/rbac.authorization.k8s.io/v1"
# What every authenticated user may do (system:basic-user): ask what it may do.
BUILTIN = {("authorization.k8s.io", r, "create", "")
           for r in ("selfsubjectaccessreviews", "selfsubjectrulesreviews")}
Doc = dict[str, Any]
Grant = tuple[str, str, str, str]  # (apiGroup, resource, verb, resourceName or "")


def load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def rbac_docs() -> list[Doc]:
    """What `kubectl apply -k manifests/rbac` applies: the files its kustomization lists."""
    kustomization = yaml.safe_load((RBAC / "kustomization.yaml").read_text())
    return [d for f in kustomization["resources"] for d in load(RBAC / f)]


def cluster_role(name: str) -> Doc:
    return next(d for d in rbac_docs() if d["kind"] == "ClusterRole"
                and d["metadata"]["name"] == name)


def managed_namespace(ns: str) -> list[Doc]:
    """manifests/rbac/managed-namespace.yaml for namespace `ns` instead of `ml`."""
    out = []
    for d in load(MANAGED_NAMESPACE):
        d = copy.deepcopy(d)
        if d["kind"] == "Namespace":
            d["metadata"]["name"] = ns
        else:
            d["metadata"]["namespace"] = ns
        out.append(d)
    return out


# --- applying manifests as an admin -------------------------------------------------------------

_PATHS = {  # kind -> (API prefix, plural, namespaced)
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Secret": ("/api/v1", "secrets", True),
    "ClusterRole": (RBAC_API, "clusterroles", False),
    "ClusterRoleBinding": (RBAC_API, "clusterrolebindings", False),
    "Role": (RBAC_API, "roles", True),
    "RoleBinding": (RBAC_API, "rolebindings", True),
}


def collection(doc: Doc) -> str:
    prefix, plural, namespaced = _PATHS[doc["kind"]]
    ns = f"/namespaces/{doc['metadata']['namespace']}" if namespaced else ""
    return f"{prefix}{ns}/{plural}"


def path_of(doc: Doc) -> str:
    return f"{collection(doc)}/{doc['metadata']['name']}"


def apply(kube: Kube, doc: Doc) -> None:
    """Create, or replace an existing role or binding (namespaces, accounts and the token Secret
    are kept as they are: the token controller owns the Secret's data)."""
    try:
        kube.create(collection(doc), doc)
    except KubeError as e:
        if e.status != 409:
            raise
        if doc["kind"] in ("Namespace", "ServiceAccount", "Secret"):
            return
        body = copy.deepcopy(doc)
        body["metadata"]["resourceVersion"] = kube.get(path_of(doc))["metadata"][
            "resourceVersion"]
        kube.request("PUT", path_of(doc), body)


def remove(kube: Kube, doc: Doc) -> None:
    try:
        kube.delete(path_of(doc))
    except KubeError as e:
        if e.status != 404:
            raise


# --- the controller's identity ------------------------------------------------------------------

@dataclass
class Identity:
    """The greenwise-mc ServiceAccount of each lab cluster: tokens, kubeconfigs, clients."""

    lab: Lab
    kubeconfigs: dict[str, Path]

    def kube(self, cluster: str) -> Kube:
        cfg = yaml.safe_load(self.kubeconfigs[cluster].read_text())
        info = self.lab.info()["clusters"][cluster]
        return Kube(info["server"], cfg["users"][0]["user"]["token"], info["ca_file"])

    def continuum(self, source: Path, out: Path, services: bool = True) -> Path:
        """`source` (a continuum.yaml) with every cluster reached as greenwise-mc, written to
        `out`, with a state directory of its own beside it."""
        doc = yaml.safe_load(source.read_text())
        for c in doc["clusters"]:
            c["kubeconfig"], c["context"] = str(self.kubeconfigs[c["name"]]), c["name"]
        doc["state_dir"] = str(out.parent / f"{out.stem}-state")
        if not services:
            doc["services"] = []
        out.write_text(yaml.safe_dump(doc))
        return out


def service_account_token(kube: Kube) -> str:
    def filled() -> str | None:
        secret = kube.get(f"/api/v1/namespaces/{SYSTEM_NS}/secrets/{TOKEN_SECRET}")
        token = (secret.get("data") or {}).get("token")
        return base64.b64decode(token).decode() if token else None
    return wait_for("the token controller to fill greenwise-mc-token", filled, timeout=30)


def write_kubeconfig(lab: Lab, cluster: str, token: str, path: Path) -> Path:
    """A kubeconfig like the README has users write: the cluster, greenwise-mc's token (0600)."""
    info = lab.info()["clusters"][cluster]
    ca = base64.b64encode(Path(info["ca_file"]).read_bytes()).decode()
    cfg = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": cluster, "cluster": {"server": info["server"],
                                                      "certificate-authority-data": ca}}],
           "users": [{"name": ACCOUNT, "user": {"token": token}}],
           "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": ACCOUNT}}],
           "current-context": cluster}
    return write_secret(path, yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def identity(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Identity]:
    """manifests/rbac in every cluster, the leader Role in one; kubeconfigs with the tokens."""
    docs = [d for d in rbac_docs() if d not in load(MANAGED_NAMESPACE)]
    leader = load(LEADER)
    where = tmp_path_factory.mktemp("greenwise-mc")
    kubeconfigs = {}
    try:
        for name in CLUSTERS:
            kube = lab.kube(name)
            for doc in docs + (leader if name == LEADER_CLUSTER else []):
                apply(kube, doc)
            kubeconfigs[name] = write_kubeconfig(lab, name, service_account_token(kube),
                                                 where / f"{name}.kubeconfig")
        yield Identity(lab, kubeconfigs)
    finally:
        for name in CLUSTERS:
            kube = lab.kube(name)
            for doc in docs:
                if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                    remove(kube, doc)
            remove(kube, {"kind": "Namespace", "metadata": {"name": SYSTEM_NS}})


# --- a service to move --------------------------------------------------------------------------

@dataclass
class Managed:
    d: Deployed  # the admin's view (test_migrate's helpers read and check through it)
    config: Path  # the same continuum.yaml as greenwise-mc's identity

    @property
    def key(self) -> str:
        return self.d.key


def manage(lab: Lab, identity: Identity, tmp_path: Path) -> Managed:
    """test_migrate's service on edge/edge0, plus a Secret it reads, in a namespace that exists
    in every cluster with manifests/rbac/managed-namespace.yaml's RoleBinding."""
    d = deploy(lab, tmp_path)
    for name in CLUSTERS:
        kube = lab.kube(name)
        namespace(kube, d.ns)
        for doc in managed_namespace(d.ns):
            apply(kube, doc)
    edge = lab.kube("edge")
    edge.create(f"/api/v1/namespaces/{d.ns}/secrets", {
        "metadata": {"name": f"{d.name}-key"}, "stringData": {"key": uuid.uuid4().hex}})
    deployment = f"/apis/apps/v1/namespaces/{d.ns}/deployments/{d.name}"
    edge.patch(deployment, {"spec": {"template": {"spec": {"containers": [{
        "name": "ml", "env": [{"name": "API_KEY", "valueFrom": {"secretKeyRef": {
            "name": f"{d.name}-key", "key": "key"}}}]}]}}}}, kind="strategic")
    wait_for("the Secret's rollout", lambda: rolled_out(edge.get(deployment)), timeout=60)
    wait_for("the service to answer", lambda: serves(d), timeout=60)
    return Managed(d, identity.continuum(d.config, d.config.parent / "controller.yaml"))


def rolled_out(dep: Doc) -> bool:
    s = dep.get("status") or {}
    return (s.get("observedGeneration", 0) >= dep["metadata"]["generation"]
            and s.get("updatedReplicas") == s.get("replicas") == s.get("availableReplicas") == 1)


def forget(lab: Lab, m: Managed) -> None:
    teardown(m.d)
    for name in CLUSTERS:
        remove(lab.kube(name), {"kind": "Namespace", "metadata": {"name": m.d.ns}})


def assert_untouched_on_edge(lab: Lab, m: Managed) -> None:
    """Where it was, serving, nothing of a migration left anywhere (its namespace stays: it is
    a managed namespace of every cluster)."""
    d = m.d
    cfg = d.cfg()
    assert locate(Clusters(cfg), cfg.services[0]).cluster == "edge"
    inv = inventory(d)
    assert [k for k in inv if ":Deployment/" in k] == [f"edge:Deployment/{d.name}"]
    assert inv[f"edge:Service/{d.name}"]["type"] != "ExternalName"
    assert {k: v for k, v in inv.items() if v["owner"]} == {}
    for name in ("fog", "cloud"):
        with pytest.raises(KubeError, match="404"):
            lab.kube(name).get(f"/api/v1/namespaces/{d.ns}/secrets/{d.name}-key")
    record = provider(d).get(d.hostname)
    assert record is not None and record.values == (cfg.cluster("edge").ingress_host,)
    assert wait_for("the service to answer", lambda: serves(d), timeout=30)["cluster"] == "edge"


# --- enough -------------------------------------------------------------------------------------

def test_role_is_enough_for_a_full_migration(lab: Lab, identity: Identity,
                                             tmp_path: Path) -> None:
    m = manage(lab, identity, tmp_path)
    try:
        r = cli("clusters", "--config", str(m.config), "-o", "json")
        assert r.returncode == 0, r.stderr
        clusters = yaml.safe_load(r.stdout)["clusters"]
        assert all(c["reachable"] and c["nodes"] for c in clusters), clusters
        r = cli("status", "--config", str(m.config), "-o", "json")
        assert r.returncode == 0, r.stderr
        assert yaml.safe_load(r.stdout)["services"][0]["cluster"] == "edge"

        r = cli("migrate", m.key, "--to", "edge/edge1", "--config", str(m.config), "-o", "json")
        assert r.returncode == 0, r.stderr
        assert yaml.safe_load(r.stdout)["state"] == "done"
        cfg = m.d.cfg()
        assert locate(Clusters(cfg), cfg.services[0]).nodes == ["edge1"]

        r = cli("migrate", m.key, "--to", "cloud", "--config", str(m.config), "-o", "json")
        assert r.returncode == 0, r.stderr
        done = yaml.safe_load(r.stdout)
        assert done["state"] == "done"
        assert [s["name"] for s in done["steps"]] == list(INTER_STEPS)
        assert_single_and_serving(m.d, "cloud")
        inv = inventory(m.d)
        assert inv[f"edge:Service/{m.d.name}"]["type"] == "ExternalName"
        assert f"cloud:IngressRoute/{m.d.name}" in inv
        assert f"cloud:ConfigMap/{m.d.name}-settings" in inv
        lab.kube("cloud").get(f"/api/v1/namespaces/{m.d.ns}/secrets/{m.d.name}-key")
    finally:
        forget(lab, m)


# --- nothing more -------------------------------------------------------------------------------

def grants(rules: list[Doc]) -> set[Grant]:
    return {(g, r, v, n) for rule in rules for g in rule.get("apiGroups") or []
            for r in rule.get("resources") or [] for v in rule.get("verbs") or []
            for n in rule.get("resourceNames") or [""]}


def granted(kube: Kube, ns: str) -> set[Grant]:
    """Every resource permission the identity holds in `ns` (cluster-wide ones included)."""
    review = kube.create("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                         {"spec": {"namespace": ns}})
    assert not review["status"].get("incomplete"), review["status"]
    return grants(review["status"]["resourceRules"])


@contextlib.contextmanager
def edge_namespace(lab: Lab) -> Iterator[str]:
    """A fresh namespace in edge, set up as a managed one (the manifests' RoleBinding)."""
    ns = f"t{uuid.uuid4().hex[:6]}"
    admin = lab.kube("edge")
    namespace(admin, ns)
    try:
        for doc in managed_namespace(ns):
            apply(admin, doc)
        yield ns
    finally:
        remove(admin, {"kind": "Namespace", "metadata": {"name": ns}})


def test_role_is_enough_for_policy_modes_caches(lab: Lab, identity: Identity,
                                               tmp_path: Path) -> None:
    """Nodes and pods listed and watched cluster-wide, Deployments in the managed namespace."""
    m = manage(lab, identity, tmp_path)
    caches = KubeCaches(Clusters(load_continuum(m.config)), [m.d.ns])
    try:
        synced = caches.start(wait_s=30)
        views = caches.views()
        assert synced, {name: v.problem for name, v in views.items()}
        assert (m.d.ns, m.d.name) in views["edge"].deployments
        assert views["edge"].pods_of(views["edge"].deployments[m.d.ns, m.d.name])
    finally:
        caches.close()
        forget(lab, m)


def test_identity_holds_exactly_the_manifests_rules(lab: Lab, identity: Identity) -> None:
    nodes = grants(cluster_role("greenwise-mc-nodes")["rules"])
    services = grants(cluster_role("greenwise-mc-services")["rules"])
    leader = grants(next(d for d in load(LEADER) if d["kind"] == "Role")["rules"])
    with edge_namespace(lab) as ns:
        me = identity.kube("edge")
        assert granted(me, ns) - BUILTIN == nodes | services
        assert granted(me, SYSTEM_NS) - BUILTIN == nodes | leader
        assert granted(me, "kube-system") - BUILTIN == nodes
        assert granted(me, "default") - BUILTIN == nodes


def forbidden(kube: Kube, method: str, path: str, body: Doc | None = None) -> bool:
    """Whether the request is refused with 403 (mutations are sent as dry runs: were one allowed,
    it would still change nothing)."""
    params = {"dryRun": "All"} if method != "GET" else None
    ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
    try:
        kube.request(method, path, body, params=params, content_type=ctype)
    except KubeError as e:
        return e.status == 403
    return False


def test_identity_is_refused_everything_else(lab: Lab, identity: Identity) -> None:
    with edge_namespace(lab) as ns:
        me = identity.kube("edge")
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                      "spec": {"selector": {"matchLabels": {"a": "x"}}, "template": {
                          "metadata": {"labels": {"a": "x"}},
                          "spec": {"containers": [{"name": "x", "image": "x"}]}}}}
        escalate = {"metadata": {"name": "greenwise-mc-admin"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": "cluster-admin"},
                    "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT,
                                  "namespace": SYSTEM_NS}]}
        refused = {
            "delete a node": ("DELETE", "/api/v1/nodes/edge0", None),
            "cordon a node": ("PATCH", "/api/v1/nodes/edge0", {"spec": {"unschedulable": True}}),
            "read a node by name": ("GET", "/api/v1/nodes/edge0", None),
            "list Secrets in another namespace": ("GET", "/api/v1/namespaces/kube-system/secrets",
                                                  None),
            "read a Secret in another namespace": (
                "GET", f"/api/v1/namespaces/{SYSTEM_NS}/secrets/{TOKEN_SECRET}", None),
            "list Secrets in its own namespace": ("GET", f"/api/v1/namespaces/{ns}/secrets", None),
            "create a ClusterRoleBinding": ("POST", f"{RBAC_API}/clusterrolebindings", escalate),
            "create a RoleBinding where it works": (
                "POST", f"{RBAC_API}/namespaces/{ns}/rolebindings", escalate),
            "create a Deployment in another namespace": (
                "POST", "/apis/apps/v1/namespaces/default/deployments", deployment),
            "list Deployments in another namespace": (
                "GET", "/apis/apps/v1/namespaces/default/deployments", None),
            "create a Pod": ("POST", f"/api/v1/namespaces/{ns}/pods", {
                "metadata": {"name": "x"}, "spec": {"containers": [{"name": "x",
                                                                    "image": "x"}]}}),
            "create a namespace": ("POST", "/api/v1/namespaces", {"metadata": {"name": "x"}}),
            "delete its namespace": ("DELETE", f"/api/v1/namespaces/{ns}", None),
            "delete a lease": ("DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM_NS}"
                                         f"/leases/{LEASE}", None),
        }
        allowed = [what for what, (method, path, body) in refused.items()
                   if not forbidden(me, method, path, body)]
        assert allowed == []


def leader_cases() -> list[Any]:
    role = next(d for d in load(LEADER) if d["kind"] == "Role")
    return [pytest.param(i, id=f"leader:{','.join(rule['resources'])}:{','.join(rule['verbs'])}")
            for i, rule in enumerate(role["rules"])]


def lease(identity: Identity, tmp_path: Path, holder: str) -> Lease:
    """The policy mode's Lease (the config's defaults) as `holder`, reached as greenwise-mc."""
    settings = ControllerConfig()
    config = identity.continuum(identity.lab.continuum_file, tmp_path / f"{holder}.yaml",
                                services=False)
    cluster = Clusters(load_continuum(config))[LEADER_CLUSTER]
    return Lease(cluster, settings.lease_namespace, settings.lease_name, holder, 15)


def drop_lease(lab: Lab) -> None:
    try:
        lab.kube(LEADER_CLUSTER).delete(
            f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM_NS}/leases/{LEASE}")
    except KubeError as e:
        if e.status != 404:
            raise


def test_leader_election_needs_only_its_lease(lab: Lab, identity: Identity,
                                              tmp_path: Path) -> None:
    """orchestrator/control/lease.py as policy mode runs it: take, renew, hold off a second
    candidate, release, take over; and that Lease, in that namespace and cluster, is all."""
    settings = ControllerConfig()
    assert (settings.lease_namespace, settings.lease_name) == (SYSTEM_NS, LEASE)
    a, b = lease(identity, tmp_path, "candidate-a"), lease(identity, tmp_path, "candidate-b")
    drop_lease(lab)
    try:
        assert a.acquire().mine  # created
        assert a.acquire().mine  # renewed
        held = b.acquire()
        assert not held.mine and held.holder == "candidate-a"
        a.release()
        assert b.acquire().mine  # taken over
        me = identity.kube(LEADER_CLUSTER)
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM_NS}/leases"
        other = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "other"}, "spec": {"holderIdentity": "x"}}
        assert forbidden(me, "GET", leases)  # no list
        assert forbidden(me, "GET", f"{leases}/other")
        assert forbidden(me, "PUT", f"{leases}/other", other)
        assert forbidden(me, "DELETE", f"{leases}/{LEASE}")
        assert forbidden(me, "POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases",
                         other)
        assert forbidden(identity.kube("cloud"), "POST", leases, other)  # that cluster only
    finally:
        drop_lease(lab)


@pytest.mark.parametrize("index", leader_cases())
def test_without_any_one_leader_rule_no_lease(lab: Lab, identity: Identity, tmp_path: Path,
                                              index: int) -> None:
    role = next(d for d in load(LEADER) if d["kind"] == "Role")
    reduced = copy.deepcopy(role)
    rule = reduced["rules"].pop(index)
    admin, me = lab.kube(LEADER_CLUSTER), identity.kube(LEADER_CLUSTER)
    drop_lease(lab)
    try:
        apply(admin, reduced)
        wait_for("the leader rule to be dropped", lambda: not may(me, rule, SYSTEM_NS),
                 timeout=30)
        with pytest.raises(GreenwiseError, match=r"access refused \(.* is forbidden"):
            lease(identity, tmp_path, "candidate-a").acquire()
    finally:
        apply(admin, role)
        wait_for("the leader rule back", lambda: may(me, rule, SYSTEM_NS), timeout=30)
        drop_lease(lab)


# --- and every rule is needed -------------------------------------------------------------------

def rule_cases() -> list[Any]:
    return [pytest.param(role, i, id=f"{role}:{','.join(rule['resources'])}")
            for role in ("greenwise-mc-services", "greenwise-mc-nodes")
            for i, rule in enumerate(cluster_role(role)["rules"])]


def may(kube: Kube, rule: Doc, ns: str) -> bool:
    attributes = {"group": rule["apiGroups"][0], "resource": rule["resources"][0],
                  "verb": rule["verbs"][0], "namespace": ns,
                  "name": (rule.get("resourceNames") or [""])[0]}
    review = kube.create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                         {"spec": {"resourceAttributes": attributes}})
    return bool(review["status"].get("allowed"))


def set_role(lab: Lab, identity: Identity, role: Doc, rule: Doc, ns: str,
             allowed: bool) -> None:
    """Apply `role` in every cluster and wait until each apiserver's authorizer has it."""
    for name in CLUSTERS:
        apply(lab.kube(name), role)
    for name in CLUSTERS:
        me = identity.kube(name)
        wait_for(f"{name} to {'grant' if allowed else 'refuse'} {rule['resources']}",
                 lambda me=me: may(me, rule, ns) == allowed, timeout=30)


@pytest.fixture(scope="module")
def managed(lab: Lab, identity: Identity,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Managed]:
    m = manage(lab, identity, tmp_path_factory.mktemp("managed"))
    try:
        yield m
    finally:
        forget(lab, m)


@pytest.mark.parametrize("role_name, index", rule_cases())
def test_without_any_one_rule_the_migration_fails(lab: Lab, identity: Identity,
                                                  managed: Managed, role_name: str,
                                                  index: int) -> None:
    role = cluster_role(role_name)
    reduced = copy.deepcopy(role)
    rule = reduced["rules"].pop(index)
    ns = managed.d.ns
    try:
        set_role(lab, identity, reduced, rule, ns, allowed=False)
        r = cli("migrate", managed.key, "--to", "cloud", "--config", str(managed.config),
                timeout=180)
        assert r.returncode != 0, r.stdout
        # refused for what the rule granted, not for anything else
        assert "forbidden" in r.stderr.lower() and rule["resources"][0] in r.stderr, r.stderr
    finally:
        set_role(lab, identity, role, rule, ns, allowed=True)
    # A rollback the missing rule itself interrupted (it needed the rule) finishes now.
    r = cli("migrate", "--resume", "--config", str(managed.config), "-o", "json")
    assert r.returncode == 0, r.stderr
    assert {x["state"] for x in yaml.safe_load(r.stdout)["resumed"]} <= {"rolled_back"}
    assert_untouched_on_edge(lab, managed)
