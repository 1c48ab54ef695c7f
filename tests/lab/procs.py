"""Start, watch and stop the lab's background processes, always by PID.

Every server the lab starts is recorded as a `Proc` (name, pid, log file, command) in the lab's
state directory, so `run-lab down` and tests stop exactly what they started and `status` can tell
a crashed process from a running one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Proc:
    name: str
    pid: int
    log: str
    cmd: list[str]
    # Extra environment it was started with (recorded, so never put secrets here).
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie child still answers kill(0): look at its state.
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return False
        return state != "Z"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL; reap it if it is our child."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if not self.alive():
                break
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.alive():
                _reap(self.pid)
                time.sleep(0.05)
        _reap(self.pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def spawn(name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    """Start `cmd` in its own session (so stop() takes its children too), logging to a file."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
    return Proc(name=name, pid=p.pid, log=str(log), cmd=cmd, env=dict(env or {}),
                cwd=str(cwd) if cwd is not None else None)


def wait_port(host: str, port: int, proc: Proc | None = None, timeout: float = 30.0) -> None:
    """Block until host:port accepts TCP connections; fail early if `proc` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting; see {proc.log}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} not accepting connections after {timeout}s")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def save(procs: list[Proc], path: Path) -> None:
    path.write_text(json.dumps([asdict(p) for p in procs], indent=2))


def load(path: Path) -> list[Proc]:
    if not path.exists():
        return []
    return [Proc(**d) for d in json.loads(path.read_text())]


def kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal what is left of a process group whose leader may already be gone (its children)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
