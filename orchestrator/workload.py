"""Users per step: the paper's training ramp, a smooth day-like test pattern, or a CSV trace."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from orchestrator.errors import BadInput

# The simulator tabulates every user count up to the peak (about 0.6 ms per count and host):
# beyond this a scenario would take minutes to start, so it is refused.
MAX_USERS = 5000
DAY_STEPS = 96  # one step per 15 minutes
TICK_S = 24 * 3600 / DAY_STEPS  # simulated seconds per step: the gates' clock in simulation


def ramp(peak: int) -> list[float]:
    """Training pattern (paper): users 1, 2, ..., peak, looped."""
    return [float(u) for u in range(1, peak + 1)]


def day(peak: int) -> list[float]:
    """Testing pattern: a Gaussian-like daily curve (quiet night, afternoon peak, a morning
    shoulder), standing in for the paper's Azure-derived Gaussian pattern."""
    out = []
    for t in range(DAY_STEPS):
        x = t / DAY_STEPS
        level = 0.05 + 0.95 * math.exp(-0.5 * ((x - 0.58) / 0.14) ** 2)
        level += 0.2 * math.exp(-0.5 * ((x - 0.33) / 0.05) ** 2)
        out.append(max(1.0, peak * min(level, 1.0)))
    return out


def bursty(peak: int) -> list[float]:
    """A quiet day (half the day pattern) with bursts to the peak: 8 bursts of 3 steps (45
    minutes) a day at fixed pseudo-random times (seed 7), standing in for flash crowds (an
    assumption: the paper has no bursty pattern)."""
    out = [max(1.0, u / 2) for u in day(peak)]
    for start in np.random.default_rng(7).choice(DAY_STEPS - 3, 8, replace=False):
        out[start:start + 3] = [float(peak)] * 3
    return out


PATTERNS: dict[str, Callable[[int], list[float]]] = {"ramp": ramp, "day": day, "bursty": bursty}


def read_trace(path: Path) -> list[float]:
    """A CSV trace with a header `time,users`, one row per step, replayed in time order."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise BadInput(f"cannot read trace {path}: {e.strerror}") from e
    if not rows:
        raise BadInput(f"trace {path}: no rows; expected a header time,users and a row per "
                       "step")
    if not {"time", "users"} <= set(rows[0]):
        raise BadInput(f"trace {path}: needs a header with columns time,users")
    try:
        pairs = sorted((float(r["time"]), float(r["users"])) for r in rows)
    except ValueError as e:
        raise BadInput(f"trace {path}: time and users must be numbers ({e})") from e
    if not all(0 <= u <= MAX_USERS and math.isfinite(t) for t, u in pairs):
        raise BadInput(f"trace {path}: users must be between 0 and {MAX_USERS}, and times "
                       "finite numbers")
    return [u for _, u in pairs]


def pattern(spec: str, peak: int, base: Path | None = None) -> list[float]:
    """A built-in pattern by name, or a trace file (relative paths resolve against `base`)."""
    if spec in PATTERNS:
        return PATTERNS[spec](peak)
    path = Path(spec)
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        raise BadInput(
            f"workload pattern {spec!r} is neither built-in ({', '.join(PATTERNS)}) nor a "
            "CSV trace file with columns time,users"
        )
    return read_trace(path)


def shape(spec: str, base: Path | None = None) -> list[float]:
    """A pattern or trace normalized to its peak (1.0): the shape of a background load."""
    curve = pattern(spec, 100, base)
    peak = max(curve, default=0.0)
    return [u / peak if peak > 0 else 0.0 for u in curve]


def looped(curve: Sequence[float], steps: int, rng: np.random.Generator) -> np.ndarray:
    """`steps` consecutive values from a random offset of the looped curve."""
    start = int(rng.integers(len(curve)))
    return np.take(np.asarray(curve, dtype=float), np.arange(start, start + steps) % len(curve))


def episode_users(curve: Sequence[float], steps: int, noise: float,
                  rng: np.random.Generator) -> np.ndarray:
    """`steps` consecutive integer user counts from a random offset of the looped curve."""
    base = looped(curve, steps, rng)
    noisy = base * (1.0 + noise * rng.standard_normal(steps))
    return np.maximum(np.rint(noisy), 0).astype(np.int64)
