"""A local stand-in for the Google Cloud DNS v1 REST API (no emulator exists anywhere).

It follows the public contract closely enough for `google-cloud-dns` and for code that talks
REST directly:

- `GET  /dns/v1/projects/{p}`                                    project with `quota`
- `GET|POST /dns/v1/projects/{p}/managedZones`                   list / create zones
- `GET|DELETE /dns/v1/projects/{p}/managedZones/{z}`             a zone (by name or id)
- `GET  /dns/v1/projects/{p}/managedZones/{z}/rrsets`            `name`, `type`, paging filters
- `GET|POST /dns/v1/projects/{p}/managedZones/{z}/changes`       list / apply a change
- `GET  /dns/v1/projects/{p}/managedZones/{z}/changes/{id}`

A change applies atomically or not at all, with the real service's errors: a deletion of a
record set that does not exist is 404 `notFound`, one that differs from the current set (TTL or
rrdatas) is 412 `conditionNotMet`, adding a set that exists is 409 `alreadyExists`, and a CNAME
next to other data at one name is 400. Accepted changes are `done` at once. `ttl` is accepted as
a string or number and returned as a number (int32 in the API).

    python -m tests.lab.clouddns_fake --port P --project lab --zone continuum=continuum.test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.lab.procs import Proc, free_port, spawn, wait_port

BASE = "/dns/v1/projects/"
NAME_SERVERS = [f"ns-cloud-a{i}.googledomains.com." for i in range(1, 5)]


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def body(self) -> dict[str, Any]:
        status = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS",
                  412: "FAILED_PRECONDITION"}.get(self.code, "UNKNOWN")
        return {"error": {"code": self.code, "message": self.message, "status": status,
                          "errors": [{"domain": "global", "reason": self.reason,
                                      "message": self.message}]}}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


Key = tuple[str, str]  # (name, type)


@dataclass
class Zone:
    name: str
    dns_name: str
    id: str
    description: str = ""
    created: str = field(default_factory=_now)
    rrsets: dict[Key, dict[str, Any]] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def resource(self, project: str) -> dict[str, Any]:
        return {"kind": "dns#managedZone", "name": self.name, "dnsName": self.dns_name,
                "description": self.description, "id": self.id, "nameServers": NAME_SERVERS,
                "creationTime": self.created, "visibility": "public"}


def _rrset(name: str, rtype: str, ttl: int, rrdatas: list[str]) -> dict[str, Any]:
    return {"kind": "dns#resourceRecordSet", "name": name, "type": rtype, "ttl": ttl,
            "rrdatas": rrdatas}


class Store:
    def __init__(self, project: str) -> None:
        self.project = project
        self.zones: dict[str, Zone] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count(1_000_000_001)

    def create_zone(self, name: str, dns_name: str, description: str = "") -> Zone:
        if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
            raise ApiError(400, "invalid", f"Invalid value for 'entity.managedZone.name': '{name}'")
        if not dns_name.endswith("."):
            raise ApiError(400, "invalid",
                           f"Invalid value for 'entity.managedZone.dnsName': '{dns_name}'")
        if name in self.zones:
            raise ApiError(409, "alreadyExists",
                           f"The resource 'entity.managedZone' named '{name}' already exists")
        zone = Zone(name=name, dns_name=dns_name, id=str(next(self.ids)), description=description)
        soa = (f"{NAME_SERVERS[0]} cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300")
        zone.rrsets[(dns_name, "SOA")] = _rrset(dns_name, "SOA", 21600, [soa])
        zone.rrsets[(dns_name, "NS")] = _rrset(dns_name, "NS", 21600, list(NAME_SERVERS))
        zone.changes.append({"kind": "dns#change", "id": "0", "startTime": zone.created,
                             "status": "done", "additions": list(zone.rrsets.values()),
                             "deletions": []})
        self.zones[name] = zone
        return zone

    def check_project(self, project: str) -> None:
        if project != self.project:
            raise ApiError(404, "notFound", f"The 'parameters.project' resource named "
                                            f"'{project}' does not exist.")

    def zone(self, project: str, ref: str) -> Zone:
        self.check_project(project)
        for z in self.zones.values():
            if ref in (z.name, z.id):
                return z
        raise ApiError(404, "notFound",
                       f"The 'parameters.managedZone' resource named '{ref}' does not exist.")

    def apply(self, zone: Zone, body: dict[str, Any]) -> dict[str, Any]:
        additions = [self._parse(zone, r, f"additions[{i}]")
                     for i, r in enumerate(body.get("additions") or [])]
        deletions = [self._parse(zone, r, f"deletions[{i}]")
                     for i, r in enumerate(body.get("deletions") or [])]
        if not additions and not deletions:
            raise ApiError(400, "required", "The 'entity.change' parameter is required but was "
                                            "missing.")
        new = dict(zone.rrsets)
        for i, d in enumerate(deletions):
            key = (d["name"], d["type"])
            where = f"entity.change.deletions[{i}]"
            current = new.get(key)
            if current is None:
                raise ApiError(404, "notFound", f"The '{where}' resource named "
                                                f"'{key[0]} ({key[1]})' does not exist.")
            if (current["ttl"] != d["ttl"]
                    or sorted(current["rrdatas"]) != sorted(d["rrdatas"])):
                raise ApiError(412, "conditionNotMet", f"Precondition not met for '{where}'")
            del new[key]
        for i, a in enumerate(additions):
            key = (a["name"], a["type"])
            where = f"entity.change.additions[{i}]"
            if key in new:
                raise ApiError(409, "alreadyExists", f"The resource '{where}' named "
                                                     f"'{key[0]} ({key[1]})' already exists")
            others = {t for (n, t) in new if n == a["name"]}
            if (a["type"] == "CNAME" and others) or (a["type"] != "CNAME" and "CNAME" in others):
                raise ApiError(400, "cnameResourceRecordSetConflict",
                               f"The resource record set '{where}' is invalid because a CNAME "
                               "resource record set cannot coexist with other resource record "
                               "sets of the same name.")
            new[key] = a
        zone.rrsets = new
        change = {"kind": "dns#change", "id": str(len(zone.changes)), "startTime": _now(),
                  "status": "done", "additions": additions, "deletions": deletions}
        zone.changes.append(change)
        return change

    @staticmethod
    def _parse(zone: Zone, r: dict[str, Any], where: str) -> dict[str, Any]:
        name, rtype, rrdatas = r.get("name"), r.get("type"), r.get("rrdatas")
        if not isinstance(name, str) or not isinstance(rtype, str):
            raise ApiError(400, "required", f"The 'entity.change.{where}' name and type are "
                                            "required")
        if not (name == zone.dns_name or name.endswith("." + zone.dns_name)):
            raise ApiError(400, "invalid", f"The 'entity.change.{where}.name' resource named "
                                           f"'{name}' is not within the zone '{zone.dns_name}'.")
        if not isinstance(rrdatas, list) or not rrdatas:
            raise ApiError(400, "invalid", f"Invalid value for 'entity.change.{where}.rrdata'")
        try:
            ttl = int(r.get("ttl", 300))
        except (TypeError, ValueError):
            raise ApiError(400, "invalid",
                           f"Invalid value for 'entity.change.{where}.ttl'") from None
        return _rrset(name, rtype, ttl, [str(x) for x in rrdatas])


def _page(items: list[dict[str, Any]], query: dict[str, str], key: str,
          kind: str) -> dict[str, Any]:
    start = int(query.get("pageToken") or 0)
    size = int(query.get("maxResults") or 1000)
    out: dict[str, Any] = {"kind": kind, key: items[start:start + size]}
    if start + size < len(items):
        out["nextPageToken"] = str(start + size)
    return out


def make_handler(store: Store) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, code: int, body: dict[str, Any] | None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            body: dict[str, Any] = {}
            length = int(self.headers.get("Content-Length") or 0)
            try:
                if length:
                    body = json.loads(self.rfile.read(length))
                with store.lock:
                    code, out = route(store, method, url.path, query, body)
            except ApiError as e:
                code, out = e.code, e.body()
            except (ValueError, TypeError) as e:
                code, out = 400, ApiError(400, "parseError", f"Parse error: {e}").body()
            self._send(code, out)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def route(store: Store, method: str, path: str, query: dict[str, str],
          body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    if not path.startswith(BASE):
        raise ApiError(404, "notFound", f"No such API: {path}")
    parts = path[len(BASE):].strip("/").split("/")
    project = parts[0]
    store.check_project(project)
    if len(parts) == 1 and method == "GET":
        return 200, {"kind": "dns#project", "id": project, "number": "1",
                     "quota": {"kind": "dns#quota", "managedZones": 10000,
                               "rrsetsPerManagedZone": 10000, "rrsetAdditionsPerChange": 100,
                               "rrsetDeletionsPerChange": 100, "totalRrdataSizePerChange": 10000,
                               "resourceRecordsPerRrset": 100}}
    if parts[1:2] != ["managedZones"]:
        raise ApiError(404, "notFound", f"No such API: {path}")
    if len(parts) == 2:
        if method == "POST":
            zone = store.create_zone(str(body.get("name", "")), str(body.get("dnsName", "")),
                                     str(body.get("description", "")))
            return 200, zone.resource(project)
        if method == "GET":
            zones = [z.resource(project) for z in store.zones.values()
                     if query.get("dnsName") in (None, z.dns_name)]
            return 200, _page(zones, query, "managedZones", "dns#managedZonesListResponse")
    zone = store.zone(project, parts[2])
    rest = parts[3:]
    if not rest:
        if method == "GET":
            return 200, zone.resource(project)
        if method == "DELETE":
            if set(zone.rrsets) - {(zone.dns_name, "SOA"), (zone.dns_name, "NS")}:
                raise ApiError(400, "containerNotEmpty",
                               f"The resource named '{zone.name}' cannot be deleted because it "
                               "contains one or more 'resource records'.")
            del store.zones[zone.name]
            return 204, None
    elif rest == ["rrsets"] and method == "GET":
        name, rtype = query.get("name"), query.get("type")
        if rtype and not name:
            raise ApiError(400, "required", "The 'parameters.name' parameter is required when "
                                            "'parameters.type' is given.")
        sets = [r for (n, t), r in sorted(zone.rrsets.items())
                if name in (None, n) and rtype in (None, t)]
        return 200, _page(sets, query, "rrsets", "dns#resourceRecordSetsListResponse")
    elif rest == ["changes"] and method == "POST":
        return 200, store.apply(zone, body)
    elif rest == ["changes"] and method == "GET":
        changes = list(zone.changes)
        if query.get("sortOrder") == "descending":
            changes.reverse()
        return 200, _page(changes, query, "changes", "dns#changesListResponse")
    elif len(rest) == 2 and rest[0] == "changes" and method == "GET":
        for c in zone.changes:
            if c["id"] == rest[1]:
                return 200, c
        raise ApiError(404, "notFound",
                       f"The 'parameters.changeId' resource named '{rest[1]}' does not exist.")
    raise ApiError(404, "notFound", f"No such API: {method} {path}")


def start_clouddns_fake(log_dir: Path, project: str = "greenwise-lab",
                        zones: dict[str, str] | None = None,
                        port: int | None = None) -> tuple[Proc, str]:
    """Start the fake as a process on 127.0.0.1; returns (proc, api_endpoint URL)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "tests.lab.clouddns_fake", "--port", str(port),
           "--project", project]
    for name, dns_name in (zones or {}).items():
        cmd += ["--zone", f"{name}={dns_name}"]
    proc = spawn(f"clouddns-fake-{port}", cmd, log_dir, cwd=Path(__file__).resolve().parents[2])
    try:
        wait_port("127.0.0.1", port, proc, timeout=15)
    except BaseException:
        proc.stop()
        raise
    return proc, f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Local fake of the Cloud DNS v1 REST API")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--zone", action="append", default=[], help="NAME=DNS_NAME (repeatable)")
    a = p.parse_args(argv)
    store = Store(a.project)
    for z in a.zone:
        name, _, dns_name = z.partition("=")
        store.create_zone(name, dns_name)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(store)).serve_forever()


if __name__ == "__main__":
    main()
