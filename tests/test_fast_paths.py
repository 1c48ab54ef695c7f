"""The fast paths of the simulated continuum give the figures of the straightforward ones:
outcome tables solved in vectorized blocks against the point-by-point model (tests/reference.py;
its bisection and the tables' root finder agree to rounding), and to the bit: hosts settled
vectorized over many episodes against host by host, on random placements of every built-in
scenario."""

from dataclasses import astuple

import numpy as np
import pytest

from orchestrator.config import ControllerConfig, load_scenario
from orchestrator.control.loop import Loop
from orchestrator.model import STAY, Load, Move
from orchestrator.performance import PerformanceModel, curve_fraction, curve_fractions, curve_points
from orchestrator.sim.continuum import VECTORIZED_FROM, SimulatedContinuum, measure
from strategies import gated, prediction
from strategies.allocation import Allocation
from strategies.base import StrategyContext, create
from strategies.gated import Proposals
from strategies.lookahead import Plan
from strategies.prediction import ROUNDING, Predictor, compare
from tests import reference

SCENARIOS = ["paper", "continuum", "bursty"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_outcome_tables_match_the_point_by_point_model(name):
    sc = load_scenario(name)
    rng = np.random.default_rng(0)
    for spec in sc.fleet[:4]:
        model = PerformanceModel(sc, spec)
        for _ in range(150):
            host = int(rng.integers(len(sc.hosts)))
            users = int(rng.choice([0, 1, int(rng.integers(200))]))
            taken, background = rng.choice([0.0, rng.random()]), rng.random() * 0.6
            got = model.outcome(host, users, taken, background)
            bg, step = round(background / 0.01), round(taken / 0.01)
            want = reference.outcome(spec, sc.hosts[host], model.network_ms[host], bg, step,
                                     users)
            assert astuple(got) == pytest.approx(astuple(want), rel=1e-12), (
                host, users, taken, background)


def test_power_curves_vectorized_match_the_scalar_curve():
    curves = [((0.0, 0.0), (1.0, 1.0)), ((0.0, 0.0), (0.5, 0.7), (1.0, 1.0)),
              ((0.0, 0.1), (0.2, 0.3), (0.6, 0.6), (1.0, 1.0))]
    xs, ys = curve_points(curves)
    u = np.random.default_rng(1).uniform(-0.1, 1.1, (100, len(curves)))
    u[0] = [0.5, 0.5, 0.2]  # on a breakpoint: the segment ending there
    got = curve_fractions(xs, ys, u)
    assert got.tolist() == [[curve_fraction(c, x) for c, x in zip(curves, row, strict=True)]
                            for row in u.tolist()]


def _crowded(sim: SimulatedContinuum, rng: np.random.Generator) -> list[int]:
    """A random placement onto a random few of the hosts, so that hosts are shared."""
    few = rng.choice(len(sim.hosts), size=int(rng.integers(1, len(sim.hosts) + 1)))
    return [int(h) for h in rng.choice(few, size=len(sim.specs))]


@pytest.mark.parametrize("name", SCENARIOS)
def test_hosts_settled_vectorized_match_host_by_host(name):
    sim = SimulatedContinuum(load_scenario(name), "test", seed=0)
    rng = np.random.default_rng(2)
    for _ in range(10):
        sim.reset(seed=int(rng.integers(1000)))
        t = int(rng.integers(sim.steps + 1))
        where = [_crowded(sim, rng) for _ in range(6)]
        users = sim.episode.users[:, t]
        background = sim.background[t]
        one_by_one = [sim.sharing.fleet(w, users, background) for w in where]
        together = sim.sharing.fleets(np.array(where), np.tile(users, (6, 1)),
                                      np.tile(background, (6, 1)))
        assert together == one_by_one


@pytest.mark.parametrize("name", SCENARIOS)
def test_many_episodes_measured_at_once_as_each_alone(name):
    """Episodes stepping with random moves (some under way, hosts asleep) measured together
    (vectorized) and each alone (host by host)."""
    sc = load_scenario(name)
    sims = [SimulatedContinuum(sc, "train", seed=b)
            for b in range(-(-VECTORIZED_FROM // len(sc.fleet)))]
    rng = np.random.default_rng(3)
    for sim in sims:
        sim.placement = _crowded(sim, rng)
    moving = asleep = 0
    for _ in range(sc.episode_steps):
        together = measure(sims)
        assert together == [sim.current() for sim in sims]
        for sim, snap in zip(sims, together, strict=True):
            moving += len(sim.moving)
            asleep += sum(h.asleep for h in snap.hosts)
            s = int(rng.integers(len(sim.specs)))  # one service to a random host it fits
            to = np.flatnonzero(sim.masks(snap)[s][1:])
            sim.apply([sim.plan(Move(s, int(rng.choice(to))))] if to.size else [])
    assert moving and (asleep or name != "continuum")


@pytest.mark.parametrize("name", SCENARIOS)
def test_masks_as_moves_are_claimed_match_masks_computed_whole(name):
    """Masks kept as a tick's moves are added (a move changes two hosts), one service or all
    at a time, against masks computed whole; with moves under way (a target that wakes longer
    than a tick is reserved)."""
    sc = load_scenario(name)
    slow_wake = tuple(c.model_copy(update={"hosts": tuple(
        h.model_copy(update={"sleep_watts": 0.0, "wake_s": 2000.0}) if i % 2 else h
        for i, h in enumerate(c.hosts))}) for c in sc.clusters)
    sim = SimulatedContinuum(sc.model_copy(update={"clusters": slow_wake}), "train", seed=0)
    rng = np.random.default_rng(4)
    pending = 0
    for _ in range(3 * sc.episode_steps):
        snap = sim.snapshot()
        claims, moves = sim.claims(snap), []
        for s in range(len(sim.specs)):
            row = claims.mask(s)
            assert row.tolist() == reference.masks(sim, moves)[s].tolist()
            assert [claims.allows(s, a) for a in range(len(row))] == row.tolist()
            if rng.random() < 0.4 and row[1:].any():
                moves.append(Move(s, int(rng.choice(np.flatnonzero(row[1:])))))
                claims.add(moves[-1])
        assert np.array_equal(sim.masks(snap, moves), reference.masks(sim, moves))
        sim.apply([sim.plan(m) for m in moves])
        pending += sum(not f.switched for f in sim.moving.values())
        if sim.done:
            sim.reset()
    assert pending


@pytest.mark.parametrize("name", SCENARIOS)
def test_rooms_kept_as_services_move_match_rooms_computed_whole(name):
    """Allocation.rooms_on (the hosts each kind of request fits, kept as services are moved)
    against `rooms` compared on every host."""
    sc = load_scenario(name)
    sim = SimulatedContinuum(sc, "train", seed=0)
    alloc = Allocation(sc, sim.placement)
    rng = np.random.default_rng(5)
    every = np.arange(len(sc.hosts))
    for _ in range(200):
        i = int(rng.integers(len(sc.fleet)))
        at = rng.permutation(every)[:int(rng.integers(1, len(every) + 1))]
        assert alloc.rooms_on(i, at).tolist() == alloc.rooms(i)[at].tolist()
        alloc.move(i, int(rng.integers(len(sc.hosts))))


@pytest.mark.parametrize("name", SCENARIOS)
def test_gated_choice_is_the_best_scoring_action_of_the_gated_mask(name):
    """Proposals.choose (gains predicted only of the moves scored above staying) against the
    argmax of the whole gated mask, on random scores (ties included) and masks."""
    sc = load_scenario(name)
    sim = SimulatedContinuum(sc, "train", seed=0)
    predictor = Predictor(sc)
    proposals = Proposals(ControllerConfig(min_predicted_gain=0.0, max_concurrent_migrations=2))
    rng = np.random.default_rng(6)
    passed = 0
    for _ in range(sc.episode_steps):
        snap = sim.snapshot()
        proposals.begin(snap)
        masks = sim.masks(snap)
        for i in range(len(sim.specs)):
            for _ in range(5):
                scores = rng.integers(0, 4, masks.shape[1]).astype(np.float32)
                mask = masks[i] & (rng.random(masks.shape[1]) < 0.7)
                mask[0] = True
                chosen = int(rng.integers(3))
                full = proposals.mask(snap, i, mask, chosen, predictor)
                expected = int(np.argmax(np.where(full, scores, -np.inf)))
                assert proposals.choose(snap, i, mask, chosen, predictor, scores) == expected
                passed += expected != 0
        sim.apply([])
    assert passed


class _Pending:
    """Services with known best (gain, action), weighed bound and ceiling; who was asked."""

    def __init__(self, rng: np.random.Generator) -> None:
        n = int(rng.integers(1, 12))
        gains = rng.choice([0.0, 0.5, 1.0, 2.0], n)
        actions = np.where(gains > 0, rng.integers(1, 4, n), STAY)
        gains[actions == STAY] = 0.0
        weighed = gains + rng.choice([0.0, 0.25, 1.0], n)  # a bound, sometimes exact
        ceiling = weighed + rng.choice([0.0, 0.5], n)
        self.services = sorted(rng.choice(20, n, replace=False).tolist())
        columns = zip(gains.tolist(), actions.tolist(), weighed.tolist(), ceiling.tolist(),
                      strict=True)
        self.known = dict(zip(self.services, columns, strict=True))
        self.asked: list[int] = []

    def best(self, i: int) -> tuple[float, int]:
        self.asked.append(i)
        return self.known[i][:2]

    def weighed(self, some: list[int]) -> list[float]:
        return [self.known[i][2] for i in some]

    def ceiling(self, some: list[int]) -> list[float]:
        return [self.known[i][3] for i in some]


def test_top_proposal_asks_only_services_that_could_be_it(monkeypatch):
    """Proposals.top against the max of every service's best, on random gains (ties
    included) and bounds at or above them (some exact): the same service and action, and
    `best` not asked of a service whose ceiling or weighed bound is below a gain found
    before it."""
    monkeypatch.setattr(gated, "AT_ONCE", 3)
    rng = np.random.default_rng(8)
    skipped = 0
    for _ in range(300):
        pending = _Pending(rng)
        top = Proposals.top(pending.services, pending.best, pending.weighed, pending.ceiling)
        want = max((pending.known[i][:2], i) for i in pending.services)
        assert top == want or (want[0][1] == STAY and top[0][1] == STAY)
        found = 0.0
        for i in pending.asked:  # each asked could still reach the best found before it
            assert min(pending.known[i][2:]) >= found
            found = max(found, pending.known[i][0])
        skipped += len(pending.services) - len(pending.asked)
    assert skipped


def test_gains_passed_at_once_as_one_by_one():
    """Proposals.passing against `passes` of each gain: far from the minimum, near it and at
    the half-steps of its rounding."""
    proposals = Proposals(ControllerConfig(min_predicted_gain=0.02))
    rng = np.random.default_rng(7)
    gains = np.concatenate([rng.uniform(-1, 1, 1000), 0.02 + rng.uniform(-2e-4, 2e-4, 1000),
                            0.02 + np.arange(-30, 31) * 0.5e-5])
    passed = proposals.passing(gains).tolist()
    assert passed == [proposals.passes(gain) for gain in gains.tolist()]
    assert passed != (gains >= 0.02).tolist()  # rounding decides some


@pytest.mark.parametrize("name", SCENARIOS)
def test_gains_at_once_match_each_move_predicted_alone(name, monkeypatch):
    """Predictor.gains (what the gates weigh, many moves at once) against `compare` of
    `predict` move by move, for every service and host over an episode of random moves
    (hosts shared, moves under way, hosts asleep where the scenario lets them sleep); and
    `changes` (greedy's) from a load with moves decided, unrounded, to within float rounding;
    and `changes_each` (several services' moves in one array, a few services an array here)
    exactly as `changes` of each service's alone; and no move's change above its service's
    `ceilings`."""
    monkeypatch.setattr(prediction, "AT_ONCE", 3)
    sc = load_scenario(name)
    sim = SimulatedContinuum(sc, "test", seed=1)
    predictor = Predictor(sc, model=sim.model)
    strategy = create("random", StrategyContext(sc), None)
    strategy.reset(sim)
    loop = Loop(sim, strategy, predictor)
    rng = np.random.default_rng(7)
    shared = asleep = 0
    for _ in range(sc.episode_steps):
        snap = sim.snapshot()
        pairs = [(i, a) for i, s in enumerate(snap.services) if s.valid
                 for a in range(1, len(snap.hosts) + 1)]
        got = predictor.gains(snap, [i for i, _ in pairs], [a for _, a in pairs])
        want = [compare(predictor.predict(snap.view(i), STAY, i),
                        predictor.predict(snap.view(i), a, i))["reward"]["change"]
                for i, a in pairs]
        assert got == want
        # unrounded, from a tick's load once some of its moves are decided, for the services not
        # decided yet (as greedy asks)
        load, decided = Load(snap, sc.capacity), rng.random(len(snap.services)) < 0.5
        for i in np.flatnonzero(decided).tolist():
            if load.where[i] >= 0:
                load.move(i, int(rng.integers(len(snap.hosts))))
        undecided = [(i, a) for i, a in pairs if not decided[i]]
        change = predictor.changes(snap, [i for i, _ in undecided], [a for _, a in undecided],
                                   load)
        moves = [predictor.predict(load.view(i), a, i) for i, a in undecided]
        exact = [m.reward - predictor.predict(load.view(i), STAY, i).reward
                 for (i, _), m in zip(undecided, moves, strict=True)]
        assert np.abs(change - exact).max(initial=0.0) <= ROUNDING / 1000
        # no move gains more than its service's ceiling (and the ceiling is a number)
        services = sorted({i for i, _ in undecided})
        ceiling = dict(zip(services, predictor.ceilings(snap, services, load).tolist(),
                           strict=True))
        assert all(c <= ceiling[i] for (i, _), c in zip(undecided, exact, strict=True))
        assert all(m.settled["power_w"] >= predictor.least_watts[i]
                   and m.settled["latency_ms"] >= predictor.least_latency[i]
                   for (i, _), m in zip(undecided, moves, strict=True))
        assert np.isfinite(list(ceiling.values())).all()
        each = [np.array([a for j, a in undecided if j == i]) for i in services]
        for i, a, c in zip(services, each, predictor.changes_each(snap, services, each, load),
                           strict=True):
            assert c.tolist() == predictor.changes(snap, [i] * len(a), a, load).tolist()
        shared += int((snap.load.count > 1).sum())
        asleep += sum(h.asleep for h in snap.hosts)
        loop.tick()
    assert shared or len(sc.fleet) == 1
    assert asleep or not any(h.sleep_watts is not None for h in sc.hosts)


@pytest.mark.parametrize("kind", ["power", "latency"])
def test_no_move_gains_more_than_its_ceiling_under_either_reward(kind):
    """`ceilings` (greedy skips services by them) above every move's change under the
    Power-Aware and Latency-Aware rewards too, over an episode of random moves on `bursty`
    (the default reward: test_gains_at_once_match_each_move_predicted_alone)."""
    sc = load_scenario("bursty")
    sim = SimulatedContinuum(sc, "test", seed=3)
    predictor = Predictor(sc, kind, model=sim.model)
    strategy = create("random", StrategyContext(sc), None)
    strategy.reset(sim)
    loop = Loop(sim, strategy, predictor)
    margin = np.inf
    for _ in range(sc.episode_steps):
        snap = sim.snapshot()
        services = [i for i, s in enumerate(snap.services) if s.valid]
        moves = [np.arange(1, len(snap.hosts) + 1) for _ in services]
        for c, change in zip(predictor.ceilings(snap, services),
                             predictor.changes_each(snap, services, moves), strict=True):
            margin = min(margin, c - change.max())
        loop.tick()
    assert 0 <= margin < np.inf


@pytest.mark.parametrize("name", ["continuum", "bursty"])
def test_lookahead_values_every_host_at_once_as_one_by_one(name):
    """Plan.values (of every valid service at once) and Plan.staying against
    LookaheadStrategy.value for every valid service and every other host, and its own, tick
    by tick over an episode the planner plays (services sharing hosts, hosts asleep where they
    sleep), as the tick's first moves are chosen: equal within far less than ROUNDING, the
    hosts' loads exactly; and Plan.ceilings above what each service's best move gains."""
    sc = load_scenario(name)
    sim = SimulatedContinuum(sc, "test", seed=2)
    look = create("lookahead", StrategyContext(sc))
    look.reset(sim)
    rng = np.random.default_rng(0)
    worst, shared, asleep, margin, exact = 0.0, 0, 0, np.inf, True
    for _ in range(sc.episode_steps):
        snap = sim.snapshot()
        look.seen.append([s.users for s in snap.services])
        plan = Plan(look.predictor, [s.host if s.valid else -1 for s in snap.services],
                    *look.outlook(look.forecast(), look.forecast_background(snap)),
                    look.columns)
        # its hosts' loads summed all at once, bit for bit as one by one
        exact = exact and plan.load.tolist() == [
            [sum(step) for step in plan.alone[t].T.tolist()] if t else [0.0] * look.columns
            for t in plan.tenants]
        mine = [(i, int(plan.where[i])) for i in np.flatnonzero(plan.where >= 0).tolist()]
        stays = [look.value(i, h, h, plan.tenants, plan.users, plan.background, snap)
                 for i, h in mine]
        valid = np.array([i for i, _ in mine])
        worst = max(worst, float(np.abs(plan.staying(valid) - stays).max()))
        for i in rng.permutation(len(snap.services)).tolist():
            src = int(plan.where[i])
            if src < 0:
                continue
            dst = np.array([h for h in range(len(snap.hosts)) if h != src])
            *one_by_one, stay = [look.value(i, src, d, plan.tenants, plan.users,
                                            plan.background, snap) for d in [*dst.tolist(), src]]
            # valued with every other service's moves at once, as the planner values them
            others = np.flatnonzero(plan.where >= 0)
            hosts = [np.flatnonzero(np.arange(len(snap.hosts)) != plan.where[o]) for o in others]
            at_once = plan.values(others, hosts, snap)[others.tolist().index(i)]
            worst = max(worst, float(np.abs(at_once - one_by_one).max()),
                        abs(plan.staying(np.array([i]))[0] - stay))
            # no move gains more than the service's ceiling (the planner skips services by it)
            margin = min(margin, plan.ceilings([i])[0] - (max(one_by_one) - stay))
            if rng.random() < 0.3:  # as a move is chosen in the tick
                plan.move(i, int(rng.choice(dst)))
        shared += int((plan.count > 1).sum())
        asleep += sum(h.asleep for h in snap.hosts)
        look.seen.pop()  # decide sees this tick
        sim.apply([sim.plan(Move(i, a - 1)) for i, a in enumerate(look.decide(snap,
                   sim.masks(snap))) if a != STAY][:1])
    assert worst <= ROUNDING / 1000 and exact
    assert 0 <= margin < np.inf
    assert shared
    assert asleep or not any(h.sleep_watts is not None for h in sc.hosts)


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("gates", [None, ControllerConfig(), ControllerConfig(
    max_concurrent_migrations=3, min_predicted_gain=0.0, cooldown_s=0)])
@pytest.mark.parametrize("planner", ["greedy", "lookahead"])
def test_planners_decide_as_when_they_predicted_every_host_one_by_one(planner, name, gates):
    """Greedy and lookahead (every move predicted at once, the best few again one by one)
    against predicting every allowed host one by one (tests/reference.py), tick by tick over
    an episode they play, without gates, with the default gates and with a limit of three
    moves a tick."""
    sc = load_scenario(name)
    sim = SimulatedContinuum(sc, "test", seed=1)
    fast, twin = (create(planner, StrategyContext(sc, gates=gates)) for _ in range(2))
    fast.reset(sim)
    twin.reset(sim)
    one_by_one = {"greedy": reference.greedy_actions,
                  "lookahead": reference.lookahead_actions}[planner]
    moved = 0
    for _ in range(sc.episode_steps):
        snap = sim.snapshot()
        masks = sim.masks(snap)
        want = one_by_one(twin, snap, masks)
        got = list(fast.decide(snap, masks))
        assert got == want
        moved += sum(a != STAY for a in got)
        sim.apply([sim.plan(Move(i, a - 1)) for i, a in enumerate(got) if a != STAY][:1])
    assert moved
