"""The continuum lab: three real Kubernetes clusters (edge, fog, cloud) on one machine.

`Lab(state_dir).up()` starts, all on 127.0.0.0/8 and recorded by PID in `procs.json`:
one etcd; per cluster a kube-apiserver, kube-controller-manager, kube-scheduler, the fake
kubelet (tests/lab/kubelet.py), Traefik 3.0.4, a Prometheus and its cluster network (cluster DNS
records and a ClusterIP proxy: tests/lab/clusternet.py); one bind9 for `continuum.test.`, one
bind9 serving each cluster's `cluster.local` on `127.<net>.0.53:53` (Traefik resolves through
it: its own /etc/resolv.conf, bind-mounted in a mount namespace), and one global Prometheus
federating the three. It writes into the state directory:

    kubeconfigs/<cluster>.yaml, kubeconfigs/all.yaml   contexts named after the clusters
    tsig.key                                            bind9 key-file format (0600)
    continuum.yaml                                      what the orchestrator reads
    prometheus/loadgen/                                 load generators' file_sd targets
    lab.json, procs.json, logs/, clusters/<name>/       the lab's own records

`down()` stops every recorded process by PID; `status()` tells running from crashed.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from tests.lab import clusternet
from tests.lab import procs as P
from tests.lab.cluster import (
    CLUSTERS,
    Cluster,
    ClusterSpec,
    Kube,
    apply_crds,
    cluster_net,
    ingress_address,
    make_pki,
    node_ip,
    start_apiserver,
    start_controllers,
    start_etcd,
    wait_apiserver,
    wait_http,
    write_kubeconfig,
    write_secret,
)
from tests.lab.kubelet import host_annotations, host_labels

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CRDS = REPO / "traefik" / "crds.yaml"
ZONE = "continuum.test."
# Traefik's providersThrottleDuration here (its default: 2 s). Migrations wait the default
# (ingress_reload_s, 2 s) for a change to apply: a margin for a lab whose 2 cores are busy.
TRAEFIK_THROTTLE_S = 0.5
# (web, admin) port pairs tried in turn on every cluster's ingress address; admin serves
# Traefik's /ping and /metrics. (Not 9100: a system node-exporter may hold *:9100.)
INGRESS_PORTS = ((8080, 9180), (18080, 19180), (28080, 29180))
LOOPBACK_RECORD = "lo-addresses.json"  # the cluster DNS addresses `up` put on lo, for `down`
NODE_METRICS_PORT = 10250  # the fake kubelet's per-node /metrics (power model), on node IPs


def cluster_dns_address(c: Cluster) -> str:
    return f"{cluster_net(c.slot, c.spec)}.0.53"


class LabError(RuntimeError):
    """Something a person running the lab can act on; printed as one line."""


class LabRunning(LabError):
    pass


def install(quiet: bool = False) -> Path:
    """Run install.sh (idempotent; seconds when warm) and return the binaries' directory."""
    r = subprocess.run(["bash", str(HERE / "install.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL if quiet else None, text=True)
    if r.returncode != 0:
        raise LabError(f"tests/lab/install.sh failed (exit {r.returncode})")
    return Path(r.stdout.strip().splitlines()[-1])


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                return False
            raise
    return True


def pick_addresses() -> tuple[int, int, int]:
    """A lab slot (which 127.x networks) and ingress ports free on all three clusters.

    Every cluster's Traefik listens on the same port so that a DNS answer (an ingress IP) is
    all a client needs, as in the real continuum.
    """
    for port, admin in INGRESS_PORTS:
        for slot in range(1, 10):
            if all(_bindable(ingress_address(slot, c), port) and
                   _bindable(ingress_address(slot, c), admin) for c in CLUSTERS):
                return slot, port, admin
    raise LabError("no free lab slot: every 127.x ingress address is taken; is a lab running?")


class Lab:
    def __init__(self, state_dir: Path | str) -> None:
        self.dir = Path(state_dir).resolve()
        self.procs_file = self.dir / "procs.json"
        self.info_file = self.dir / "lab.json"
        self.continuum_file = self.dir / "continuum.yaml"
        self.logs = self.dir / "logs"
        self._procs: list[P.Proc] = []
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._quiet = True

    def _say(self, msg: str) -> None:
        if not self._quiet:
            print(f"[lab {time.monotonic() - self._t0:5.1f}s] {msg}", file=sys.stderr, flush=True)

    # -- records ------------------------------------------------------------------------------

    def procs(self) -> list[P.Proc]:
        return P.load(self.procs_file)

    def _record(self, *new: P.Proc) -> None:
        with self._lock:
            self._procs += new
            P.save(self._procs, self.procs_file)

    def info(self) -> dict[str, Any]:
        if not self.info_file.exists():
            raise LabError(f"no lab at {self.dir} (no lab.json); run `run-lab up --dir {self.dir}`")
        return dict(json.loads(self.info_file.read_text()))

    def running(self) -> bool:
        return any(p.alive() for p in self.procs())

    def status(self) -> list[dict[str, Any]]:
        """One entry per recorded process: name, pid, alive."""
        return [{"name": p.name, "pid": p.pid, "alive": p.alive(), "log": p.log}
                for p in self.procs()]

    def rss_mb(self) -> dict[str, float]:
        """Resident memory per recorded process, counting its process group (a kubelet's pods)."""
        groups: dict[int, float] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pgid = int(stat.read_text().rsplit(")", 1)[1].split()[2])
                status = (stat.parent / "status").read_text()
            except (OSError, IndexError, ValueError):
                continue
            kb = next((int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmRSS:")), 0)
            groups[pgid] = groups.get(pgid, 0.0) + kb / 1024
        return {p.name: round(groups.get(p.pid, 0.0), 1) for p in self.procs()}

    @property
    def loadgen_targets(self) -> Path:
        """Where load generators register their metrics for the global Prometheus:
        `loadgen.start(..., register=lab.loadgen_targets)`."""
        return self.dir / "prometheus" / "loadgen"

    def kube(self, cluster: str) -> Kube:
        c = self.info()["clusters"][cluster]
        return Kube(c["server"], Path(c["token_file"]).read_text().strip(), c["ca_file"])

    # -- up -----------------------------------------------------------------------------------

    def up(self, bin_dir: Path | None = None, quiet: bool = False) -> dict[str, Any]:
        if self.running():
            alive = sum(p.alive() for p in self.procs())
            raise LabRunning(f"lab already running at {self.dir} ({alive} processes); "
                             f"`run-lab down --dir {self.dir}` first")
        t0 = self._t0 = time.monotonic()
        self._quiet = quiet
        bin_dir = bin_dir or install(quiet)
        t_install = time.monotonic() - t0
        if self.dir.exists():
            # Old state (a stopped lab) must not leak: bind9's journal, etcd data, pods' logs.
            for sub in ("clusters", "etcd", "bind9", "prometheus", "kubeconfigs", "secrets",
                        "pki", "logs"):
                shutil.rmtree(self.dir / sub, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._procs = []
        P.save([], self.procs_file)
        self.info_file.unlink(missing_ok=True)
        try:
            info = self._up(bin_dir)
        except BaseException:
            self.down()
            raise
        info["timings"] = {"install_check_s": round(t_install, 2),
                           "up_s": round(time.monotonic() - t0, 2)}
        self.info_file.write_text(json.dumps(info, indent=2))
        return info

    def _up(self, bin_dir: Path) -> dict[str, Any]:
        slot, ingress_port, admin_port = pick_addresses()
        pki = make_pki(self.dir / "pki")
        etcd = start_etcd(self.dir)
        self._record(etcd.proc)
        self._say(f"etcd ready; slot {slot}, ingress port {ingress_port}")
        with ThreadPoolExecutor(max_workers=4) as pool:
            dns_future = pool.submit(self._start_dns)
            clusters = [start_apiserver(spec, slot, self.dir, bin_dir, pki, etcd.url)
                        for spec in CLUSTERS]
            self._record(*(c.procs[0] for c in clusters))
            futures = [pool.submit(self._start_cluster, c, bin_dir, pki, ingress_port, admin_port)
                       for c in clusters]
            per_cluster = [f.result() for f in futures]
            dns_info = dns_future.result()
        write_kubeconfig(self.dir / "kubeconfigs" / "all.yaml", clusters)
        self._start_cluster_net(clusters, dns_info, per_cluster)
        prom_urls = {c.spec.name: pc["prometheus"] for c, pc in zip(clusters, per_cluster,
                                                                    strict=True)}
        from tests.lab.prom import start_global_prometheus
        self._say("clusters up; starting the global Prometheus")
        gproc, gurl = start_global_prometheus(self.dir / "prometheus" / "global", prom_urls,
                                              loadgen_targets=self.loadgen_targets)
        self._record(gproc)
        for c in clusters:
            self._wait_nodes_ready(c)
        self._say("all nodes Ready")
        info = {
            "state_dir": str(self.dir), "slot": slot, "ingress_port": ingress_port,
            "bin_dir": str(bin_dir), "etcd": etcd.url,
            "clusters": {c.spec.name: {**pc, "server": c.server, "token_file": str(c.token_file),
                                       "ca_file": str(c.ca_file), "kubeconfig": str(c.kubeconfig),
                                       "tier": c.spec.tier}
                         for c, pc in zip(clusters, per_cluster, strict=True)},
            "dns": dns_info, "prometheus": gurl, "loadgen_targets": str(self.loadgen_targets),
        }
        self.continuum_file.write_text(yaml.safe_dump(continuum(info), sort_keys=False))
        return info

    def _start_dns(self) -> dict[str, Any]:
        from tests.lab.dns import start_bind9
        proc, b = start_bind9(self.dir / "bind9", zone=ZONE)
        self._record(proc)
        self._say("bind9 ready")
        key = self.dir / "tsig.key"
        write_secret(key, Path(b.key_file).read_text())
        return {"server": b.server, "port": b.port, "zone": b.zone, "key_name": b.key_name,
                "key_algorithm": b.key_algorithm, "tsig_key_file": str(key)}

    def _start_cluster_net(self, clusters: list[Cluster], dns_info: dict[str, Any],
                           per_cluster: list[dict[str, Any]]) -> None:
        views = {c.spec.name: cluster_dns_address(c) for c in clusters}
        clusternet.add_addresses(list(views.values()), self.dir / LOOPBACK_RECORD)
        proc, key_file = clusternet.start_cluster_dns(self.dir / "cluster-dns", views,
                                                      (dns_info["server"], dns_info["port"]))
        self._record(proc)
        for c, pc in zip(clusters, per_cluster, strict=True):
            cfg = {"server": c.server, "token_file": str(c.token_file), "ca_file": str(c.ca_file),
                   "dns": views[c.spec.name], "key_file": str(key_file)}
            path = c.work / "clusternet.json"
            path.write_text(json.dumps(cfg, indent=2))
            self._record(P.spawn(f"{c.spec.name}-clusternet",
                                 [sys.executable, "-m", "tests.lab.clusternet", "--config",
                                  str(path)], c.work, cwd=REPO))
            pc["cluster_dns"] = f"{views[c.spec.name]}:{clusternet.DNS_PORT}"
        self._say("cluster DNS and ClusterIP proxies started")

    def _start_cluster(self, c: Cluster, bin_dir: Path, pki: Any, ingress_port: int,
                       admin_port: int) -> dict[str, Any]:
        spec = c.spec
        wait_apiserver(c)
        self._say(f"{spec.name}: apiserver ready")
        kube = c.kube()
        try:
            apply_crds(kube, CRDS)
        finally:
            kube.close()
        self._say(f"{spec.name}: CRDs established")
        self._record(*start_controllers(c, bin_dir, pki))
        self._record(self._start_kubelet(c))
        traefik, admin = self._start_traefik(c, bin_dir, ingress_port, admin_port)
        self._record(traefik)
        from tests.lab.prom import KubeSD, start_cluster_prometheus
        sd = KubeSD(api_server=c.server, bearer_token_file=c.token_file, ca_file=c.ca_file,
                    node_metrics_port=NODE_METRICS_PORT)
        pproc, purl = start_cluster_prometheus(spec.name, self.dir / "prometheus" / spec.name,
                                               static_targets=[admin], kubernetes=sd)
        self._record(pproc)
        self._say(f"{spec.name}: Prometheus ready")
        wait_http(f"http://{admin}/ping", traefik, timeout=30)
        self._say(f"{spec.name}: Traefik ready")
        return {"ingress": f"{ingress_address(c.slot, spec)}:{ingress_port}",
                "traefik_admin": admin, "prometheus": purl, "api_port": c.api_port,
                "net": f"{cluster_net(c.slot, spec)}.0.0/16"}

    def _start_kubelet(self, c: Cluster) -> P.Proc:
        hosts = [{"spec": asdict(h), "ip": node_ip(c.slot, c.spec, i),
                  "labels": host_labels(c.spec.name, c.spec.tier, h),
                  "annotations": host_annotations(h)} for i, h in enumerate(c.spec.hosts)]
        cfg = {"cluster": c.spec.name, "tier": c.spec.tier, "server": c.server,
               "token_file": str(c.token_file), "ca_file": str(c.ca_file),
               "pod_dir": str(c.work / "pods"), "hosts": hosts,
               "metrics_port": NODE_METRICS_PORT}
        path = c.work / "kubelet.json"
        path.write_text(json.dumps(cfg, indent=2))
        return P.spawn(f"{c.spec.name}-kubelet", [sys.executable, "-m", "tests.lab.kubelet",
                                                  "--config", str(path)], c.work, cwd=REPO)

    def _start_traefik(self, c: Cluster, bin_dir: Path, port: int,
                       admin_port: int) -> tuple[P.Proc, str]:
        ip = ingress_address(c.slot, c.spec)
        admin = f"{ip}:{admin_port}"
        cfg = {
            "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
            "entryPoints": {"web": {"address": f"{ip}:{port}"},
                            "traefik": {"address": admin}},
            "ping": {"entryPoint": "traefik"},
            "metrics": {"prometheus": {"entryPoint": "traefik"}},
            "log": {"level": "INFO", "noColor": True},
            "providers": {
                # Short, so a terminating pod leaves the routing table quickly.
                "providersThrottleDuration": f"{TRAEFIK_THROTTLE_S}s",
                "kubernetesCRD": {"endpoint": c.server, "token": c.token(),
                                  "certAuthFilePath": str(c.ca_file),
                                  "allowExternalNameServices": True,
                                  "allowCrossNamespace": True},
            },
        }
        # A file (0600), not flags: the token must not show in `ps` or procs.json.
        conf = write_secret(c.work / "traefik.yml", yaml.safe_dump(cfg))
        # It resolves ExternalName Services (forwarders) as a pod would: through its cluster's
        # DNS, named in its own /etc/resolv.conf (a private mount namespace).
        resolv = c.work / "resolv.conf"
        resolv.write_text(f"nameserver {cluster_dns_address(c)}\n")
        proc = P.spawn(f"{c.spec.name}-traefik",
                       ["unshare", "--mount", "sh", "-c",
                        'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv),
                        str(bin_dir / "traefik"), f"--configFile={conf}"], c.work,
                       env={"GOGC": "50"})
        return proc, admin

    def _wait_nodes_ready(self, c: Cluster, timeout: float = 30.0) -> None:
        kube = c.kube()
        want = {h.name for h in c.spec.hosts}
        deadline = time.monotonic() + timeout
        try:
            while True:
                nodes = kube.get("/api/v1/nodes").get("items", [])
                ready = {n["metadata"]["name"] for n in nodes
                         if any(k["type"] == "Ready" and k["status"] == "True"
                                for k in n.get("status", {}).get("conditions", []))}
                if want <= ready:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{c.spec.name}: nodes {sorted(want - ready)} not Ready")
                time.sleep(0.1)
        finally:
            kube.close()

    # -- down / restart -----------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop every recorded process (reverse start order) by PID; return their names."""
        stopped = []
        for p in reversed(self.procs()):
            p.stop()
            # The kubelet's pods share its process group: stop them even if it crashed.
            P.kill_group(p.pid)
            stopped.append(p.name)
        self.procs_file.unlink(missing_ok=True)
        clusternet.remove_addresses(self.dir / LOOPBACK_RECORD)
        return stopped

    def restart(self, name: str) -> P.Proc:
        """Start a recorded process again with its recorded command, environment and cwd."""
        recorded = self.procs()
        old = next((p for p in recorded if p.name == name), None)
        if old is None:
            raise LabError(f"no process named {name} in {self.procs_file}")
        old.stop()
        new = P.spawn(name, old.cmd, self.logs_dir_of(old), env=old.env,
                      cwd=Path(old.cwd) if old.cwd else None)
        P.save([new if p.name == name else p for p in recorded], self.procs_file)
        return new

    @staticmethod
    def logs_dir_of(p: P.Proc) -> Path:
        return Path(p.log).parent


def continuum(info: dict[str, Any]) -> dict[str, Any]:
    """The continuum.yaml document the orchestrator reads."""
    by_name = {s.name: s for s in CLUSTERS}
    clusters = []
    for name, c in info["clusters"].items():
        spec: ClusterSpec = by_name[name]
        clusters.append({"name": name, "tier": spec.tier, "kubeconfig": c["kubeconfig"],
                         "context": name, "ingress": c["ingress"], "prometheus": c["prometheus"],
                         "hosts": [h.profile() for h in spec.hosts]})
    d = info["dns"]
    return {
        "state_dir": info["state_dir"],
        "clusters": clusters,
        "dns": {"provider": "rfc2136", "server": d["server"], "port": d["port"],
                "zone": d["zone"], "tsig_key_file": d["tsig_key_file"], "ttl": 2},
        "prometheus": {"url": info["prometheus"]},
        "services": [],
    }
