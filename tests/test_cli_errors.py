"""Bad input and failures across every command, as a user meets them: `python -m orchestrator`
in a subprocess. Each must end in one line on stderr starting with `error:`, no traceback, the
documented exit code (2 bad input, 1 an operational failure, 130 interrupted) and nothing
written. Clusters are a kubeconfig pointing at 127.0.0.1:1 (nothing listens), a local HTTP
server that is not Kubernetes, or the lab (mark `lab`)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
MEASUREMENTS = ROOT / "docs" / "power" / "measurements-example.csv"
HOST = {"name": "edge0", "cores": 4, "idle_watts": 19, "max_watts": 58.5,
        "network_latency_ms": 14}


def kubeconfig(server: str, token: str = "t0ken") -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "edge",
        "clusters": [{"name": "edge", "cluster": {"server": server,
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "edge", "context": {"cluster": "edge", "user": "u"}}]})


def continuum(kubeconfig_path: str = "dead.kubeconfig", **top: object) -> str:
    doc: dict[str, object] = {
        "clusters": [{"name": "edge", "tier": "edge", "ingress": "127.0.0.1:1",
                      "kubeconfig": kubeconfig_path, "hosts": [HOST]}],
        "dns": {"provider": "rfc2136", "server": "127.0.0.1", "zone": "continuum.test.",
                "tsig_key_file": "tsig.key"},
        "prometheus": {"url": "http://127.0.0.1:1", "timeout_s": 1},
        "services": [{"namespace": "ml", "name": "resnet", "hostname": "resnet.continuum.test"}],
        "api_retry_s": 0.5}
    doc.update(top)
    return yaml.safe_dump(doc)


def scenario(**host: object) -> str:
    return yaml.safe_dump({"clusters": [{"name": "c", "tier": "edge",
                                         "hosts": [{**HOST, **host}]}]})


def files(where: Path) -> dict[str, bytes]:
    return {str(p.relative_to(where)): p.read_bytes() if p.is_file() else b"<other>"
            for p in sorted(where.rglob("*"))}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory with every input file the cases name, and HOME pointing at it."""
    (tmp_path / "dead.kubeconfig").write_text(kubeconfig("https://127.0.0.1:1"))
    (tmp_path / "plain.kubeconfig").write_text("this is not a kubeconfig\n")
    (tmp_path / "binary.kubeconfig").write_bytes(bytes(range(256)) * 4)
    cert = yaml.safe_load(kubeconfig("https://127.0.0.1:1"))
    cert["users"][0]["user"] = {"client-certificate": "missing.crt", "client-key": "missing.key"}
    (tmp_path / "cert.kubeconfig").write_text(yaml.safe_dump(cert))
    (tmp_path / "url.kubeconfig").write_text(kubeconfig("not a url"))
    noserver = yaml.safe_load(kubeconfig(""))
    del noserver["clusters"][0]["cluster"]["server"]
    (tmp_path / "noserver.kubeconfig").write_text(yaml.safe_dump(noserver))
    for name in ("cert", "url", "noserver"):
        (tmp_path / f"{name}.yaml").write_text(continuum(f"{name}.kubeconfig"))
    (tmp_path / "continuum.yaml").write_text(continuum())
    (tmp_path / "tilde.yaml").write_text(continuum("~/dead.kubeconfig"))
    (tmp_path / "plain.yaml").write_text(continuum("plain.kubeconfig"))
    (tmp_path / "binary.yaml").write_text(continuum("binary.kubeconfig"))
    (tmp_path / "state-is-file.yaml").write_text(continuum(state_dir="afile"))
    (tmp_path / "gain-nan.yaml").write_text(
        continuum().replace("api_retry_s", "controller: {min_predicted_gain: .nan}\napi_retry_s"))
    (tmp_path / "gain-negative.yaml").write_text(continuum(controller={"min_predicted_gain": -0.1}))
    (tmp_path / "prometheus-url.yaml").write_text(continuum(prometheus={"url": "localhost:9090"}))
    (tmp_path / "afile").write_text("a file, not a directory\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir.zip").mkdir()
    (tmp_path / "loop").symlink_to("loop")  # a link to itself (once a RecursionError)
    (tmp_path / "tsig.key").write_text(
        'key "greenwise" { algorithm hmac-sha256; secret "c2VjcmV0c2VjcmV0c2VjcmV0"; };\n')
    (tmp_path / "nan.yaml").write_text(scenario().replace("idle_watts: 19", "idle_watts: .nan"))
    (tmp_path / "inf.yaml").write_text(
        scenario().replace("network_latency_ms: 14", "network_latency_ms: .inf"))
    (tmp_path / "curve.yaml").write_text(
        scenario(power_curve=[[0.0, 0.0], [0.5, 1.5], [1.0, 1.0]]))
    (tmp_path / "peak.yaml").write_text(
        scenario() + "workload: {peak_users: 1000000000}\n")
    (tmp_path / "crowded.yaml").write_text(
        scenario() + "services: [{name: a, memory_gib: 5}, {name: b, memory_gib: 5}]\n")
    (tmp_path / "huge.yaml").write_text(scenario() + "service: {memory_gib: 9}\n")
    (tmp_path / "m.csv").write_bytes(MEASUREMENTS.read_bytes())
    return tmp_path


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("GREENWISE_CONFIG", "GREENWISE_DEBUG", "KUBECONFIG")}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout,
                          env={**base, "HOME": str(cwd), **(env or {})})


def assert_one_error_line(r: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert message in lines[0], r.stderr


# (arguments, exit code, what the line says); in `work`, nothing may be written
CASES = [
    # output paths: a directory for a file, a file for a directory, an unwritable place
    (["train", "--out", "adir"], 2, "a model file ends in .zip"),
    (["train", "--out", "adir.zip"], 2, "--out adir.zip is a directory"),
    (["train", "--out", "afile/model.zip"], 2, "afile is not a directory"),
    (["train", "--out", "/proc/greenwise/model.zip"], 2, "cannot write in /proc"),
    (["evaluate", "--output-dir", "afile"], 2, "--output-dir afile is a file"),
    (["evaluate", "--output-dir", "afile/results"], 2, "afile is not a directory"),
    (["evaluate", "--output-dir", "/proc/greenwise"], 2, "cannot write in /proc"),
    (["evaluate", "--output-dir", "loop/results"], 2, "loop is not a directory"),
    (["train", "--out", "loop/model.zip"], 2, "loop is not a directory"),
    (["power-model", "fit", "m.csv", "--out", "adir"], 2, "--out adir is a directory"),
    (["power-model", "fit", "m.csv", "--out", "afile/pm.yaml"], 2, "afile is not a directory"),
    (["power-model", "fit", "m.csv", "--out", "/sys/pm.yaml"], 2, "cannot write in /sys"),
    (["power-model", "fit", "m.csv", "--apply", "adir"], 2, "--apply: adir does not exist"),
    (["run", "--config", "state-is-file.yaml", "--dry-run"], 2, "state_dir"),
    (["migrate", "ml/resnet", "--to", "edge/edge0", "--config", "state-is-file.yaml"], 2,
     "state_dir"),
    # numbers: nan / inf, power curves, negative or huge counts
    (["run", "--scenario", "nan.yaml"], 2, "idle_watts: Input should be a finite number"),
    (["evaluate", "--scenario", "inf.yaml"], 2, "network_latency_ms: Input should be a finite"),
    (["plan", "--scenario", "curve.yaml"], 2, "power_curve fractions must be within [0, 1]"),
    (["run", "--scenario", "peak.yaml"], 2, "peak_users: Input should be less than or equal"),
    # services the hosts cannot hold (edge0: 8 GiB)
    (["run", "--scenario", "crowded.yaml"], 2, "the services need 10 GiB of memory, the hosts "
                                               "have 8"),
    (["train", "--scenario", "huge.yaml"], 2, "service 'resnet-18' (9 GiB, 1 CPU requested) "
                                              "fits no host"),
    (["run", "--interval", "nan"], 2, "--interval must be a finite duration"),
    (["run", "--interval", "inf"], 2, "--interval must be a finite duration"),
    (["run", "--ticks", "0"], 2, "--ticks must be a number > 0"),
    (["train", "--steps", "-5"], 2, "--steps must be a number > 0"),
    (["evaluate", "--episodes", "0"], 2, "--episodes must be a number > 0"),
    (["migrate", "ml/resnet", "--to", "edge", "--dry-run", "--users", "-1"], 2,
     "--users must be between 0 and 5000"),
    (["migrate", "ml/resnet", "--to", "edge", "--dry-run", "--users", "1000000000"], 2,
     "--users must be between 0 and 5000"),
    (["migrate", "ml/resnet", "--to", "edge", "--timeout", "nan"], 2, "--timeout must be"),
    (["power-model", "fit", "m.csv", "--test-fraction", "nan"], 2, "--test-fraction"),
    (["run", "--config", "gain-nan.yaml"], 2, "min_predicted_gain: Input should be a finite"),
    (["plan", "--config", "prometheus-url.yaml"], 2,
     "prometheus.url: must be a URL like http://HOST:9090, got 'localhost:9090'"),
    (["plan", "--config", "gain-negative.yaml"], 2,
     "min_predicted_gain: Input should be greater than or equal to 0"),
    # flags that make no sense together or for the strategy
    (["run", "--strategy", "greedy", "--model", "m.zip"], 2, "--model is for maskppo and a2c"),
    (["plan", "--strategy", "rules", "--model", "m.zip"], 2, "--model is for maskppo and a2c"),
    (["evaluate", "--strategies", "greedy", "--model", "maskppo=m.zip"], 2,
     "maskppo is not among --strategies"),
    (["evaluate", "--strategies", "stay,maskppo", "--model", "maskppo=afile", "--train-seeds",
      "0,1"], 2, "--train-seeds choose how RL strategies are trained, but none is trained"),
    (["migrate"], 2, "give NAMESPACE/SERVICE and --to CLUSTER[/NODE]"),
    (["migrate", "--resume", "ml/resnet"], 2, "--resume finishes the migrations"),
    (["migrate", "--resume", "--to", "edge"], 2, "--resume finishes the migrations"),
    (["migrate", "ml/resnet", "--to", "edge", "--users", "5"], 2, "add --dry-run"),
    (["run", "--config", "continuum.yaml", "--metrics-address", "127.0.0.1:99999"], 2,
     "port in 0-65535"),
    (["run", "--config", "continuum.yaml", "--metrics-address", "nohost"], 2, "HOST:PORT"),
    (["run", "--dry-run"], 2, "--dry-run is for real clusters"),
    # usage errors (click)
    (["run", "--bogus"], 2, "No such option: --bogus"),
    (["power-model"], 2, "Missing command"),
    (["status", "extra"], 2, "unexpected extra argument"),
    # kubeconfigs: plain text, binary, `~`, nothing listening
    (["clusters", "--config", "plain.yaml"], 2, "is malformed"),
    (["status", "--config", "binary.yaml"], 2, "is malformed"),
    (["clusters", "--config", "cert.yaml"], 2,
     "missing.crt' file does not exist"),
    (["status", "--config", "url.yaml"], 2, "is not a URL like https://HOST:PORT"),
    (["clusters", "--config", "noserver.yaml"], 2, "cluster 'edge' has no server"),
    (["clusters", "--config", "continuum.yaml"], 1, "cluster edge is unreachable"),
    (["clusters", "--config", "tilde.yaml"], 1, "cluster edge is unreachable"),
    (["clusters", "--config", "~/tilde.yaml"], 1, "cluster edge is unreachable"),
    (["run", "--scenario", "~/nan.yaml"], 2, "idle_watts: Input should be a finite number"),
    (["status", "--config", "continuum.yaml"], 1, "cluster edge is unreachable"),
    (["migrate", "ml/resnet", "--to", "edge/edge0", "--dry-run", "--config", "tilde.yaml"], 1,
     "cluster edge is unreachable"),
]


@pytest.mark.parametrize(("args", "code", "message"), CASES,
                         ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(work: Path, args: list[str], code: int,
                                                  message: str) -> None:
    before = files(work)
    r = cli(*args, cwd=work)
    assert_one_error_line(r, code, message)
    assert files(work) == before  # nothing written, not even a state directory or journal


class NotKubernetes(BaseHTTPRequestHandler):
    """An HTTPS-less web server that answers every path with a page, as a wrong `server:`
    in a kubeconfig might."""

    def do_GET(self) -> None:
        body = b"<html>hello</html>" if self.path == "/" else b"404 page not found\n"
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotKubernetes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("command", ["clusters", "status"])
def test_a_server_that_is_not_kubernetes_is_bad_input(work: Path, web_server: str,
                                                      command: str) -> None:
    (work / "web.kubeconfig").write_text(kubeconfig(web_server))
    (work / "web.yaml").write_text(continuum("web.kubeconfig"))
    before = files(work)
    r = cli(command, "--config", "web.yaml", cwd=work)
    assert_one_error_line(r, 2, "is not a Kubernetes API server")
    assert files(work) == before


def test_prometheus_down_is_an_operational_error(work: Path) -> None:
    r = cli("plan", "--config", "continuum.yaml", cwd=work)
    assert_one_error_line(r, 1, "cannot query Prometheus at http://127.0.0.1:1")


def test_clusters_prints_what_it_could_before_failing(work: Path) -> None:
    r = cli("clusters", "--config", "continuum.yaml", "-o", "json", cwd=work)
    assert r.returncode == 1, r.stderr
    [edge] = yaml.safe_load(r.stdout)["clusters"]
    assert edge["reachable"] is False and "unreachable" in edge["error"]


def test_rich_markup_in_values_is_printed_as_text(work: Path) -> None:
    """A `[/...]` in an error line or a table cell is shown as it is, not parsed as markup."""
    (work / "markup.yaml").write_text(continuum("[bold]x[/NODE].kubeconfig"))
    r = cli("clusters", "--config", "markup.yaml", cwd=work)
    assert_one_error_line(r, 2, "[bold]x[/NODE].kubeconfig does not exist")
    assert "[bold]x[/NODE].kubeconfig" in r.stdout  # the error column of the table


def test_debug_shows_the_traceback_and_still_one_error_line(work: Path) -> None:
    r = cli("--debug", "run", "--interval", "nan", cwd=work)
    assert r.returncode == 2 and "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: --interval must be")


def test_an_unexpected_exception_is_one_internal_error_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The boundary's last resort, driven in-process: any exception becomes one line, exit 1."""
    from orchestrator.cli import common, main

    def broken(kind: str) -> None:
        raise RuntimeError("boom [/NODE]\nsecond line")

    monkeypatch.setattr(common, "check_reward", broken)
    monkeypatch.setattr(sys, "argv", ["greenwise-mc", "plan"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: internal error: RuntimeError: boom [/NODE] second line (run with --debug for "
        "the traceback)"]


def test_version_and_an_example_in_every_help(work: Path) -> None:
    r = cli("--version", cwd=work)
    assert r.returncode == 0 and r.stdout.startswith("greenwise-mc "), r.stderr
    for command in (["train"], ["evaluate"], ["run"], ["plan"], ["migrate"], ["clusters"],
                    ["status"], ["power-model"], ["power-model", "fit"]):
        r = cli(*command, "--help", cwd=work)
        assert r.returncode == 0 and "Example: greenwise-mc " in r.stdout, command


def test_ctrl_c_in_a_simulated_run_exits_130_and_says_what_stopped(tmp_path: Path) -> None:
    """SIGINT while `run` ticks: exit 130 and a line naming the tick it stopped at. stderr is a
    terminal, so the live view shows when ticking has begun."""
    main_fd, child_fd = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "GREENWISE_CONFIG"}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", "--ticks", "100000",
                             "--interval", "1s", "--strategy", "rules"],
                            stdout=subprocess.DEVNULL, stderr=child_fd, cwd=tmp_path, env=env)
    os.close(child_fd)
    seen = b""
    try:
        while b"tick 1/100000" not in seen:
            ready, _, _ = select.select([main_fd], [], [], 60)
            assert ready and proc.poll() is None, seen.decode(errors="replace")
            seen += os.read(main_fd, 65536)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main_fd], [], [], 1)
            if not ready:
                break
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main_fd)
    text = seen.decode(errors="replace")
    assert "Traceback" not in text, text
    assert "error: interrupted (Ctrl-C) while the simulated run at tick" in text, text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.lab
def test_a_wrong_token_is_bad_input(lab, work: Path) -> None:
    kc = yaml.safe_load((lab.dir / "kubeconfigs" / "edge.yaml").read_text())
    for user in kc["users"]:
        user["user"] = {"token": "not-the-token"}
    (work / "wrong-token.kubeconfig").write_text(yaml.safe_dump(kc))
    (work / "wrong-token.yaml").write_text(continuum("wrong-token.kubeconfig"))
    before = files(work)
    for command in ("clusters", "status"):
        r = cli(command, "--config", "wrong-token.yaml", cwd=work)
        assert_one_error_line(r, 2, "access refused")
    assert files(work) == before
