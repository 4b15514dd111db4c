"""``glideinlab``: the workspace command line.

Verbs: build, up, down, status, logs, exec, shell, doctor, smoke, defaults.  Every user mistake ends in
one line ``glideinlab: <what is wrong> (<how to fix it>)`` and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..defaults import workspace as D
from ..errors import UserError

_T0 = time.monotonic()


def progress(message: str) -> None:
    """Progress for anything that takes seconds, with the elapsed time, on stderr."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def _name(args) -> str:
    return args.name or os.environ.get("GLIDEINLAB_WORKSPACE") or D.WORKSPACE["name"].default


def _workspace(args):
    from ..workspace.backend import Workspace

    return Workspace.load(_name(args))


# -- verbs ------------------------------------------------------------------------------------------
def cmd_build(args) -> int:
    from ..workspace import images
    from ..workspace.engine import detect

    spec = _spec_from(args)
    engine = detect()
    imgs = images.ImageSet(images.image_prefix(), spec.suite)
    t0 = time.monotonic()
    timings = images.build(engine, imgs, mirror=args.mirror, base_image=args.base_image or "",
                           progress=progress, no_cache=args.no_cache)
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
    print(f"images built in {time.monotonic() - t0:.1f} s ({steps})")
    return 0


def _spec_from(args):
    from ..workspace.spec import WorkspaceSpec

    return WorkspaceSpec.create(name=_name(args), workers=getattr(args, "workers", None),
                                htcondor=getattr(args, "htcondor", None), profile=getattr(args, "profile", None),
                                publish_ports=getattr(args, "publish_ports", None) or None)


def cmd_up(args) -> int:
    from ..workspace.backend import Workspace

    ws = Workspace(_spec_from(args))
    took = ws.up(progress=progress)
    print(f"workspace {ws.spec.name} is up ({len(ws.spec.nodes)} nodes, HTCondor {ws.spec.htcondor}, "
          f"profile {ws.spec.profile}) in {took:.1f} s")
    return 0


def cmd_down(args) -> int:
    from ..workspace.backend import Workspace
    from ..workspace.spec import WorkspaceSpec

    try:
        ws = _workspace(args)
    except UserError:
        ws = Workspace(WorkspaceSpec.create(name=_name(args)))  # clean up leftovers by label anyway
    ws.down(volumes=args.volumes, progress=progress)
    return 0


def cmd_status(args) -> int:
    ws = _workspace(args)
    statuses = ws.status(probe=True)
    ok = all(s.ok for s in statuses)
    if args.json:
        print(json.dumps({"workspace": ws.spec.name, "ok": ok, "nodes": [
            {"node": s.node, "role": s.role, "container": s.container, "health": s.health,
             "ok": s.ok, **(s.probe or {})} for s in statuses]}, indent=2))
        return 0 if ok else 1
    for s in statuses:
        print(f"{s.node:22} {s.role:9} {s.container:10} {s.health:10} {'OK' if s.ok else 'NOT OK'}")
        for part in ("daemons", "services"):
            for name, result in (s.probe or {}).get(part, {}).items():
                mark = "ok" if result.get("ok") else f"FAIL {result.get('error') or result.get('state')}"
                print(f"    {name:24} {mark}")
        glideins = (s.probe or {}).get("glideins")
        if glideins:
            counts = ", ".join(f"{k} {v}" for k, v in glideins.items() if k != "held_reason") or "none"
            print(f"    {'glideins':24} {counts}")
            if glideins.get("held_reason"):
                print(f"    {'':24} held because: {glideins['held_reason']}")
    print(f"workspace {ws.spec.name}: {'ready' if ok else 'NOT ready'}")
    return 0 if ok else 1


def cmd_logs(args) -> int:
    ws = _workspace(args)
    services = [args.node] if args.node else [n.service for n in ws.spec.nodes]
    script = ("for f in /var/log/glideinlab/*.log /var/log/condor/*Log /var/log/condor-ce/*Log "
              "/var/log/gwms-*/*/*.log; do [ -f \"$f\" ] || continue; echo \"==> $f <==\"; "
              f"tail -n {args.lines} \"$f\"; done")
    for service in services:
        print(f"===== {service} =====", flush=True)
        proc = ws.exec(service, ["sh", "-c", script], capture=False)
        if proc.returncode not in (0, None):
            return proc.returncode
    return 0


def cmd_exec(args) -> int:
    cmd = list(args.cmd)
    if "--" in cmd:  # options written after the node (`exec NODE --name dev -u testuser -- CMD`) count too
        split = cmd.index("--")
        before, cmd = cmd[:split], cmd[split + 1:]
        late = argparse.ArgumentParser(prog="glideinlab exec NODE", add_help=False, exit_on_error=False)
        late.add_argument("--name")
        late.add_argument("-u", "--user")
        try:
            options, unknown = late.parse_known_args(before)
        except argparse.ArgumentError as err:
            raise UserError(f"exec: {err}") from None
        if unknown:
            raise UserError(f"exec: unknown option(s) before `--`: {' '.join(unknown)}",
                            hint="valid there: --name NAME, -u/--user USER")
        args.name = options.name or args.name
        args.user = options.user or args.user
    ws = _workspace(args)
    if not cmd:
        raise UserError("exec needs a command after the node, e.g. `glideinlab exec frontend-workspace -- condor_q`")
    return ws.exec(args.node, cmd, user=args.user, tty=sys.stdin.isatty() and sys.stdout.isatty()).returncode


def cmd_shell(args) -> int:
    ws = _workspace(args)
    return ws.exec(args.node, ["bash", "-l"], user=args.user, tty=True).returncode


def cmd_doctor(args) -> int:
    from .doctor import run_checks

    problems = 0
    for check in run_checks():
        mark = "ok  " if check.ok else "FAIL"
        print(f"[{mark}] {check.name}: {check.detail}" + ("" if check.ok else f"\n       fix: {check.fix}"))
        problems += not check.ok
    print("ready to run glideinlab" if not problems else f"{problems} problem(s) found")
    return 0 if not problems else 1


def cmd_smoke(args) -> int:
    from ..smoke.run import run_smoke

    return run_smoke(args, progress=progress)


def cmd_defaults(args) -> int:
    from ..defaults import all_sections

    for section in all_sections():
        print(f"[{section.name}] {section.help}")
        for knob in section:
            unit = f" {knob.unit}" if knob.unit else ""
            print(f"  {knob.name} = {knob.default!r}{unit}\n      {knob.help}")
    return 0


# -- parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glideinlab", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version="glideinlab 0.1.0")
    sub = p.add_subparsers(dest="verb", metavar="VERB")

    def verb(name, fn, help):
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--name", help="workspace name (default: $GLIDEINLAB_WORKSPACE or 'default')")
        sp.set_defaults(fn=fn)
        return sp

    W = D.WORKSPACE
    sp = verb("build", cmd_build, "build the node images offline (debootstrap + docker import + Dockerfiles)")
    sp.add_argument("--htcondor", choices=W["htcondor"].choices, help=W["htcondor"].help)
    sp.add_argument("--mirror", default=D.IMAGES["mirror"].default, help=D.IMAGES["mirror"].help)
    sp.add_argument("--base-image", help=D.IMAGES["base_image"].help)
    sp.add_argument("--no-cache", action="store_true", help="rebuild every layer (a cold build)")

    sp = verb("up", cmd_up, "bring the workspace up and wait until every node is healthy")
    sp.add_argument("--workers", type=int, help=W["workers"].help)
    sp.add_argument("--htcondor", choices=W["htcondor"].choices, help=W["htcondor"].help)
    sp.add_argument("--profile", choices=W["profile"].choices, help=W["profile"].help)
    sp.add_argument("--publish-ports", action="store_true", help=W["publish_ports"].help)

    sp = verb("down", cmd_down, "stop and remove the workspace's containers and network")
    sp.add_argument("--volumes", action="store_true",
                    help="also remove volumes and the workspace's state (trust, rendered configs)")

    sp = verb("status", cmd_status, "per node: container, health, each HTCondor daemon and service")
    sp.add_argument("--json", action="store_true", help="machine-readable output")

    sp = verb("logs", cmd_logs, "tail the HTCondor and service logs of one node or all")
    sp.add_argument("node", nargs="?", help="node name, e.g. factory-workspace")
    sp.add_argument("-n", "--lines", type=int, default=40, help="lines per log file")

    sp = verb("exec", cmd_exec, "run a command in a node: glideinlab exec NODE -- CMD...")
    sp.add_argument("node")
    sp.add_argument("-u", "--user", help="run as this user (e.g. testuser)")
    sp.add_argument("cmd", nargs=argparse.REMAINDER)

    sp = verb("shell", cmd_shell, "open a shell in a node")
    sp.add_argument("node")
    sp.add_argument("-u", "--user")

    verb("doctor", cmd_doctor, "check this machine: engine, compose, disk space, kernel limits")

    sp = verb("smoke", cmd_smoke, "submit jobs and follow the pilot cycle stage by stage")
    sp.add_argument("--jobs", type=int, default=10, help="user jobs to submit")
    sp.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per stage")
    sp.add_argument("--json", action="store_true", help="machine-readable result")
    sp.add_argument("--workers", type=int, help=W["workers"].help + " (when smoke brings the workspace up)")
    sp.add_argument("--bundle-dir", help="where to collect logs on failure")

    verb("defaults", cmd_defaults, "print every default with its unit and help")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        return args.fn(args) or 0
    except UserError as err:
        print(f"glideinlab: {err.line()}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("glideinlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
