"""`greenwise-mc power-model fit`: per-host power models from measurements."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import OutputOpt, check_output_file, doing, progress
from orchestrator.output import Format, emit

app = typer.Typer(rich_markup_mode=None, help=(
    "Per-host power models from measurements (GreenWise paper section 5.2, Table 7).\n\n"
    "Example: greenwise-mc power-model fit power.csv --apply continuum.yaml"))


@app.command("fit")
def fit(
    measurements: Annotated[Path, typer.Argument(
        help="CSV with columns host, cpu_utilization (fraction 0-1 of the host's cores), watts; "
             "at least 20 rows per host; other columns are ignored.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the models (host -> model, mae_w, mape_pct, idle_watts, "
                      "max_watts, power_curve); default: power-models.yaml next to the CSV.")] =
        None,
    apply: Annotated[Path | None, typer.Option(
        "--apply", help="Also set idle_watts, max_watts and power_curve of the measured hosts "
                        "in this scenario YAML or continuum.yaml, in place (its comments are "
                        "not kept).")] = None,
    percent: Annotated[bool, typer.Option(
        "--percent", help="cpu_utilization is in percent (0-100).")] = False,
    test_fraction: Annotated[float, typer.Option(
        "--test-fraction", help="Share of each host's rows held out for MAE / MAPE.")] = 0.25,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out split.")] = 0,
    output: OutputOpt = Format.table,
) -> None:
    """Fit linear, polynomial, logarithmic, k-neighbours, gradient-boosting, SVR and SGD
    regressors of watts on CPU utilization per host, report their held-out MAE (W) and MAPE (%),
    and write the best (lowest MAE) per host as idle_watts, max_watts and an 11-point
    power_curve: the form the simulator and the lab's node exporter use.

    Example: greenwise-mc power-model fit measurements.csv --out power-models.yaml"""
    from orchestrator import power_model as pm

    hosts = pm.load_measurements(measurements, percent=percent)
    pm.check_split(hosts, test_fraction)
    target = pm.read_target(apply, hosts) if apply else None
    out = out or measurements.parent / "power-models.yaml"
    check_output_file(out, "--out", "power-models.yaml")
    if apply:
        check_output_file(apply, "--apply", "continuum.yaml")
    doing("fitting power models (nothing written yet)")
    with progress() as bar:
        task = bar.add_task("fitting power models", total=len(hosts) * len(pm.MODELS))
        fits = pm.fit_all(hosts, seed, test_fraction, on_model=lambda: bar.advance(task))
    updated = pm.apply_to(target, fits, apply) if apply and target is not None else []
    pm.write_models(fits, out, measurements, seed, test_fraction)
    if apply and target is not None:
        pm.write_target(target, apply)
    data = {"source": str(measurements), "out": str(out), "seed": seed,
            "test_fraction": test_fraction,
            "applied": {"file": str(apply), "hosts": updated} if apply else None,
            "hosts": {h: f.to_dict() for h, f in fits.items()}}
    emit(data, output, pm.tables(data))
