"""Tests for the `glideinlab` command line: every user mistake ends in one `glideinlab: ...` line and a
non-zero exit, never a traceback.  No container engine is needed (or used)."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from glideinlab.cli.main import main
from glideinlab.defaults import all_sections
from glideinlab.defaults import workspace as D
from glideinlab.errors import EngineError, UserError
from glideinlab.workspace import backend, engine, images
from glideinlab.workspace.backend import Workspace
from glideinlab.workspace.spec import WorkspaceSpec


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GLIDEINLAB_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("GLIDEINLAB_WORKSPACE", raising=False)
    return tmp_path / "state"


@pytest.fixture
def no_engine_expected(monkeypatch):
    """Fail the test if the command looks for a container engine."""
    def detect():
        pytest.fail("the command looked for a container engine")
    monkeypatch.setattr(backend, "detect", detect)


@pytest.fixture
def fresh_detect():
    engine.detect.cache_clear()
    yield
    engine.detect.cache_clear()


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("glideinlab: ")
    assert "Traceback" not in err
    return lines[0]


def save_spec(home: Path, **options) -> WorkspaceSpec:
    spec = WorkspaceSpec.create(**options)
    (home / spec.name).mkdir(parents=True, exist_ok=True)
    (home / spec.name / "spec.json").write_text(json.dumps(spec.to_dict()))
    return spec


# -- unknown workspace -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, name",
    [
        (["status"], "default"),
        (["status", "--json"], "default"),
        (["logs"], "default"),
        (["logs", "worker-1", "--name", "lab2"], "lab2"),
        (["exec", "frontend-workspace", "--", "condor_q"], "default"),
        (["exec", "frontend-workspace"], "default"),
        (["shell", "ce-workspace", "--name", "other"], "other"),
        (["status", "--name", "../escape"], "../escape"),
    ],
)
def test_unknown_workspace_is_one_line_naming_it_and_how_to_create_it(capsys, home, no_engine_expected,
                                                                       argv, name):
    code, out, err = run(capsys, argv)
    assert code == 2
    line = one_error_line(err)
    assert f"no workspace named {name!r}" in line
    assert f"glideinlab up --name {name}" in line
    assert out == ""


def test_workspace_name_comes_from_the_environment(capsys, home, no_engine_expected, monkeypatch):
    monkeypatch.setenv("GLIDEINLAB_WORKSPACE", "fromenv")
    code, _, err = run(capsys, ["status"])
    assert code == 2
    assert "no workspace named 'fromenv'" in one_error_line(err)


@pytest.mark.parametrize("content", ["{not json", json.dumps({"name": "default", "obsolete_knob": 1})])
def test_unreadable_saved_spec_is_a_user_error(capsys, home, no_engine_expected, content):
    (home / "default").mkdir(parents=True)
    (home / "default" / "spec.json").write_text(content)
    code, _, err = run(capsys, ["status"])
    assert code != 0
    assert "spec.json" in one_error_line(err)


# -- exec ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["exec", "frontend-workspace"], ["exec", "frontend-workspace", "--"]])
def test_exec_without_a_command_says_how_to_give_one(capsys, home, no_engine_expected, argv):
    save_spec(home)
    code, _, err = run(capsys, argv)
    assert code == 2
    line = one_error_line(err)
    assert "exec needs a command" in line
    assert "glideinlab exec frontend-workspace -- condor_q" in line


def test_exec_takes_options_written_between_the_node_and_the_command(capsys, home, monkeypatch):
    save_spec(home, name="lab2")
    calls = []

    def fake_exec(self, node, cmd, user=None, tty=False, **kw):
        calls.append((self.spec.name, node, cmd, user))
        return type("Done", (), {"returncode": 7})()

    monkeypatch.setattr(Workspace, "exec", fake_exec)
    code, _, err = run(capsys, ["exec", "frontend-workspace", "--name", "lab2", "-u", "testuser", "--",
                                "condor_q", "-allusers"])
    assert code == 7, err  # the command's own exit code
    assert calls == [("lab2", "frontend-workspace", ["condor_q", "-allusers"], "testuser")]


@pytest.mark.parametrize("late", [["--nmae", "lab2"], ["--name"], ["stray"]])
def test_exec_with_a_bad_option_before_the_command_is_one_line(capsys, home, no_engine_expected, late):
    save_spec(home)
    code, _, err = run(capsys, ["exec", "frontend-workspace", *late, "--", "condor_q"])
    assert code == 2
    assert "exec:" in one_error_line(err)


# -- argparse-level mistakes -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, bad, valid",
    [
        (["up", "--profile", "slow"], "'slow'", ["fast", "production"]),
        (["up", "--htcondor", "24"], "'24'", ["23", "25"]),
        (["build", "--htcondor", "22"], "'22'", ["23", "25"]),
        (["up", "--workers", "many"], "'many'", []),
        (["frobnicate"], "'frobnicate'", ["up", "down"]),
    ],
)
def test_invalid_option_values_exit_2_with_the_valid_choices(capsys, home, no_engine_expected, argv, bad, valid):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert bad in err
    for choice in valid:
        assert choice in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv, field, reason",
    [
        (["up", "--workers", "0"], "workers", "between 1 and 64"),
        (["up", "--workers", "65"], "workers", "between 1 and 64"),
        (["up", "--workers", "-2"], "workers", "must not be negative"),
        (["up", "--name", "Bad_Name"], "name", "must match"),
    ],
)
def test_invalid_spec_is_one_config_error_line(capsys, home, no_engine_expected, argv, field, reason):
    code, _, err = run(capsys, argv)
    assert code == 2
    line = one_error_line(err)
    assert f": {field}: " in line and reason in line


def test_no_verb_prints_help_and_exits_2(capsys):
    code, out, _ = run(capsys, [])
    assert code == 2
    assert "usage: glideinlab" in out


def test_interrupt_is_one_line_and_exit_130(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr("glideinlab.cli.main.cmd_defaults", interrupted)
    code, _, err = run(capsys, ["defaults"])
    assert code == 130
    assert one_error_line(err) == "glideinlab: interrupted"


def test_a_bug_is_not_disguised_as_a_user_error(monkeypatch):
    def broken(args):
        raise RuntimeError("a bug")
    monkeypatch.setattr("glideinlab.cli.main.cmd_defaults", broken)
    with pytest.raises(RuntimeError):
        main(["defaults"])


# -- no usable container engine --------------------------------------------------------------------
def _fake_tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_up_without_docker_or_podman_says_what_to_install(capsys, home, tmp_path, monkeypatch, fresh_detect):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, _, err = run(capsys, ["up"])
    assert code == EngineError.exit_code == 3
    line = one_error_line(err)
    assert "no container engine found (neither docker nor podman)" in line
    assert "apt-get install docker.io docker-compose" in line
    assert "podman" in line


def test_up_with_a_stopped_docker_daemon_names_the_problem(capsys, home, tmp_path, monkeypatch, fresh_detect):
    bin_dir = tmp_path / "bin"
    _fake_tool(bin_dir, "docker", "echo 'Cannot connect to the Docker daemon. Is the docker daemon running?' >&2\n"
                                  "exit 1\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    code, _, err = run(capsys, ["up"])
    assert code == 3
    line = one_error_line(err)
    assert "docker: Cannot connect to the Docker daemon" in line
    assert "podman: not installed" in line
    assert "systemctl start docker" in line


@pytest.mark.parametrize(
    "tools, expected",
    [
        # docker compose v2 plugin answers
        ({"docker": "exit 0\n"}, engine.Engine("docker", ("docker", "compose"))),
        # no plugin, but Debian's docker-compose v1 (this project's machines)
        ({"docker": 'case "$1" in compose) exit 1;; *) exit 0;; esac\n', "docker-compose": "exit 0\n"},
         engine.Engine("docker", ("docker-compose",))),
        ({"podman": "exit 0\n", "podman-compose": "exit 0\n"}, engine.Engine("podman", ("podman-compose",))),
    ],
)
def test_detect_finds_the_engine_and_compose_flavour(tmp_path, monkeypatch, fresh_detect, tools, expected):
    for name, script in tools.items():
        _fake_tool(tmp_path / "bin", name, script)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert engine.detect() == expected


def test_detect_without_a_compose_tool_says_so(tmp_path, monkeypatch, fresh_detect):
    _fake_tool(tmp_path / "bin", "docker", 'case "$1" in compose) exit 1;; *) exit 0;; esac\n')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(EngineError) as info:
        engine.detect()
    assert "docker: no compose tool" in str(info.value)
    assert "install a compose tool" in info.value.line()


def test_up_with_a_mocked_engine_failure_is_one_line(capsys, home, monkeypatch):
    def detect():
        raise EngineError("no usable container engine: docker: permission denied",
                          hint="add yourself to the docker group")
    monkeypatch.setattr(backend, "detect", detect)
    code, _, err = run(capsys, ["up"])
    assert code == 3
    assert one_error_line(err) == ("glideinlab: no usable container engine: docker: permission denied "
                                   "(add yourself to the docker group)")


# -- published port already taken ------------------------------------------------------------------
PUBLISHED = [(service, host, inner) for service, ports in D.PUBLISHED_PORTS.items()
             for host, inner in ports.items()]


@pytest.fixture
def occupied(request, monkeypatch):
    """Listen on one published port and narrow the table to it, so nothing else on the machine matters."""
    service, host, inner = request.param
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", host))
    except OSError:
        sock.close()
        pytest.skip(f"127.0.0.1:{host} is already in use on this machine")
    sock.listen()
    monkeypatch.setattr(D, "PUBLISHED_PORTS", {service: {host: inner}})
    yield service, host
    sock.close()


@pytest.mark.parametrize("occupied", PUBLISHED, indirect=True, ids=[f"{s}-{h}" for s, h, _ in PUBLISHED])
def test_check_ports_names_the_taken_port_and_its_node(tmp_path, occupied):
    service, host = occupied
    ws = Workspace(WorkspaceSpec.create(publish_ports=True), home=tmp_path)
    with pytest.raises(UserError) as info:
        ws._check_ports()
    assert str(info.value) == f"port 127.0.0.1:{host} (node {service}) is already in use"
    assert "--publish-ports" in info.value.hint


def test_check_ports_passes_when_every_port_is_free(tmp_path, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    monkeypatch.setattr(D, "PUBLISHED_PORTS", {"ce-workspace": {free: 9619}})
    Workspace(WorkspaceSpec.create(publish_ports=True), home=tmp_path)._check_ports()


class _EmptyEngine:
    """An engine with no containers: enough for `up` to reach its port check."""

    compose_flavour = "fake"

    def containers(self, labels):
        return []


@pytest.mark.parametrize("occupied", PUBLISHED[:1], indirect=True, ids=["ce"])
def test_up_publish_ports_stops_at_a_taken_port_before_creating_anything(capsys, home, monkeypatch, occupied):
    service, host = occupied
    monkeypatch.setattr(backend, "detect", _EmptyEngine)
    code, _, err = run(capsys, ["up", "--publish-ports"])
    assert code == 2
    line = one_error_line(err)
    assert f"127.0.0.1:{host} (node {service})" in line
    assert not (home / "default" / "secrets").exists()  # no trust generated, nothing rendered


# -- build failures --------------------------------------------------------------------------------
CLASSIC = ["Sending build context to Docker daemon  4.096kB",
           "Step 1/4 : ARG BASE_IMAGE", " ---> Using cache",
           "Step 2/4 : FROM $BASE_IMAGE", " ---> 1a2b3c",
           "Step 3/4 : RUN apt-get install -y --no-install-recommends htcondor",
           " ---> Running in 0f0f0f"] + [f"Get:{i} http://deb.debian.org/debian trixie/main pkg{i}" for i in range(30)] + [
           "E: Unable to locate package htcondor",
           "The command '/bin/sh -c apt-get install -y htcondor' returned a non-zero code: 100"]
BUILDKIT = ["#1 [internal] load build definition from Dockerfile", "#1 DONE 0.0s",
            "#5 [2/3] RUN apt-get update", "#5 DONE 3.1s",
            "#6 [3/3] RUN pip install nothing", "#6 0.512 ERROR: No matching distribution", "#6 ERROR: exit code: 1",
            "ERROR: failed to solve: process did not complete successfully: exit code: 1"]
PODMAN = ["STEP 1/3: FROM glideinlab/base:trixie", "STEP 2/3: COPY glideinlab /usr/lib/python3/dist-packages/",
          "Error: building at STEP \"COPY glideinlab /usr/lib\": no such file or directory"]


@pytest.mark.parametrize(
    "log, step",
    [
        (CLASSIC, "Step 3/4 : RUN apt-get install -y --no-install-recommends htcondor"),
        (BUILDKIT, "#6 [3/3] RUN pip install nothing"),
        (PODMAN, "STEP 2/3: COPY glideinlab /usr/lib/python3/dist-packages/"),
        (["W: mirror unreachable", "E: debootstrap failed"], "(before the first step)"),
    ],
    ids=["classic", "buildkit", "podman", "no-step"],
)
def test_build_failure_names_the_failing_step_and_shows_the_tail(log, step):
    message = images._build_failure("glideinlab/base:trixie", "\n".join(log) + "\n\n")
    first, *rest = message.splitlines()
    assert first == f"building glideinlab/base:trixie failed at {step}"
    tail = [line.strip() for line in rest[1:]]
    assert tail == [line.strip() for line in log[-15:]]


def test_build_failure_tail_is_the_last_15_lines_only():
    message = images._build_failure("t", "\n".join(CLASSIC))
    assert "Get:17 " in message and "Get:16 " not in message  # Get:17..29 + the 2 error lines


def test_build_failure_reaches_the_user_through_the_cli(capsys, monkeypatch):
    log = "\n".join(CLASSIC)

    def build(*args, **kwargs):
        raise images.BuildError(images._build_failure("glideinlab/base:trixie", log))
    monkeypatch.setattr(engine, "detect", lambda: engine.Engine("docker", ("docker-compose",)))
    monkeypatch.setattr(images, "build", build)
    code, _, err = run(capsys, ["build"])
    assert code == images.BuildError.exit_code == 4
    assert err.startswith("glideinlab: building glideinlab/base:trixie failed at Step 3/4 : RUN apt-get")
    assert "E: Unable to locate package htcondor" in err
    assert "Traceback" not in err


# -- defaults --------------------------------------------------------------------------------------
def test_defaults_prints_every_section_and_knob(capsys):
    code, out, _ = run(capsys, ["defaults"])
    assert code == 0
    sections = all_sections()
    assert {s.name for s in sections} >= {"workspace", "images", "htcondor_timing", "glideinwms_timing"}
    for section in sections:
        assert f"[{section.name}] {section.help}\n" in out
        for knob in section:
            assert f"  {knob.name} = {knob.default!r}" in out, f"{section.name}.{knob.name}"
    assert out.count("\n[") + out.startswith("[") == len(sections)


@pytest.mark.parametrize(
    "line", ["  up_timeout = 300 s\n", "  NEGOTIATOR_INTERVAL = (2, 60) s\n", "  name = 'default'\n"]
)
def test_defaults_shows_the_unit_after_the_value(capsys, line):
    _, out, _ = run(capsys, ["defaults"])
    assert line in out
