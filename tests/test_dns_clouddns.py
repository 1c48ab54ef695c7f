"""CloudDnsProvider through the real google-cloud-dns client, against the lab's Cloud DNS fake
(one fake process per test, stopped by PID) and, for replies the fake never gives (401, 403,
429, 5xx, silence, OAuth token errors), a tiny HTTP server in the test's own process.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from orchestrator.migration.dns import (
    CloudDnsProvider,
    DnsAuthError,
    DnsConflict,
    DnsError,
    DnsFailed,
    DnsProvider,
    DnsUnavailable,
    Record,
    provider_from_config,
)
from tests.lab.clouddns_fake import start_clouddns_fake

PROJECT = "greenwise-lab"
ZONE = "continuum.test."
HOST = "svc." + ZONE


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    proc, url = start_clouddns_fake(tmp_path, PROJECT, {"continuum": ZONE})
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture
def dnsp(endpoint: str) -> CloudDnsProvider:
    return CloudDnsProvider(PROJECT, "continuum", ZONE, api_endpoint=endpoint)


def rest(endpoint: str, what: str) -> list[dict[str, Any]]:
    """The fake's own view (plain REST, not through the provider)."""
    url = f"{endpoint}/dns/v1/projects/{PROJECT}/managedZones/continuum/{what}"
    return httpx.get(url, trust_env=False).json()[what]


def rrsets(endpoint: str) -> dict[tuple[str, str], tuple[int, list[str]]]:
    return {(r["name"], r["type"]): (r["ttl"], r["rrdatas"]) for r in rest(endpoint, "rrsets")}


def changes(endpoint: str) -> list[dict[str, Any]]:
    """Changes after the zone's creation, as (deletions, additions) of (name, type, ttl, data)."""
    return [{k: [(r["name"], r["type"], r["ttl"], r["rrdatas"]) for r in c[k]]
             for k in ("deletions", "additions")} for c in rest(endpoint, "changes")[1:]]


def test_replace_creates_an_a_record_in_one_change(dnsp: CloudDnsProvider,
                                                   endpoint: str) -> None:
    assert dnsp.get("svc") is None
    start = time.monotonic()
    assert dnsp.replace("svc", "A", ["127.0.1.1"], 30) is None
    assert rrsets(endpoint)[(HOST, "A")] == (30, ["127.0.1.1"])
    print(f"replace-to-visible {1000 * (time.monotonic() - start):.1f} ms")
    assert dnsp.get("svc.continuum.test") == Record(HOST, "A", ("127.0.1.1",), 30)
    assert changes(endpoint) == [{"deletions": [], "additions": [(HOST, "A", 30, ["127.0.1.1"])]}]


def test_replace_deletes_the_exact_old_set_and_adds_the_new_in_one_change(
        dnsp: CloudDnsProvider, endpoint: str) -> None:
    dnsp.replace("svc", "A", ["127.0.1.1"], 30)
    previous = dnsp.replace("svc", "A", ["127.0.2.2", "127.0.2.1"], 5)
    assert previous == Record(HOST, "A", ("127.0.1.1",), 30)
    assert rrsets(endpoint)[(HOST, "A")] == (5, ["127.0.2.1", "127.0.2.2"])
    assert changes(endpoint)[1:] == [{"deletions": [(HOST, "A", 30, ["127.0.1.1"])],
                                      "additions": [(HOST, "A", 5, ["127.0.2.1", "127.0.2.2"])]}]


def test_a_to_cname_and_back_each_in_one_change(dnsp: CloudDnsProvider, endpoint: str) -> None:
    dnsp.replace("svc", "A", ["127.0.1.1"], 30)
    assert dnsp.replace("svc", "CNAME", ["fog-ingress." + ZONE], 30) == Record(
        HOST, "A", ("127.0.1.1",), 30)
    assert dnsp.get("svc") == Record(HOST, "CNAME", ("fog-ingress." + ZONE,), 30)
    assert dnsp.replace("svc", "A", ["127.0.1.9"], 30) == Record(
        HOST, "CNAME", ("fog-ingress." + ZONE,), 30)
    sets = rrsets(endpoint)
    assert (HOST, "CNAME") not in sets and sets[(HOST, "A")] == (30, ["127.0.1.9"])
    assert changes(endpoint)[1:] == [
        {"deletions": [(HOST, "A", 30, ["127.0.1.1"])],
         "additions": [(HOST, "CNAME", 30, ["fog-ingress." + ZONE])]},
        {"deletions": [(HOST, "CNAME", 30, ["fog-ingress." + ZONE])],
         "additions": [(HOST, "A", 30, ["127.0.1.9"])]}]


def test_replacing_with_the_previous_record_rolls_back(dnsp: CloudDnsProvider,
                                                       endpoint: str) -> None:
    dnsp.replace("svc", "A", ["127.0.1.1"], 30)
    before = rrsets(endpoint)
    previous = dnsp.replace("svc", "CNAME", ["lb-7.cloud.example"], 60)
    assert previous is not None
    assert rrsets(endpoint)[(HOST, "CNAME")] == (60, ["lb-7.cloud.example."])
    dnsp.replace("svc", previous.rtype, previous.values, previous.ttl)
    assert rrsets(endpoint) == before


def test_replacing_with_the_same_record_makes_no_change(dnsp: CloudDnsProvider,
                                                        endpoint: str) -> None:
    dnsp.replace("svc", "A", ["127.0.1.1"], 30)
    assert dnsp.replace(HOST, "A", ["127.0.1.1"], 30) == dnsp.get("svc")
    assert len(changes(endpoint)) == 1


def test_delete_returns_what_was_there(dnsp: CloudDnsProvider, endpoint: str) -> None:
    dnsp.replace("svc", "CNAME", ["fog-ingress." + ZONE], 30)
    assert dnsp.delete("svc") == Record(HOST, "CNAME", ("fog-ingress." + ZONE,), 30)
    assert dnsp.get("svc") is None
    assert (HOST, "CNAME") not in rrsets(endpoint)
    assert changes(endpoint)[-1] == {"deletions": [(HOST, "CNAME", 30, ["fog-ingress." + ZONE])],
                                     "additions": []}
    assert dnsp.delete("svc") is None
    assert len(changes(endpoint)) == 2


@pytest.mark.parametrize(("theirs", "code"), [
    ("changed", "412"),  # they replaced the set we are about to delete
    ("deleted", "404"),  # they deleted it
    ("created", "409"),  # there was nothing, and they added the same type first
])
def test_a_concurrent_change_between_get_and_replace_is_a_conflict(
        dnsp: CloudDnsProvider, endpoint: str, monkeypatch: pytest.MonkeyPatch,
        theirs: str, code: str) -> None:
    if theirs != "created":
        dnsp.replace("svc", "A", ["127.0.1.1"], 30)
    other = CloudDnsProvider(PROJECT, "continuum", ZONE, api_endpoint=endpoint)
    read = dnsp.get

    def read_then_someone_else_writes(name: str) -> Record | None:
        seen = read(name)
        if theirs == "deleted":
            other.delete("svc")
        else:
            other.replace("svc", "A", ["127.0.7.7"], 30)
        return seen

    monkeypatch.setattr(dnsp, "get", read_then_someone_else_writes)
    ours = ("A", ["127.0.8.8"]) if theirs == "created" else ("CNAME", ["fog-ingress." + ZONE])
    with pytest.raises(DnsConflict, match=f"{code} .*concurrent change") as err:
        dnsp.replace("svc", ours[0], ours[1], 30)
    assert "\n" not in str(err.value)
    monkeypatch.undo()
    # Nothing of ours was applied; the other writer's state stands.
    expected = None if theirs == "deleted" else Record(HOST, "A", ("127.0.7.7",), 30)
    assert dnsp.get("svc") == expected
    assert all(c["additions"] != [(HOST, ours[0], 30, ours[1])] for c in changes(endpoint))


@pytest.mark.parametrize("name", ["svc.elsewhere.test.", "svc.elsewhere.test"])
def test_a_name_outside_the_zone_is_refused_before_anything_is_sent(
        dnsp: CloudDnsProvider, endpoint: str, name: str) -> None:
    with pytest.raises(DnsError, match=r"not inside zone continuum\.test\."):
        dnsp.replace(name, "A", ["127.0.1.1"], 30)
    with pytest.raises(DnsError, match=r"not inside zone continuum\.test\."):
        dnsp.delete(name)
    assert changes(endpoint) == []


def test_a_wrong_project_or_managed_zone_says_what_to_check(endpoint: str) -> None:
    for project, managed in (("nope", "continuum"), (PROJECT, "nope")):
        dnsp = CloudDnsProvider(project, managed, ZONE, api_endpoint=endpoint)
        with pytest.raises(DnsError, match=r"404 .*check dns\.project and dns\.managed_zone"):
            dnsp.get("svc")


def test_a_stopped_api_is_unavailable(tmp_path: Path) -> None:
    proc, url = start_clouddns_fake(tmp_path, PROJECT, {"continuum": ZONE})
    try:
        dnsp = CloudDnsProvider(PROJECT, "continuum", ZONE, api_endpoint=url)
        dnsp.replace("svc", "A", ["127.0.1.1"], 30)
    finally:
        proc.stop()
    assert not proc.alive()
    for call in (lambda: dnsp.get("svc"), lambda: dnsp.replace("svc", "A", ["127.0.1.2"], 30),
                 lambda: dnsp.delete("svc")):
        with pytest.raises(DnsUnavailable, match="cannot reach the API"):
            call()


# --- replies the fake never gives, from a small server in this process ---------------------

@dataclass
class Stub:
    """Answers `/token` like an OAuth token endpoint and everything else with one reply."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=lambda: {"rrsets": []})
    token_status: int = 200
    silent: bool = False
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            state.seen.append((self.command, self.path, self.headers.get("Authorization")))
            if state.silent:
                release.wait(10)
                return
            if self.path == "/token":
                code = state.token_status
                body = ({"access_token": "lab-token", "expires_in": 3600, "token_type": "Bearer"}
                        if code == 200 else {"error": "invalid_grant",
                                             "error_description": "Invalid JWT Signature."})
            else:
                code = state.status
                body = state.body if code == 200 else {"error": {
                    "code": code, "message": f"stub says {code}", "errors": []}}
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = reply

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        release.set()
        state.server.shutdown()
        state.server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(("status", "error", "words"), [
    (401, DnsAuthError, "credentials were rejected"),
    (403, DnsAuthError, "403 stub says 403.*check the credentials file"),
    (429, DnsUnavailable, "try again: 429"),
    (500, DnsUnavailable, "try again: 500"),
    (503, DnsUnavailable, "try again: 503"),
    (400, DnsFailed, "400 stub says 400"),
])
def test_http_errors_map_to_dns_errors(stub: Stub, status: int, error: type[DnsError],
                                       words: str) -> None:
    stub.status = status
    dnsp = CloudDnsProvider(PROJECT, "continuum", ZONE, api_endpoint=stub.url)
    with pytest.raises(error, match=words) as err:
        dnsp.get("svc")
    assert type(err.value) is error and "\n" not in str(err.value)


def test_an_api_that_never_answers_times_out_as_unavailable(stub: Stub) -> None:
    stub.silent = True
    dnsp = CloudDnsProvider(PROJECT, "continuum", ZONE, api_endpoint=stub.url, timeout=0.3)
    with pytest.raises(DnsUnavailable, match="cannot reach the API"):
        dnsp.replace("svc", "A", ["127.0.1.1"], 30)


def test_a_change_that_stays_pending_is_unavailable(stub: Stub) -> None:
    stub.body = {"kind": "dns#change", "id": "7", "status": "pending", "rrsets": []}
    dnsp = CloudDnsProvider(PROJECT, "continuum", ZONE, api_endpoint=stub.url,
                            change_timeout=0.5)
    with pytest.raises(DnsUnavailable, match=r"change 7 \(replace .*\) is still 'pending'"):
        dnsp.replace("svc", "A", ["127.0.1.1"], 30)
    polls = [p for m, p, _ in stub.seen if m == "GET" and "/changes/7?" in p]
    assert len(polls) >= 1


def service_account_file(path: Path, token_uri: str) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "k1",
        "private_key": pem, "client_email": f"greenwise@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri}))
    return path, pem.splitlines()[1]


def test_a_service_account_file_is_used_for_the_token(stub: Stub, tmp_path: Path) -> None:
    sa, key_line = service_account_file(tmp_path / "sa.json", stub.url + "/token")
    dnsp = CloudDnsProvider(PROJECT, "continuum", ZONE, credentials_file=sa,
                            api_endpoint=stub.url)
    assert dnsp.get("svc") is None
    assert stub.seen[0][:2] == ("POST", "/token")
    assert stub.seen[1][1].startswith(f"/dns/v1/projects/{PROJECT}/managedZones/continuum/rrsets")
    assert stub.seen[1][2] == "Bearer lab-token"
    assert key_line not in repr(dnsp) and str(sa) in repr(dnsp)


def test_a_rejected_service_account_is_an_auth_error_naming_the_file(
        stub: Stub, tmp_path: Path) -> None:
    stub.token_status = 400
    sa, key_line = service_account_file(tmp_path / "sa.json", stub.url + "/token")
    dnsp = CloudDnsProvider(PROJECT, "continuum", ZONE, credentials_file=sa,
                            api_endpoint=stub.url)
    with pytest.raises(DnsAuthError, match="credentials were rejected") as err:
        dnsp.replace("svc", "A", ["127.0.1.1"], 30)
    text = "".join(traceback.format_exception(err.value))
    assert str(sa) in str(err.value) and key_line not in text
    assert [p for _, p, _ in stub.seen] == ["/token"]  # no DNS request went out unauthenticated


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read Google credentials file"),
    ("{not json", "not a service-account key"),
    ('{"type": "service_account"}', "not a service-account key"),
])
def test_a_bad_credentials_file_fails_at_construction(tmp_path: Path, content: str | None,
                                                      problem: str) -> None:
    path = tmp_path / "sa.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DnsError, match=problem) as err:
        CloudDnsProvider(PROJECT, "continuum", ZONE, credentials_file=path,
                         api_endpoint="http://127.0.0.1:9")
    assert str(path) in str(err.value)


def test_provider_from_config_builds_a_working_cloud_dns_provider(endpoint: str) -> None:
    cfg = {"provider": "google-cloud-dns", "project": PROJECT, "managed_zone": "continuum",
           "zone": "continuum.test", "credentials_file": None, "api_endpoint": endpoint,
           "ttl": 30, "server": None}
    dnsp = provider_from_config({"dns": cfg})
    assert isinstance(dnsp, CloudDnsProvider) and isinstance(dnsp, DnsProvider)
    assert dnsp.describe() == (f"google-cloud-dns project {PROJECT} managed zone continuum "
                               f"zone {ZONE} at {endpoint}")
    dnsp.replace("svc", "A", ["127.0.1.1"], cfg["ttl"])
    assert rrsets(endpoint)[(HOST, "A")] == (30, ["127.0.1.1"])
    with pytest.raises(DnsError, match=r"unknown setting\(s\) port for"):
        provider_from_config({**cfg, "port": 53})


def test_txt_records_round_trip_quoted_as_the_api_holds_them(dnsp: CloudDnsProvider,
                                                             endpoint: str) -> None:
    """The ownership record (registry.py): rrdatas quoted as Cloud DNS keeps TXT data; a replace
    deletes the exact old set; an empty set deletes it."""
    name = "greenwise-owner." + HOST
    assert dnsp.get_txt(name) is None
    dnsp.replace_txt(name, ['heritage=greenwise-mc,greenwise-mc/owner=a', 'say "hi"'], 30)
    assert rrsets(endpoint)[(name, "TXT")] == (
        30, ['"heritage=greenwise-mc,greenwise-mc/owner=a"', '"say \\"hi\\""'])
    assert dnsp.get_txt(name) == ('heritage=greenwise-mc,greenwise-mc/owner=a', 'say "hi"')
    dnsp.replace_txt(name, ["b"], 30)
    assert changes(endpoint)[-1]["deletions"] == [(name, "TXT", 30, [
        '"heritage=greenwise-mc,greenwise-mc/owner=a"', '"say \\"hi\\""'])]
    dnsp.replace_txt(name, [], 30)
    assert dnsp.get_txt(name) is None and (name, "TXT") not in rrsets(endpoint)
