"""One active controller at a time: leader election with a coordination.k8s.io/v1 Lease, as
client-go's leaderelection does it. The holder renews `renewTime`; a Lease not renewed for
`leaseDurationSeconds` (or released: no holder) may be taken over. Every write carries the
resourceVersion read, so of two candidates racing for the same Lease only one wins."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.errors import BadInput, OperationalError
from orchestrator.kube.clusters import AccessRefused, ApiError, Cluster

MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # metav1.MicroTime


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime(MICRO_TIME)


def _parse(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    fmt = MICRO_TIME if "." in stamp else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.strptime(stamp, fmt).replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class LeaseState:
    holder: str | None  # who holds it now (None: free)
    renewed_s_ago: float
    mine: bool


class Lease:
    def __init__(self, cluster: Cluster, namespace: str, name: str, identity: str,
                 duration_s: float) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_s = duration_s

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name} in cluster {self.cluster.name}"

    def acquire(self) -> LeaseState:
        """Take the Lease if it is free or expired, renew it if it is ours; say who holds it.
        Raises BadInput when its role lacks the rights, OperationalError when the cluster
        does not answer or refuses otherwise."""
        try:
            return self._acquire()
        except AccessRefused as e:
            raise BadInput(f"the {self.where} cannot be taken ({e}); the controller needs get, "
                           "create and update on leases") from e
        except ApiError as e:
            raise OperationalError(f"the {self.where} cannot be taken ({e})") from e

    def _acquire(self) -> LeaseState:
        now = time.time()
        current = self.cluster.get("Lease", self.namespace, self.name)
        if current is None:
            try:
                self.cluster.ensure_namespace(self.namespace, {})
            except ApiError as e:
                if e.code != 409:  # another candidate created it just now
                    raise
            return self._write(None, self._spec(now, now, 0))
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or None
        renewed = _parse(spec.get("renewTime") or spec.get("acquireTime"))
        duration = spec.get("leaseDurationSeconds") or self.duration_s
        if holder == self.identity:
            acquired = _parse(spec.get("acquireTime")) or now
            return self._write(current, self._spec(acquired, now,
                                                   spec.get("leaseTransitions") or 0))
        if holder is not None and now - renewed < duration:
            return LeaseState(holder, max(0.0, now - renewed), mine=False)
        return self._write(current, self._spec(now, now, (spec.get("leaseTransitions") or 0) + 1))

    def release(self) -> None:
        """Give the Lease up at shutdown so another controller takes over at once."""
        try:
            current = self.cluster.get("Lease", self.namespace, self.name)
            if current is None or (current.get("spec") or {}).get(
                    "holderIdentity") != self.identity:
                return
            spec = {**current["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
            self._write(current, spec)
        except ApiError as e:
            raise OperationalError(f"the {self.where} could not be released ({e.code})") from e

    def _spec(self, acquired: float, renewed: float, transitions: int) -> dict[str, Any]:
        return {"holderIdentity": self.identity, "leaseDurationSeconds": round(self.duration_s),
                "acquireTime": _stamp(acquired), "renewTime": _stamp(renewed),
                "leaseTransitions": transitions}

    def _write(self, current: dict[str, Any] | None, spec: dict[str, Any]) -> LeaseState:
        obj: dict[str, Any] = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                               "metadata": {"name": self.name, "namespace": self.namespace},
                               "spec": spec}
        try:
            if current is None:
                self.cluster.create(obj)
            else:
                obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.cluster.replace(obj)
        except ApiError as e:
            if e.code not in (409, 422):  # another candidate wrote first
                raise
            theirs = self.cluster.get("Lease", self.namespace, self.name) or {}
            holder = (theirs.get("spec") or {}).get("holderIdentity")
            return LeaseState(holder, 0.0, mine=False)
        return LeaseState(spec["holderIdentity"], 0.0, mine=spec["holderIdentity"] is not None)
