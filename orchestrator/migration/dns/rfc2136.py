"""RFC 2136 dynamic updates signed with TSIG (BIND, Knot, PowerDNS, ...), via dnspython.

Queries and updates go over TCP straight to the given server (never the system resolver), so a
read after a successful update sees the new data at once on the primary.

Each replace is one UPDATE message: prerequisites that the name still holds what `get` saw
(compare-and-swap, like Cloud DNS's exact deletions), delete A, delete CNAME, add the new set.
BIND ignores a CNAME added next to an A unless the A goes in the same message.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update

from orchestrator.migration.dns.base import (
    RTYPES,
    DnsAuthError,
    DnsBadInput,
    DnsConflict,
    DnsFailed,
    DnsUnavailable,
    Record,
    absolute,
    fqdn,
    make_record,
    quoted,
)

log = logging.getLogger(__name__)

_KEY_RE = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{[^}]*?algorithm\s+"?(?P<alg>[\w.-]+)"?\s*;'
    r'[^}]*?secret\s+"(?P<secret>[^"]+)"\s*;', re.DOTALL)

# TSIG errors the server reports in its (unsigned) answer, as dnspython raises them.
_PEER_ERRORS: dict[type[Exception], str] = {
    dns.tsig.PeerBadKey: "BADKEY: the server does not know this key name",
    dns.tsig.PeerBadSignature: "BADSIG: the secret does not match the server's",
    dns.tsig.PeerBadTime: "BADTIME: the clocks differ too much",
    dns.tsig.PeerBadTruncation: "BADTRUNC",
}
_CONFLICTS = {dns.rcode.YXRRSET, dns.rcode.NXRRSET, dns.rcode.YXDOMAIN, dns.rcode.NXDOMAIN}


@dataclass(frozen=True)
class TsigKey:
    """A BIND key file's key. The secret stays out of repr; only name and path are shown."""

    name: str
    algorithm: str
    secret: str = field(repr=False)
    path: Path

    @classmethod
    def load(cls, path: Path | str) -> TsigKey:
        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise DnsBadInput(f"cannot read TSIG key file {path}: "
                              f"{e.strerror if isinstance(e, OSError) else 'not text'}") from None
        m = _KEY_RE.search(text)
        # Never echo the file's content: it holds the secret.
        if m is None:
            raise DnsBadInput(f"TSIG key file {path} has no 'key \"name\" {{ algorithm ...; "
                              f"secret \"...\"; }};' block (make one with tsig-keygen)")
        try:
            base64.b64decode(m["secret"], validate=True)
        except binascii.Error:
            raise DnsBadInput(f"TSIG key file {path}: the secret is not valid base64") from None
        key = cls(name=m["name"], algorithm=m["alg"].lower(), secret=m["secret"], path=path)
        try:
            dns.tsig.get_context(key.dnspython())  # the algorithm is only checked here
        except (dns.exception.DNSException, NotImplementedError, ValueError):
            raise DnsBadInput(f"TSIG key file {path}: unusable key (algorithm "
                              f"{key.algorithm!r} is not supported; use hmac-sha256)") from None
        return key

    def dnspython(self) -> dns.tsig.Key:
        # dns.tsig.Key's repr shows the secret: never log or format this object.
        return dns.tsig.Key(self.name, self.secret, self.algorithm)


class Rfc2136Provider:
    def __init__(self, server: str, port: int, zone: str, tsig_key_file: Path | str,
                 timeout: float = 3.0) -> None:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise DnsBadInput(f"DNS server {server!r} must be an IP address "
                              "(dnspython does not resolve host names)") from None
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise DnsBadInput(f"DNS server port {port!r} must be 1-65535")
        if not timeout > 0:
            raise DnsBadInput(f"DNS timeout {timeout!r} must be positive")
        self.server, self.port, self.timeout = server, port, float(timeout)
        self.zone = absolute(zone)
        self.key = TsigKey.load(tsig_key_file)
        self._tsig = self.key.dnspython()

    def describe(self) -> str:
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"rfc2136 {host}:{self.port} zone {self.zone}"

    def __repr__(self) -> str:
        return f"<Rfc2136Provider {self.describe()} key {self.key.name!r} from {self.key.path}>"

    def get(self, name: str) -> Record | None:
        n = fqdn(name, self.zone)
        # An A query also returns a CNAME at the name (and whatever it points to).
        owner = dns.name.from_text(n)
        for rrset in self._query(n, dns.rdatatype.A).answer:
            rtype = dns.rdatatype.to_text(rrset.rdtype)
            if rrset.name == owner and rtype in RTYPES:
                return Record(name=n, rtype=rtype, ttl=int(rrset.ttl),
                              values=tuple(sorted(r.to_text() for r in rrset)))
        return None

    def get_txt(self, name: str) -> tuple[str, ...] | None:
        n = fqdn(name, self.zone)
        owner = dns.name.from_text(n)
        for rrset in self._query(n, dns.rdatatype.TXT).answer:
            if rrset.name == owner and rrset.rdtype == dns.rdatatype.TXT:
                return tuple(sorted(b"".join(r.strings).decode() for r in rrset))
        return None

    def replace_txt(self, name: str, values: Iterable[str], ttl: int) -> None:
        n = fqdn(name, self.zone)
        update = dns.update.UpdateMessage(self.zone, keyring=self._tsig)
        update.delete(n, "TXT")
        strings = [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, quoted(v))
                   for v in values]
        if strings:
            update.add(n, ttl, *strings)
        self._apply(update, f"set the TXT record at {n}")

    def _query(self, n: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        """An authoritative answer about `n` from the zone's primary."""
        answer = self._send(dns.message.make_query(n, rdtype), f"query for {n}")
        rcode = answer.rcode()
        if rcode == dns.rcode.SERVFAIL:
            raise DnsUnavailable(f"{self.describe()}: SERVFAIL for {n}; is the zone loaded?")
        if rcode == dns.rcode.REFUSED:
            raise DnsBadInput(f"{self.describe()}: the server refused a query for {n}; is it "
                              f"authoritative for {self.zone} and does it allow queries from here?")
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise DnsFailed(f"{self.describe()}: query for {n} answered "
                            f"{dns.rcode.to_text(rcode)}")
        if not answer.flags & dns.flags.AA:
            # A cache or secondary may lag behind: reads must come from the zone's primary.
            raise DnsBadInput(f"{self.describe()}: the answer for {n} is not authoritative; "
                              "point dns.server at the primary server of the zone")
        return answer

    def replace(self, name: str, rtype: str, values: Iterable[str], ttl: int) -> Record | None:
        new = make_record(name, self.zone, rtype, values, ttl)
        old = self.get(new.name)
        if old == new:
            return old
        update = self._update_from(old, new.name)
        for t in RTYPES:
            update.delete(new.name, t)
        update.add(new.name, new.ttl, new.rtype, *new.values)
        self._apply(update, f"replace {new.name} with {new.rtype} {' '.join(new.values)}")
        log.info("dns %s: %s %s -> %s %s", self.describe(), new.name, _show(old), new.rtype,
                 " ".join(new.values))
        return old

    def delete(self, name: str) -> Record | None:
        n = fqdn(name, self.zone)
        old = self.get(n)
        if old is None:
            return None
        update = self._update_from(old, n)
        for t in RTYPES:
            update.delete(n, t)
        self._apply(update, f"delete {n}")
        log.info("dns %s: deleted %s %s", self.describe(), n, _show(old))
        return old

    def _update_from(self, old: Record | None, name: str) -> dns.update.UpdateMessage:
        """A signed update whose prerequisites say `name` still holds exactly `old`."""
        update = dns.update.UpdateMessage(self.zone, keyring=self._tsig)
        for t in RTYPES:
            if old is not None and old.rtype == t:
                update.present(name, dns.rdataset.from_text(dns.rdataclass.IN, t, 0,
                                                            *old.values))
            else:
                update.absent(name, t)
        return update

    def _apply(self, update: dns.update.UpdateMessage, what: str) -> None:
        rcode = self._send(update, what).rcode()
        if rcode == dns.rcode.NOERROR:
            return
        text = dns.rcode.to_text(rcode)
        if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
            raise DnsAuthError(
                f"{self.describe()} answered {text} to '{what}': the TSIG key "
                f"{self.key.name!r} was rejected, is not allowed to update the zone, or the "
                f"server is not authoritative for {self.zone}; check the key file "
                f"{self.key.path} and the zone's allow-update")
        if rcode in _CONFLICTS:
            raise DnsConflict(f"{self.describe()}: '{what}' not applied ({text}): the record "
                              "changed since it was read (concurrent change); read and retry")
        if rcode == dns.rcode.SERVFAIL:
            raise DnsUnavailable(f"{self.describe()}: SERVFAIL for '{what}'; nothing changed")
        raise DnsFailed(f"{self.describe()}: '{what}' answered {text}")

    def _send(self, msg: dns.message.Message, what: str) -> dns.message.Message:
        try:
            return dns.query.tcp(msg, self.server, port=self.port, timeout=self.timeout)
        except tuple(_PEER_ERRORS) as e:
            raise DnsAuthError(
                f"{self.describe()}: the TSIG key {self.key.name!r} was rejected "
                f"({_PEER_ERRORS[type(e)]}); check the key file {self.key.path}") from None
        except (dns.tsig.BadSignature, dns.message.UnknownTSIGKey) as e:
            raise DnsAuthError(
                f"{self.describe()}: the answer to '{what}' failed TSIG verification "
                f"({type(e).__name__}); check the key file {self.key.path}") from None
        except (dns.exception.Timeout, OSError, EOFError) as e:
            # A refused connection carried nothing; after a timeout the update may be applied.
            maybe = ("; the update may or may not have been applied"
                     if isinstance(msg, dns.update.UpdateMessage)
                     and not isinstance(e, ConnectionRefusedError) else "")
            raise DnsUnavailable(f"{self.describe()}: {what} failed: "
                                 f"{_reason(e, self.timeout)}{maybe}") from e
        except dns.exception.DNSException as e:
            raise DnsFailed(f"{self.describe()}: {what} failed: {type(e).__name__}: {e}") from e


def _reason(e: Exception, timeout: float) -> str:
    if isinstance(e, dns.exception.Timeout):
        return f"no answer within {timeout:g}s"
    if isinstance(e, EOFError):
        return "the server closed the connection"
    return f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"


def _show(r: Record | None) -> str:
    return "(none)" if r is None else f"{r.rtype} {' '.join(r.values)}"
