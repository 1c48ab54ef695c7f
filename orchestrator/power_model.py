"""Per-host power models fitted from measurements (GreenWise paper section 5.2, Table 7).

`greenwise-mc power-model fit MEASUREMENTS.csv` reads rows `host,cpu_utilization,watts`
(cpu_utilization is a fraction of the host's cores in [0, 1]; `--percent` for 0-100; other
columns are ignored), fits several scikit-learn regressors of watts on CPU utilization per host,
scores each on a held-out part of that host's rows (seeded, so the same file gives the same
result) by MAE (W) and MAPE (%), and keeps the model with the lowest held-out MAE, refitted on all
of the host's rows.

The best model becomes the host's power profile in the form the simulator and the lab's node
exporter use (orchestrator.performance.curve_fraction):
watts(u) = idle_watts + (max_watts - idle_watts) * curve(u), with idle_watts = model(0),
max_watts = model(1) and curve the model sampled at CURVE_POINTS utilizations, piecewise linear
between them. Power is taken not to fall as utilization rises: the samples are made
non-decreasing (running maximum), so the curve rises from 0 to 1.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from orchestrator.config import describe_validation_error, parse_yaml
from orchestrator.errors import BadInput
from orchestrator.scenario import HostProfile

COLUMNS = ("host", "cpu_utilization", "watts")
MIN_ROWS = 20  # per host: enough for a held-out part and k-neighbours (k = 5)
MIN_DISTINCT = 5  # distinct utilizations per host
CURVE_POINTS = 11  # 0.0, 0.1, ..., 1.0
MODELS = ("linear", "polynomial", "logarithmic", "k-neighbours", "gradient-boosting", "svr",
          "sgd")
MODEL_HELP = ("linear; polynomial (degree 3); logarithmic (a + b ln(u + 0.01)); k-neighbours "
              "(k = 5); gradient-boosting; svr (RBF, scaled); sgd (linear, scaled)")


@dataclass(frozen=True)
class HostData:
    host: str
    utilization: np.ndarray  # fraction in [0, 1]
    watts: np.ndarray


@dataclass(frozen=True)
class Score:
    mae_w: float
    mape_pct: float


@dataclass(frozen=True)
class HostFit:
    host: str
    rows: int
    test_rows: int
    utilization_range: tuple[float, float]
    scores: dict[str, Score]  # held-out, per model
    model: str  # the best: lowest held-out MAE
    idle_watts: float
    max_watts: float
    power_curve: tuple[tuple[float, float], ...]

    def entry(self) -> dict[str, Any]:
        """The host's entry in the written power-models file."""
        best = self.scores[self.model]
        return {"model": self.model, "mae_w": best.mae_w, "mape_pct": best.mape_pct,
                "idle_watts": self.idle_watts, "max_watts": self.max_watts,
                "power_curve": [list(p) for p in self.power_curve]}

    def to_dict(self) -> dict[str, Any]:
        """The entry plus every model's held-out scores (Table 7) and what was fitted on."""
        return {**self.entry(), "rows": self.rows, "test_rows": self.test_rows,
                "utilization_range": list(self.utilization_range),
                "models": {m: {"mae_w": s.mae_w, "mape_pct": s.mape_pct}
                           for m, s in self.scores.items()}}

    def profile(self) -> dict[str, Any]:
        """The HostProfile fields the fit sets (scenario / continuum.yaml host entries)."""
        return {"idle_watts": self.idle_watts, "max_watts": self.max_watts,
                "power_curve": [list(p) for p in self.power_curve]}


# --- reading ----------------------------------------------------------------------------------


def load_measurements(path: Path, percent: bool = False,
                      min_rows: int = MIN_ROWS) -> dict[str, HostData]:
    """Rows of `host,cpu_utilization,watts` grouped by host; bad input raises BadInput
    naming the line and column."""
    if not path.is_file():
        raise BadInput(f"measurements file {path} does not exist")
    top = 100.0 if percent else 1.0
    rows: dict[str, tuple[list[float], list[float]]] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise BadInput(
                    f"{path}: line 1: missing column(s) {', '.join(missing)}; expected a header "
                    f"with {', '.join(COLUMNS)} (found: {', '.join(header) or 'nothing'})")
            reader.fieldnames = header
            for row in reader:
                line = reader.line_num
                if None in row:
                    raise BadInput(f"{path}: line {line}: more values than columns")
                host = (row["host"] or "").strip()
                if not host:
                    raise BadInput(f"{path}: line {line}, column host: empty host name")
                u = _number(path, line, "cpu_utilization", row["cpu_utilization"])
                if not 0.0 <= u <= top:
                    hint = ("; if the file is in percent, pass --percent" if not percent and
                            1.0 < u <= 100.0 else "")
                    raise BadInput(
                        f"{path}: line {line}, column cpu_utilization: {u:g} is outside "
                        f"[0, {top:g}]{hint}")
                w = _number(path, line, "watts", row["watts"])
                if w <= 0:
                    raise BadInput(f"{path}: line {line}, column watts: {w:g} must be > 0")
                us, ws = rows.setdefault(host, ([], []))
                us.append(u / top)
                ws.append(w)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BadInput(f"{path}: cannot read as CSV ({e})") from e
    if not rows:
        raise BadInput(f"{path}: no measurements (expected rows of {', '.join(COLUMNS)})")
    highest = max(max(us) for us, _ in rows.values()) * top
    if percent and highest <= 1.0:  # a fit over 0-1 % would extrapolate to 100 times the range
        raise BadInput(f"{path}: with --percent every cpu_utilization is at most 1 (the "
                       f"highest is {highest:g}): these look like fractions of the cores; "
                       "drop --percent")
    out = {}
    for host, (us, ws) in rows.items():
        if len(us) < min_rows:
            raise BadInput(f"{path}: host {host!r} has {len(us)} rows; need at least "
                           f"{min_rows} per host")
        if len(set(us)) < MIN_DISTINCT:
            raise BadInput(f"{path}: host {host!r} has {len(set(us))} distinct "
                           f"cpu_utilization values; need at least {MIN_DISTINCT}")
        out[host] = HostData(host, np.array(us), np.array(ws))
    return out


def _number(path: Path, line: int, column: str, text: str | None) -> float:
    if text is None or not text.strip():
        raise BadInput(f"{path}: line {line}, column {column}: missing value")
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadInput(f"{path}: line {line}, column {column}: {text!r} is not a number")
    return value


# --- fitting ----------------------------------------------------------------------------------


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error, in the unit of the values (W)."""
    return float(np.mean(np.abs(np.asarray(actual) - np.asarray(predicted))))


def mape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute percentage error, in percent of the actual values (all > 0)."""
    a = np.asarray(actual, dtype=float)
    return float(100.0 * np.mean(np.abs(a - np.asarray(predicted)) / np.abs(a)))


def _log_feature(x: np.ndarray) -> np.ndarray:
    return np.log(x + 0.01)


def make_model(name: str, seed: int) -> Any:
    """An unfitted scikit-learn regressor of watts on utilization (X of shape (n, 1))."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import LinearRegression, SGDRegressor
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures, StandardScaler
    from sklearn.svm import SVR

    def scaled(regressor: Any) -> Any:  # SVR and SGD need standardized inputs and targets
        return TransformedTargetRegressor(regressor=make_pipeline(StandardScaler(), regressor),
                                          transformer=StandardScaler())

    factories: dict[str, Callable[[], Any]] = {
        "linear": LinearRegression,
        "polynomial": lambda: make_pipeline(PolynomialFeatures(3, include_bias=False),
                                            LinearRegression()),
        "logarithmic": lambda: make_pipeline(FunctionTransformer(_log_feature),
                                             LinearRegression()),
        "k-neighbours": lambda: KNeighborsRegressor(n_neighbors=5),
        "gradient-boosting": lambda: GradientBoostingRegressor(random_state=seed),
        "svr": lambda: scaled(SVR(C=10.0)),
        "sgd": lambda: scaled(SGDRegressor(random_state=seed, max_iter=2000, tol=1e-5)),
    }
    return factories[name]()


def fit_host(data: HostData, seed: int = 0, test_fraction: float = 0.25,
             on_model: Callable[[], None] | None = None) -> HostFit:
    """Score every model on a seeded held-out part, refit the best on all rows, sample it."""
    from sklearn.model_selection import train_test_split

    x = data.utilization.reshape(-1, 1)
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.watts, test_size=test_fraction, random_state=seed)
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SGD's ConvergenceWarning: the score says enough
        for name in MODELS:
            model = make_model(name, seed).fit(x_train, y_train)
            predicted = model.predict(x_test)
            scores[name] = Score(round(mae(y_test, predicted), 3),
                                 round(mape(y_test, predicted), 2))
            if on_model:
                on_model()
        best = min(MODELS, key=lambda m: scores[m].mae_w)  # ties: the simpler (earlier) model
        final = make_model(best, seed).fit(x, data.watts)
    idle, top, curve = sample_curve(final.predict)
    return HostFit(host=data.host, rows=len(data.watts), test_rows=len(y_test),
                   utilization_range=(float(data.utilization.min()),
                                      float(data.utilization.max())),
                   scores=scores, model=best, idle_watts=idle, max_watts=top, power_curve=curve)


def sample_curve(predict: Callable[[np.ndarray], np.ndarray], points: int = CURVE_POINTS,
                 ) -> tuple[float, float, tuple[tuple[float, float], ...]]:
    """(idle_watts, max_watts, power_curve) of a watts(utilization) model: the model at `points`
    utilizations from 0 to 1, made non-decreasing, as fractions of (max - idle)."""
    us = np.round(np.linspace(0.0, 1.0, points), 4)
    watts = np.maximum.accumulate(np.asarray(predict(us.reshape(-1, 1)), dtype=float))
    idle, top = float(watts[0]), float(watts[-1])
    if idle < 0:
        raise BadInput(f"the fitted model predicts {idle:.2f} W at zero utilization; "
                       "check the measurements (watts must be > 0)")
    if top - idle < 1e-6:  # no dynamic power: a flat host
        return round(idle, 2), round(idle, 2), ((0.0, 0.0), (1.0, 1.0))
    fractions = (watts - idle) / (top - idle)
    curve = tuple((float(u), round(float(f), 4)) for u, f in zip(us, fractions, strict=True))
    return round(idle, 2), round(top, 2), curve


def fit_all(hosts: dict[str, HostData], seed: int = 0, test_fraction: float = 0.25,
            on_model: Callable[[], None] | None = None) -> dict[str, HostFit]:
    check_split(hosts, test_fraction)
    return {h: fit_host(d, seed, test_fraction, on_model) for h, d in hosts.items()}


def check_split(hosts: dict[str, HostData], test_fraction: float) -> None:
    """Every host keeps enough held-out and training rows."""
    if not 0.0 < test_fraction < 1.0:
        raise BadInput(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    for data in hosts.values():
        n_test = math.ceil(len(data.watts) * test_fraction)
        if n_test < 2 or len(data.watts) - n_test < 5:
            raise BadInput(
                f"host {data.host!r}: {len(data.watts)} rows with --test-fraction "
                f"{test_fraction} leave {n_test} held-out and {len(data.watts) - n_test} "
                "training rows; need at least 2 and 5")


# --- writing ----------------------------------------------------------------------------------


def write_models(fits: dict[str, HostFit], path: Path, source: Path, seed: int,
                 test_fraction: float) -> None:
    """host -> {model, mae_w, mape_pct, idle_watts, max_watts, power_curve}."""
    header = (f"# power models fitted by `greenwise-mc power-model fit {source}` (seed {seed}, "
              f"{test_fraction:g} held out).\n"
              "# Per host: watts(u) = idle_watts + (max_watts - idle_watts) * power_curve(u),\n"
              "# piecewise linear in CPU utilization u. Copy idle_watts, max_watts and\n"
              "# power_curve into a scenario / continuum.yaml host entry, or use --apply FILE.\n")
    body = yaml.safe_dump({h: f.entry() for h, f in fits.items()}, sort_keys=False,
                          default_flow_style=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body)


def _host_entries(doc: Any) -> list[dict[str, Any]]:
    """The host mappings of a scenario or continuum.yaml document (clusters[*].hosts[*])."""
    clusters = doc.get("clusters") if isinstance(doc, dict) else None
    if not isinstance(clusters, list):
        return []
    return [h for c in clusters if isinstance(c, dict) and isinstance(c.get("hosts"), list)
            for h in c["hosts"] if isinstance(h, dict)]


def read_target(path: Path, hosts: Iterable[str]) -> dict[str, Any]:
    """The scenario / continuum.yaml to --apply to, checked before anything is fitted: it must
    have hosts and at least one of the measured `hosts` among them."""
    if not path.is_file():
        raise BadInput(f"--apply: {path} does not exist (a scenario YAML or continuum.yaml)")
    try:
        doc = parse_yaml(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise BadInput(f"--apply: {path}: not valid YAML ({type(e).__name__})") from e
    entries = _host_entries(doc)
    if not entries:
        raise BadInput(f"--apply: {path} has no clusters[*].hosts entries")
    measured, there = list(hosts), [str(h.get("name")) for h in entries]
    if not set(measured) & set(there):
        raise BadInput(f"--apply: none of the measured hosts ({', '.join(measured)}) is in "
                       f"{path} (hosts there: {', '.join(there)})")
    return doc


def apply_to(doc: dict[str, Any], fits: dict[str, HostFit], path: Path) -> list[str]:
    """Set idle_watts, max_watts and power_curve of the document's hosts that were fitted (in
    `doc`, not on disk). Returns the updated host names; raises BadInput if a result is
    not a valid host."""
    updated = []
    for host in _host_entries(doc):
        fit = fits.get(str(host.get("name")))
        if fit is None:
            continue
        host.update(fit.profile())
        try:
            HostProfile.model_validate(host)
        except ValidationError as e:
            raise BadInput(f"--apply: {path}: host {fit.host!r}: "
                           f"{describe_validation_error(e)}") from e
        updated.append(fit.host)
    return updated


def write_target(doc: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


# --- reporting --------------------------------------------------------------------------------


def tables(data: dict[str, Any]) -> list[Any]:
    """Table 7 (held-out MAE / MAPE per model and host, best marked *) and the chosen models."""
    from orchestrator.output import table
    from orchestrator.performance import curve_fraction

    hosts = data["hosts"]
    cols = ["model"] + [f"{h} {k}" for h in hosts for k in ("MAE W", "MAPE %")]
    rows = []
    for m in MODELS:
        row: list[Any] = [m]
        for h in hosts.values():
            s, mark = h["models"][m], " *" if h["model"] == m else ""
            row += [f"{s['mae_w']:.2f}{mark}", f"{s['mape_pct']:.2f}{mark}"]
        rows.append(row)
    t7 = table(f"held-out MAE and MAPE per host ({data['test_fraction']:g} of each host's rows, "
               f"seed {data['seed']}); * = best MAE", cols, rows)
    chosen = table(f"wrote {data['out']}" + (f"; updated {', '.join(data['applied']['hosts'])} "
                                             f"in {data['applied']['file']}"
                                             if data["applied"] else ""),
                   ["host", "model", "MAE W", "MAPE %", "idle W", "max W", "measured util",
                    "curve at 0.5"],
                   [[h, e["model"], e["mae_w"], e["mape_pct"], e["idle_watts"], e["max_watts"],
                     f"{e['utilization_range'][0]:.2f}-{e['utilization_range'][1]:.2f}",
                     round(curve_fraction(e["power_curve"], 0.5), 3)]
                    for h, e in hosts.items()])
    return [t7, chosen]
