"""bind9 with TSIG: signed updates take effect, unsigned or wrongly signed ones are refused."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.update
import pytest

from tests.lab.dns import Bind9Info, read_tsig_key, soa_serial, tsig_key
from tests.lab.loadgen import resolve
from tests.lab.netfixtures import running_bind9


@pytest.fixture
def bind9(tmp_path: Path) -> Iterator[Bind9Info]:
    with running_bind9(tmp_path / "bind9") as info:
        yield info


def send(info: Bind9Info, update: dns.update.Update) -> dns.message.Message:
    return dns.query.tcp(update, info.server, port=info.port, timeout=5)


def signed(info: Bind9Info) -> dns.update.Update:
    return dns.update.Update(info.zone, keyring=tsig_key(info.key_file))


def test_key_file_is_parsed_private_and_never_logged(bind9: Bind9Info) -> None:
    name, algorithm, secret = read_tsig_key(bind9.key_file)
    assert (name, algorithm) == (bind9.key_name, bind9.key_algorithm) == ("greenwise-mc",
                                                                          "hmac-sha256")
    assert len(base64.b64decode(secret)) == 32
    assert bind9.key_file.stat().st_mode & 0o077 == 0
    logs = "".join(p.read_text(errors="replace") for p in bind9.key_file.parent.glob("*.log"))
    assert secret not in logs


def test_signed_update_changes_what_the_loadgen_resolves(bind9: Bind9Info) -> None:
    host = "svc." + bind9.zone
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolve(host, bind9.server, bind9.port)
    serial = soa_serial(bind9)
    for address in ("127.0.1.1", "127.0.2.1"):
        u = signed(bind9)
        u.replace("svc", 1, "A", address)
        start = time.monotonic()
        assert send(bind9, u).rcode() == dns.rcode.NOERROR
        assert resolve(host, bind9.server, bind9.port) == ([address], 1)
        print(f"update-to-answer {1000 * (time.monotonic() - start):.1f} ms")
    assert soa_serial(bind9) > serial


def test_unsigned_update_is_refused(bind9: Bind9Info) -> None:
    u = dns.update.Update(bind9.zone)
    u.replace("svc", 1, "A", "127.0.9.9")
    assert send(bind9, u).rcode() == dns.rcode.REFUSED
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolve("svc." + bind9.zone, bind9.server, bind9.port)


def test_update_signed_with_the_wrong_secret_is_refused(bind9: Bind9Info) -> None:
    forged = dns.tsig.Key(bind9.key_name, base64.b64encode(b"x" * 32).decode(),
                          bind9.key_algorithm)
    u = dns.update.Update(bind9.zone, keyring=forged)
    u.replace("svc", 1, "A", "127.0.9.9")
    # BIND answers NOTAUTH with TSIG error BADSIG; dnspython raises it as PeerBadSignature.
    with pytest.raises(dns.tsig.PeerBadSignature):
        send(bind9, u)
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolve("svc." + bind9.zone, bind9.server, bind9.port)


def test_update_signed_with_an_unknown_key_is_refused(bind9: Bind9Info) -> None:
    stranger = dns.tsig.Key("someone-else", read_tsig_key(bind9.key_file)[2], bind9.key_algorithm)
    u = dns.update.Update(bind9.zone, keyring=stranger)
    u.replace("svc", 1, "A", "127.0.9.9")
    with pytest.raises(dns.tsig.PeerBadKey):
        send(bind9, u)


def cname_answer(info: Bind9Info, name: str) -> dict[str, list[str]]:
    q = dns.message.make_query(name, dns.rdatatype.A)
    r = dns.query.udp(q, info.server, port=info.port, timeout=5)
    return {dns.rdatatype.to_text(rr.rdtype): sorted(x.to_text() for x in rr) for rr in r.answer}


def test_a_is_replaced_by_a_cname_in_one_update(bind9: Bind9Info) -> None:
    u = signed(bind9)
    u.replace("svc", 1, "A", "127.0.1.1")
    u.replace("fog-ingress", 1, "A", "127.0.2.1")
    assert send(bind9, u).rcode() == dns.rcode.NOERROR

    # Adding a CNAME next to the A is silently ignored by BIND (NOERROR, nothing changes)...
    u = signed(bind9)
    u.add("svc", 1, "CNAME", "fog-ingress")
    assert send(bind9, u).rcode() == dns.rcode.NOERROR
    assert cname_answer(bind9, "svc." + bind9.zone) == {"A": ["127.0.1.1"]}

    # ...so the A must be deleted in the same update.
    u = signed(bind9)
    u.delete("svc", "A")
    u.add("svc", 1, "CNAME", "fog-ingress")
    assert send(bind9, u).rcode() == dns.rcode.NOERROR
    assert cname_answer(bind9, "svc." + bind9.zone) == {
        "CNAME": ["fog-ingress." + bind9.zone], "A": ["127.0.2.1"]}
    assert resolve("svc." + bind9.zone, bind9.server, bind9.port) == (["127.0.2.1"], 1)
