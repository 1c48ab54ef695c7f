"""Connections to the continuum's clusters (pykube-ng: objects stay plain dicts, so they can be
copied between clusters as they are), with transient API errors retried by tenacity."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pykube
import requests
import tenacity
import yaml

from orchestrator.config import ClusterConfig, ContinuumConfig, parse_yaml
from orchestrator.errors import BadInput, OperationalError, Outage

T = TypeVar("T")
KINDS: dict[str, tuple[str, str]] = {  # kind -> (apiVersion, plural), all namespaced
    "Deployment": ("apps/v1", "deployments"),
    "Service": ("v1", "services"),
    "ConfigMap": ("v1", "configmaps"),
    "Secret": ("v1", "secrets"),
    "Pod": ("v1", "pods"),
    "Endpoints": ("v1", "endpoints"),
    "IngressRoute": ("traefik.io/v1alpha1", "ingressroutes"),
    "Lease": ("coordination.k8s.io/v1", "leases"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
}
# Kinds whose API version moved: (the version before, the minor release that serves KINDS').
_OLDER = {"PodDisruptionBudget": ("policy/v1beta1", 21)}


class NamespaceTerminating(Exception):
    """Internal: the namespace exists but is being deleted; wait before creating in it."""


class ClusterUnavailable(Outage):
    """The cluster's API server could not be reached, or kept failing, after retries."""


class AccessRefused(BadInput):
    """401/403: the kubeconfig's credentials are wrong or their role lacks a permission."""


class ApiError(OperationalError):
    """The API server refused a request (a 4xx other than 401/403); `code` is its HTTP status.
    pykube's and requests' errors never leave this module: they become this or the above."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def is_transient(e: BaseException) -> bool:
    """Connection trouble, 429 and 5xx are worth retrying; other 4xx are not."""
    if isinstance(e, requests.ConnectionError | requests.Timeout):
        return True
    if isinstance(e, requests.HTTPError) and e.response is not None:  # not a k8s Status body
        return e.response.status_code == 429 or e.response.status_code >= 500
    return isinstance(e, pykube.exceptions.HTTPError) and (e.code == 429 or e.code >= 500)


def _read_kubeconfig(cluster: str, path: Path) -> pykube.KubeConfig:
    """The kubeconfig at `path`; anything that is not one (plain text, binary, a YAML list) is
    one line of bad input."""
    try:
        doc = parse_yaml(path.read_bytes())
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as e:
        raise BadInput(f"cluster {cluster}: kubeconfig {path} is malformed (not YAML: "
                       f"{type(e).__name__}); give a kubeconfig written by kubectl") from e
    except OSError as e:
        raise BadInput(f"cluster {cluster}: cannot read kubeconfig {path} ({e.strerror})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("contexts"), list) or \
            not isinstance(doc.get("clusters"), list):
        raise BadInput(f"cluster {cluster}: kubeconfig {path} is malformed (no 'clusters' and "
                       "'contexts' lists); give a kubeconfig written by kubectl")
    try:
        kc = pykube.KubeConfig(doc)
        kc.filepath = path  # certificate files in it are relative to it, as kubectl reads them
        return kc
    except (KeyError, TypeError, AttributeError, ValueError, pykube.PyKubeError) as e:
        raise BadInput(f"cluster {cluster}: kubeconfig {path} is malformed "
                       f"({type(e).__name__})") from e


def kubeconfig_path(cfg: ClusterConfig) -> Path:
    if cfg.kubeconfig is not None:
        return cfg.kubeconfig
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first or Path.home() / ".kube" / "config").expanduser()


class Cluster:
    """One cluster's API, with retries (`retry_seconds` in total) on transient errors."""

    def __init__(self, cfg: ClusterConfig, timeout: float = 10.0,
                 retry_seconds: float = 20.0) -> None:
        self.cfg = cfg
        self.name = cfg.name
        path = kubeconfig_path(cfg)
        context = cfg.context or cfg.name
        self.kubeconfig = path
        if not path.is_file():
            raise BadInput(f"cluster {cfg.name}: kubeconfig {path} does not exist; set "
                           "'kubeconfig' in the config or KUBECONFIG")
        kc = _read_kubeconfig(cfg.name, path)
        contexts = [c.get("name") for c in kc.doc.get("contexts") or [] if isinstance(c, dict)]
        if context not in contexts:
            raise BadInput(f"cluster {cfg.name}: context {context!r} is not in {path} "
                           f"(it has: {', '.join(map(str, contexts)) or 'none'})")
        try:
            kc.set_current_context(context)
            name = kc.contexts[context].get("cluster")
            raw = next((c.get("cluster") or {} for c in kc.doc["clusters"]
                        if isinstance(c, dict) and c.get("name") == name), {})
            if not raw.get("server"):  # pykube would quietly use http://localhost
                raise KeyError(f"cluster {name!r} has no server")
            self.api = pykube.HTTPClient(kc, timeout=timeout)
            self.api.session.hooks["response"].append(self._counted)
        except (KeyError, TypeError, ValueError, OSError, pykube.PyKubeError) as e:
            raise BadInput(f"cluster {cfg.name}: context {context!r} in {path} is "
                           f"incomplete ({type(e).__name__}: {e})") from e
        self.requests = 0  # HTTP requests answered through self.api (the per-tick cost)
        self._minor: int | None = None  # the server's Kubernetes minor version, once asked
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            stop=tenacity.stop_after_delay(retry_seconds),
            wait=tenacity.wait_exponential(multiplier=0.2, max=3.0),
            reraise=True)

    def _counted(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.requests += 1

    def call(self, fn: Callable[[], T]) -> T:
        """Run one API call with retries; what still fails is a ClusterUnavailable."""
        try:
            return self._retrying(fn)
        except (requests.ConnectionError, requests.Timeout) as e:
            raise ClusterUnavailable(f"cluster {self.name} is unreachable at "
                                     f"{self.api.url} ({type(e).__name__})") from e
        except (pykube.exceptions.HTTPError, requests.HTTPError) as e:
            if is_transient(e):
                raise ClusterUnavailable(f"cluster {self.name} keeps failing ({e})") from e
            code = e.code if isinstance(e, pykube.exceptions.HTTPError) else (
                e.response.status_code if e.response is not None else 0)
            if code in (401, 403):  # the credentials or their role: say which call was refused
                raise AccessRefused(f"cluster {self.name}: access refused ({e}); check the "
                                    f"kubeconfig's credentials ({self.kubeconfig}) and their "
                                    "role") from e
            raise ApiError(f"cluster {self.name}: the API server refused a request ({code}: "
                           f"{e})", code) from e
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as e:
            raise BadInput(f"cluster {self.name}: server {self.api.url!r} in {self.kubeconfig} "
                           f"is not a URL like https://HOST:PORT ({type(e).__name__})") from e
        except requests.RequestException as e:  # e.g. a TLS or proxy problem
            raise ClusterUnavailable(f"cluster {self.name}: request to {self.api.url} failed "
                                     f"({type(e).__name__}: {e})") from e
        except pykube.PyKubeError as e:  # read at the first request: a certificate file missing
            raise BadInput(f"cluster {self.name}: kubeconfig {self.kubeconfig}: {e}") from e

    def _raise_for_status(self, r: requests.Response) -> None:
        """pykube's check (its HTTPError carries the Kubernetes Status message), which fails
        with a KeyError on an error without a content type (a server that is not Kubernetes):
        that one is requests' HTTPError instead."""
        if r.status_code >= 400 and "content-type" not in r.headers:
            r.raise_for_status()
        self.api.raise_for_status(r)

    # --- plain-dict object access ---------------------------------------------------------
    def api_version(self, kind: str) -> str:
        """The apiVersion of `kind` this cluster serves (PodDisruptionBudgets: policy/v1 from
        Kubernetes 1.21, policy/v1beta1 before)."""
        if kind not in _OLDER:
            return KINDS[kind][0]
        if self._minor is None:
            m = re.match(r"v?1\.(\d+)", self.version())
            self._minor = int(m.group(1)) if m else 99
        older, since = _OLDER[kind]
        return KINDS[kind][0] if self._minor >= since else older

    def _request(self, method: str, kind: str, namespace: str, name: str | None = None,
                 **kwargs: Any) -> dict[str, Any]:
        version, plural = self.api_version(kind), KINDS[kind][1]  # pykube: /api or /apis
        url = f"namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")

        def do() -> dict[str, Any]:
            r = self.api.request(method, version=version, url=url, **kwargs)
            self._raise_for_status(r)
            return r.json() if r.content else {}

        return self.call(do)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", kind, namespace, name)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else None
        return list(self._request("GET", kind, namespace, params=params).get("items") or [])

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        ns = obj["metadata"]["namespace"]
        return self._request("POST", obj["kind"], ns, json=obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        m = obj["metadata"]
        return self._request("PUT", obj["kind"], m["namespace"], m["name"], json=obj)

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A strategic merge patch (merge patch for custom resources)."""
        ctype = ("application/merge-patch+json" if kind == "IngressRoute"
                 else "application/strategic-merge-patch+json")
        return self._request("PATCH", kind, namespace, name, json=patch,
                             headers={"Content-Type": ctype})

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete if present; False when it was already gone."""
        try:
            self._request("DELETE", kind, namespace, name,
                          json={"kind": "DeleteOptions", "apiVersion": "v1",
                                "propagationPolicy": "Background"})
            return True
        except ApiError as e:
            if e.code == 404:
                return False
            raise

    def ensure_namespace(self, namespace: str, labels: dict[str, str]) -> bool:
        """Create the namespace (with `labels`) if missing; True when it was created.

        A namespace still terminating (e.g. from a rolled-back migration) is waited out first.
        """
        def do() -> bool:
            current = pykube.Namespace.objects(self.api).get_or_none(name=namespace)
            if current is not None and current.obj.get("status", {}).get("phase") == \
                    "Terminating":
                raise NamespaceTerminating(namespace)
            if current is not None:
                return False
            pykube.Namespace(self.api, {"metadata": {"name": namespace,
                                                     "labels": labels}}).create()
            return True
        terminating = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(NamespaceTerminating),
            stop=tenacity.stop_after_delay(60), wait=tenacity.wait_fixed(0.5), reraise=True)
        try:
            return terminating(lambda: self.call(do))
        except NamespaceTerminating as e:
            raise OperationalError(f"cluster {self.name}: namespace {namespace} is still "
                                   "terminating after 60s; try again later") from e

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        """The namespace's labels, or None when it does not exist."""
        ns = self.call(lambda: pykube.Namespace.objects(self.api).get_or_none(name=namespace))
        return None if ns is None else dict(ns.obj["metadata"].get("labels") or {})

    def delete_namespace(self, namespace: str) -> None:
        self.call(lambda: pykube.Namespace(self.api, {"metadata": {"name": namespace}}).delete())

    def nodes(self) -> list[dict[str, Any]]:
        return self.call(lambda: [n.obj for n in pykube.Node.objects(self.api)])

    def version(self) -> str:
        """The server's gitVersion; a server that does not answer like Kubernetes is bad input
        (the kubeconfig points at something else)."""
        def do() -> Any:
            r = self.api.get(version="", base="/version")
            self._raise_for_status(r)
            return r.json()

        try:
            answer = self.call(do)
        except ApiError as e:
            raise BadInput(f"cluster {self.name}: {self.api.url} is not a Kubernetes API server "
                           f"(GET /version: {e.code}); check 'server' in {self.kubeconfig}") from e
        except ValueError as e:  # not JSON
            raise BadInput(f"cluster {self.name}: {self.api.url} is not a Kubernetes API server "
                           f"(GET /version did not answer JSON); check 'server' in "
                           f"{self.kubeconfig}") from e
        if not isinstance(answer, dict) or "gitVersion" not in answer:
            raise BadInput(f"cluster {self.name}: {self.api.url} is not a Kubernetes API server "
                           f"(no gitVersion in /version); check 'server' in {self.kubeconfig}")
        return str(answer["gitVersion"])


class Clusters:
    """Every cluster of a continuum.yaml, connected on first use."""

    def __init__(self, config: ContinuumConfig, timeout: float | None = None,
                 retry_seconds: float | None = None) -> None:
        self.config = config
        self.timeout = config.api_timeout_s if timeout is None else timeout
        self.retry_seconds = config.api_retry_s if retry_seconds is None else retry_seconds
        self._open: dict[str, Cluster] = {}

    def __getitem__(self, name: str) -> Cluster:
        if name not in self._open:
            self._open[name] = Cluster(self.config.cluster(name), self.timeout,
                                       self.retry_seconds)
        return self._open[name]

    def __iter__(self) -> Iterator[Cluster]:
        return (self[c.name] for c in self.config.clusters)

    @property
    def requests(self) -> int:
        """HTTP requests made so far through the clusters connected (not the caches' own)."""
        return sum(c.requests for c in self._open.values())


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def node_ready(node: dict[str, Any]) -> bool:
    return is_ready(node)
