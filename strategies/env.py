"""The Gymnasium environment `GreenWise-v0`: the migration MDP of section 4.2, for every service
of a continuum, one decision per step.

Observation (Eq. 4-6, all in [0, 1]): the service's host as one-hot, the service's power, CPU,
latency and users, each host's power and CPU, the CPU the other managed services take on each
host (where they will be once the moves decided earlier in the tick are made), and its users'
network latency to each host (its region's row). Its size depends on the hosts only, so one
trained model decides for any number of services on them, wherever their users are.
Action (Eq. 8): Discrete(N + 1), 0 = stay, h = move to host h. `action_masks()` (Eq. 7) hides the
current host and hosts that cannot take the service beside the others (counting the moves
decided before it in the tick); choosing a masked action anyway keeps the service where it is
and earns -1. With gates (the controller's settings), the masks also hide what the gates would
hold (strategies/gated.py: moves past the tick's limit, below the minimum predicted gain, of
a service cooling down), so the agent learns the decisions that are carried out.

Services decide in order within a tick, one per step; after the last one the tick goes through
the control loop (orchestrator/control/loop.py, without gates) and time moves on. A decision's
reward is what it changes in the whole fleet's reward of the next step (on the two hosts it
touches: its own and its neighbours' loss alike) plus an equal share of the fleet's reward had
no one moved, so a tick's rewards add up to the fleet's reward and, for one service, the reward
is the paper's r_t.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from orchestrator.config import ControllerConfig, load_scenario
from orchestrator.control.loop import Loop
from orchestrator.model import (
    STAY,
    HostState,
    Load,
    Move,
    Observation,
    ServiceState,
    target_host,
)
from orchestrator.scenario import Scenario
from orchestrator.sim.continuum import SimulatedContinuum
from strategies.gated import Proposals
from strategies.prediction import Predictor
from strategies.reward import INVALID_ACTION_PENALTY, REWARDS

ENV_ID = "GreenWise-v0"


def farthest_ms(scenario: Scenario) -> float:
    """The largest network latency from any service's users to any host (1 if none; services
    of one region share a row)."""
    rows = {s.region: s for s in scenario.fleet}.values()
    return max(max(scenario.network_ms(s)) for s in rows) or 1.0


class Encoder:
    """Turns one service's Observation into the normalized vector the RL policies see."""

    def __init__(self, scenario: Scenario, service: int = 0, farthest: float | None = None
                 ) -> None:
        self.n = len(scenario.hosts)
        self.p_max = max(h.max_watts for h in scenario.hosts)
        self.l_max = scenario.fleet[service].sla_latency_ms
        self.u_max = 2.0 * scenario.workload_of(service).peak_users
        # its users' network latency to each host (its region's row), over the scenario's
        # largest (`farthest_ms`, given by `encoders` for a whole fleet): which hosts are near
        self.region = scenario.fleet[service].region
        self.network = np.array(scenario.network_ms(scenario.fleet[service])) / (
            farthest_ms(scenario) if farthest is None else farthest)
        self.size = 2 * self.n + 4 + 3 * self.n

    def __call__(self, obs: Observation) -> np.ndarray:
        others = np.asarray(obs.others_cpu)[None] if len(obs.others_cpu) else None
        return encode([self], [obs.service], *host_state(obs.hosts), others)[0]


def encoders(scenario: Scenario) -> list[Encoder]:
    """An Encoder for each service of the scenario (the farthest latency found once)."""
    farthest = farthest_ms(scenario)
    return [Encoder(scenario, i, farthest) for i in range(len(scenario.fleet))]


def host_state(hosts: Sequence[HostState]) -> tuple[np.ndarray, np.ndarray]:
    """(power W, CPU) of each host, as arrays."""
    return np.array([h.power_w for h in hosts]), np.array([h.cpu for h in hosts])


def seen(x: np.ndarray | Sequence[float]) -> np.ndarray:
    """Entries of an observation, as `encode` makes them: float32 within [0, 1]."""
    return np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)


def _services(encoders: Sequence[Encoder], services: Sequence[ServiceState]) -> np.ndarray:
    """[k, 4]: each service's power, CPU, latency and users, encoded."""
    first = encoders[0]
    return seen(np.array([[s.power_w / first.p_max, s.cpu, 0.5 * s.latency_ms / e.l_max,
                            s.users / e.u_max] for e, s in zip(encoders, services, strict=True)]))


def _hosts(first: Encoder, host_power: np.ndarray, host_cpu: np.ndarray) -> np.ndarray:
    """Each host's power and CPU, interleaved and encoded ([hosts, 2] or [k, hosts, 2])."""
    return seen(np.stack([np.asarray(host_power) / first.p_max, host_cpu], axis=-1))


def encode(encoders: Sequence[Encoder], services: Sequence[ServiceState],
           host_power: np.ndarray, host_cpu: np.ndarray, others: np.ndarray | None
           ) -> np.ndarray:
    """[k, size]: the vectors of k services (each with its service's encoder), the hosts'
    power and CPU ([hosts], or [k, hosts]: each its own) and the others' CPU per host
    [k, hosts] (None: no other managed service)."""
    first = encoders[0]
    n, k = first.n, len(services)
    v = np.zeros((k, first.size), dtype=np.float32)
    v[np.arange(k), [s.host for s in services]] = 1.0
    v[:, n:n + 4] = _services(encoders, services)
    v[:, n + 4:3 * n + 4] = _hosts(first, host_power, host_cpu).reshape(-1, 2 * n)
    if others is not None:
        v[:, 3 * n + 4:4 * n + 4] = seen(others)
    v[:, 4 * n + 4:] = seen([e.network for e in encoders])
    return v


def first_layer(encoders: Sequence[Encoder], load: Load, rows: Sequence[int],
                columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """encode(...) @ columns [size, width] (float64) of the observations of the services `rows`
    (on a host: valid) as `Load.view` makes them (their host as observed, the others' CPU as
    `load` counts it now), without the [k, size] observations (a thousand services' are 15
    MB): what every service sees alike is summed once, the network rows once per region.
    Also [k]: what each sees of the others' CPU on the host `load` counts it on."""
    snap, first = load.snapshot, encoders[rows[0]]
    n = first.n
    services = [snap.services[i] for i in rows]
    pre = columns[[s.host for s in services]]  # the one-hot host
    pre += _services([encoders[i] for i in rows], services) @ columns[n:n + 4]
    pre += _hosts(first, *host_state(snap.hosts)).reshape(-1) @ columns[n + 4:3 * n + 4]
    here = np.zeros(len(rows), dtype=np.float32)
    if not load.alone(rows[0]):  # a valid service is alone only if it is the only one
        everywhere = seen(load.cpu).astype(np.float64)
        here = seen([load.own(i) for i in rows])
        others = columns[3 * n + 4:4 * n + 4]
        at = [load.where[i] for i in rows]  # where `load` counts them (moved or not)
        pre += everywhere @ others + (here - everywhere[at])[:, None] * others[at]
    regions = {encoders[i].region: encoders[i].network for i in rows}
    index = {region: j for j, region in enumerate(regions)}
    network = seen(list(regions.values())) @ columns[4 * n + 4:]
    pre += network[[index[encoders[i].region] for i in rows]]
    return pre, here


class GreenWiseEnv(gym.Env[np.ndarray, np.int64]):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, scenario: Scenario | str = "paper", phase: str = "train",
                 reward_kind: str = "power-latency", seed: int | None = None,
                 gates: ControllerConfig | None = None) -> None:
        if reward_kind not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}, not {reward_kind!r}")
        self.scenario = load_scenario(scenario) if isinstance(scenario, str) else scenario
        self.sim = SimulatedContinuum(self.scenario, phase, seed=seed)
        self.predictor = Predictor(self.scenario, reward_kind, self.sim.model)
        self.loop = Loop(self.sim, None, self.predictor, explain=False)
        self.proposals = Proposals(gates)  # the masks hide what the gates would hold
        self.encoders = encoders(self.scenario)
        self.encode = self.encoders[0]
        self.reward_kind = reward_kind
        self.p_max = self.encode.p_max
        self.l_max = self.encode.l_max
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.encode.size,), np.float32)
        self.action_space = gym.spaces.Discrete(len(self.scenario.hosts) + 1)
        self._new_tick()

    # --- the tick in progress ---------------------------------------------------------------
    def _new_tick(self) -> None:
        """Observe once (the policy asks several times); no one has decided yet."""
        self.snapshot = self.sim.snapshot()
        self.masks = self.sim.masks(self.snapshot)
        self.actions: list[int] = []
        self.claims = self.sim.claims(self.snapshot)  # what the moves decided so far take
        self.moves = 0  # decided so far in the tick
        self.proposals.begin(self.snapshot)
        self.mask = self._gated(self.masks[0])
        self.load = Load(self.snapshot, self.scenario.capacity)  # as the decided moves leave it
        self._stay_share: float | None = None

    @property
    def stay_share(self) -> float:
        """Each service's share of the fleet's next reward had no one moved (computed when
        first asked, before any move of the tick)."""
        if self._stay_share is None:
            self._stay_share = 0.0 if self.sim.done else sum(
                self._host_reward(h) for h in range(len(self.sim.hosts))) / len(self.sim.specs)
        return self._stay_share

    def _gated(self, mask: np.ndarray) -> np.ndarray:
        """The next service's `mask`, without what the gates would hold."""
        return self.proposals.mask(self.snapshot, self.service, mask, self.moves, self.predictor)

    @property
    def service(self) -> int:
        """The service whose decision is next."""
        return len(self.actions)

    def _host_reward(self, host: int) -> float:
        """The next step's reward of the services on `host` where the decided moves put them
        (a service that moves in this tick as orchestrator/move_cost.py says: served at its
        source, beside those there now, until its new copy serves)."""
        members = [s for s, at in enumerate(self.load.where) if at == host]
        sim, t, out = self.sim, self.sim.t + 1, 0.0
        for s, at_dst in sim.on_host(host, members, t).items():
            src = sim.placement[s]
            at_src = at_dst if src == host else sim.on_host(
                src, [o for o, at in enumerate(sim.placement) if at == src], t)[s]
            out += self.predictor.reward(*sim.move_cost.step(
                s, src, host, at_src, at_dst, sim.wake_wait(host)), s)
        return out

    def _decision_reward(self, action: int) -> float:
        """What moving the current service by `action` changes in the fleet's next reward."""
        i, to = self.service, target_host(action)
        if to is None:
            return 0.0
        touched = (self.load.where[i], to)
        before = sum(self._host_reward(h) for h in touched)
        self.load.move(i, to)
        return sum(self._host_reward(h) for h in touched) - before

    def observation(self) -> Observation:
        return self.load.view(self.service)

    def action_masks(self) -> np.ndarray:
        return self.mask

    # --- Gymnasium ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None and not hasattr(self, "_seeded"):
            seed = int(self.np_random.integers(2**31))
        self._seeded = True
        self.sim.reset(seed=seed, start_host=(options or {}).get("start_host"))
        self.proposals.reset()
        self._new_tick()
        return self.encoders[0](self.observation()), {"host": self.sim.host}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """The current service's action; after the last service's, the tick is carried out."""
        i, a = self.service, int(action)
        masked = not (0 <= a < len(self.mask) and self.mask[a])
        r = INVALID_ACTION_PENALTY if masked else self.stay_share + self._decision_reward(a)
        ended = self.decided(a, masked)
        if ended:
            self._new_tick()
        return (self.encoders[self.service](self.observation()), r, False,
                ended and self.sim.done, self.info(i, masked, ended))

    def decided(self, a: int, masked: bool) -> bool:
        """Record the current service's action `a` (judged already: its reward, its move in
        the load; a masked one keeps it in place); after the last service's, carry the tick
        out through the loop (True)."""
        i = self.service
        self.actions.append(STAY if masked else a)
        to = target_host(a)
        if not masked and to is not None:
            self.claims.add(Move(i, to))
            self.moves += 1
        if self.service < len(self.sim.specs):
            self.mask = self._gated(self.claims.mask(self.service))
            return False
        self.loop.act(self.snapshot, self.masks, self.actions)
        return True

    def info(self, i: int, masked: bool, ended: bool) -> dict[str, Any]:
        """What `step` tells of service i's decision; after a tick, how it is now."""
        info: dict[str, Any] = {"service": i, "invalid": masked}
        if ended:
            s = self.sim.current().services[i]  # as it is, whatever the observation's lag
            info.update(host=s.host, power_w=s.power_w, latency_ms=s.latency_ms,
                        moved=self.sim.moved[i], sla_violation=s.latency_ms > self.predictor.sla(i))
        return info


def register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="strategies.env:GreenWiseEnv",
                     max_episode_steps=None)


register()
