"""What a DNS provider does during a migration: read, atomically replace and delete the one
A or CNAME record set that carries a service's public hostname, and the TXT record set beside
it that says who owns it (registry.py).

Names are absolute (trailing dot) and lower-case; A values are IPv4 addresses; a CNAME has one
absolute target. Values are kept sorted so records from different providers compare equal.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from orchestrator.errors import BadInput, GreenwiseError, OperationalError, Outage

RTYPES = ("A", "CNAME")


class DnsError(GreenwiseError):
    """A DNS change could not be made; the message says why and what to check. Only its
    subclasses are raised; each also sits on one branch of the error tree, by what the user
    must do: fix the config, key or credentials (BadInput, exit 2), or wait for / repair the
    DNS service (OperationalError, exit 1)."""


class DnsBadInput(DnsError, BadInput):
    """A setting, key file, name or value is wrong, or dns.server is not the zone's primary."""


class DnsAuthError(DnsError, BadInput):
    """The provider rejected our credentials (TSIG key, service account, token): the user must
    fix the key file or the account's rights, so it is bad input, not an outage."""


class DnsUnavailable(DnsError, Outage):
    """Transient: timeout, connection refused, SERVFAIL, 429 or 5xx. Retrying may succeed."""


class DnsConflict(DnsError, OperationalError):
    """The record changed between reading and writing it (someone else changed it)."""


class DnsFailed(DnsError, OperationalError):
    """The server or API answered an error that is none of the above."""


@dataclass(frozen=True)
class Record:
    name: str
    rtype: str  # "A" | "CNAME"
    values: tuple[str, ...]
    ttl: int


@runtime_checkable
class DnsProvider(Protocol):
    zone: str

    def get(self, name: str) -> Record | None:
        """The A or CNAME record set at `name`, or None."""
        ...

    def replace(self, name: str, rtype: str, values: Iterable[str], ttl: int) -> Record | None:
        """Swap whatever A/CNAME is at `name` for the new set in one transaction.

        Returns the previous record (None if there was none): replacing with it rolls back.
        Raises DnsConflict if the record changes between the read and the write.
        """
        ...

    def delete(self, name: str) -> Record | None:
        """Remove the A/CNAME at `name`; returns what was there."""
        ...

    def get_txt(self, name: str) -> tuple[str, ...] | None:
        """The strings of the TXT record set at `name` (each unquoted), or None."""
        ...

    def replace_txt(self, name: str, values: Iterable[str], ttl: int) -> None:
        """Swap the TXT record set at `name` for `values` (none: delete it), in one change."""
        ...

    def describe(self) -> str:
        """One line naming the provider, server and zone; never a secret."""
        ...


def absolute(zone: str) -> str:
    zone = zone.strip().lower()
    if not zone or zone == ".":
        raise DnsBadInput("DNS zone is empty; set dns.zone to e.g. 'continuum.test.'")
    return zone if zone.endswith(".") else zone + "."


def fqdn(name: str, zone: str) -> str:
    """`svc`, `svc.continuum.test` or `svc.continuum.test.` -> `svc.continuum.test.`.

    A dotted name without a trailing dot must end in the zone: `svc.other.test` is refused
    rather than silently becoming `svc.other.test.continuum.test.`.
    """
    zone = absolute(zone)
    n = name.strip().lower()
    if not n or n.startswith(".") or ".." in n:
        raise DnsBadInput(f"DNS name {name!r} is not a valid host name")
    if not n.endswith("."):
        if n == zone[:-1] or n.endswith("." + zone[:-1]):
            n += "."
        elif "." not in n:
            n = f"{n}.{zone}"
        else:
            raise DnsBadInput(f"DNS name {name!r} is not inside zone {zone}; "
                              f"write it relative ('svc') or absolute ('svc.{zone}')")
    if n != zone and not n.endswith("." + zone):
        raise DnsBadInput(f"DNS name {name!r} is not inside zone {zone}")
    return n


def make_record(name: str, zone: str, rtype: str, values: Iterable[str], ttl: int) -> Record:
    """Validate and normalize what a caller asked for (one line of error per mistake)."""
    n = fqdn(name, zone)
    if rtype not in RTYPES:
        raise DnsBadInput(f"DNS record type {rtype!r} is not supported; use one of {RTYPES}")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= 2**31 - 1:
        raise DnsBadInput(f"DNS TTL {ttl!r} for {n} must be a positive whole number of seconds")
    if isinstance(values, str):  # one value given bare, not as a list of characters
        values = [values]
    vals = [v.strip().lower() for v in values]
    if not vals:
        raise DnsBadInput(f"no values given for the {rtype} record at {n}")
    if rtype == "A":
        for v in vals:
            try:
                ipaddress.IPv4Address(v)
            except ValueError:
                raise DnsBadInput(f"{v!r} is not an IPv4 address (A record at {n})") from None
    else:
        if len(vals) != 1:
            raise DnsBadInput(f"a CNAME has exactly one target; got {len(vals)} for {n}")
        if n == absolute(zone):
            raise DnsBadInput(f"a CNAME cannot be at the zone apex {n}; use an A record")
        # A target is a host name, usually outside the zone (an ingress's load balancer).
        vals = [vals[0] if vals[0].endswith(".") else vals[0] + "."]
        if not vals[0].strip(".") or ".." in vals[0] or " " in vals[0]:
            raise DnsBadInput(f"{vals[0]!r} is not a valid CNAME target (at {n})")
    return Record(name=n, rtype=rtype, values=tuple(sorted(set(vals))), ttl=ttl)


def quoted(value: str) -> str:
    """A TXT string in zone-file form: quoted, quotes and backslashes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
