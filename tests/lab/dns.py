"""The lab's authoritative DNS: a real BIND 9 that accepts TSIG-signed RFC 2136 updates.

Each call writes a fresh configuration, zone file and TSIG key into its own work directory
(named keeps a `.jnl` journal next to the zone, so directories must not be reused) and runs
`named -g` in the foreground on a loopback address, with the control channel disabled so several
instances can run side by side.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig

from tests.lab.procs import Proc, free_port, spawn

KEY_NAME = "greenwise-mc"
KEY_ALGORITHM = "hmac-sha256"


@dataclass
class Bind9Info:
    server: str
    port: int
    zone: str
    key_name: str
    key_algorithm: str
    key_file: Path


_KEY_RE = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{[^}]*?algorithm\s+(?P<alg>[\w.-]+)\s*;'
    r'[^}]*?secret\s+"(?P<secret>[^"]+)"\s*;', re.DOTALL)


def read_tsig_key(path: Path | str) -> tuple[str, str, str]:
    """Parse a BIND key file (as written by tsig-keygen) into (name, algorithm, secret)."""
    m = _KEY_RE.search(Path(path).read_text())
    if m is None:
        # Do not echo the file: it holds the secret.
        raise ValueError(f"{path}: no key {{ algorithm ...; secret ...; }} block found")
    return m["name"], m["alg"], m["secret"]


def tsig_key(path: Path | str) -> dns.tsig.Key:
    """The key in `path` as a dnspython Key, ready for `Update(..., keyring=key)`."""
    name, alg, secret = read_tsig_key(path)
    return dns.tsig.Key(name, secret, alg)


def keyring(path: Path | str) -> dict[dns.name.Name, dns.tsig.Key]:
    key = tsig_key(path)
    return {key.name: key}


def write_key(path: Path, name: str) -> None:
    out = subprocess.run(["tsig-keygen", "-a", KEY_ALGORITHM, name], check=True,
                         capture_output=True, text=True).stdout
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(out)


def _zone_file(zone: str, address: str) -> str:
    return f"""$ORIGIN {zone}
$TTL 1
@   IN SOA ns.{zone} hostmaster.{zone} (1 60 30 600 1)
@   IN NS  ns.{zone}
ns  IN A   {address}
"""


def _named_conf(work: Path, zone: str, address: str, port: int, key_file: Path) -> str:
    return f"""options {{
    directory "{work}";
    pid-file "{work}/named.pid";
    session-keyfile "{work}/session.key";
    managed-keys-directory "{work}";
    listen-on port {port} {{ {address}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ 127.0.0.0/8; }};
    allow-transfer {{ none; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
include "{key_file}";
zone "{zone}" {{
    type primary;
    file "{work}/db.zone";
    allow-update {{ key "{KEY_NAME}"; }};
}};
"""


def soa_serial(info: Bind9Info, timeout: float = 1.0) -> int:
    q = dns.message.make_query(info.zone, dns.rdatatype.SOA)
    r = dns.query.udp(q, info.server, port=info.port, timeout=timeout)
    if r.rcode() != dns.rcode.NOERROR or not r.answer:
        raise RuntimeError(f"SOA query for {info.zone} answered {dns.rcode.to_text(r.rcode())}")
    return int(r.answer[0][0].serial)


def resolver(server: str, port: int, lifetime: float = 2.0) -> dns.resolver.Resolver:
    """A resolver that asks only the given server (never /etc/resolv.conf), without caching."""
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [server]
    r.port = port
    r.lifetime = lifetime
    r.timeout = lifetime
    return r


def start_bind9(work_dir: Path, zone: str = "continuum.test.", address: str = "127.0.0.1",
                port: int | None = None, timeout: float = 20.0) -> tuple[Proc, Bind9Info]:
    """Start named for `zone` on address:port and wait until it answers a SOA query.

    `address` must be configured on an interface (127.0.0.1 is; other 127/8 addresses are only
    usable if added to `lo`), because named binds to interface addresses it finds.
    """
    if not address.startswith("127."):
        raise ValueError(f"bind9 must listen on loopback, not {address}")
    zone = zone if zone.endswith(".") else zone + "."
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if (work / "db.zone.jnl").exists():
        raise RuntimeError(f"{work} holds an old journal; use a fresh directory")
    port = port or free_port(address)
    key_file = work / "tsig.key"
    write_key(key_file, KEY_NAME)
    (work / "db.zone").write_text(_zone_file(zone, address))
    conf = work / "named.conf"
    conf.write_text(_named_conf(work, zone.rstrip("."), address, port, key_file))
    subprocess.run(["named-checkconf", str(conf)], check=True, capture_output=True)
    proc = spawn(f"named-{port}", ["named", "-g", "-c", str(conf)], work)
    info = Bind9Info(server=address, port=port, zone=zone, key_name=KEY_NAME,
                     key_algorithm=KEY_ALGORITHM, key_file=key_file)
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise RuntimeError(f"named exited while starting; see {proc.log}")
        try:
            soa_serial(info, timeout=0.3)
            return proc, info
        except (dns.exception.DNSException, OSError, RuntimeError) as e:
            if time.monotonic() > deadline:
                proc.stop()
                raise TimeoutError(f"named did not answer SOA within {timeout}s; "
                                   f"see {proc.log}") from e
            time.sleep(0.05)
