"""Rfc2136Provider against a real BIND 9 (one named per test, stopped by PID)."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import dns.resolver
import pytest

from orchestrator.migration.dns import (
    DnsAuthError,
    DnsConflict,
    DnsError,
    DnsProvider,
    DnsUnavailable,
    Record,
    Rfc2136Provider,
    fqdn,
    provider_from_config,
)
from tests.lab.dns import Bind9Info, read_tsig_key, resolver, soa_serial, start_bind9
from tests.lab.netfixtures import running_bind9

ZONE = "continuum.test."
HOST = "svc." + ZONE


@pytest.fixture
def bind9(tmp_path: Path) -> Iterator[Bind9Info]:
    with running_bind9(tmp_path / "bind9") as info:
        yield info


@pytest.fixture
def dnsp(bind9: Bind9Info) -> Rfc2136Provider:
    return Rfc2136Provider(bind9.server, bind9.port, bind9.zone, bind9.key_file)


def resolved(info: Bind9Info, host: str = HOST) -> list[str]:
    """What a client resolving through this server sees (a fresh, uncached query)."""
    answer = resolver(info.server, info.port).resolve(host, "A")
    return sorted(r.to_text() for r in answer)


def write_key(path: Path, name: str) -> Path:
    path.write_text(subprocess.run(["tsig-keygen", "-a", "hmac-sha256", name], check=True,
                                   capture_output=True, text=True).stdout)
    return path


def test_replace_creates_an_a_record_that_clients_resolve(dnsp: Rfc2136Provider,
                                                          bind9: Bind9Info) -> None:
    assert dnsp.get("svc") is None
    start = time.monotonic()
    assert dnsp.replace("svc", "A", ["127.0.1.1"], 2) is None
    assert resolved(bind9) == ["127.0.1.1"]
    print(f"replace-to-visible {1000 * (time.monotonic() - start):.1f} ms")
    assert dnsp.get("svc") == Record(HOST, "A", ("127.0.1.1",), 2)
    # All three spellings of the name mean the same record.
    assert dnsp.get(HOST) == dnsp.get("svc.continuum.test") == dnsp.get("SVC")


def test_replace_a_with_a_returns_the_previous_record(dnsp: Rfc2136Provider,
                                                      bind9: Bind9Info) -> None:
    dnsp.replace("svc", "A", ["127.0.1.1"], 2)
    previous = dnsp.replace("svc", "A", ["127.0.2.2", "127.0.2.1"], 5)
    assert previous == Record(HOST, "A", ("127.0.1.1",), 2)
    assert resolved(bind9) == ["127.0.2.1", "127.0.2.2"]
    assert dnsp.get("svc") == Record(HOST, "A", ("127.0.2.1", "127.0.2.2"), 5)


def test_a_to_cname_and_back_each_in_one_update(dnsp: Rfc2136Provider,
                                                bind9: Bind9Info) -> None:
    dnsp.replace("fog-ingress", "A", ["127.0.3.1"], 2)
    dnsp.replace("svc", "A", ["127.0.1.1"], 2)
    serial = soa_serial(bind9)

    previous = dnsp.replace("svc", "CNAME", ["fog-ingress." + ZONE], 2)
    assert previous == Record(HOST, "A", ("127.0.1.1",), 2)
    assert dnsp.get("svc") == Record(HOST, "CNAME", ("fog-ingress." + ZONE,), 2)
    assert resolved(bind9) == ["127.0.3.1"]  # followed through the CNAME
    assert soa_serial(bind9) == serial + 1  # one update: the delete and the add together

    previous = dnsp.replace("svc", "A", ["127.0.1.9"], 2)
    assert previous == Record(HOST, "CNAME", ("fog-ingress." + ZONE,), 2)
    assert dnsp.get("svc") == Record(HOST, "A", ("127.0.1.9",), 2)
    assert resolved(bind9) == ["127.0.1.9"]
    assert soa_serial(bind9) == serial + 2


def test_cname_target_outside_the_zone_is_kept_absolute(dnsp: Rfc2136Provider) -> None:
    dnsp.replace("svc", "CNAME", ["lb-123.cloud.example"], 2)
    assert dnsp.get("svc") == Record(HOST, "CNAME", ("lb-123.cloud.example.",), 2)
    dnsp.replace("svc", "A", "127.0.1.1", 2)  # a single value need not be a list
    assert dnsp.get("svc") == Record(HOST, "A", ("127.0.1.1",), 2)


def test_replacing_with_the_previous_record_rolls_back(dnsp: Rfc2136Provider,
                                                       bind9: Bind9Info) -> None:
    dnsp.replace("svc", "A", ["127.0.1.1"], 2)
    before = dnsp.get("svc")
    previous = dnsp.replace("svc", "CNAME", ["cloud-ingress." + ZONE], 3)
    assert previous == before and previous is not None
    dnsp.replace("svc", previous.rtype, previous.values, previous.ttl)
    assert dnsp.get("svc") == before
    assert resolved(bind9) == ["127.0.1.1"]


def test_replacing_with_the_same_record_sends_no_update(dnsp: Rfc2136Provider,
                                                        bind9: Bind9Info) -> None:
    dnsp.replace("svc", "A", ["127.0.1.1"], 2)
    serial = soa_serial(bind9)
    assert dnsp.replace("svc.continuum.test.", "A", ["127.0.1.1"], 2) == dnsp.get("svc")
    assert soa_serial(bind9) == serial


def test_delete_returns_what_was_there(dnsp: Rfc2136Provider, bind9: Bind9Info) -> None:
    dnsp.replace("svc", "CNAME", ["fog-ingress." + ZONE], 2)
    assert dnsp.delete("svc") == Record(HOST, "CNAME", ("fog-ingress." + ZONE,), 2)
    assert dnsp.get("svc") is None
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolved(bind9)
    assert dnsp.delete("svc") is None


@pytest.mark.parametrize("kind", ["unknown key name", "wrong secret"])
def test_a_wrong_key_is_an_auth_error_and_changes_nothing(
        dnsp: Rfc2136Provider, bind9: Bind9Info, tmp_path: Path, kind: str) -> None:
    dnsp.replace("svc", "A", ["127.0.1.1"], 2)
    serial = soa_serial(bind9)
    # tsig-keygen makes a fresh random secret; "greenwise-mc" is the name bind9 knows.
    key_file = write_key(tmp_path / "other.key",
                         "other" if kind == "unknown key name" else "greenwise-mc")
    wrong = Rfc2136Provider(bind9.server, bind9.port, bind9.zone, key_file)
    with pytest.raises(DnsAuthError) as err:
        wrong.replace("svc", "A", ["127.0.6.6"], 2)
    message = str(err.value)
    assert "TSIG key" in message and "rejected" in message and str(key_file) in message
    assert "BADKEY" in message if kind == "unknown key name" else "BADSIG" in message
    assert "\n" not in message
    for secret in (read_tsig_key(key_file)[2], read_tsig_key(bind9.key_file)[2]):
        assert secret not in message and secret not in repr(err.value)
    assert dnsp.get("svc") == Record(HOST, "A", ("127.0.1.1",), 2)
    assert resolved(bind9) == ["127.0.1.1"]
    assert soa_serial(bind9) == serial


def test_the_secret_never_appears_in_describe_repr_errors_or_logs(
        dnsp: Rfc2136Provider, bind9: Bind9Info, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    secret = read_tsig_key(bind9.key_file)[2]
    caplog.set_level(logging.DEBUG)
    dnsp.replace("svc", "A", ["127.0.1.1"], 2)
    dnsp.delete("svc")
    bad_secret = write_key(tmp_path / "bad.key", "greenwise-mc")
    seen = [dnsp.describe(), repr(dnsp), repr(dnsp.key), str(dnsp.key)]
    for make in (lambda: Rfc2136Provider(bind9.server, bind9.port, bind9.zone, bad_secret)
                 .replace("svc", "A", ["127.0.1.2"], 2),
                 lambda: dnsp.replace("svc.elsewhere.test.", "A", ["127.0.1.2"], 2)):
        with pytest.raises(DnsError) as err:
            make()
        seen += [str(err.value), repr(err.value), "".join(traceback.format_exception(err.value))]
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("orchestrator")]
    assert len(logged) == 2 and all(HOST in line for line in logged)  # replace and delete
    seen += logged
    assert dnsp.describe() == f"rfc2136 127.0.0.1:{bind9.port} zone {ZONE}"
    for text in seen:
        assert secret not in text
        assert read_tsig_key(bad_secret)[2] not in text


@pytest.mark.parametrize("name", ["svc.elsewhere.test.", "svc.elsewhere.test", "continuum.test.x"])
def test_a_name_outside_the_zone_is_refused_before_anything_is_sent(
        dnsp: Rfc2136Provider, bind9: Bind9Info, name: str) -> None:
    serial = soa_serial(bind9)
    for call in (lambda: dnsp.replace(name, "A", ["127.0.1.1"], 2), lambda: dnsp.get(name),
                 lambda: dnsp.delete(name)):
        with pytest.raises(DnsError, match=r"not inside zone continuum\.test\.") as err:
            call()
        assert "\n" not in str(err.value)
    assert soa_serial(bind9) == serial


def test_a_concurrent_change_between_read_and_write_is_a_conflict(
        dnsp: Rfc2136Provider, bind9: Bind9Info, monkeypatch: pytest.MonkeyPatch) -> None:
    dnsp.replace("svc", "A", ["127.0.1.1"], 2)
    other = Rfc2136Provider(bind9.server, bind9.port, bind9.zone, bind9.key_file)
    read = dnsp.get

    def read_then_someone_else_writes(name: str) -> Record | None:
        seen = read(name)
        other.replace("svc", "A", ["127.0.7.7"], 2)
        return seen

    monkeypatch.setattr(dnsp, "get", read_then_someone_else_writes)
    with pytest.raises(DnsConflict, match="concurrent change"):
        dnsp.replace("svc", "CNAME", ["fog-ingress." + ZONE], 2)
    monkeypatch.undo()
    # The other writer's record survives: our update's prerequisites failed as a whole.
    assert dnsp.get("svc") == Record(HOST, "A", ("127.0.7.7",), 2)


def test_a_stopped_server_is_unavailable(tmp_path: Path) -> None:
    proc, info = start_bind9(tmp_path / "bind9")
    try:
        dnsp = Rfc2136Provider(info.server, info.port, info.zone, info.key_file, timeout=1.0)
        dnsp.replace("svc", "A", ["127.0.1.1"], 2)
    finally:
        proc.stop()
    assert not proc.alive()
    with pytest.raises(DnsUnavailable, match="ConnectionRefusedError"):
        dnsp.get("svc")
    with pytest.raises(DnsUnavailable):
        dnsp.replace("svc", "A", ["127.0.1.2"], 2)
    with pytest.raises(DnsUnavailable):
        dnsp.delete("svc")


def test_a_server_that_never_answers_times_out_as_unavailable(tmp_path: Path) -> None:
    key_file = write_key(tmp_path / "k.key", "greenwise-mc")
    # The kernel completes the TCP handshake on a listening socket nobody reads from.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        dnsp = Rfc2136Provider("127.0.0.1", port, ZONE, key_file, timeout=0.3)
        with pytest.raises(DnsUnavailable, match=r"no answer within 0.3s"):
            dnsp.get("svc")


def test_a_server_that_hangs_up_is_unavailable(tmp_path: Path) -> None:
    key_file = write_key(tmp_path / "k.key", "greenwise-mc")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def hang_up_on_everyone() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener was closed: the test is over
                return
            conn.close()

    t = threading.Thread(target=hang_up_on_everyone, daemon=True)
    t.start()
    try:
        dnsp = Rfc2136Provider("127.0.0.1", listener.getsockname()[1], ZONE, key_file)
        with pytest.raises(DnsUnavailable, match=r"closed the connection|reset by peer"):
            dnsp.get("svc")
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        listener.close()
        t.join(timeout=5)


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read"),
    ("", "no 'key"),
    ('key "k" { algorithm hmac-sha256; secret "not*base64"; };', "not valid base64"),
    ('key "k" { algorithm hmac-nope; secret "c2VjcmV0c2VjcmV0"; };', "unusable key"),
])
def test_a_bad_key_file_fails_at_construction(tmp_path: Path, content: str | None,
                                              problem: str) -> None:
    path = tmp_path / "tsig.key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DnsError, match=problem) as err:
        Rfc2136Provider("127.0.0.1", 53, ZONE, path)
    assert str(path) in str(err.value)
    assert "c2VjcmV0c2VjcmV0" not in str(err.value) and "not*base64" not in str(err.value)


def test_a_key_file_that_is_a_directory_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(DnsError, match="cannot read TSIG key file"):
        Rfc2136Provider("127.0.0.1", 53, ZONE, tmp_path)


@pytest.mark.parametrize(("args", "problem"), [
    (("svc", "AAAA", ["::1"], 2), "not supported"),
    (("svc", "A", ["127.0.0.300"], 2), "not an IPv4 address"),
    (("svc", "A", [], 2), "no values"),
    (("svc", "A", ["127.0.0.1"], 0), "TTL"),
    (("svc", "CNAME", ["a." + ZONE, "b." + ZONE], 2), "exactly one target"),
    ((ZONE, "CNAME", ["a." + ZONE], 2), "apex"),
    (("bad..name", "A", ["127.0.0.1"], 2), "not a valid host name"),
])
def test_invalid_records_are_refused_before_anything_is_sent(
        dnsp: Rfc2136Provider, bind9: Bind9Info, args: tuple, problem: str) -> None:
    serial = soa_serial(bind9)
    with pytest.raises(DnsError, match=problem):
        dnsp.replace(*args)
    assert soa_serial(bind9) == serial


@pytest.mark.parametrize(("name", "absolute"), [
    ("svc", HOST), ("svc.continuum.test", HOST), ("svc.continuum.test.", HOST),
    ("SVC.Continuum.Test.", HOST), ("continuum.test", ZONE),
    ("a.b.continuum.test", "a.b." + ZONE),
])
def test_fqdn(name: str, absolute: str) -> None:
    assert fqdn(name, "continuum.test") == fqdn(name, ZONE) == absolute


def test_provider_from_config_builds_a_working_rfc2136_provider(bind9: Bind9Info) -> None:
    cfg = {"provider": "rfc2136", "server": bind9.server, "port": bind9.port,
           "zone": "continuum.test.", "tsig_key_file": str(bind9.key_file), "ttl": 2,
           "project": None}  # another provider's unset field, as a shared model would give
    for given in (cfg, {"dns": cfg}):
        dnsp = provider_from_config(given)
        assert isinstance(dnsp, Rfc2136Provider) and isinstance(dnsp, DnsProvider)
        dnsp.replace("svc", "A", ["127.0.1.1"], cfg["ttl"])
        assert resolved(bind9) == ["127.0.1.1"]
    assert provider_from_config(**cfg).describe() == dnsp.describe()


@pytest.mark.parametrize(("cfg", "problem"), [
    ({"provider": "route53", "zone": ZONE}, "supported: rfc2136, google-cloud-dns"),
    ({"zone": ZONE}, "unknown DNS provider None"),
    ({"provider": "rfc2136", "server": "127.0.0.1", "port": 53, "zone": ZONE,
      "tsig_keyfile": "/k"}, "unknown setting.*tsig_keyfile"),
    ({"provider": "rfc2136", "server": "127.0.0.1", "zone": ZONE}, "missing a setting"),
    ({"provider": "rfc2136", "server": "ns.example", "port": 53, "zone": ZONE,
      "tsig_key_file": "/k"}, "must be an IP address"),
])
def test_provider_from_config_errors(cfg: dict, problem: str) -> None:
    with pytest.raises(DnsError, match=problem):
        provider_from_config(cfg)


def test_txt_records_beside_a_cname_round_trip(dnsp: Rfc2136Provider, bind9: Bind9Info) -> None:
    """The ownership record (registry.py): a TXT set of its own name, beside a CNAME'd name,
    with quotes and commas kept; replaced whole, and deleted by an empty set."""
    dnsp.replace("svc", "CNAME", ["lb.cloud.example."], 2)
    name = "greenwise-owner." + HOST
    assert dnsp.get_txt(name) is None
    dnsp.replace_txt(name, ['heritage=greenwise-mc,greenwise-mc/owner=a', 'say "hi"'], 2)
    assert dnsp.get_txt(name) == ('heritage=greenwise-mc,greenwise-mc/owner=a', 'say "hi"')
    answer = resolver(bind9.server, bind9.port).resolve(name, "TXT")
    assert sorted(b"".join(r.strings).decode() for r in answer)[1] == 'say "hi"'
    dnsp.replace_txt(name, ["b"], 2)
    assert dnsp.get_txt(name) == ("b",)
    dnsp.replace_txt(name, [], 2)
    assert dnsp.get_txt(name) is None
    assert dnsp.get("svc") == Record(HOST, "CNAME", ("lb.cloud.example.",), 2)
