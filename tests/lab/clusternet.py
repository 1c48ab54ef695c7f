"""What a cluster has and the lab lacked: cluster DNS and a Service proxy, from real pieces.

- **Cluster DNS**: one BIND 9 with a view per cluster, each answering on its cluster's DNS
  address (`127.<net>.0.53`, port 53, so that a resolv.conf can name it) for `cluster.local`,
  and forwarding every other name to the lab's zone server. Its records are kept in step with
  the cluster's Services by RFC 2136 updates: `svc.ns.svc.cluster.local` is an A record of the
  ClusterIP (headless: of the ready endpoints) or, for an ExternalName, a CNAME to its name.
- **ClusterIP proxy**: TCP from each ClusterIP:port to the Service's ready endpoints, in
  userspace, as kube-proxy's old userspace mode did (round robin; the next endpoint if one
  refuses).

One process per cluster (`python -m tests.lab.clusternet --config F`) lists the cluster's
Services and Endpoints about every 0.2 s and applies both. A ClusterIP is listened on before
its name is published; a withdrawn one (its Service deleted or turned into an ExternalName) is
answered for `GRACE_S` more, to the endpoints it last had: a client that resolved the name
just before still connects, as it would through kube-proxy's rules until the DNS TTL passes.
If the apiserver does not answer, both keep what they last knew, as kube-proxy and CoreDNS do.

BIND finds its listening addresses on interfaces: the DNS addresses are added to `lo`
(`ip addr add`, recorded in a file) before it starts and removed by `remove_addresses`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.update
import httpx

from tests.lab.dns import KEY_NAME, keyring, resolver, write_key
from tests.lab.procs import Proc, spawn

DOMAIN = "cluster.local"
TTL_S = 1  # CoreDNS's kubernetes plugin: 5 s; the lab's zone: 1 s, so moves show in a second
GRACE_S = TTL_S + 1.0
POLL_S = 0.2
DNS_PORT = 53
Address = tuple[str, int]


# -- cluster DNS (bind9) -------------------------------------------------------------------------

def add_addresses(addresses: list[str], record: Path) -> None:
    """Put `addresses` on `lo` (BIND listens only on interface addresses); listed in `record`
    first, so that `remove_addresses` takes away what a failed start added."""
    record.write_text(json.dumps(addresses))
    for a in addresses:
        if not a.startswith("127."):
            raise ValueError(f"cluster DNS must be on loopback, not {a}")
        r = subprocess.run(["ip", "addr", "add", f"{a}/32", "dev", "lo"], capture_output=True,
                           text=True)
        if r.returncode != 0 and "File exists" not in r.stderr:
            raise RuntimeError(f"`ip addr add {a}/32 dev lo` failed: {r.stderr.strip()} "
                               "(the lab's cluster DNS needs root, or CAP_NET_ADMIN)")


def remove_addresses(record: Path) -> None:
    if not record.exists():
        return
    for a in json.loads(record.read_text()):
        subprocess.run(["ip", "addr", "del", f"{a}/32", "dev", "lo"], capture_output=True)
    record.unlink()


def _named_conf(work: Path, views: dict[str, str], forward_to: Address, key_file: Path) -> str:
    listen = " ".join(f"{a};" for a in views.values())
    out = f"""options {{
    directory "{work}";
    pid-file "{work}/named.pid";
    session-keyfile "{work}/session.key";
    managed-keys-directory "{work}";
    listen-on port {DNS_PORT} {{ {listen} }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-query {{ 127.0.0.0/8; }};
    allow-recursion {{ 127.0.0.0/8; }};
    allow-transfer {{ none; }};
    dnssec-validation no;
    notify no;
    forward only;
    forwarders {{ {forward_to[0]} port {forward_to[1]}; }};
}};
controls {{ }};
include "{key_file}";
"""
    for cluster, address in views.items():
        out += f"""view "{cluster}" {{
    match-destinations {{ {address}; }};
    zone "{DOMAIN}" {{
        type primary;
        file "{work}/{cluster}.db";
        allow-update {{ key "{KEY_NAME}"; }};
    }};
}};
"""
    return out


def start_cluster_dns(work: Path, views: dict[str, str], forward_to: Address,
                      timeout: float = 20.0) -> tuple[Proc, Path]:
    """named serving `cluster.local` per cluster ({cluster: DNS address}); returns the process
    and the TSIG key file its zones accept updates with."""
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    key_file = work / "tsig.key"
    write_key(key_file, KEY_NAME)
    for cluster, address in views.items():
        (work / f"{cluster}.db").write_text(
            f"$ORIGIN {DOMAIN}.\n$TTL {TTL_S}\n@ IN SOA ns hostmaster (1 60 30 600 {TTL_S})\n"
            f"@ IN NS ns\nns IN A {address}\n")
    conf = work / "named.conf"
    conf.write_text(_named_conf(work, views, forward_to, key_file))
    subprocess.run(["named-checkconf", str(conf)], check=True, capture_output=True)
    proc = spawn("cluster-dns", ["named", "-g", "-c", str(conf)], work)
    deadline = time.monotonic() + timeout
    for address in views.values():
        while True:
            if not proc.alive():
                raise RuntimeError(f"named (cluster DNS) exited while starting; see {proc.log}")
            try:
                resolver(address, DNS_PORT, lifetime=0.3).resolve(f"ns.{DOMAIN}.", "A")
                break
            except dns.exception.DNSException as e:
                if time.monotonic() > deadline:
                    proc.stop()
                    raise TimeoutError(f"cluster DNS did not answer on {address} within "
                                       f"{timeout}s; see {proc.log}") from e
                time.sleep(0.05)
    return proc, key_file


# -- what the cluster's Services ask for ---------------------------------------------------------

Records = dict[str, tuple[str, tuple[str, ...]]]  # FQDN -> (rtype, values)
Table = dict[Address, list[Address]]  # ClusterIP:port -> endpoints


def _ready(endpoints: dict[str, Any] | None, port: dict[str, Any]) -> list[Address]:
    """The ready endpoint addresses for one Service port (matched by name, as kube-proxy does)."""
    out = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = [p for p in subset.get("ports") or [] if p.get("name") == port.get("name")] or \
            (subset.get("ports") or [])[:1]
        for p in ports:
            out += [(a["ip"], int(p["port"])) for a in subset.get("addresses") or []]
    return sorted(out)


def desired(services: list[dict[str, Any]], endpoints: list[dict[str, Any]]) -> \
        tuple[Records, Table]:
    eps = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in endpoints}
    records: Records = {}
    table: Table = {}
    for s in services:
        meta, spec = s["metadata"], s.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        fqdn = f"{meta['name']}.{meta['namespace']}.svc.{DOMAIN}."
        ip = spec.get("clusterIP")
        if spec.get("type") == "ExternalName":
            records[fqdn] = ("CNAME", (spec["externalName"].rstrip(".") + ".",))
        elif ip and ip != "None":
            records[fqdn] = ("A", (ip,))
            for port in spec.get("ports") or []:
                if port.get("protocol", "TCP") == "TCP":
                    table[(ip, int(port["port"]))] = _ready(eps.get(key), port)
        else:  # headless: the ready endpoints themselves
            ips = sorted({a for port in spec.get("ports") or [{}]
                          for a, _ in _ready(eps.get(key), port)})
            if ips:
                records[fqdn] = ("A", tuple(ips))
    return records, table


# -- keeping them --------------------------------------------------------------------------------

class ZoneWriter:
    """The cluster's view of `cluster.local`, changed by RFC 2136 to what the Services say."""

    def __init__(self, address: str, key_file: Path) -> None:
        self.address, self.keyring = address, keyring(key_file)
        self.applied: Records = {}

    def apply(self, records: Records) -> None:
        if records == self.applied:
            return
        update = dns.update.UpdateMessage(DOMAIN + ".", keyring=self.keyring)
        for name in self.applied.keys() - records.keys():
            update.delete(name)
        for name, (rtype, values) in records.items():
            if self.applied.get(name) != (rtype, values):
                update.delete(name)  # an A may become a CNAME: none other may stay beside it
                for v in values:
                    update.add(name, TTL_S, rtype, v)
        r = dns.query.tcp(update, self.address, port=DNS_PORT, timeout=2.0)
        if r.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"update refused: {dns.rcode.to_text(r.rcode())}")
        self.applied = dict(records)


@dataclass
class _Listener:
    server: asyncio.Server
    endpoints: list[Address]
    withdrawn_at: float | None = None
    next: int = field(default=0)


class Proxy:
    """Userspace TCP proxy: one listener per ClusterIP:port."""

    def __init__(self) -> None:
        self.listeners: dict[Address, _Listener] = {}

    async def open(self, table: Table) -> None:
        """Listen on new ClusterIPs, take the current endpoints (before DNS names them)."""
        for address, endpoints in table.items():
            listener = self.listeners.get(address)
            if listener is None:
                try:
                    server = await asyncio.start_server(
                        lambda r, w, a=address: self._relay(a, r, w), *address,
                        reuse_address=True)
                except OSError as e:
                    print(f"cannot listen on {address[0]}:{address[1]}: {e}", flush=True)
                    continue
                self.listeners[address] = _Listener(server, endpoints)
            else:
                listener.endpoints, listener.withdrawn_at = endpoints, None

    def close_withdrawn(self, table: Table) -> None:
        """Withdrawn ClusterIPs: still answered GRACE_S, to the endpoints they last had."""
        now = time.monotonic()
        for address in list(self.listeners.keys() - table.keys()):
            listener = self.listeners[address]
            if listener.withdrawn_at is None:
                listener.withdrawn_at = now
            elif now - listener.withdrawn_at > GRACE_S:
                listener.server.close()
                del self.listeners[address]

    async def _relay(self, address: Address, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        listener = self.listeners.get(address)
        endpoints = list(listener.endpoints) if listener else []
        upstream = None
        for i in range(len(endpoints)):
            assert listener is not None
            listener.next += 1
            host, port = endpoints[(listener.next + i) % len(endpoints)]
            with contextlib.suppress(OSError):
                upstream = await asyncio.open_connection(host, port)
                break
        if upstream is None:  # no endpoint (or none answers): the connection is refused
            writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def run(cfg: dict[str, Any]) -> None:
    token = Path(cfg["token_file"]).read_text().strip()
    zone, proxy = ZoneWriter(cfg["dns"], Path(cfg["key_file"])), Proxy()
    async with httpx.AsyncClient(base_url=cfg["server"], verify=cfg["ca_file"], timeout=5.0,
                                 headers={"Authorization": f"Bearer {token}"}) as api:
        while True:
            try:
                services = (await api.get("/api/v1/services")).raise_for_status().json()
                endpoints = (await api.get("/api/v1/endpoints")).raise_for_status().json()
            except (httpx.HTTPError, ValueError):
                await asyncio.sleep(POLL_S)
                continue
            records, table = desired(services["items"], endpoints["items"])
            await proxy.open(table)
            try:
                await asyncio.to_thread(zone.apply, records)
            except (dns.exception.DNSException, OSError, RuntimeError) as e:
                print(f"cluster DNS update failed ({e}); retrying", flush=True)
            proxy.close_withdrawn(table)
            await asyncio.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.clusternet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True,
                   help="JSON: server, token_file, ca_file, dns (address), key_file")
    cfg = json.loads(p.parse_args(argv).config.read_text())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
