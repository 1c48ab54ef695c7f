"""The one error tree. Every error carries one line that says what is wrong and what to do.

    GreenwiseError
    ├── BadInput            the user can fix it (arguments, files, config, kubeconfig, keys):
    │                       exit 2, nothing changed. Also: AccessRefused (kube.clusters),
    │                       DnsBadInput and DnsAuthError (migration.dns)
    └── OperationalError    something outside failed (a cluster, DNS, Prometheus down; a
                            migration rolled back; a timeout): exit 1, saying what was done.
                            Also: ClusterUnavailable, ApiError (kube.clusters), MonitoringError
                            and PrometheusUnavailable (monitoring), DnsUnavailable, DnsConflict,
                            DnsFailed (migration.dns), MigrationFailed (migration.executor)
        ├── Outage          a service that did not answer (ClusterUnavailable,
        │                   DnsUnavailable): a migration step rides it out until its timeout
        └── Interrupted     SIGINT/SIGTERM: what was under way was finished or rolled back
                            first (exit 130, saying which)

The branch is chosen by what the user must do: fix an input, or wait for / repair something
outside (so a TSIG key or token the server rejects is BadInput; a server that does not answer
is OperationalError). DnsError is the DNS family's common base; each of its classes also sits
on one branch. Third-party exceptions (pykube, kubernetes, requests, httpx, dnspython,
google-cloud) are mapped onto this tree where those libraries are called; the CLI's boundary
(orchestrator.cli.main) turns anything else into one "internal error" line.
"""


class GreenwiseError(Exception):
    """Base of every error greenwise-mc raises on purpose."""

    exit_code = 1


class BadInput(GreenwiseError):
    """Bad input or an unusable environment the user controls: exit 2, nothing changed."""

    exit_code = 2


class OperationalError(GreenwiseError):
    """Something greenwise-mc depends on failed at run time: exit 1, with what was done."""

    exit_code = 1


class Outage(OperationalError):
    """A cluster or DNS server that did not answer (after retries): waiting may be enough."""


class Interrupted(OperationalError):
    """Stopped by a signal once what was under way was finished or rolled back: exit 130."""

    exit_code = 130
