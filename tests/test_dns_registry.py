"""DNS ownership (external-dns's TXT registry) and the DNS step's rules, on an in-memory DNS
provider of the provider interface: only names greenwise-mc owns are changed (or adopted when
the service says so), values it does not manage are kept, and a rollback restores only what
the migration wrote. (The providers themselves: test_dns_rfc2136.py against a real bind9,
test_dns_clouddns.py against the REST-contract server; the migration: test_migrate_promise.py.)"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.migration.dns.base import DnsBadInput, Record, make_record
from orchestrator.migration.dns.registry import claim, desired, may_change, owner_in
from orchestrator.migration.steps import Dns

ZONE = "continuum.test."
NAME = "resnet.continuum.test."
EDGE, CLOUD, FOREIGN = "127.13.0.1", "127.13.0.3", "127.0.0.99"


@dataclass
class MemoryDns:
    """The provider interface over a dict: name -> Record (A/CNAME), name -> TXT strings."""

    zone: str = ZONE
    records: dict[str, Record] = field(default_factory=dict)
    txt: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, name: str) -> Record | None:
        return self.records.get(name)

    def replace(self, name: str, rtype: str, values: Iterable[str], ttl: int) -> Record | None:
        old = self.records.get(name)
        self.records[name] = make_record(name, self.zone, rtype, values, ttl)
        return old

    def delete(self, name: str) -> Record | None:
        return self.records.pop(name, None)

    def get_txt(self, name: str) -> tuple[str, ...] | None:
        return self.txt.get(name)

    def replace_txt(self, name: str, values: Iterable[str], ttl: int) -> None:
        values = tuple(sorted(values))
        if values:
            self.txt[name] = values
        else:
            self.txt.pop(name, None)

    def describe(self) -> str:
        return "memory"


def context(dns: MemoryDns, adopt: bool = False) -> Any:
    clusters = [SimpleNamespace(ingress_host=h) for h in (EDGE, CLOUD)]
    notes: list[str] = []
    return SimpleNamespace(
        dns=dns, notes=notes,
        service=SimpleNamespace(hostname=NAME, key="ml/resnet", adopt_dns=adopt),
        config=SimpleNamespace(dns=SimpleNamespace(owner_id="greenwise-mc", ttl=30),
                               clusters=clusters),
        target=SimpleNamespace(cfg=clusters[1]),
        report=lambda event, step, detail: notes.append(f"{event} {detail}"))


def test_desired_keeps_the_addresses_no_cluster_serves() -> None:
    prior = Record(NAME, "A", (EDGE, FOREIGN), 30)
    assert desired(prior, CLOUD, {EDGE, CLOUD}) == ("A", (CLOUD, FOREIGN))
    assert desired(None, CLOUD, {EDGE, CLOUD}) == ("A", (CLOUD,))
    assert desired(prior, "lb.cloud.example", {EDGE}) == ("CNAME", ("lb.cloud.example",))


def test_only_an_owned_or_free_name_may_change_unless_adopted() -> None:
    ours = ("heritage=greenwise-mc,greenwise-mc/owner=greenwise-mc,greenwise-mc/service=a/b",)
    theirs = ("heritage=greenwise-mc,greenwise-mc/owner=other-team,greenwise-mc/service=a/b",)
    record = Record(NAME, "A", (EDGE,), 30)
    assert owner_in(ours) == "greenwise-mc" and owner_in(("v=spf1 -all",)) is None
    assert may_change(NAME, record, ours, "greenwise-mc", adopt=False) is False
    assert may_change(NAME, None, None, "greenwise-mc", adopt=False) is False  # free: ours now
    with pytest.raises(DnsBadInput, match=r"no ownership record at greenwise-owner\.resnet"):
        may_change(NAME, record, None, "greenwise-mc", adopt=False)
    with pytest.raises(DnsBadInput, match="owner 'other-team' holds it"):
        may_change(NAME, record, theirs, "greenwise-mc", adopt=False)
    assert may_change(NAME, record, None, "greenwise-mc", adopt=True) is True


def run(step: Dns, ctx: Any) -> dict[str, Any]:
    undo = step.capture_undo(ctx)
    step.do(ctx, undo)
    return undo


def test_the_step_keeps_foreign_values_and_its_claim() -> None:
    dns = MemoryDns()
    dns.replace(NAME, "A", (EDGE, FOREIGN), 30)
    claim(dns, NAME, "greenwise-mc", "ml/resnet", 30)
    ctx = context(dns)
    undo = run(Dns(), ctx)
    assert dns.get(NAME).values == tuple(sorted((CLOUD, FOREIGN)))
    Dns().undo(ctx, undo)
    assert dns.get(NAME).values == tuple(sorted((EDGE, FOREIGN)))
    assert owner_in(dns.get_txt("greenwise-owner." + NAME)) == "greenwise-mc"


def test_an_adopted_name_is_claimed_and_released_on_rollback() -> None:
    dns = MemoryDns()
    dns.replace(NAME, "A", (FOREIGN,), 30)
    ctx = context(dns, adopt=True)
    with pytest.raises(DnsBadInput):
        run(Dns(), context(dns, adopt=False))
    assert dns.get(NAME).values == (FOREIGN,) and dns.txt == {}
    undo = run(Dns(), ctx)
    assert any("adopting" in n for n in ctx.notes)
    assert owner_in(dns.get_txt("greenwise-owner." + NAME)) == "greenwise-mc"
    assert dns.get(NAME).values == tuple(sorted((CLOUD, FOREIGN)))
    Dns().undo(ctx, undo)
    assert dns.get(NAME).values == (FOREIGN,) and dns.txt == {}


def test_a_rollback_leaves_a_change_made_since() -> None:
    dns = MemoryDns()
    dns.replace(NAME, "A", (EDGE,), 30)
    claim(dns, NAME, "greenwise-mc", "ml/resnet", 30)
    ctx = context(dns)
    undo = run(Dns(), ctx)
    dns.replace(NAME, "A", ("127.0.0.7",), 30)  # an operator's change after the step
    Dns().undo(ctx, undo)
    assert dns.get(NAME).values == ("127.0.0.7",)
    assert any("left as it is" in n for n in ctx.notes)
    # A new name: rollback removes the record and the claim the migration made.
    fresh = MemoryDns()
    ctx = context(fresh)
    undo = run(Dns(), ctx)
    assert fresh.get(NAME).values == (CLOUD,) and fresh.txt
    Dns().undo(ctx, undo)
    assert fresh.records == {} and fresh.txt == {}
