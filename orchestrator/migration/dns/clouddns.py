"""Google Cloud DNS through the `google-cloud-dns` client library.

A replace is one change: deletions = the exact record set `get` saw, additions = the new set.
Cloud DNS applies a change atomically and refuses it (412) if a deletion no longer matches, so
a concurrent edit can never be overwritten silently.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import google.auth
import requests
from google.api_core import exceptions as gexc
from google.api_core import page_iterator
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import dns as gdns
from google.oauth2 import service_account

from orchestrator.migration.dns.base import (
    RTYPES,
    DnsAuthError,
    DnsBadInput,
    DnsConflict,
    DnsFailed,
    DnsUnavailable,
    Record,
    absolute,
    fqdn,
    make_record,
    quoted,
)

log = logging.getLogger(__name__)
SCOPES = ("https://www.googleapis.com/auth/ndev.clouddns.readwrite",)


class _TimeoutSession(AuthorizedSession):
    """The library asks for a 60 s timeout per request; a cut-over should fail faster."""

    def __init__(self, credentials: Credentials, timeout: float) -> None:
        super().__init__(credentials)
        self._timeout = timeout

    def request(self, method: str, url: str, data: Any = None, headers: Any = None,
                max_allowed_time: float | None = None, timeout: Any = None,
                **kwargs: Any) -> requests.Response:
        return super().request(method, url, data=data, headers=headers,
                               max_allowed_time=max_allowed_time, timeout=self._timeout,
                               **kwargs)


def _credentials(path: Path | None, api_endpoint: str | None) -> Credentials:
    if path is not None:
        try:
            return service_account.Credentials.from_service_account_file(str(path),
                                                                         scopes=SCOPES)
        except OSError as e:
            raise DnsBadInput(f"cannot read Google credentials file {path}: {e.strerror}") from None
        except (ValueError, KeyError, TypeError) as e:
            # The messages name missing fields or a parse position, never the key material.
            raise DnsBadInput(f"Google credentials file {path} is not a service-account key "
                              f"({type(e).__name__}: {str(e)[:120]})") from None
    if api_endpoint is not None:
        # A test or private endpoint without a key file: no token at all.
        return AnonymousCredentials()
    try:
        creds, _ = google.auth.default(scopes=SCOPES)
    except auth_exc.DefaultCredentialsError:
        raise DnsAuthError("no Google credentials found: set dns.credentials_file to a "
                           "service-account key file") from None
    return creds


class CloudDnsProvider:
    def __init__(self, project: str, managed_zone: str, zone: str,
                 credentials_file: Path | str | None = None, api_endpoint: str | None = None,
                 timeout: float = 10.0, change_timeout: float = 120.0) -> None:
        if not project or not managed_zone:
            raise DnsBadInput("Cloud DNS needs dns.project and dns.managed_zone")
        self.project, self.managed_zone = project, managed_zone
        self.zone = absolute(zone)
        self.api_endpoint = api_endpoint
        self.credentials_file = Path(credentials_file) if credentials_file else None
        self.change_timeout = change_timeout
        creds = _credentials(self.credentials_file, api_endpoint)
        # Project and credentials are always explicit: else google-auth probes a metadata server.
        self._client = gdns.Client(
            project=project, credentials=creds, _http=_TimeoutSession(creds, timeout),
            client_options=ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None)
        self._zone = self._client.zone(managed_zone, self.zone)

    def describe(self) -> str:
        where = f" at {self.api_endpoint}" if self.api_endpoint else ""
        return (f"google-cloud-dns project {self.project} managed zone {self.managed_zone} "
                f"zone {self.zone}{where}")

    def __repr__(self) -> str:
        creds = self.credentials_file or ("anonymous" if self.api_endpoint else "default")
        return f"<CloudDnsProvider {self.describe()} credentials {creds}>"

    def get(self, name: str) -> Record | None:
        return next((r for r in self._sets(name) if r.rtype in RTYPES), None)

    def get_txt(self, name: str) -> tuple[str, ...] | None:
        txt = self._txt(name)
        return None if txt is None else tuple(sorted(_unquoted(v) for v in txt.values))

    def replace_txt(self, name: str, values: Iterable[str], ttl: int) -> None:
        n = fqdn(name, self.zone)
        new = Record(n, "TXT", tuple(sorted(quoted(v) for v in values)), ttl)
        self._commit(self._txt(n), new if new.values else None, f"set the TXT record at {n}")

    def _txt(self, name: str) -> Record | None:
        """The TXT record set as the API holds it (values quoted, as a deletion must match)."""
        return next((r for r in self._sets(name) if r.rtype == "TXT"), None)

    def _sets(self, name: str) -> list[Record]:
        """The record sets at `name`."""
        n = fqdn(name, self.zone)
        with self._errors(f"read {n}"):
            # The API filters by name; the library's list_resource_record_sets cannot.
            sets = list(page_iterator.HTTPIterator(
                client=self._client, api_request=self._client._connection.api_request,
                path=f"/projects/{self.project}/managedZones/{self.managed_zone}/rrsets",
                item_to_value=lambda _it, item: item, items_key="rrsets",
                extra_params={"name": n}))
        return [Record(name=n, rtype=s["type"], ttl=int(s["ttl"]),
                       values=tuple(sorted(s["rrdatas"])))
                for s in sets if s.get("name", "").lower() == n and "type" in s]

    def replace(self, name: str, rtype: str, values: Iterable[str], ttl: int) -> Record | None:
        new = make_record(name, self.zone, rtype, values, ttl)
        old = self.get(new.name)
        if old == new:
            return old
        self._commit(old, new, f"replace {new.name} with {new.rtype} {' '.join(new.values)}")
        log.info("dns %s: %s %s -> %s %s", self.describe(), new.name, _show(old), new.rtype,
                 " ".join(new.values))
        return old

    def delete(self, name: str) -> Record | None:
        n = fqdn(name, self.zone)
        old = self.get(n)
        if old is not None:
            self._commit(old, None, f"delete {n}")
            log.info("dns %s: deleted %s %s", self.describe(), n, _show(old))
        return old

    def _commit(self, delete: Record | None, add: Record | None, what: str) -> None:
        change = self._zone.changes()
        for r, put in ((delete, change.delete_record_set), (add, change.add_record_set)):
            if r is not None:
                put(self._zone.resource_record_set(r.name, r.rtype, r.ttl, list(r.values)))
        with self._errors(what):
            change.create()
            deadline = time.monotonic() + self.change_timeout
            delay = 0.1
            while change.status != "done":
                if time.monotonic() > deadline:
                    raise DnsUnavailable(
                        f"{self.describe()}: change {change.name} ({what}) is still "
                        f"{change.status!r} after {self.change_timeout:g}s; it may yet apply")
                time.sleep(delay)
                delay = min(2 * delay, 2.0)
                change.reload()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn library, HTTP and auth errors into DnsError subclasses with one-line messages."""
        prefix = f"{self.describe()}: {what}"
        try:
            yield
        except (gexc.Unauthorized, gexc.Forbidden, auth_exc.RefreshError,
                auth_exc.InvalidOperation) as e:
            # A 401 with anonymous credentials surfaces as InvalidOperation (cannot refresh).
            raise DnsAuthError(
                f"{prefix} failed: the credentials were rejected ({_text(e)}); check the "
                f"credentials file {self.credentials_file or '(none given)'} and that its "
                "service account may edit the zone") from None
        except (gexc.PreconditionFailed, gexc.Conflict) as e:
            raise DnsConflict(f"{prefix} was refused ({_text(e)}): the record changed since "
                              "it was read (concurrent change); read and retry") from None
        except gexc.NotFound as e:
            if "entity.change" in str(e.message):
                raise DnsConflict(f"{prefix} was refused ({_text(e)}): the record was deleted "
                                  "since it was read (concurrent change)") from None
            raise DnsBadInput(f"{prefix} failed: {_text(e)}; check dns.project and "
                              "dns.managed_zone") from None
        except (gexc.TooManyRequests, gexc.ServerError) as e:
            raise DnsUnavailable(f"{prefix} failed, try again: {_text(e)}") from None
        except gexc.GoogleAPICallError as e:
            raise DnsFailed(f"{prefix} failed: {_text(e)}") from None
        except (requests.RequestException, auth_exc.TransportError) as e:
            raise DnsUnavailable(f"{prefix} failed: cannot reach the API "
                                 f"({type(e).__name__})") from e
        except auth_exc.GoogleAuthError as e:
            raise DnsAuthError(f"{prefix} failed: Google auth error ({type(e).__name__}); "
                               f"check the credentials file {self.credentials_file}") from None


def _text(e: Exception) -> str:
    """One line: HTTP code and message, or the auth library's error summary."""
    if isinstance(e, gexc.GoogleAPICallError):
        # Drop the "GET http://...: " prefix the library adds; describe() names the endpoint.
        message = re.sub(r"^[A-Z]+ \S+: ", "", " ".join(str(e.message).split()))
        return f"{e.code} {message}"
    return f"{type(e).__name__}: {' '.join(str(e.args[0] if e.args else '').split())[:160]}"


def _unquoted(rrdata: str) -> str:
    """The string of a TXT rrdata (one or more quoted strings, joined)."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', rrdata)
    if not parts:
        return rrdata
    return "".join(re.sub(r"\\(.)", r"\1", p) for p in parts)


def _show(r: Record | None) -> str:
    return "(none)" if r is None else f"{r.rtype} {' '.join(r.values)}"
