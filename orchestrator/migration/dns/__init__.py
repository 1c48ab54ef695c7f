"""DNS providers that point a service's public hostname at the cluster that now serves it."""

from orchestrator.migration.dns.base import (
    DnsAuthError,
    DnsBadInput,
    DnsConflict,
    DnsError,
    DnsFailed,
    DnsProvider,
    DnsUnavailable,
    Record,
    fqdn,
)
from orchestrator.migration.dns.clouddns import CloudDnsProvider
from orchestrator.migration.dns.factory import provider_from_config
from orchestrator.migration.dns.rfc2136 import Rfc2136Provider, TsigKey

__all__ = [
    "CloudDnsProvider",
    "DnsAuthError",
    "DnsBadInput",
    "DnsConflict",
    "DnsError",
    "DnsFailed",
    "DnsProvider",
    "DnsUnavailable",
    "Record",
    "Rfc2136Provider",
    "TsigKey",
    "fqdn",
    "provider_from_config",
]
