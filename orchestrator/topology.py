"""Host order, Location <-> index, each host's tier and the kind of a move, defined once for
every continuum."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from orchestrator.config import ClusterConfig
from orchestrator.errors import BadInput
from orchestrator.model import Location
from orchestrator.scenario import ClusterSpec, HostProfile, Tier

MoveKind = Literal["intra", "inter"]


class Topology:
    """The hosts of a continuum in one fixed order: clusters in config order, then their hosts.
    Every index into hosts (observations, masks, actions) means this order."""

    def __init__(self, clusters: Sequence[ClusterSpec | ClusterConfig]) -> None:
        """From a scenario's or a continuum.yaml's clusters, in their order."""
        self.hosts: tuple[HostProfile, ...] = tuple(h for c in clusters for h in c.hosts)
        self.locations: tuple[Location, ...] = tuple(
            Location(c.name, h.name) for c in clusters for h in c.hosts)
        self.clusters: tuple[str, ...] = tuple(loc.cluster for loc in self.locations)
        # each host's tier: its own, else its cluster's
        self.tiers: tuple[Tier, ...] = tuple(h.tier or c.tier for c in clusters for h in c.hosts)
        self._index = {loc: i for i, loc in enumerate(self.locations)}
        self.p_max = max(h.max_watts for h in self.hosts)  # reward normalization (Eq. 9)

    def __len__(self) -> int:
        return len(self.hosts)

    def index(self, location: Location) -> int:
        if location not in self._index:
            raise BadInput(f"{location} is not a host of the continuum; hosts: "
                           f"{', '.join(map(str, self.locations))}")
        return self._index[location]

    def move_kind(self, src: int, dst: int) -> MoveKind | None:
        """None (no move), "intra" (same cluster) or "inter" (another cluster)."""
        if src == dst:
            return None
        return "intra" if self.clusters[src] == self.clusters[dst] else "inter"
