"""manifests/: kustomizations that render, a controller Deployment as documented, a config the
controller accepts, the sample service with the paper's TorchServe settings, a role made only of
what the code calls, and a Grafana dashboard over series that exist. (tests/test_rbac.py proves
the role on the lab.)"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import ContinuumConfig
from orchestrator.kube.cache import NODES, PODS, deployments
from orchestrator.kube.clusters import KINDS
from orchestrator.migration.objects import route_rule, routes
from orchestrator.scenario import ServiceSpec
from tests.lab.cluster import KubeError
from tests.lab.lab import Lab

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
RULES = MANIFESTS / "prometheus" / "greenwise-rules.yaml"
DASHBOARD = MANIFESTS / "grafana" / "greenwise.json"
CONTROLLER_COMMAND = ["greenwise-mc", "run", "--config", "/etc/greenwise/continuum.yaml",
                      "--strategy", "rules", "--interval", "10s",
                      "--metrics-address", "0.0.0.0:9400"]  # the pod's IP: probes, scrapes
CONTROLLER_METRICS = {"greenwise_ticks_total", "greenwise_decisions_total",
                      "greenwise_migrations_total", "greenwise_tick_seconds_bucket",
                      "greenwise_tick_seconds_sum", "greenwise_tick_seconds_count"}
Doc = dict[str, Any]


def load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def docs(directory: Path) -> list[Doc]:
    """The resources a kustomization lists (recursively), without its generators."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    out: list[Doc] = []
    for entry in k.get("resources") or []:
        path = directory / entry
        out += docs(path) if path.is_dir() else load(path)
    return out


def one(kind: str, name: str, where: Path = MANIFESTS) -> Doc:
    [doc] = [d for d in docs(where) if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def pod_spec(name: str) -> Doc:
    return dict(one("Deployment", name)["spec"]["template"]["spec"])


def kustomize(path: Path = MANIFESTS) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is missing: run tests/lab/install.sh (tests/run does)"
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


# --- layout ---------------------------------------------------------------------------------

def test_every_kustomization_names_files_that_exist() -> None:
    for k in MANIFESTS.rglob("kustomization.yaml"):
        spec = yaml.safe_load(k.read_text())
        for entry in spec.get("resources") or []:
            path = k.parent / entry
            assert path.is_file() or (path / "kustomization.yaml").is_file(), (k, entry)
        for gen in (spec.get("configMapGenerator") or []) + (spec.get("secretGenerator") or []):
            for f in gen.get("files") or []:
                assert (k.parent / f.split("=")[-1]).is_file(), (k, f)


def test_kustomize_renders_everything_the_home_cluster_needs() -> None:
    rendered = kustomize()
    kinds = {(d["kind"], d["metadata"]["name"].rsplit("-", 1)[0]
              if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(
                  ("greenwise-mc-config", "resnet-torchserve")) else d["metadata"]["name"])
             for d in rendered}
    assert {("Deployment", "greenwise-mc"), ("ServiceAccount", "greenwise-mc"),
            ("ClusterRole", "greenwise-mc-nodes"), ("ClusterRole", "greenwise-mc-services"),
            ("Role", "greenwise-mc-leader"), ("ConfigMap", "greenwise-mc-config"),
            ("Deployment", "resnet"), ("Service", "resnet"), ("IngressRoute", "resnet"),
            ("ConfigMap", "resnet-torchserve"), ("ConfigMap", "greenwise-prometheus-rules"),
            ("ConfigMap", "greenwise-grafana-dashboard")} <= kinds
    # the generated ConfigMaps are the ones the Deployments mount
    names = {d["metadata"]["name"] for d in rendered if d["kind"] == "ConfigMap"}
    for d in rendered:
        if d["kind"] == "Deployment":
            for v in d["spec"]["template"]["spec"]["volumes"]:
                if "configMap" in v:
                    assert v["configMap"]["name"] in names
    rules = next(d for d in rendered if d["metadata"]["name"] == "greenwise-prometheus-rules")
    assert rules["data"]["greenwise-rules.yaml"] == RULES.read_text()
    # other clusters get the identity alone
    assert {d["kind"] for d in kustomize(MANIFESTS / "rbac")} == {
        "Namespace", "ServiceAccount", "Secret", "ClusterRole", "ClusterRoleBinding",
        "RoleBinding"}


# --- the controller ---------------------------------------------------------------------------

def test_controller_deployment() -> None:
    dep = one("Deployment", "greenwise-mc")
    pod = dep["spec"]["template"]
    [c] = pod["spec"]["containers"]
    assert c["image"] == "ghcr.io/greenwise-mc/greenwise-mc:0.1.0"
    assert c["command"] == CONTROLLER_COMMAND
    assert {"name": "metrics", "containerPort": 9400, "protocol": "TCP"} in c["ports"]
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true",
                                              "prometheus.io/port": "9400",
                                              "prometheus.io/path": "/metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert set(c["resources"]) == {"requests", "limits"}
    assert pod["spec"]["serviceAccountName"] == "greenwise-mc"
    assert pod["spec"]["automountServiceAccountToken"] is False
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert mounts["credentials"]["readOnly"] and mounts["config"]["readOnly"]
    assert volumes["credentials"]["secret"]["secretName"] == "greenwise-mc-credentials"
    assert volumes["config"]["configMap"]["name"] == "greenwise-mc-config"
    assert mounts["config"]["mountPath"] == str(Path(CONTROLLER_COMMAND[3]).parent)


def test_controller_config_is_a_continuum_the_controller_accepts() -> None:
    cfg = ContinuumConfig.model_validate(
        yaml.safe_load((MANIFESTS / "controller" / "continuum.yaml").read_text()))
    [c] = pod_spec("greenwise-mc")["containers"]
    mounts = {m["name"]: Path(m["mountPath"]) for m in c["volumeMounts"]}
    for cluster in cfg.clusters:
        assert cluster.kubeconfig is not None
        assert cluster.kubeconfig.parent == mounts["credentials"]
    assert cfg.dns.provider == "rfc2136"
    assert cfg.dns.tsig_key_file.parent == mounts["credentials"]
    assert cfg.state_dir == mounts["state"]
    # the Lease is the one leader-election.yaml grants, in the cluster the controller runs in
    leader = one("Role", "greenwise-mc-leader")
    assert cfg.controller.lease_namespace == leader["metadata"]["namespace"]
    assert [cfg.controller.lease_name] == next(r["resourceNames"] for r in leader["rules"]
                                               if "resourceNames" in r)
    assert cfg.controller.lease_cluster is not None
    # every managed namespace gets the RoleBinding (manifests/rbac/managed-namespace.yaml)
    bound = {d["metadata"]["namespace"] for d in docs(MANIFESTS / "rbac")
             if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == "greenwise-mc-services"}
    assert {s.namespace for s in cfg.services} <= bound


# --- the sample service -----------------------------------------------------------------------

def properties() -> dict[str, str]:
    out = {}
    for line in (MANIFESTS / "ml-service" / "config.properties").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_sample_service_runs_torchserve_with_the_papers_settings() -> None:
    props = properties()
    [model] = json.loads(props["models"]).values()
    [version] = model.values()
    paper = ServiceSpec()  # what the simulator and the strategies assume
    assert version["batchSize"] == paper.batch_size == 8
    assert version["maxBatchDelay"] == paper.max_batch_delay_ms == 100
    assert props["load_models"] == version["marName"] == "resnet-18.mar"
    handler = (MANIFESTS / "ml-service" / "greenwise_handler.py").read_text()
    assert "torch.set_num_threads(1)" in handler
    assert "torch.set_num_interop_threads(1)" in handler

    spec = pod_spec("resnet")
    [ts] = spec["containers"]
    assert ts["image"].startswith("pytorch/torchserve:")
    assert all(c["image"] == ts["image"] for c in spec["initContainers"])
    env = {e["name"]: e for e in ts["env"]}
    assert env["OMP_NUM_THREADS"]["value"] == "1"
    assert env["TS_DEFAULT_WORKERS_PER_MODEL"]["valueFrom"]["resourceFieldRef"]["resource"] == \
        "limits.cpu"
    assert "cpu" not in ts["resources"].get("limits", {})  # else: fewer workers than cores
    assert props["enable_envvars_config"] == "true"
    assert "--ts-config" in ts["command"] and "--foreground" in ts["command"]
    ports = {p["name"]: p["containerPort"] for p in ts["ports"]}
    assert props["inference_address"].endswith(f":{ports['http']}")
    assert props["metrics_address"].endswith(f":{ports['metrics']}")
    annotations = one("Deployment", "resnet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])

    service = one("Service", "resnet")
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= one("Deployment", "resnet")["spec"][
        "template"]["metadata"]["labels"].items()
    cfg = ContinuumConfig.model_validate(
        yaml.safe_load((MANIFESTS / "controller" / "continuum.yaml").read_text()))
    svc = cfg.service("ml/resnet")
    route = one("IngressRoute", "resnet")
    rule = route_rule(svc.hostname, svc.namespace, svc.name,
                      [c.cluster_domain for c in cfg.clusters])
    assert routes(route, rule, svc.name)  # what a migration recognises as its own
    assert route["spec"]["routes"][0]["services"][0]["port"] == 80
    assert props["disable_token_authorization"] == "true"
    assert props["management_address"].startswith("http://127.0.0.1:")


def test_build_mar_swaps_in_the_handler(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("build_mar",
                                                  MANIFESTS / "ml-service" / "build_mar.py")
    assert spec is not None and spec.loader is not None
    build_mar = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_mar)
    source, out = tmp_path / "in.mar", tmp_path / "out.mar"
    manifest = {"model": {"modelName": "resnet-18", "handler": "image_classifier",
                          "serializedFile": "resnet18.pth", "modelFile": "model.py"}}
    with zipfile.ZipFile(source, "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        z.writestr("resnet18.pth", b"weights")
        z.writestr("model.py", "class M: ...\n")
    build_mar.rebuild(source, out)
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == ["MAR-INF/MANIFEST.json", "greenwise_handler.py",
                                        "model.py", "resnet18.pth"]
        got = json.loads(z.read("MAR-INF/MANIFEST.json"))
        assert got["model"] == {**manifest["model"], "handler": "greenwise_handler.py"}
        assert z.read("resnet18.pth") == b"weights"
        assert b"set_num_interop_threads(1)" in z.read("greenwise_handler.py")


# --- the role ---------------------------------------------------------------------------------

def roles() -> list[Doc]:
    return [d for d in docs(MANIFESTS) if d["kind"] in ("ClusterRole", "Role")]


WATCHED = {NODES.plural, PODS.plural, deployments("ns").plural}


def test_role_names_only_what_the_code_calls() -> None:
    """Every resource is one the code talks to (orchestrator/kube/clusters.py KINDS, plus
    namespaces, nodes and the policy mode's Lease), in the right API group; no wildcards, no
    verbs that widen access, no listing of Secrets, watch only where policy mode's caches
    watch."""
    group_of = {plural: version.rpartition("/")[0] for version, plural in KINDS.values()}
    group_of |= {"namespaces": "", "nodes": "", "leases": "coordination.k8s.io"}
    for role in roles():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(
                rule["verbs"]), rule
            if "watch" in rule["verbs"]:  # only what the caches watch (kube/cache.py)
                assert set(rule["resources"]) <= WATCHED, rule
            for resource in rule["resources"]:
                assert resource in group_of, resource
                assert rule["apiGroups"] == [group_of[resource]], rule
                if resource == "secrets":
                    assert "list" not in rule["verbs"]
    bindings = [d for d in docs(MANIFESTS) if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert all(b["subjects"] == [{"kind": "ServiceAccount", "name": "greenwise-mc",
                                  "namespace": "greenwise-system"}] for b in bindings)
    # the cluster-wide binding grants the read-only role only
    assert {b["roleRef"]["name"] for b in bindings if b["kind"] == "ClusterRoleBinding"} == {
        "greenwise-mc-nodes"}
    nodes = next(r for r in roles() if r["metadata"]["name"] == "greenwise-mc-nodes")
    assert {v for rule in nodes["rules"] for v in rule["verbs"]} == {"list", "watch"}


# --- the dashboard ----------------------------------------------------------------------------

def exprs(dashboard: Doc) -> list[str]:
    out = [t["expr"] for p in dashboard["panels"] for t in p.get("targets") or []]
    return out + [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]


def test_dashboard_uses_recorded_series_and_controller_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"]
                for r in g["rules"]}
    used = {m for e in exprs(dashboard) for m in re.findall(r"[a-z_:]*greenwise[a-z_:]*", e)}
    assert used <= recorded | CONTROLLER_METRICS, used - recorded - CONTROLLER_METRICS
    # power, latency, placement, migrations and the controller itself
    assert {"node:greenwise_power_watts:sum", "pod:greenwise_power_watts:sum",
            "pod:greenwise_inference_latency_ms:mean", "pod:greenwise_inference_requests:irate",
            "greenwise_migrations_total", "greenwise_decisions_total", "greenwise_ticks_total",
            "greenwise_tick_seconds_bucket"} <= used
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Power", "Latency and load", "Placement", "Controller and migrations"} <= titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "greenwise-mc"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"]
               if p["type"] != "row")


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: install Debian's `prometheus` package "
                    "(bash tests/lab/install.sh does)")
    grafana = {"$__rate_interval": "1m", "$__range": "1h", "$cluster": ".*",
               "$namespace": ".*", "$hostname": ".*"}
    rules = []
    for i, e in enumerate(exprs(json.loads(DASHBOARD.read_text()))):
        for var, value in grafana.items():
            e = e.replace(var, value)
        assert "$" not in e, e
        rules.append({"record": f"dashboard:query_{i}", "expr": e})
    f = tmp_path / "dashboard-rules.yaml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([exe, "check", "rules", str(f)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- a real apiserver accepts them --------------------------------------------------------------

_COLLECTIONS = {  # kind -> (API prefix, plural)
    "Namespace": ("/api/v1", "namespaces"), "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Secret": ("/api/v1", "secrets"), "ConfigMap": ("/api/v1", "configmaps"),
    "Service": ("/api/v1", "services"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles"),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "IngressRoute": ("/apis/traefik.io/v1alpha1", "ingressroutes"),
}


@pytest.mark.lab
def test_a_cluster_accepts_every_manifest(lab: Lab) -> None:
    """Server-side dry run of `kubectl kustomize manifests` on a lab cluster (Kubernetes 1.20),
    its namespaces and cluster-wide names made unique to the test. Built-in kinds are decoded
    and validated; the lab's Traefik CRDs keep any IngressRoute spec (no schema)."""
    rendered = kustomize()
    suffix = uuid.uuid4().hex[:6]
    rename = {d["metadata"]["name"]: f"{d['metadata']['name']}-{suffix}" for d in rendered
              if d["kind"] == "Namespace"}
    kube = lab.kube("edge")
    try:
        for ns in rename.values():
            kube.create("/api/v1/namespaces", {"metadata": {"name": ns}})
        refused = []
        for doc in rendered:
            if doc["kind"] == "Namespace":
                continue
            meta = doc["metadata"]
            prefix, plural = _COLLECTIONS[doc["kind"]]
            if "namespace" in meta:
                meta["namespace"] = rename[meta["namespace"]]
                prefix += f"/namespaces/{meta['namespace']}"
            else:
                meta["name"] += f"-{suffix}"
            for subject in doc.get("subjects") or []:
                subject["namespace"] = rename[subject["namespace"]]
            try:
                kube.request("POST", f"{prefix}/{plural}", doc, params={"dryRun": "All"})
            except KubeError as e:
                refused.append(f"{doc['kind']} {meta['name']}: {e}")
        assert refused == []
    finally:
        for ns in rename.values():
            kube.delete(f"/api/v1/namespaces/{ns}")
