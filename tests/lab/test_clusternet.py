"""What the lab's cluster network derives from Services and Endpoints (pure logic; the lab test
`test_cluster.py::test_cluster_dns_names_services...` runs it for real)."""

from __future__ import annotations

from typing import Any

from tests.lab.clusternet import desired


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml"}, "spec": spec}


def endpoints(name: str, ready: list[str], not_ready: tuple[str, ...] = (),
              ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml"},
            "subsets": [{"addresses": [{"ip": a} for a in ready],
                         "notReadyAddresses": [{"ip": a} for a in not_ready],
                         "ports": ports or [{"name": "http", "port": 8080}]}]}


def test_a_clusterip_is_an_a_record_and_proxies_to_the_ready_endpoints_of_its_port() -> None:
    records, table = desired(
        [service("a", clusterIP="127.110.0.5",
                 ports=[{"name": "http", "port": 80}, {"name": "m", "port": 82}])],
        [endpoints("a", ["127.11.1.2", "127.11.2.2"], ["127.11.3.2"],
                   [{"name": "http", "port": 8080}, {"name": "m", "port": 8082}])])
    assert records == {"a.ml.svc.cluster.local.": ("A", ("127.110.0.5",))}
    assert table == {("127.110.0.5", 80): [("127.11.1.2", 8080), ("127.11.2.2", 8080)],
                     ("127.110.0.5", 82): [("127.11.1.2", 8082), ("127.11.2.2", 8082)]}


def test_an_externalname_is_a_cname_and_no_listener() -> None:
    records, table = desired([service("a", type="ExternalName", externalName="a.continuum.test",
                                      ports=[{"port": 80}])], [])
    assert records == {"a.ml.svc.cluster.local.": ("CNAME", ("a.continuum.test.",))}
    assert table == {}


def test_headless_names_its_ready_endpoints_and_a_service_without_any_has_none_yet() -> None:
    records, table = desired([service("h", clusterIP="None", ports=[{"name": "http", "port": 80}]),
                              service("e", clusterIP="None")],
                             [endpoints("h", ["127.11.2.2", "127.11.1.2"])])
    assert records == {"h.ml.svc.cluster.local.": ("A", ("127.11.1.2", "127.11.2.2"))}
    assert table == {}
