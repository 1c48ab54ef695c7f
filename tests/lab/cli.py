"""`tests/lab/run-lab install|up|down|status [--dir DIR]`: the lab for people.

Exit codes: 0 ok; 1 a lab problem (already running, crashed process, start failure); 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tests.lab.lab import Lab, LabError, LabRunning, install


def _default_dir() -> Path:
    # Outside any repository: the state holds tokens and keys.
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return Path(os.environ.get("GREENWISE_LAB_DIR") or state / "greenwise-mc" / "lab")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="run-lab", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["install", "up", "down", "status"])
    p.add_argument("--dir", type=Path, default=None,
                   help="state directory (default: $GREENWISE_LAB_DIR or "
                        "~/.local/state/greenwise-mc/lab)")
    a = p.parse_args(argv)
    lab = Lab(a.dir or _default_dir())
    try:
        if a.command == "install":
            t0 = time.monotonic()
            bin_dir = install()
            print(f"lab binaries in {bin_dir} ({time.monotonic() - t0:.1f}s)")
        elif a.command == "up":
            info = lab.up()
            print(f"lab up in {info['timings']['up_s']}s at {lab.dir}")
            for name, c in info["clusters"].items():
                print(f"  {name:6} api {c['server']}  ingress {c['ingress']}  "
                      f"prometheus {c['prometheus']}")
            d = info["dns"]
            print(f"  dns    {d['server']}:{d['port']} zone {d['zone']}")
            print(f"  global prometheus {info['prometheus']}")
            print(f"  continuum: {lab.continuum_file}")
            print(f"  kubectl --kubeconfig {lab.dir / 'kubeconfigs' / 'all.yaml'} "
                  "--context edge get nodes")
        elif a.command == "down":
            stopped = lab.down()
            print(f"stopped {len(stopped)} processes" if stopped
                  else f"no lab running at {lab.dir}")
        else:
            entries = lab.status()
            if not entries:
                print(f"no lab at {lab.dir}")
                return 1
            crashed = [e for e in entries if not e["alive"]]
            for e in entries:
                state = "running" if e["alive"] else "CRASHED"
                print(f"{e['name']:28} pid {e['pid']:>7}  {state}"
                      + ("" if e["alive"] else f"  (log: {e['log']})"))
            print(f"{len(entries) - len(crashed)}/{len(entries)} running"
                  + (f"; crashed: {', '.join(e['name'] for e in crashed)}" if crashed else ""))
            return 1 if crashed else 0
    except LabRunning as e:
        print(f"run-lab: {e}", file=sys.stderr)
        return 1
    except LabError as e:
        print(f"run-lab: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
