"""What `run` and `plan` show: the live placement view, the run summary and the plan report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchestrator.controller import Tick
from orchestrator.migration.steps import DESCRIPTIONS, INTER_STEPS, INTRA_STEPS
from orchestrator.model import Observation
from orchestrator.output import table
from orchestrator.sim.continuum import SimulatedContinuum
from strategies.prediction import Prediction, compare


def _bar(fraction: float, width: int = 12) -> str:
    n = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * n + "·" * (width - n)


def hosts_table(sim: SimulatedContinuum, obs: Observation, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for c in ("", "host", "cluster", "CPU", "", "host W", "net ms"):
        t.add_column(c, justify="right" if c in ("host W", "net ms") else "left")
    for i, (h, s) in enumerate(zip(sim.hosts, obs.hosts, strict=True)):
        here = i == obs.service.host
        t.add_row("▶" if here else "", Text(h.name, style="bold green" if here else ""),
                  s.cluster, _bar(s.cpu), f"{100 * s.cpu:3.0f}%", f"{s.power_w:.1f}",
                  f"{h.network_latency_ms:g}")
    return t


def live_view(sim: SimulatedContinuum, history: Sequence[Tick], strategy: str) -> Group:
    last = history[-1]
    obs = last.after
    s = obs.service
    sla = sim.scenario.service.sla_latency_ms
    total = sum(t.reward for t in history)
    moves = sum(t.moved for t in history)
    status = Text.assemble(
        (f"tick {len(history)}/{sim.steps}  ", "bold"), f"strategy {strategy}  ",
        f"users {s.users:3d}  ",
        (f"latency {s.latency_ms:6.1f} ms", "red" if s.latency_ms > sla else ""),
        f"  service {s.power_w:5.1f} W  reward {last.reward:+.3f}  total {total:+.2f}  "
        f"migrations {moves}")
    decision = Text(f"last decision: {_describe(sim, last)}")
    return Group(hosts_table(sim, obs, f"service {s.name} on {obs.location}"), status, decision)


def _describe(sim: SimulatedContinuum, tick: Tick) -> str:
    if tick.action == 0:
        return "stay"
    dst = sim.hosts[tick.action - 1].name
    if not tick.moved:
        return f"{dst} is the current host: no move"
    return (f"move to {sim.clusters[tick.action - 1]}/{dst} ({tick.prediction.move}-cluster), "
            f"predicted {tick.prediction.latency_ms:.0f} ms, {tick.prediction.power_w:.1f} W")


def run_summary(sim: SimulatedContinuum, history: Sequence[Tick],
                strategy: str) -> tuple[dict[str, Any], list[Table]]:
    sla = sim.scenario.service.sla_latency_ms
    steps = {h.name: 0 for h in sim.hosts}
    for t in history:
        steps[sim.hosts[t.after.service.host].name] += 1
    summary = {
        "scenario": sim.scenario.name, "strategy": strategy, "ticks": len(history),
        "total_reward": round(sum(t.reward for t in history), 4),
        "mean_power_w": round(float(np.mean([t.after.service.power_w for t in history])), 3),
        "mean_latency_ms": round(float(np.mean([t.after.service.latency_ms for t in history])), 3),
        "sla_violations": sum(t.after.service.latency_ms > sla for t in history),
        "migrations": sum(t.moved for t in history),
        "host_time_share": {h: round(n / len(history), 4) for h, n in steps.items()},
    }
    rows = [[k, v] for k, v in summary.items() if k != "host_time_share"]
    rows += [[f"time on {h}", f"{100 * v:.0f}%"] for h, v in summary["host_time_share"].items()]
    return summary, [table("summary", ["", ""], rows)]


def plan_report(sim: SimulatedContinuum, obs: Observation, strategy: str, action: int,
                current: Prediction, chosen: Prediction) -> tuple[dict[str, Any], list[Table]]:
    s = obs.service
    target = sim.hosts[chosen.host]
    steps = [DESCRIPTIONS[name] for name in
             {"inter": INTER_STEPS, "intra": INTRA_STEPS}.get(chosen.move or "", ())]
    data = {
        "scenario": sim.scenario.name, "strategy": strategy, "step": obs.step,
        "state": {
            "service": s.name, "location": str(obs.location), "users": s.users,
            "latency_ms": round(s.latency_ms, 3), "power_w": round(s.power_w, 3),
            "cpu": round(s.cpu, 4),
            "hosts": [{"name": h.name, "cluster": h.cluster, "power_w": round(h.power_w, 3),
                       "cpu": round(h.cpu, 4)} for h in obs.hosts],
        },
        "decision": {
            "action": action,
            "move": chosen.move,
            "target": f"{sim.clusters[chosen.host]}/{target.name}",
        },
        "predicted": compare(current, chosen),
        "steps": list(steps),
    }
    target_name = data["decision"]["target"]
    what = "stay" if chosen.move is None else f"{chosen.move}-cluster move to {target_name}"
    pred = data["predicted"]
    tables = [
        hosts_table(sim, obs, f"state at step {obs.step}: {s.name} on {obs.location}, "
                              f"{s.users} users, {s.latency_ms:.0f} ms, {s.power_w:.1f} W"),
        predicted_table(f"{strategy} would: {what} (nothing is changed)", pred),
    ]
    if steps:
        tables.append(table("migration steps it would run", ["#", "step"],
                            [[i + 1, st] for i, st in enumerate(steps)]))
    return data, tables


def predicted_table(title: str, predicted: dict[str, dict[str, float]]) -> Table:
    """strategies.prediction.compare as a table: settled values, and the move's own cost."""
    return table(title, ["predicted", "stay", "chosen (settled)", "change", "while moving"],
                 [[k, v["stay"], v["chosen"], f"{v['change']:+.3f}",
                   f"{v['move_cost']:+g}" if "move_cost" in v else ""]
                  for k, v in predicted.items()])


def policy_plan_tables(data: dict[str, Any]) -> list[Table]:
    """`plan --config`: hosts and services as observed, each service's decision, the predicted
    change and the migration steps it would run."""

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
    tables.append(table(f"{data['strategy']} would (nothing is changed; minimum gain "
                        f"{'off' if gain is None else f'{gain:g}'})",
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
