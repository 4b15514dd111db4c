"""Benchmarks of the pilot cycle, the headline timings (issue: smoke test, CI and headline timings).

    python bench/pilot.py latency   # submit -> first user job running, empty pool, vs a bare HTCondor pool
    python bench/pilot.py smoke     # the smoke test's total for 10 jobs (1 worker) and 100 jobs (3 workers)
    python bench/pilot.py scale     # glideins at once before things degrade, and memory per glidein

Each prints its figures and appends a JSON line to bench/results/pilot_<name>.jsonl.  Timings inside a
node are taken inside the node (one Python process submits and polls through the bindings), the same
way for the floor and for the workspace, so the container runtime's exec overhead is in neither.
"""

from __future__ import annotations

import argparse
import json
import time

from common import Floor, bench_workspace, container_memory, progress, record

from glideinlab.smoke.run import STAGES, Smoke

# submit one short job and wait until it runs; prints the seconds it took (run inside a node)
TIME_TO_RUNNING = """
import json, sys, time, htcondor2
schedd = htcondor2.Schedd()
t0 = time.time()
cluster = schedd.submit(htcondor2.Submit({"executable": "/bin/sleep", "arguments": "5",
    "request_memory": "100", "request_cpus": "1", "should_transfer_files": "YES"})).cluster()
while True:
    ads = schedd.query(f"ClusterId == {cluster}", ["JobStatus"])
    if ads and ads[0]["JobStatus"] == 2:
        break
    if time.time() - t0 > 600:
        sys.exit("job never ran")
    time.sleep(0.2)
print(json.dumps({"seconds": time.time() - t0}))
"""
NO_GLIDEINS = "import htcondor2; print(len(htcondor2.Collector().query(htcondor2.AdTypes.Startd, " \
              "'GLIDECLIENT_Name =!= undefined', ['Name'])))"


def latency(args) -> None:
    ws = bench_workspace("benchpilot", workers=1)
    image = ws.images.role("worker")
    floors, pilots = [], []
    floor = Floor([image])
    floor.start()
    try:
        floor.wait_ready()
        for _ in range(args.repeat):
            out = floor.exec(0, "python3", "-c", TIME_TO_RUNNING, user="testuser")  # root may not submit
            if out.returncode != 0:
                raise RuntimeError(f"floor job failed: {out.stderr.strip()[-500:]}")
            floors.append(json.loads(out.stdout)["seconds"])
            progress(f"floor: job running after {floors[-1]:.1f} s")
    finally:
        floor.stop()
    ws.up(progress=progress)
    try:
        for _ in range(args.repeat):
            _wait_empty(ws)
            out = ws.exec("frontend-workspace", ["python3", "-c", TIME_TO_RUNNING], user="testuser", capture=True)
            pilots.append(json.loads(out.stdout)["seconds"])
            progress(f"workspace: job running after {pilots[-1]:.1f} s")
    finally:
        ws.down(volumes=True, progress=progress)
    fl, pi = min(floors), min(pilots)
    record("pilot_latency", {"floor_s": [round(x, 1) for x in floors], "workspace_s": [round(x, 1) for x in pilots],
                             "floor_best_s": round(fl, 1), "workspace_best_s": round(pi, 1),
                             "ratio": round(pi / fl, 1)}, profile=ws.spec.profile, image=image)
    print(f"submit -> first job running: empty glideinlab pool {pi:.1f} s, bare HTCondor pool {fl:.1f} s, "
          f"ratio {pi / fl:.1f}")


def _wait_empty(ws, timeout: float = 600) -> None:
    """An empty pool: no glidein from an earlier run may take the job."""
    deadline = time.monotonic() + timeout
    while int(ws.exec("frontend-workspace", ["python3", "-c", NO_GLIDEINS], capture=True).stdout or 1):
        if time.monotonic() > deadline:
            raise RuntimeError("glideins did not leave the pool")
        time.sleep(5)


def smoke(args) -> None:
    figures = {}
    for jobs, workers in ((10, 1), (100, 3)):
        ws = bench_workspace(f"benchsmoke{workers}", workers=workers, worker_cpus=4, worker_memory=8192)
        ws.up(progress=progress)
        try:
            result = Smoke(ws, jobs, timeout=900, progress=progress).run()
        finally:
            ws.down(volumes=True, progress=progress)
        key = f"jobs{jobs}_workers{workers}"
        figures[key] = {"ok": result.ok, "total_s": round(result.total, 1),
                        "stages_s": {s.key: round(result.reached[s.key], 1) for s in STAGES if s.key in result.reached}}
        print(f"smoke {jobs} jobs, {workers} worker(s): {'PASS' if result.ok else 'FAIL'} in {result.total:.1f} s")
        print(result.table())
    record("pilot_smoke", figures, profile="fast", image="glideinlab/worker:trixie")


SLOTS = """
import json, time, htcondor2
ads = htcondor2.Collector().query(htcondor2.AdTypes.Startd, 'GLIDECLIENT_Name =!= undefined',
                                  ["Name", "State", "LastHeardFrom", "UpdatesLost", "UpdatesTotal"])
now = time.time()
print(json.dumps({"startds": len({a["Name"].split("@", 1)[-1] for a in ads}),
                  "claimed": sum(1 for a in ads if a.get("State") == "Claimed"),
                  "lost": sum(a.get("UpdatesLost", 0) for a in ads),
                  "stalest": max([now - a.get("LastHeardFrom", now) for a in ads] or [0])}))
"""


def scale(args) -> None:
    """Grow the number of busy glideins step by step until a step slows down or updates get lost."""
    ws = bench_workspace("benchscale", workers=1, worker_cpus=args.max, worker_memory=args.max * 1100)
    ws.up(progress=progress)
    steps, submitted = [], 0
    try:
        baseline = sum(container_memory([c["ID"] for c in ws.containers() if "worker" in c["Names"]]).values())
        for target in _targets(args.max):
            extra = target - submitted
            ws.exec("frontend-workspace", ["python3", "-m", "glideinlab.smoke.jobs", "submit", str(extra),
                                           str(args.job_seconds)], user="testuser", capture=True)
            submitted = target
            t0 = time.monotonic()
            while True:
                state = json.loads(ws.exec("frontend-workspace", ["python3", "-c", SLOTS], capture=True).stdout)
                if state["claimed"] >= target or time.monotonic() - t0 > args.step_timeout:
                    break
                time.sleep(2)
            took = time.monotonic() - t0
            worker_mem = sum(container_memory([c["ID"] for c in ws.containers() if "worker" in c["Names"]]).values())
            step = {"glideins": target, "busy": state["claimed"], "seconds": round(took, 1),
                    "updates_lost": state["lost"], "stalest_update_s": round(state["stalest"], 1),
                    "worker_mem_mib": round(worker_mem, 1),
                    "mem_per_glidein_mib": round((worker_mem - baseline) / max(1, state["startds"]), 1)}
            steps.append(step)
            progress(f"step {step}")
            if _degraded(steps):
                break
    finally:
        ws.exec("frontend-workspace", ["condor_rm", "-all"], user="testuser", capture=True)
        ws.down(volumes=True, progress=progress)
    good = [s for s in steps if not _degraded([steps[0], s])]
    best = max((s["glideins"] for s in good), default=0)
    # growth that ended at --max without degrading found no limit, only a lower bound
    limited = bool(steps) and not _degraded(steps)
    record("pilot_scale", {"steps": steps, "max_glideins_before_degrading": best, "stopped_at_max": limited,
                           "mem_per_glidein_mib": steps[-1]["mem_per_glidein_mib"] if steps else None},
           profile="fast", image="glideinlab/worker:trixie")
    for s in steps:
        print(f"{s['glideins']:4} glideins: {s['busy']:4} busy after {s['seconds']:6.1f} s, lost updates "
              f"{s['updates_lost']}, stalest update {s['stalest_update_s']} s, {s['mem_per_glidein_mib']} MiB/glidein")
    if limited:
        print(f"glideins at once on this machine: {best} without degrading (stopped at --max; no limit found)")
    else:
        print(f"glideins at once on this machine before degrading: {best}")


def _targets(maximum: int) -> list[int]:
    out, n = [], 2
    while n <= maximum:
        out.append(n)
        n *= 2
    return out


def _degraded(steps: list[dict]) -> bool:
    """A step that missed its target, lost updates, or took > 3x the first step's time per glidein."""
    last, first = steps[-1], steps[0]
    per_glidein = first["seconds"] / first["glideins"]
    return (last["busy"] < last["glideins"] or last["updates_lost"] > 0 or last["stalest_update_s"] > 30
            or last["seconds"] > 3 * per_glidein * last["glideins"] + 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--repeat", type=int, default=2)
    sub.add_parser("smoke")
    p = sub.add_parser("scale")
    p.add_argument("--max", type=int, default=32, help="stop growing at this many glideins")
    p.add_argument("--job-seconds", type=int, default=900, help="how long each job keeps its glidein busy")
    p.add_argument("--step-timeout", type=float, default=600)
    args = parser.parse_args()
    {"latency": latency, "smoke": smoke, "scale": scale}[args.what](args)


if __name__ == "__main__":
    main()
