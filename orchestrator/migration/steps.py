"""The steps of each kind of move, named once: the executor runs them, plans print them."""

from __future__ import annotations

INTER_STEPS = ("copy", "wait_ready", "route", "dns", "forward", "drain", "delete_old")
INTRA_STEPS = ("check", "patch", "rollout")
DESCRIPTIONS = {
    "copy": "copy Deployment, Service, ConfigMaps and Secrets to the target",
    "wait_ready": "wait until the copy is Ready",
    "route": "create the Traefik IngressRoute in the target",
    "dns": "point DNS at the target's ingress",
    "forward": "turn the source Service into an ExternalName forwarder",
    "drain": "wait for the DNS TTL and in-flight requests",
    "delete_old": "delete the old Deployment",
    "check": "check the target node",
    "patch": "move the Deployment to the node (rolling update, surge 1, unavailable 0)",
    "rollout": "wait for the rollout; the new pod Ready on the node",
}
