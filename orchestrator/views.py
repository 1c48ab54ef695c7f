"""What `run` and `plan` show: the live placement view, the run summary and the plan tables,
for any continuum (from snapshots and the loop's decisions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchestrator.control.loop import Decision, Step
from orchestrator.migration.steps import DESCRIPTIONS
from orchestrator.model import Snapshot
from orchestrator.output import table
from orchestrator.scenario import ServiceSpec
from orchestrator.topology import Topology


def _bar(fraction: float, width: int = 12) -> str:
    n = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * n + "·" * (width - n)


# Hosts the placement view and the summary list one by one; the rest are one row (a terminal
# shows no more; `-o json` has every host's share)
ROWS = 40


def hosts_table(topology: Topology, snapshot: Snapshot, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for c in ("host", "cluster", "CPU", "", "host W", "services"):
        t.add_column(c, justify="right" if c == "host W" else "left")
    here: dict[int, list[str]] = {}
    for sv in snapshot.services:
        here.setdefault(sv.host, []).append(sv.name)
    for i, (h, s) in enumerate(zip(topology.hosts[:ROWS], snapshot.hosts, strict=False)):
        t.add_row(Text(h.name, style="bold green" if i in here else ""), s.cluster, _bar(s.cpu),
                  f"{100 * s.cpu:3.0f}%", f"{s.power_w:.1f}", ", ".join(here.get(i, [])))
    if rest := snapshot.hosts[ROWS:]:
        cpu = sum(s.cpu for s in rest) / len(rest)
        t.add_row(f"{len(rest)} more hosts", "", _bar(cpu), f"{100 * cpu:3.0f}%",
                  f"{sum(s.power_w for s in rest):.1f}",
                  f"{sum(len(v) for i, v in here.items() if i >= ROWS)} services")
    return t


def live_view(topology: Topology, specs: Sequence[ServiceSpec], history: Sequence[Step],
              strategy: str, ticks: int) -> Group:
    last = history[-1]
    after = last.after
    total = sum(sum(st.rewards) for st in history)
    moves = sum(len(st.tick.plans) for st in history)
    late = sum(s.latency_ms > specs[i].sla_latency_ms for i, s in enumerate(after.services))
    status = Text.assemble(
        (f"tick {len(history)}/{ticks}  ", "bold"), f"strategy {strategy}  ",
        f"users {sum(s.users for s in after.services):3d}  ",
        (f"over SLA {late}/{len(after.services)}", "red" if late else ""),
        f"  services {sum(s.power_w for s in after.services):6.1f} W  "
        f"reward {sum(last.rewards):+.3f}  total {total:+.2f}  migrations {moves}")
    said = [f"{d.service}: {describe(d)}" for d in last.tick.decisions if d.action != "stay"]
    return Group(hosts_table(topology, after, "placement"), status,
                 Text("last decisions: " + ("; ".join(said) or "all stay")))


def describe(d: Decision) -> str:
    """A decision in a few words."""
    if d.action == "move":
        return f"{d.kind}-cluster move to {d.target}"
    if d.action in ("held", "refused", "none"):
        return f"{d.action}{f' -> {d.target}' if d.target else ''} ({d.reason})"
    return d.action


def run_summary(scenario: str, topology: Topology, specs: Sequence[ServiceSpec],
                history: Sequence[Step], strategy: str) -> tuple[dict[str, Any], list[Table]]:
    steps = {h.name: 0 for h in topology.hosts}
    for st in history:
        for s in st.after.services:
            steps[topology.hosts[s.host].name] += 1
    service_ticks = sum(steps.values()) or 1
    actions = [d.action for st in history for d in st.tick.decisions]
    summary = {
        "scenario": scenario, "strategy": strategy, "ticks": len(history),
        "services": len(specs),
        "total_reward": round(sum(sum(st.rewards) for st in history), 4),
        "mean_power_w": round(float(np.mean(
            [sum(s.power_w for s in st.after.services) for st in history])), 3),
        "mean_latency_ms": round(float(np.mean(
            [s.latency_ms for st in history for s in st.after.services])), 3),
        "sla_violations": sum(s.latency_ms > specs[i].sla_latency_ms
                              for st in history for i, s in enumerate(st.after.services)),
        "migrations": sum(len(st.tick.plans) for st in history),
        "held_by_gates": actions.count("held"),
        "refused_masked": actions.count("refused"),
        "host_time_share": {h: round(n / service_ticks, 4) for h, n in steps.items()},
    }
    rows = [[k, v] for k, v in summary.items() if k != "host_time_share"]
    shares = list(summary["host_time_share"].items())
    if len(shares) > ROWS:  # the hosts services spent most time on
        shares.sort(key=lambda hv: -hv[1])
    rows += [[f"time on {h}", f"{100 * v:.1f}%"] for h, v in shares[:ROWS]]
    if rest := shares[ROWS:]:
        rows.append([f"time on {len(rest)} more hosts", f"{100 * sum(v for _, v in rest):.1f}%"])
    return summary, [table("summary", ["", ""], rows)]


def predicted_table(title: str, predicted: dict[str, dict[str, float]]) -> Table:
    """strategies.prediction.compare as a table: settled values, and the move's own cost."""
    return table(title, ["predicted", "stay", "chosen (settled)", "change", "while moving"],
                 [[k, v["stay"], v["chosen"], f"{v['change']:+.3f}",
                   f"{v['move_cost']:+g}" if "move_cost" in v else ""]
                  for k, v in predicted.items()])


def plan_tables(data: dict[str, Any]) -> list[Table]:
    """`plan`: hosts and services as observed, each service's decision, the predicted change
    and the migration steps it would run (simulated or real: the same loop decided)."""
    tables = [table("hosts (observed)", ["host", "power W", "CPU", "problems"],
                    [[f"{h['cluster']}/{h['name']}", h["power_w"], h["cpu"],
                      "; ".join(h["problems"])] for h in data["hosts"]])]
    rows = []
    for d in data["services"]:
        st = d["state"] or {}
        what = d["action"] + (f" -> {d['target']}" if d["target"] else "")
        rows.append([d["service"], st.get("location"), st.get("users"), st.get("latency_ms"),
                     st.get("power_w"), what, d["predicted_gain"],
                     d["reason"] or d["outcome"]])
    gain = data["min_predicted_gain"]
    tables.append(table(f"{data['strategy']} would (nothing is changed; "
                        + ("no gain gate)" if gain is None else f"minimum gain {gain:g})"),
                        ["service", "at", "users", "latency ms", "power W", "decision",
                         "predicted gain", "outcome / reason"], rows))
    for d in data["services"]:
        if d["predicted"] and d["target"]:
            tables.append(predicted_table(
                f"{d['service']}: predicted, staying vs -> {d['target']}", d["predicted"]))
        if d["steps"]:
            tables.append(table(f"{d['service']}: {d['kind']}-cluster migration steps it would "
                                "run", ["#", "step"],
                                [[i + 1, DESCRIPTIONS[s]] for i, s in enumerate(d["steps"])]))
    return tables
