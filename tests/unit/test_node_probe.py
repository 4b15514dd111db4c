"""Tests for glideinlab.node.probe's pure pieces: finding a condor_master's daemons in /proc (with a
fake /proc whose process names contain spaces and parentheses), the compose healthcheck's verdict, and
the per-daemon query results built from the bindings (faked)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from glideinlab.node import __main__ as node_main
from glideinlab.node import probe


class FakeProc:
    """A /proc tree with ``stat`` and ``cmdline`` as the kernel writes them."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "self").mkdir()  # non-numeric entries exist in /proc and must be skipped
        (root / "sys").mkdir()

    def add(self, pid: int, comm: str, ppid: int, argv: list[str]) -> None:
        d = self.root / str(pid)
        d.mkdir()
        # field 2 is "(comm)"; comm is up to 15 bytes and may hold anything, including ") S 1 ("
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0\n")
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))

    def add_exited(self, pid: int) -> None:
        (self.root / str(pid)).mkdir()  # the directory vanished in between: no stat to read


@pytest.fixture
def fake_root(tmp_path, monkeypatch) -> Path:
    """Redirect the probe's absolute /proc and /etc/glideinlab paths under tmp_path."""
    def fake_path(*parts):
        path = Path(*parts)
        for prefix in ("/proc", "/etc/glideinlab"):
            if str(path) == prefix or str(path).startswith(prefix + "/"):
                return tmp_path / str(path).lstrip("/")
        return path
    monkeypatch.setattr(probe, "Path", fake_path)
    return tmp_path


@pytest.fixture
def proc(fake_root) -> FakeProc:
    table = FakeProc(fake_root / "proc")
    table.add(1, "supervisord", 0, ["/usr/bin/python3", "/usr/bin/supervisord", "-n"])
    # the pool instance's master and its children
    table.add(100, "condor_master", 1, ["/usr/sbin/condor_master", "-f"])
    table.add(101, "condor_collecto", 100, ["condor_collector", "-f"])  # comm truncated to 15 bytes
    table.add(102, "condor sched) x", 100, ["/usr/sbin/condor_schedd", "-f"])  # spaces and ')' in comm
    table.add(103, "condor_procd", 100, ["/usr/sbin/condor_procd", "-A", "/var/run/condor/procd"])
    table.add(104, "sh", 100, ["/bin/sh", "-c", "true"])  # a non-condor child
    table.add(105, "condor_zombie", 100, [])  # a zombie has an empty cmdline
    # a renamed process whose comm imitates "child of 100"; its real parent is 555
    table.add(106, "a) S 100 (b", 555, ["/usr/sbin/condor_negotiator"])
    table.add_exited(107)
    # a second instance (the CE's) with its own master
    table.add(200, "condor_master", 1, ["/usr/sbin/condor_master", "-f"])
    table.add(201, "condor_job_rout", 200, ["/usr/sbin/condor_job_router"])
    return table


@pytest.mark.parametrize(
    "pid, daemons",
    [
        (100, {"COLLECTOR", "SCHEDD", "PROCD"}),
        (200, {"JOB_ROUTER"}),
        (555, {"NEGOTIATOR"}),  # the real parent of the process with the misleading comm
        (1, {"MASTER"}),
        (999, set()),
    ],
)
def test_children_are_found_by_real_parent_pid(proc, pid, daemons):
    assert probe._children(pid) == daemons


# -- health(): the compose healthcheck -------------------------------------------------------------
def _running(pid: int = 0) -> dict:
    return {"ok": True, "state": "RUNNING", "pid": pid}


@pytest.mark.parametrize(
    "instances, programs, verdict",
    [
        ({"pool": ["COLLECTOR", "SCHEDD"]},
         {"condor": _running(100), "stage-http": _running(9)},
         (True, "ok")),
        ({"pool": ["COLLECTOR", "SCHEDD"], "ce": ["JOB_ROUTER"]},
         {"condor": _running(100), "condor-ce": _running(200)},
         (True, "ok")),
        ({"pool": ["COLLECTOR", "SCHEDD"]},
         {"condor": _running(100), "issuer": {"ok": False, "state": "FATAL", "pid": 0}},
         (False, "service issuer is FATAL")),
        ({"pool": ["COLLECTOR", "NEGOTIATOR", "SCHEDD"]},
         {"condor": _running(100)},
         (False, "pool: NEGOTIATOR not running")),
        ({"pool": ["STARTD", "COLLECTOR"]},
         {"condor": _running(200)},
         (False, "pool: COLLECTOR, STARTD not running")),
        ({"pool": ["COLLECTOR"], "ce": ["JOB_ROUTER"]},
         {"condor": _running(100)},
         (False, "ce: no condor_master program")),
    ],
)
def test_health_verdict(proc, fake_root, monkeypatch, instances, programs, verdict):
    node_dir = fake_root / "etc" / "glideinlab"
    node_dir.mkdir(parents=True)
    (node_dir / "node.json").write_text(json.dumps({"instances": instances}))
    monkeypatch.setattr(probe, "services", lambda: programs)
    assert probe.health() == verdict


# -- probe results built from the bindings ---------------------------------------------------------
class FakeCollector:
    """Answers like htcondor2.Collector: ``locate`` then a query at the located daemon."""

    ads_at: dict[str, list] = {}

    def __init__(self, location=None):
        self.location = location

    def locate(self, daemon_type, name=None):
        if name == "missing":
            raise RuntimeError("Unable to locate\n   daemon   'missing'")
        return f"<addr-of-{name or daemon_type.name}>"

    def query(self, ad_type, constraint=None, projection=None):
        return self.ads_at.get(self.location, [])


def _bindings(param: dict, ads_at: dict) -> SimpleNamespace:
    collector = type("Collector", (FakeCollector,), {"ads_at": ads_at})
    return SimpleNamespace(param=param, Collector=collector)


SCHEDD = SimpleNamespace(name="Schedd")


@pytest.mark.parametrize(
    "name, ads_at, result",
    [
        ("ce.example", {"<addr-of-ce.example>": [{"Name": "ce.example"}]}, {"ok": True, "name": "ce.example"}),
        ("ce.example", {}, {"ok": False, "error": "ce.example answered with no ad"}),
        (None, {}, {"ok": False, "error": "Schedd answered with no ad"}),
        ("missing", {}, {"ok": False, "error": "Unable to locate daemon 'missing'"}),
    ],
)
def test_direct_query_result(name, ads_at, result):
    bindings = _bindings({}, ads_at)
    assert probe._direct_query(bindings, bindings.Collector(), SCHEDD, "SchedAd", name) == result


@pytest.mark.parametrize(
    "param, expected",
    [
        ({"STARTD_NAME": "worker-1", "FULL_HOSTNAME": "worker-1.glideinwms.org"}, "worker-1@worker-1.glideinwms.org"),
        ({"STARTD_NAME": "slot@host.example", "FULL_HOSTNAME": "other"}, "slot@host.example"),
        ({"FULL_HOSTNAME": "worker-1.glideinwms.org"}, None),
        ({"STARTD_NAME": "", "FULL_HOSTNAME": "x"}, None),
    ],
)
def test_startd_name_is_qualified_as_htcondor_does(param, expected):
    assert probe._startd_name(SimpleNamespace(param=param)) == expected


@pytest.mark.parametrize(
    "message, short",
    [
        ("one\n  two\tthree", "one two three"),
        ("x" * 500, "x" * 200),
    ],
)
def test_errors_are_shortened_to_one_line(message, short):
    assert probe._short(RuntimeError(message)) == short


def test_node_main_rejects_an_unknown_command(capsys):
    assert node_main.main(["frobnicate"]) == 2
    assert "'frobnicate'" in capsys.readouterr().err
