"""Watch-fed caches of a cluster's Nodes, Pods and Deployments, as client-go informers keep them.

Each `Informer` LISTs its kind, then WATCHes from the list's resourceVersion in a background
thread, applying ADDED / MODIFIED / DELETED to its store (BOOKMARKs only advance the version).
When the server ends a watch normally it watches again from the last version seen; a 410 Gone
(the version was compacted away) or a dropped connection makes it LIST again (a resync), which
also applies whatever happened while it was away. Until that LIST succeeds it is not `synced`,
and readers must not trust it (a cluster that does not answer cannot host anything).

Reads are thread-safe: `get` and `items` return copies; `ClusterCache.view()` gathers what a
control tick needs without copying (the cache never changes a stored object, an event replaces
it, so the view's objects are only to be read), and a tick costs no API request at all.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pykube
import requests

from orchestrator.errors import GreenwiseError
from orchestrator.kube.clusters import Cluster, Clusters

log = logging.getLogger(__name__)
Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
WATCH_TIMEOUT_S = 240  # the server ends each watch after this long; we then watch again
RETRY_S = (0.2, 5.0)  # backoff after a failed LIST or a dropped watch: first, at most


class WatchExpired(Exception):
    """410 Gone: the resourceVersion to watch from is no longer in etcd; LIST again."""


@dataclass(frozen=True)
class Resource:
    """A kind to watch: its API version, plural and (for namespaced kinds) namespace."""

    kind: str
    version: str
    plural: str
    namespace: str | None = None  # None: every namespace (or a cluster-scoped kind)

    @property
    def url(self) -> str:
        return (f"namespaces/{self.namespace}/" if self.namespace else "") + self.plural

    def __str__(self) -> str:
        return f"{self.plural}" + (f" in {self.namespace}" if self.namespace else "")


NODES = Resource("Node", "v1", "nodes")
PODS = Resource("Pod", "v1", "pods")


def deployments(namespace: str) -> Resource:
    return Resource("Deployment", "apps/v1", "deployments", namespace)


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


class Informer:
    """One resource of one cluster, kept current by LIST + WATCH in a daemon thread."""

    def __init__(self, cluster: Cluster, resource: Resource,
                 watch_timeout_s: int = WATCH_TIMEOUT_S) -> None:
        self.cluster = cluster
        self.resource = resource
        self.watch_timeout_s = watch_timeout_s
        # A client of its own: a streaming watch must not share the requests session (not
        # thread-safe) of the calls made in the control loop's thread.
        self.api = pykube.HTTPClient(cluster.api.config, timeout=cluster.api.timeout)
        self.api.session.hooks["response"].append(self._counted)
        self.requests = 0  # HTTP requests made (LISTs and WATCHes): background, per cluster
        self.lists = 0  # LISTs made: 1 + the resyncs
        self.expired = 0  # watches refused with 410 Gone (each followed by a LIST)
        self.error: str | None = None  # why it is not synced, if it was once and is not now
        self._store: dict[Key, Obj] = {}
        self._version = ""
        self._synced = False
        self._last_event = float("-inf")  # monotonic time of the last LIST or event applied
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._response: requests.Response | None = None
        self._thread: threading.Thread | None = None

    # --- reads ------------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        return self._synced

    def age_s(self) -> float:
        """Seconds since the last LIST or watch event was applied (inf: never)."""
        return time.monotonic() - self._last_event

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            obj = self._store.get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def items(self) -> list[Obj]:
        return copy.deepcopy(self.shared())

    def shared(self) -> list[Obj]:
        """The stored objects themselves, not copies: cheap, and safe to read in any thread,
        since an event replaces an object and never changes one; never change them."""
        with self._lock:
            return list(self._store.values())

    # --- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, daemon=True,
                name=f"informer-{self.cluster.name}-{self.resource.plural}")
            self._thread.start()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._synced and time.monotonic() < deadline and not self._stopping.is_set():
            time.sleep(0.02)
        return self._synced

    def stop(self) -> None:
        """Ask the thread to end: stop waiting, break the open watch."""
        self._stopping.set()
        response = self._response
        if response is not None:
            interrupt(response)

    def close(self, timeout: float = 5.0) -> None:
        """End the thread and wait for it."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self.api.session.close()

    # --- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = RETRY_S[0]
        while not self._stopping.is_set():
            try:
                self._list()
                backoff = RETRY_S[0]
                while not self._stopping.is_set():
                    self._watch()  # returns when the server ends the watch: watch again
            except WatchExpired:
                self.expired += 1
                log.info("%s/%s: watch expired (410 Gone): listing again", self.cluster.name,
                         self.resource)
                continue
            except Exception as e:  # any failure: resync, never die silently
                if self._stopping.is_set():
                    break
                self._synced = False
                self.error = f"{type(e).__name__}: {e}"
                log.info("%s/%s: watch dropped (%s): listing again in %.1f s",
                         self.cluster.name, self.resource, self.error, backoff)
                self._stopping.wait(backoff)
                backoff = min(RETRY_S[1], backoff * 2)

    def _list(self) -> None:
        r = self.api.get(version=self.resource.version, url=self.resource.url)
        self.api.raise_for_status(r)
        body = r.json()
        with self._lock:
            self._store = {key_of(o): o for o in body.get("items") or []}
            self._version = body["metadata"]["resourceVersion"]
            self._last_event = time.monotonic()
            self._synced, self.error = True, None
            self.lists += 1

    def _watch(self) -> None:
        params = {"watch": "true", "resourceVersion": self._version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(self.watch_timeout_s)}
        r = self.api.get(version=self.resource.version, url=self.resource.url, params=params,
                         stream=True, timeout=(self.api.timeout, self.watch_timeout_s + 30))
        self._response = r  # before looking at _stopping: stop() then breaks it, or we return
        try:
            if self._stopping.is_set():
                return
            if r.status_code == 410:
                raise WatchExpired()
            self.api.raise_for_status(r)
            for line in r.iter_lines():
                if self._stopping.is_set():
                    return
                if line:
                    self._apply(json.loads(line))
        finally:
            self._response = None
            r.close()

    def _apply(self, event: Obj) -> None:
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise WatchExpired()
            raise ValueError(f"watch error {obj.get('code')}: {obj.get('message')}")
        with self._lock:
            self._version = obj["metadata"]["resourceVersion"]
            self._last_event = time.monotonic()
            if kind in ("ADDED", "MODIFIED"):
                self._store[key_of(obj)] = obj
            elif kind == "DELETED":
                self._store.pop(key_of(obj), None)

    def _counted(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.requests += 1


def interrupt(response: requests.Response) -> None:
    """Break a streaming read blocked in another thread (closing alone may not wake it)."""
    try:
        sock = response.raw._connection.sock  # type: ignore[union-attr]
        sock.shutdown(2)  # SHUT_RDWR
    except (AttributeError, OSError):
        pass
    response.close()


@dataclass(frozen=True)
class ClusterView:
    """What one cluster's caches held at one instant (their objects, shared: read only)."""

    cluster: str
    synced: bool
    problem: str | None  # why not synced
    nodes: dict[str, Obj] = field(default_factory=dict)
    pods_by_node: dict[str, list[Obj]] = field(default_factory=dict)  # bound, not finished
    deployments: dict[Key, Obj] = field(default_factory=dict)

    def pods_of(self, deployment: Obj) -> list[Obj]:
        """The Deployment's pods, not being deleted."""
        return [p for pods in self.pods_by_node.values() for p in pods
                if owned(deployment, p) and not p["metadata"].get("deletionTimestamp")]


def owned(deployment: Obj, pod: Obj) -> bool:
    """Whether the pod is the Deployment's: its namespace, its selector's matchLabels."""
    meta = pod["metadata"]
    match = (deployment.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
    labels = meta.get("labels") or {}
    return meta.get("namespace") == deployment["metadata"]["namespace"] and all(
        labels.get(k) == v for k, v in match.items())


class ClusterCache:
    """A cluster's informers: Nodes and Pods everywhere, Deployments in the managed namespaces
    (what RBAC grants: list and watch on deployments in a managed namespace only)."""

    def __init__(self, cluster: Cluster, namespaces: Iterable[str]) -> None:
        self.cluster = cluster
        self.nodes = Informer(cluster, NODES)
        self.pods = Informer(cluster, PODS)
        self.deployments = {ns: Informer(cluster, deployments(ns)) for ns in sorted(namespaces)}

    @property
    def informers(self) -> list[Informer]:
        return [self.nodes, self.pods, *self.deployments.values()]

    @property
    def synced(self) -> bool:
        return all(i.synced for i in self.informers)

    @property
    def requests(self) -> int:
        return sum(i.requests for i in self.informers)

    def age_s(self) -> float:
        """Seconds since the least recently updated informer last applied something."""
        return max(i.age_s() for i in self.informers)

    def start(self) -> None:
        for i in self.informers:
            i.start()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(i.wait_synced(max(0.0, deadline - time.monotonic())) for i in self.informers)

    def close(self) -> None:
        for i in self.informers:
            i.stop()  # all at once, then each joins
        for i in self.informers:
            i.close()

    def view(self) -> ClusterView:
        if not self.synced:
            missing = [i for i in self.informers if not i.synced]
            why = "; ".join(f"{i.resource}: {i.error or 'not listed yet'}" for i in missing)
            return ClusterView(self.cluster.name, False, f"cluster {self.cluster.name}'s caches "
                                                         f"are not synced ({why})")
        by_node: dict[str, list[Obj]] = {}
        for p in self.pods.shared():
            node = (p.get("spec") or {}).get("nodeName")
            if node and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                by_node.setdefault(node, []).append(p)
        deps = {key_of(d): d for i in self.deployments.values() for d in i.shared()}
        return ClusterView(self.cluster.name, True, None,
                           {n["metadata"]["name"]: n for n in self.nodes.shared()}, by_node, deps)


class KubeCaches:
    """One ClusterCache per cluster of a continuum, started by start(), closed by close().

    A cluster that cannot even be connected to (e.g. its kubeconfig is unusable) gets no cache:
    its view says why, and the other clusters' hosts are judged as usual."""

    def __init__(self, clusters: Clusters, namespaces: Iterable[str]) -> None:
        self.clusters = clusters
        self.namespaces = frozenset(namespaces)
        self._caches: dict[str, ClusterCache] = {}
        self._unusable: dict[str, str] = {}  # cluster -> why it has no cache

    @property
    def requests(self) -> int:
        return sum(c.requests for c in self._caches.values())

    @property
    def started(self) -> bool:
        return bool(self._caches or self._unusable)

    def start(self, wait_s: float = 0.0) -> bool:
        """Start every cluster's informers; wait up to `wait_s` for all to sync."""
        for c in self.clusters.config.clusters:
            if c.name in self._caches or c.name in self._unusable:
                continue
            try:
                self._caches[c.name] = ClusterCache(self.clusters[c.name], self.namespaces)
            except GreenwiseError as e:
                self._unusable[c.name] = str(e)
                continue
            self._caches[c.name].start()
        deadline = time.monotonic() + wait_s
        synced = [c.wait_synced(max(0.0, deadline - time.monotonic()))
                  for c in self._caches.values()]
        return all(synced) and not self._unusable

    def views(self) -> dict[str, ClusterView]:
        """Every cluster's view now (start() first)."""
        views = {name: ClusterView(name, False, why) for name, why in self._unusable.items()}
        return {**views, **{name: c.view() for name, c in self._caches.items()}}

    def close(self) -> None:
        for c in self._caches.values():
            for i in c.informers:
                i.stop()  # every thread at once, then each joins
        for c in self._caches.values():
            c.close()
        self._caches.clear()
        self._unusable.clear()
