"""Who owns a DNS name, as external-dns records it: a TXT record beside each name greenwise-mc
manages, naming the owner (`dns.owner_id`), so that it changes only names it owns.

The TXT record sits at `greenwise-owner.<name>` (a name of its own: a CNAME at <name> may not
have company) and holds `heritage=greenwise-mc,greenwise-mc/owner=<id>,greenwise-mc/service=
<namespace/name>`. A name without it, or with another owner's, is not greenwise-mc's: a
migration refuses it unless the service's config says to adopt it.
"""

from __future__ import annotations

import ipaddress

from orchestrator.migration.dns.base import DnsBadInput, DnsProvider, Record

PREFIX = "greenwise-owner."
HERITAGE = "heritage=greenwise-mc"


def registry_name(hostname: str) -> str:
    return PREFIX + hostname


def owner_in(registry: tuple[str, ...] | None) -> str | None:
    """The owner id an ownership record's strings name, or None (no such record: unowned)."""
    for value in registry or ():
        fields = dict(f.split("=", 1) for f in value.split(",") if "=" in f)
        if f"heritage={fields.get('heritage')}" == HERITAGE:
            return fields.get("greenwise-mc/owner")
    return None


def may_change(hostname: str, record: Record | None, registry: tuple[str, ...] | None,
               owner: str, adopt: bool) -> bool:
    """Whether greenwise-mc (`owner`) may point `hostname` elsewhere; True when it adopts a name
    it did not own. Raises DnsBadInput for a name of someone else's that is not to be adopted."""
    found = owner_in(registry)
    if found == owner or (record is None and found is None):
        return False
    if adopt:
        return True
    whose = (f"owner {found!r} holds it" if found
             else f"no ownership record at {registry_name(hostname)}")
    raise DnsBadInput(f"DNS name {hostname} holds {describe(record)} and greenwise-mc (owner "
                      f"{owner!r}) does not own it ({whose}); set adopt_dns: true on the "
                      "service to take it over")


def claim(dns: DnsProvider, hostname: str, owner: str, service: str, ttl: int) -> None:
    dns.replace_txt(registry_name(hostname),
                    [f"{HERITAGE},greenwise-mc/owner={owner},greenwise-mc/service={service}"],
                    ttl)


def release(dns: DnsProvider, hostname: str) -> None:
    dns.replace_txt(registry_name(hostname), [], 1)


def desired(prior: Record | None, target_host: str,
            managed: set[str]) -> tuple[str, tuple[str, ...]]:
    """The record that points `hostname` at `target_host` (A for an address, CNAME for a
    name): an A record keeps the addresses it holds that are no cluster's ingress (`managed`),
    which are someone else's to manage."""
    rtype = record_type(target_host)
    if rtype == "A" and prior is not None and prior.rtype == "A":
        kept = sorted(v for v in prior.values if v not in managed and v != target_host)
        return "A", (target_host, *kept)
    return rtype, (target_host,)


def record_type(host: str) -> str:
    try:
        return "A" if ipaddress.ip_address(host).version == 4 else "AAAA"
    except ValueError:
        return "CNAME"


def describe(record: Record | None) -> str:
    return "none" if record is None else f"{record.rtype} {' '.join(record.values)}"
