"""The Cloud DNS fake, driven by the real google-cloud-dns client over HTTP."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import dns as gdns
from google.cloud.dns.zone import ManagedZone

from tests.lab.clouddns_fake import start_clouddns_fake

PROJECT = "greenwise-lab"
DNS_NAME = "continuum.test."
HOST = "svc." + DNS_NAME


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    proc, url = start_clouddns_fake(tmp_path, PROJECT, {"continuum": DNS_NAME})
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture
def zone(endpoint: str) -> ManagedZone:
    # Credentials and project always given, or google-auth probes a metadata server.
    client = gdns.Client(project=PROJECT, credentials=AnonymousCredentials(),
                         client_options=ClientOptions(api_endpoint=endpoint))
    return client.zone("continuum", DNS_NAME)


def rrsets(zone: ManagedZone) -> dict[tuple[str, str], tuple[int, list[str]]]:
    return {(r.name, r.record_type): (r.ttl, r.rrdatas) for r in zone.list_resource_record_sets()}


RRSet = tuple[str, str, int, list[str]]


def change(zone: ManagedZone, add: Sequence[RRSet] = (),
           delete: Sequence[RRSet] = ()) -> gdns.Changes:
    c = zone.changes()
    for name, rtype, ttl, data in delete:
        c.delete_record_set(zone.resource_record_set(name, rtype, ttl, data))
    for name, rtype, ttl, data in add:
        c.add_record_set(zone.resource_record_set(name, rtype, ttl, data))
    c.create()
    return c


def test_zone_is_listed_with_soa_and_ns(zone: ManagedZone) -> None:
    assert zone.exists()
    zone.reload()
    assert zone.dns_name == DNS_NAME and zone.zone_id
    assert [z.name for z in zone._client.list_zones()] == ["continuum"]
    assert set(rrsets(zone)) == {(DNS_NAME, "SOA"), (DNS_NAME, "NS")}


def test_create_replace_list_round_trip(zone: ManagedZone) -> None:
    created = change(zone, add=[(HOST, "A", 1, ["127.0.1.1"])])
    assert created.status == "done" and created.started is not None
    assert rrsets(zone)[(HOST, "A")] == (1, ["127.0.1.1"])

    # Replace atomically: delete the exact current set, add the new one, in one change.
    change(zone, delete=[(HOST, "A", 1, ["127.0.1.1"])], add=[(HOST, "A", 1, ["127.0.2.1"])])
    assert rrsets(zone)[(HOST, "A")] == (1, ["127.0.2.1"])

    # A -> CNAME in one change works too.
    change(zone, delete=[(HOST, "A", 1, ["127.0.2.1"])],
           add=[(HOST, "CNAME", 1, ["fog-ingress." + DNS_NAME])])
    sets = rrsets(zone)
    assert (HOST, "A") not in sets and sets[(HOST, "CNAME")] == (1, ["fog-ingress." + DNS_NAME])

    changes = list(zone.list_changes())
    assert [c.name for c in changes] == ["0", "1", "2", "3"]
    assert all(c.status == "done" for c in changes)
    again = zone.changes()
    again._properties["id"] = created.name  # the client has no public "get change by id"
    again.reload()
    assert [r.rrdatas for r in again.additions] == [["127.0.1.1"]]


def test_deletion_must_match_exactly_and_failed_changes_change_nothing(
        zone: ManagedZone) -> None:
    change(zone, add=[(HOST, "A", 1, ["127.0.1.1"])])
    before = rrsets(zone)
    with pytest.raises(exceptions.PreconditionFailed, match="Precondition not met"):
        change(zone, delete=[(HOST, "A", 1, ["127.0.9.9"])], add=[(HOST, "A", 1, ["127.0.2.1"])])
    with pytest.raises(exceptions.PreconditionFailed):
        change(zone, delete=[(HOST, "A", 300, ["127.0.1.1"])])  # right data, wrong TTL
    with pytest.raises(exceptions.NotFound, match="does not exist"):
        change(zone, delete=[("nope." + DNS_NAME, "A", 1, ["127.0.1.1"])])
    with pytest.raises(exceptions.Conflict, match="already exists"):
        change(zone, add=[(HOST, "A", 1, ["127.0.2.1"])])
    with pytest.raises(exceptions.BadRequest, match="CNAME"):
        change(zone, add=[(HOST, "CNAME", 1, ["fog-ingress." + DNS_NAME])])
    with pytest.raises(exceptions.BadRequest, match="not within"):
        change(zone, add=[("svc.elsewhere.test.", "A", 1, ["127.0.2.1"])])
    assert rrsets(zone) == before
    assert [c.name for c in zone.list_changes()] == ["0", "1"]


def test_rest_contract_filters_and_ttl_types(endpoint: str) -> None:
    base = f"{endpoint}/dns/v1/projects/{PROJECT}/managedZones/continuum"
    body = {"additions": [{"name": HOST, "type": "A", "ttl": "5", "rrdatas": ["127.0.1.1"]},
                          {"name": "db." + DNS_NAME, "type": "A", "ttl": 7,
                           "rrdatas": ["127.0.1.2"]}]}
    r = httpx.post(f"{base}/changes", json=body, trust_env=False)
    assert r.status_code == 200 and r.json()["status"] == "done"
    r = httpx.get(f"{base}/rrsets", params={"name": HOST, "type": "A"}, trust_env=False)
    assert r.json()["rrsets"] == [{"kind": "dns#resourceRecordSet", "name": HOST, "type": "A",
                                   "ttl": 5, "rrdatas": ["127.0.1.1"]}]
    r = httpx.get(f"{base}/rrsets", params={"type": "A"}, trust_env=False)
    assert r.status_code == 400
    r = httpx.get(f"{base}/rrsets", params={"maxResults": 2}, trust_env=False).json()
    assert len(r["rrsets"]) == 2 and r["nextPageToken"]
    r = httpx.get(f"{base}/changes/1", trust_env=False).json()
    assert [a["ttl"] for a in r["additions"]] == [5, 7]
    r = httpx.post(f"{base}/changes", json={}, trust_env=False)
    assert r.status_code == 400
    assert r.json()["error"]["errors"][0]["reason"] == "required"
    missing = f"{endpoint}/dns/v1/projects/other/managedZones/continuum"
    assert httpx.get(missing, trust_env=False).status_code == 404
