"""The pure node checks (orchestrator.kube.feasibility): what the action masks and a move's plan
decide on. Objects are plain dicts shaped as the API returns them."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.kube.feasibility import pod_requests, quantity, requested, tolerated, unfit

Obj = dict[str, Any]
NONE = requested([])  # no pod bound yet


def node(cpu: str = "4", memory: str = "8Gi", ready: bool = True, unschedulable: bool = False,
         taints: list[Obj] | None = None, labels: dict[str, str] | None = None) -> Obj:
    return {"metadata": {"name": "n1", "labels": labels or {}},
            "spec": {"unschedulable": unschedulable, "taints": taints or []},
            "status": {"allocatable": {"cpu": cpu, "memory": memory},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def spec(cpu: str | None = None, memory: str | None = None, **extra: Any) -> Obj:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"containers": [{"name": "ml", "resources": {"requests": requests}}], **extra}


def test_every_replica_must_fit_not_just_one() -> None:
    assert unfit("c/n1", node(cpu="4"), NONE, spec(cpu="1500m"), replicas=1) is None
    assert unfit("c/n1", node(cpu="4"), NONE, spec(cpu="1500m"), replicas=2) is None
    why = unfit("c/n1", node(cpu="4"), NONE, spec(cpu="1500m"), replicas=3)
    assert why == "node c/n1 has 4 cpu allocatable left, the service requests 4.5 (3 x 1.5)"


def test_pods_already_bound_take_their_requests() -> None:
    bound = [spec(cpu="2"), spec(cpu="500m", memory="1Gi")]
    assert unfit("c/n1", node(cpu="4"), requested(bound), spec(cpu="1500m")) is None
    why = unfit("c/n1", node(cpu="4"), requested([*bound, spec(cpu="100m")]), spec(cpu="1500m"))
    assert why is not None and "1.4 cpu allocatable left" in why
    assert unfit("c/n1", node(memory="2Gi"), requested(bound), spec(memory="1Gi")) is None
    assert "memory" in str(unfit("c/n1", node(memory="2Gi"), requested(bound), spec(memory="1Gi"),
                                 replicas=2))


def test_not_ready_or_cordoned_nodes_take_nothing() -> None:
    assert unfit("c/n1", node(ready=False), NONE, spec()) == "node c/n1 is not Ready"
    assert unfit("c/n1", node(unschedulable=True), NONE, spec()) == \
        "node c/n1 is cordoned (unschedulable)"
    no_conditions = node()
    no_conditions["status"]["conditions"] = []
    assert unfit("c/n1", no_conditions, NONE, spec()) == "node c/n1 is not Ready"


@pytest.mark.parametrize("effect", ["NoSchedule", "NoExecute"])
def test_taints_must_be_tolerated(effect: str) -> None:
    taint = {"key": "gpu", "value": "yes", "effect": effect}
    why = unfit("c/n1", node(taints=[taint]), NONE, spec())
    assert why == f"node c/n1 has taint gpu:{effect} that the service does not tolerate"
    exact = [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": effect}]
    assert unfit("c/n1", node(taints=[taint]), NONE, spec(tolerations=exact)) is None
    exists = [{"key": "gpu", "operator": "Exists"}]
    assert unfit("c/n1", node(taints=[taint]), NONE, spec(tolerations=exists)) is None
    other_value = [{"key": "gpu", "operator": "Equal", "value": "no"}]
    assert unfit("c/n1", node(taints=[taint]), NONE, spec(tolerations=other_value)) is not None


def test_prefer_no_schedule_does_not_block() -> None:
    taint = {"key": "busy", "effect": "PreferNoSchedule"}
    assert unfit("c/n1", node(taints=[taint]), NONE, spec()) is None


def test_selected_labels_must_be_there_but_the_hostname_is_what_moves() -> None:
    selector = {"nodeSelector": {"kubernetes.io/hostname": "elsewhere", "tier": "edge"}}
    assert unfit("c/n1", node(labels={"tier": "edge"}), NONE, spec(**selector)) is None
    assert unfit("c/n1", node(labels={"tier": "fog"}), NONE, spec(**selector)) == \
        "node c/n1 lacks label tier=edge the service selects"


def test_quantities() -> None:
    assert quantity("500m") == 0.5
    assert quantity("2") == 2 and quantity(3) == 3 and quantity(None) == 0
    assert quantity("1Gi") == 2**30 and quantity("1G") == 1e9
    assert pod_requests(spec(cpu="250m", memory="64Mi")) == {"cpu": 0.25, "memory": 64 * 2**20}
    with pytest.raises(ValueError, match="unrecognized quantity"):
        quantity("lots")


def test_tolerations_with_another_effect_do_not_count() -> None:
    taint = {"key": "k", "effect": "NoExecute"}
    assert not tolerated(taint, [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}])
    assert tolerated(taint, [{"operator": "Exists"}])
