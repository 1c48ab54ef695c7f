"""Build the configured DNS provider from the `dns:` block of the configuration."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.migration.dns.base import DnsBadInput, DnsProvider
from orchestrator.migration.dns.clouddns import CloudDnsProvider
from orchestrator.migration.dns.rfc2136 import Rfc2136Provider

_PROVIDERS: dict[str, tuple[Callable[..., DnsProvider], set[str]]] = {
    "rfc2136": (Rfc2136Provider, {"server", "port", "zone", "tsig_key_file", "timeout"}),
    "google-cloud-dns": (CloudDnsProvider, {"project", "managed_zone", "zone", "credentials_file",
                                           "api_endpoint", "timeout", "change_timeout"}),
}
# Used by callers (the TTL of records they write), not by the providers.
_CALLER_KEYS = {"provider", "ttl", "owner_id"}


def _as_dict(cfg: Mapping[str, Any] | object) -> dict[str, Any]:
    if isinstance(cfg, Mapping):
        d = dict(cfg)
    elif hasattr(cfg, "model_dump"):  # a pydantic model
        d = cfg.model_dump()
    else:
        d = dict(vars(cfg))
    if set(d) == {"dns"}:  # the whole `dns:` block was passed
        return _as_dict(d["dns"])
    return d


def provider_from_config(cfg: Mapping[str, Any] | object | None = None,
                         **kwargs: Any) -> DnsProvider:
    """`provider_from_config({"provider": "rfc2136", ...})`, a model, or keyword arguments."""
    d = {**(_as_dict(cfg) if cfg is not None else {}), **kwargs}
    name = d.get("provider")
    if name not in _PROVIDERS:
        raise DnsBadInput(f"unknown DNS provider {name!r}; supported: {', '.join(_PROVIDERS)}")
    make, allowed = _PROVIDERS[name]
    # Keys set to None belong to the other provider in a shared model: ignore them.
    given = {k: v for k, v in d.items() if v is not None and k not in _CALLER_KEYS}
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise DnsBadInput(f"dns: unknown setting(s) {', '.join(unknown)} for provider {name}; "
                          f"allowed: {', '.join(sorted(allowed | _CALLER_KEYS))}")
    try:
        inspect.signature(make).bind(**given)
    except TypeError as e:  # a required setting is missing
        raise DnsBadInput(f"dns: provider {name} is missing a setting ({e})") from None
    return make(**given)
