"""A bounded HTTP load generator that follows DNS, for watching a migration from the client side.

It resolves `hostname` through the lab's own DNS server (never /etc/resolv.conf) and re-resolves
about every TTL (clamped to 0.25-1 s), the way a well-behaved client follows a record change.
Requests go to `http://<resolved IP>:<ingress port><path>` with `Host: hostname`: in the lab the
A record names a cluster's ingress address and the ingress port is the lab's fixed one.
Only 127.0.0.0/8 targets are ever contacted; rate and duration are capped.

Two ways to load a service:
- open loop (default): about `rate` requests per second, whatever the answers take;
- `users=N`: N virtual users, as Locust runs them (the GreenWise paper's load): each sends a
  request, waits for the answer, then thinks a uniform `think_s` (0.1-0.5 s) before the next;
  `rate` still caps the requests per second of all of them together.

While it runs it can serve Prometheus metrics (`metrics_port`), all labelled with the
`hostname` it loads: `loadgen_users` (the virtual users running; in open loop the requests in
flight, each one a user for its duration), `loadgen_target_rate`, `loadgen_requests_total
{outcome}`. With `register=DIR` it also writes a Prometheus file_sd target file for its metrics
address into DIR (the lab's `DIR/prometheus/loadgen/`, which the lab's global Prometheus
watches) and removes it when the run ends.

    python -m tests.lab.loadgen --host svc.continuum.test --ingress 127.0.0.1:8080 \
        --dns 127.0.0.1:5300 --rate 100 --duration 10 [--users 20] [--register DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import httpx

from tests.lab.metrics_http import serve_metrics

MAX_RATE = 500.0
MAX_DURATION = 600.0
MAX_IN_FLIGHT = 256
MAX_USERS = MAX_IN_FLIGHT
MAX_THINK = 60.0
THINK_S = (0.1, 0.5)  # Locust's wait_time in the GreenWise paper
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class TargetError(ValueError):
    """A target (ingress, DNS server or resolved address) outside 127.0.0.0/8."""


def check_loopback(address: str, what: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise TargetError(f"{what} {address!r} is not an IP address") from None
    if ip not in LOOPBACK:
        raise TargetError(f"{what} {address} is outside 127.0.0.0/8; refusing to send load there")
    return address


def split_hostport(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{what} must be host:port, got {value!r}")
    return check_loopback(host, what), int(port)


class Sample(NamedTuple):
    t: float  # seconds since the run started, when the request was sent
    address: str
    outcome: str  # "ok", "status:<code>" or an exception class name
    backend: str | None  # "cluster/node/pod" from the answer, if it said
    latency_ms: float


@dataclass
class Span:
    first: float
    last: float
    count: int = 0


@dataclass
class Report:
    hostname: str
    started_at: float  # wall clock (epoch seconds) at t=0
    rate: float = 0.0  # asked for, req/s
    elapsed: float = 0.0
    achieved_rate: float = 0.0  # sent / elapsed; below `rate` when the target is the bottleneck
    users: int | None = None  # virtual users (None: open loop)
    sent: int = 0
    ok: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # mean p50 p95 p99 max of OKs
    by_cluster: dict[str, int] = field(default_factory=dict)
    by_node: dict[str, int] = field(default_factory=dict)
    by_pod: dict[str, int] = field(default_factory=dict)
    by_address: dict[str, int] = field(default_factory=dict)
    # First/last send time (s since start) of requests answered OK by each backend / address.
    backend_timeline: dict[str, Span] = field(default_factory=dict)
    address_timeline: dict[str, Span] = field(default_factory=dict)
    # (t, address) each time the resolved address changed; the first entry is the initial one.
    dns_changes: list[tuple[float, str]] = field(default_factory=list)
    dns_errors: dict[str, int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("samples")
        return d

    def text(self) -> str:
        return json.dumps(self.summary(), indent=2, default=str)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def resolve(hostname: str, dns_server: str, dns_port: int,
            lifetime: float = 2.0) -> tuple[list[str], int]:
    """(sorted A addresses, TTL) for `hostname` from `dns_server` only, as the generator sees it."""
    r = dns.resolver.Resolver(configure=False)
    _configure(r, check_loopback(dns_server, "DNS server"), dns_port, lifetime)
    answer = r.resolve(hostname, dns.rdatatype.A, search=False)
    ttl = answer.rrset.ttl if answer.rrset is not None else 0
    return sorted(a.address for a in answer), ttl


def _configure(r: dns.resolver.BaseResolver, server: str, port: int, lifetime: float) -> None:
    # configure=False: never /etc/resolv.conf. A fresh query each time: no cache is set.
    r.nameservers = [server]
    r.port = port
    r.lifetime = r.timeout = lifetime


class _Live:
    """Counters shared with the metrics endpoint (read from another thread; ints are atomic)."""

    def __init__(self, hostname: str, rate: float, closed_loop: bool) -> None:
        self.hostname = hostname.rstrip(".")
        self.rate = rate
        self.closed_loop = closed_loop
        self.in_flight = 0
        self.running_users = 0
        self.outcomes: Counter[str] = Counter()

    @property
    def users(self) -> int:
        return self.running_users if self.closed_loop else self.in_flight


class _MetricsServer:
    """Prometheus text exposition of the live counters on 127.0.0.1 (no extra dependency)."""

    def __init__(self, live: _Live, port: int) -> None:
        def render() -> bytes:
            host = f'hostname="{live.hostname}"'
            lines = [
                "# HELP loadgen_users Virtual users running (open loop: requests in flight).",
                "# TYPE loadgen_users gauge",
                f"loadgen_users{{{host}}} {live.users}",
                "# HELP loadgen_target_rate Requests per second the generator aims at (at most).",
                "# TYPE loadgen_target_rate gauge",
                f"loadgen_target_rate{{{host}}} {live.rate}",
                "# HELP loadgen_requests_total Requests completed, by outcome.",
                "# TYPE loadgen_requests_total counter",
            ]
            for outcome in ("ok", "failed"):
                lines.append(f'loadgen_requests_total{{{host},outcome="{outcome}"}} '
                             f"{live.outcomes[outcome]}")
            return ("\n".join(lines) + "\n").encode()

        self.server = serve_metrics(
            ("127.0.0.1", port),
            lambda path: (200 if path.startswith("/metrics") else 404, render()))
        self.port = int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Registration:
    """A Prometheus file_sd target file for the metrics address, in `directory`, while it lives.

    Written atomically (a dot-file renamed into place, so a `*.json` glob never sees half a
    file); one file per generator, so several can register in the same directory."""

    def __init__(self, directory: Path, port: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"loadgen-{os.getpid()}-{port}.json"
        self.path = directory / name
        tmp = directory / f".{name}.tmp"
        tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {}}]))
        tmp.replace(self.path)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


def _check_users(users: int | None, think_s: tuple[float, float]) -> None:
    if users is None:
        return
    if not 1 <= users <= MAX_USERS:
        raise ValueError(f"users must be in [1, {MAX_USERS}], got {users}")
    lo, hi = think_s
    if not 0 <= lo <= hi <= MAX_THINK:
        raise ValueError(f"think_s must be (min, max) with 0 <= min <= max <= {MAX_THINK:g} s, "
                         f"got {think_s}")


class _Run:
    def __init__(self, hostname: str, ingress: str, dns_server: str, dns_port: int, rate: float,
                 duration: float, path: str, max_requests: int | None, timeout: float,
                 stop: threading.Event, live: _Live, users: int | None = None,
                 think_s: tuple[float, float] = THINK_S, seed: int | None = None,
                 search: list[str] | None = None) -> None:
        if not 0 < rate <= MAX_RATE:
            raise ValueError(f"rate must be in (0, {MAX_RATE}] req/s, got {rate}")
        if not 0 < duration <= MAX_DURATION:
            raise ValueError(f"duration must be in (0, {MAX_DURATION}] s, got {duration}")
        if max_requests is not None and max_requests < 0:
            raise ValueError("max_requests must be >= 0")
        _check_users(users, think_s)
        self.users, self.think_s = users, think_s
        self.rng = random.Random(seed)
        self.ingress_host, self.ingress_port = split_hostport(ingress, "ingress")
        check_loopback(dns_server, "DNS server")
        self.hostname = hostname.rstrip(".")
        self.rate, self.duration, self.path, self.timeout = rate, duration, path, timeout
        self.max_requests = max_requests
        self.stop = stop
        self.live = live
        self.resolver = dns.asyncresolver.Resolver(configure=False)
        _configure(self.resolver, dns_server, dns_port, 1.0)
        # An in-cluster client: a pod's resolv.conf search path and ndots (5), as kubelet sets
        self.search = bool(search)
        self.resolver.search = [dns.name.from_text(d) for d in search or []]
        self.resolver.ndots = 5
        self.address = self.ingress_host
        self.report = Report(hostname=self.hostname, started_at=time.time(), rate=rate,
                             users=users)
        self.t0 = time.monotonic()
        self.next_at = 0.0  # the earliest time the next request may leave (the rate cap)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def resolve(self) -> float:
        """Resolve once; update the address; return seconds until the next resolution."""
        try:
            answer = await self.resolver.resolve(self.hostname, dns.rdatatype.A,
                                                 search=self.search)
        except dns.exception.DNSException as e:
            key = type(e).__name__
            self.report.dns_errors[key] = self.report.dns_errors.get(key, 0) + 1
            return 0.25
        addresses = sorted(r.address for r in answer)
        # Several A records: stick to the first, like a simple client would.
        address = addresses[0]
        if address != self.address or not self.report.dns_changes:
            self.address = address
            self.report.dns_changes.append((round(self.now(), 4), address))
        ttl = answer.rrset.ttl if answer.rrset is not None else 1
        return min(1.0, max(0.25, float(ttl)))

    async def resolve_loop(self) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(await self.resolve())

    async def one(self, client: httpx.AsyncClient, sent_at: float, address: str) -> None:
        backend: str | None = None
        start = time.monotonic()
        try:
            check_loopback(address, "resolved address")
            r = await client.get(f"http://{address}:{self.ingress_port}{self.path}",
                                 headers={"Host": self.hostname})
            outcome = "ok" if r.is_success else f"status:{r.status_code}"
            backend = self.backend_of(r)
        except TargetError:
            outcome = "NonLoopbackTarget"
        except Exception as e:  # any transport or protocol error is a failure
            outcome = type(e).__name__
        finally:
            self.live.in_flight -= 1
        latency = (time.monotonic() - start) * 1000
        self.live.outcomes["ok" if outcome == "ok" else "failed"] += 1
        self.report.samples.append(Sample(round(sent_at, 4), address, outcome, backend,
                                          round(latency, 3)))

    def backend_of(self, r: httpx.Response) -> str | None:
        try:
            body = r.json()
        except ValueError:
            return None
        if not isinstance(body, dict) or not any(k in body for k in ("cluster", "node", "pod")):
            return None
        return "/".join(str(body.get(k, "?")) for k in ("cluster", "node", "pod"))

    def may_send(self, limit: int) -> bool:
        return (self.report.sent < limit and not self.stop.is_set()
                and self.now() < self.duration)

    async def pause(self, seconds: float) -> None:
        """Sleep, waking early when the run is stopped."""
        end = self.now() + seconds
        while not self.stop.is_set() and (left := end - self.now()) > 0:
            await asyncio.sleep(min(left, 0.1))

    async def user(self, client: httpx.AsyncClient, limit: int) -> None:
        """One virtual user: request, wait for the answer, think, again (Locust's loop)."""
        lo, hi = self.think_s
        try:
            await self.pause(self.rng.uniform(0.0, hi))  # users start spread out, not at once
            while self.may_send(limit):
                at = max(self.next_at, self.now())
                self.next_at = at + 1.0 / self.rate
                await self.pause(at - self.now())
                if not self.may_send(limit):
                    break
                self.live.in_flight += 1
                self.report.sent += 1
                await self.one(client, self.now(), self.address)
                await self.pause(self.rng.uniform(lo, hi))
        finally:
            self.live.running_users -= 1

    async def main(self) -> Report:
        await self.resolve()
        resolving = asyncio.create_task(self.resolve_loop())
        interval = 1.0 / self.rate
        limit = self.max_requests if self.max_requests is not None else int(
            self.rate * self.duration) + 1
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits, trust_env=False,
                                     follow_redirects=False) as client:
            self.t0 = time.monotonic()
            self.report.started_at = time.time()
            # The initial resolution counts as t=0.
            self.report.dns_changes = [(0.0, a) for _, a in self.report.dns_changes[:1]]
            next_at = 0.0
            if self.users is not None:
                self.live.running_users = self.users
                await asyncio.gather(*(self.user(client, limit) for _ in range(self.users)))
            while self.users is None and self.report.sent < limit and not self.stop.is_set():
                delay = next_at - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self.now() >= self.duration or self.stop.is_set():
                    break
                await slots.acquire()
                self.live.in_flight += 1
                self.report.sent += 1
                # The address is taken now, not when the task first runs, so t and address agree.
                task = asyncio.create_task(self.one(client, self.now(), self.address))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _: slots.release())
                next_at += interval
                # A stalled target must not cause a burst afterwards: forget debt over 1 s.
                next_at = max(next_at, self.now() - 1.0)
            if tasks:
                await asyncio.gather(*tasks)
        self.stop.set()
        resolving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await resolving
        self.report.elapsed = round(self.now(), 3)
        self.report.achieved_rate = round(self.report.sent / max(self.report.elapsed, 1e-3), 1)
        return self.summarise()

    def summarise(self) -> Report:
        rep = self.report
        rep.samples.sort(key=lambda s: s.t)
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        counters = {"cluster": Counter(), "node": Counter(), "pod": Counter()}
        by_address: Counter[str] = Counter()
        for s in rep.samples:
            by_address[s.address] += 1
            if s.outcome != "ok":
                failures[s.outcome] += 1
                continue
            rep.ok += 1
            latencies.append(s.latency_ms)
            _extend(rep.address_timeline, s.address, s.t)
            if s.backend is not None:
                _extend(rep.backend_timeline, s.backend, s.t)
                for key, part in zip(("cluster", "node", "pod"), s.backend.split("/", 2),
                                     strict=True):
                    if part != "?":
                        counters[key][part] += 1
        rep.failed = sum(failures.values())
        rep.failures = dict(failures)
        rep.by_address = dict(by_address)
        rep.by_cluster, rep.by_node, rep.by_pod = (dict(counters[k])
                                                   for k in ("cluster", "node", "pod"))
        latencies.sort()
        rep.latency_ms = {"mean": mean_latency_ms(rep.samples),
                          "p50": _percentile(latencies, 0.50), "p95": _percentile(latencies, 0.95),
                          "p99": _percentile(latencies, 0.99),
                          "max": latencies[-1] if latencies else 0.0}
        return rep


def mean_latency_ms(samples: list[Sample], since: float = 0.0,
                    until: float = float("inf")) -> float:
    """Mean latency of the answered (OK) requests sent between `since` and `until` (s since
    the start); 0 if there is none."""
    got = [s.latency_ms for s in samples if s.outcome == "ok" and since <= s.t <= until]
    return sum(got) / len(got) if got else 0.0


def _extend(spans: dict[str, Span], key: str, t: float) -> None:
    span = spans.setdefault(key, Span(first=t, last=t))
    span.last = max(span.last, t)
    span.first = min(span.first, t)
    span.count += 1


def run(hostname: str, ingress: str, dns_server: str, dns_port: int, rate: float,
        duration: float, path: str = "/predictions/resnet-18", max_requests: int | None = None,
        timeout: float = 5.0, metrics_port: int | None = None, users: int | None = None,
        think_s: tuple[float, float] = THINK_S, register: Path | None = None,
        seed: int | None = None) -> Report:
    """Send about `rate` req/s for `duration` s (or `max_requests`) and report what happened;
    with `users`, run that many virtual users instead (`rate` then caps them).

    With `metrics_port` (0 picks a free one) the live counters are served on
    http://127.0.0.1:<port>/metrics while the run lasts; `register` (a directory) also
    announces that address to Prometheus there (file_sd), on a free port if none is given.
    """
    return start(hostname, ingress, dns_server, dns_port, rate, duration, path, max_requests,
                 timeout, metrics_port, users, think_s, register, seed).result()


class LoadHandle:
    """A run in a background thread: `stop()` ends it early, `result()` waits for the report."""

    def __init__(self, run_: _Run, metrics: _MetricsServer | None,
                 registration: _Registration | None = None) -> None:
        self._run = run_
        self._metrics = metrics
        self._registration = registration
        self.target_file = registration.path if registration is not None else None
        self._report: Report | None = None
        self._error: BaseException | None = None
        self.metrics_url = (f"http://127.0.0.1:{metrics.port}/metrics"
                            if metrics is not None else None)
        self._thread = threading.Thread(target=self._main, name="loadgen", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._report = asyncio.run(self._run.main())
        except BaseException as e:  # re-raised by result()
            self._error = e
        finally:
            if self._registration is not None:  # Prometheus stops scraping: users end
                self._registration.close()
            if self._metrics is not None:
                self._metrics.close()

    def stop(self) -> Report:
        self._run.stop.set()
        return self.result()

    def running(self) -> bool:
        return self._thread.is_alive()

    def progress(self) -> dict[str, int]:
        """Live counts so far: sent, ok, failed, in_flight, users (as loadgen_users has it)."""
        live = self._run.live
        return {"sent": self._run.report.sent, "ok": live.outcomes["ok"],
                "failed": live.outcomes["failed"], "in_flight": live.in_flight,
                "users": live.users}

    @property
    def started_at(self) -> float:
        """Wall-clock time (epoch s) of the run's t=0, which samples' `t` count from."""
        return self._run.report.started_at

    def samples(self) -> list[Sample]:
        """The requests answered so far (a copy; the run goes on)."""
        return list(self._run.report.samples)

    def result(self, timeout: float | None = None) -> Report:
        # Bounded by duration + request timeout; the default leaves room for both.
        limit = timeout if timeout is not None else (self._run.duration + self._run.timeout + 30)
        self._thread.join(limit)
        if self._thread.is_alive():
            raise TimeoutError("load generator did not finish")
        if self._error is not None:
            raise self._error
        assert self._report is not None
        return self._report


def start(hostname: str, ingress: str, dns_server: str, dns_port: int, rate: float,
          duration: float, path: str = "/predictions/resnet-18", max_requests: int | None = None,
          timeout: float = 5.0, metrics_port: int | None = None, users: int | None = None,
          think_s: tuple[float, float] = THINK_S, register: Path | None = None,
          seed: int | None = None, search: list[str] | None = None) -> LoadHandle:
    """Like `run`, in a background thread; arguments are checked before it returns. With
    `search` (a pod's DNS search domains) `hostname` may be a short in-cluster name."""
    live = _Live(hostname, rate, closed_loop=users is not None)
    run_ = _Run(hostname, ingress, dns_server, dns_port, rate, duration, path, max_requests,
                 timeout, threading.Event(), live, users, think_s, seed, search)
    if register is not None and metrics_port is None:
        metrics_port = 0
    metrics = _MetricsServer(live, metrics_port) if metrics_port is not None else None
    registration = None
    if register is not None and metrics is not None:
        try:
            registration = _Registration(Path(register), metrics.port)
        except BaseException:
            metrics.close()
            raise
    return LoadHandle(run_, metrics, registration)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.loadgen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True, help="hostname to resolve and send as Host header")
    p.add_argument("--ingress", required=True, help="default ingress host:port (127.0.0.0/8)")
    p.add_argument("--dns", required=True, help="DNS server host:port (127.0.0.0/8)")
    p.add_argument("--rate", type=float, default=10.0, help=f"req/s, at most {MAX_RATE:g}")
    p.add_argument("--duration", type=float, default=10.0, help=f"s, at most {MAX_DURATION:g}")
    p.add_argument("--path", default="/predictions/resnet-18")
    p.add_argument("--max-requests", type=int)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--metrics-port", type=int, help="serve /metrics on 127.0.0.1:PORT")
    p.add_argument("--users", type=int, help=f"virtual users (at most {MAX_USERS}); --rate caps "
                   "them; default: open loop at --rate")
    p.add_argument("--think", type=float, nargs=2, default=THINK_S, metavar=("MIN", "MAX"),
                   help="each user's think time between requests, s (default 0.1 0.5)")
    p.add_argument("--register", type=Path, metavar="DIR",
                   help="announce /metrics to Prometheus: a file_sd target file in DIR")
    args = p.parse_args(argv)
    dns_host, dns_port = split_hostport(args.dns, "--dns")
    report = run(args.host, args.ingress, dns_host, dns_port, args.rate, args.duration,
                 args.path, args.max_requests, args.timeout, args.metrics_port, args.users,
                 (args.think[0], args.think[1]), args.register)
    print(report.text())
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
