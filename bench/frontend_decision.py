"""Benchmark: one frontend group decision on a large queue, against upstream's matching algorithm.

The snapshot: 100,000 idle jobs whose (DESIRED_Sites, RequestCpus, RequestMemory) come from a few
hundred combinations with a long tail, 1,000 entries (250 sites × GLIDEIN_CPUS 1/4/8/8), some glidein
slots and running jobs; the group's match_expr checks the site list and memory.  Timed in one run
(best of ``--repeat``, each after a garbage collection; wall and process CPU time, the latter being the
better measure when other work shares the machine):

* ``decision``: ``compute_group`` with an empty match cache (a frontend's first cycle);
* ``next_cycle``: ``compute_group`` on the next cycle's snapshot (2% of the jobs replaced, one entry
  changed) with the cache the first cycle left;
* ``matching``: clustering + matching alone (``collect_jobs`` + ``match_jobs``, empty cache), the part
  upstream's ``countMatch`` does;
* ``reference``: ``compute_group`` with the previous, straightforward matching
  (:mod:`glideinlab.frontend.matching_reference`); its requests must equal the decision's;
* ``baseline``: upstream's algorithm in our own few lines, so a ratio exists without upstream: jobs
  clustered by their match attrs, the equivalent Python match expression evaluated once per
  (cluster, entry), matched job ids collected per entry and split evenly over each set of entries
  they match (:func:`baseline_count_match`);
* ``upstream`` (with ``--upstream PATH``): upstream's own ``glideinFrontendLib.countMatch`` imported at
  run time from a GlideinWMS checkout the user has (nothing of it is in this repository), fed the same
  idle jobs and entries and the equivalent Python expression.  Its per-entry counts are compared with
  ours.

Appends one JSON line to bench/results/frontend_decision.jsonl. No assertions on time.

    python bench/frontend_decision.py [--upstream PATH] [--jobs N] [--entries N] [--repeat N] [--seed N]
                                      [--no-record]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import math
import os
import platform
import random
import resource
import subprocess
import sys
import time
import tracemalloc
import types
from pathlib import Path
from typing import Any, Callable

import classad2

from glideinlab.frontend import matching_reference, policy
from glideinlab.frontend.config import parse_frontend_config
from glideinlab.frontend.matching import MatchCache, collect_jobs, match_jobs
from glideinlab.frontend.policy import Snapshot, compute_group
from glideinlab.frontend.values import SkipLog

RESULTS = Path(__file__).resolve().parent / "results" / "frontend_decision.jsonl"
COLLECTOR = "factory.bench:9618"
SCHEDD = "schedd.bench"
MATCH_EXPR = ("stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites) && "
              "(TARGET.GLIDEIN_MaxMemMBs =?= undefined || TARGET.GLIDEIN_MaxMemMBs >= MY.RequestMemory)")
#: the same condition as upstream writes it (a Python expression over ``job`` and ``glidein``), plus the
#: GLIDEIN_CPUS >= RequestCpus check our policy applies on its own
PYTHON_MATCH_EXPR = (
    '(glidein["attrs"].get("GLIDEIN_CPUS", 1) >= job.get("RequestCpus", 1)) and '
    '(glidein["attrs"]["GLIDEIN_Site"] in job["DESIRED_Sites"].split(",")) and '
    '(glidein["attrs"].get("GLIDEIN_MaxMemMBs") is None or glidein["attrs"]["GLIDEIN_MaxMemMBs"] >= job["RequestMemory"])'
)
JOB_MATCH_ATTRS = ("DESIRED_Sites", "RequestMemory", "RequestCpus")
NOW = 1_800_000_000


def build_config():
    cfg = parse_frontend_config({
        "frontend_name": "bench",
        "user_collector": "user.bench:9618",
        "schedds": [SCHEDD],
        "factories": [{"collector": COLLECTOR, "factory_identity": "g@f", "my_identity": "fe@f"}],
        "stage": {"web_base_url": "http://bench/stage"},
        "groups": {"main": {
            "match_expr": MATCH_EXPR,
            "job_match_attrs": ["DESIRED_Sites", "RequestMemory"],
            "factory_match_attrs": ["GLIDEIN_Site", "GLIDEIN_MaxMemMBs"],
        }},
    }, "bench")
    return cfg, cfg.group("main")


def build_entries(n: int) -> list[dict]:
    cpus_cycle = (1, 4, 8, 8)
    return [{
        "Name": f"entry{i}@gf@factory", "EntryName": f"entry{i}", "GlideinName": "gf", "FactoryName": "factory",
        "FactoryCollector": COLLECTOR, "GLIDEIN_Site": f"Site{i // len(cpus_cycle)}",
        "GLIDEIN_CPUS": cpus_cycle[i % len(cpus_cycle)], "GLIDEIN_MaxMemMBs": 2500 * cpus_cycle[i % len(cpus_cycle)],
        "GLIDEIN_In_Downtime": i % 97 == 0,
    } for i in range(n)]


class JobMaker:
    """Jobs drawn from ~300 combinations with Zipf-like weights: a few big workflows, a long tail."""

    def __init__(self, sites: int, rng: random.Random) -> None:
        self.rng = rng
        self.combos = []
        for _ in range(300):
            wanted = rng.sample(range(sites), k=min(sites, rng.choice((1, 1, 2, 5, 10, 20, 50))))
            self.combos.append((",".join(f"Site{s}" for s in wanted), rng.choice((1, 1, 1, 2, 4, 8)),
                                rng.choice((2000, 2000, 4000, 8000))))
        self.weights = [1 / (rank + 1) ** 1.1 for rank in range(len(self.combos))]
        self.next_id = 0

    def jobs(self, n: int) -> list[dict]:
        out = []
        for sites_list, cpus, memory in self.rng.choices(self.combos, weights=self.weights, k=n):
            i = self.next_id
            self.next_id += 1
            out.append({"ClusterId": i // 100, "ProcId": i % 100, "JobStatus": 1, "ScheddName": SCHEDD,
                        "EnteredCurrentStatus": NOW - self.rng.randint(0, 7200), "ServerTime": NOW,
                        "RequestCpus": cpus, "RequestMemory": memory, "DESIRED_Sites": sites_list})
        return out


def build_running(entries: list[dict], n_glideins: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Slots of n glideins (one busy and one idle slot each) and a running job on every busy slot."""
    slots, jobs = [], []
    for g in range(n_glideins):
        e = entries[rng.randrange(len(entries))]
        base = {"GLIDECLIENT_Name": "bench.main", "GLIDEIN_Entry_Name": e["EntryName"], "GLIDEIN_Name": "gf",
                "GLIDEIN_Factory": "factory", "Cpus": 1, "Memory": 2500}
        slots.append({**base, "Name": f"slot1@glidein_{g}@wn{g}", "State": "Claimed", "Activity": "Busy"})
        slots.append({**base, "Name": f"slot2@glidein_{g}@wn{g}", "State": "Unclaimed", "Activity": "Idle"})
        jobs.append({"ClusterId": 900000 + g, "ProcId": 0, "JobStatus": 2, "ScheddName": SCHEDD,
                     "RequestCpus": 1, "RequestMemory": 2000, "DESIRED_Sites": e["GLIDEIN_Site"],
                     "RemoteHost": f"slot1@glidein_{g}@wn{g}", "EnteredCurrentStatus": NOW - 60})
    return slots, jobs


CPU: dict[str, float] = {}  # name → best CPU time of the figure of that name (robust when the machine is busy)


def best_of(repeat: int, run: Callable[..., Any], prepare: Callable[[], Any] | None = None,
            name: str = "") -> tuple[float, Any]:
    """Fastest wall time of ``repeat`` runs (each after ``prepare`` and a collection) and the last result;
    the fastest process CPU time goes to ``CPU[name]``."""
    best, best_cpu, result = math.inf, math.inf, None
    for _ in range(repeat):
        arg = prepare() if prepare else None
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        result = run() if prepare is None else run(arg)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    CPU[name] = best_cpu
    return best, result


# --------------------------------------------------------------------------- upstream's algorithm, two ways


def baseline_count_match(idle_jobs: list[dict], entries: list[dict], python_expr: str) -> dict[str, dict]:
    """Upstream's data flow in our own code, so a ratio exists without an upstream checkout.

    Jobs are clustered by their match attrs; the compiled Python expression is evaluated once per
    (entry, cluster); each entry collects the ids of the jobs it matches; jobs are then grouped by the
    exact set of entries they match and split evenly over it.  Per-job bookkeeping like upstream's
    (job-id sets per entry) makes this cost grow with jobs × matched entries, as upstream's does.
    Returns count / prop / hereonly per entry Name.
    """
    code = compile(python_expr, "<match_expr>", "eval")
    clusters: dict[tuple, list[int]] = {}
    first: dict[tuple, dict] = {}
    for index, job in enumerate(idle_jobs):
        key = tuple(job.get(a) for a in JOB_MATCH_ATTRS)
        members = clusters.get(key)
        if members is None:
            members = clusters[key] = []
            first[key] = job
        members.append(index)
    matching_jobs: list[set[int]] = []
    for entry in entries:
        glidein = {"attrs": entry, "params": {}, "monitor": {}}
        ids: list[int] = []
        for key, members in clusters.items():
            if eval(code, {}, {"job": first[key], "glidein": glidein}):  # noqa: S307 -- the bench's own expression
                ids.extend(members)
        matching_jobs.append(set(ids))
    entries_of_job: dict[int, list[int]] = {}
    for index, ids in enumerate(matching_jobs):
        for job_id in ids:
            entries_of_job.setdefault(job_id, []).append(index)
    by_set: dict[tuple[int, ...], int] = {}
    for members in entries_of_job.values():
        key = tuple(members)
        by_set[key] = by_set.get(key, 0) + 1
    count, prop, here = [0] * len(entries), [0.0] * len(entries), [0] * len(entries)
    for members, n in by_set.items():
        for i in members:
            count[i] += n
            prop[i] += n / len(members)
            if len(members) == 1:
                here[i] += n
    return {e["Name"]: {"count": count[i], "prop": math.ceil(prop[i] - 1e-9), "hereonly": here[i]}
            for i, e in enumerate(entries)}


def load_upstream(path: str) -> tuple[types.ModuleType, dict[str, str]]:
    """upstream's glideinFrontendLib from a GlideinWMS checkout (its root, or a directory holding
    ``glideinwms/``), and the checkout's version and commit for the record (never its path)."""
    root = Path(path).expanduser().resolve()
    if (root / "frontend" / "glideinFrontendLib.py").is_file():
        package = types.ModuleType("glideinwms")
        package.__path__ = [str(root)]
        sys.modules["glideinwms"] = package
    elif (root / "glideinwms" / "frontend" / "glideinFrontendLib.py").is_file():
        sys.path.insert(0, str(root))
        root = root / "glideinwms"
    else:
        raise SystemExit(f"--upstream {path}: no frontend/glideinFrontendLib.py there (give a GlideinWMS checkout)")
    try:
        from glideinwms.frontend import glideinFrontendLib
        from glideinwms.lib import logSupport
    except ImportError as err:
        raise SystemExit(f"--upstream {path}: cannot import glideinFrontendLib: {err}") from None
    logSupport.log = logging.getLogger("upstream")  # countMatch logs through it when an expression fails
    return glideinFrontendLib, {"version": _git(root, "describe", "--tags", "--always"),
                                "commit": _git(root, "rev-parse", "HEAD")}


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class _StoredQueue:
    """What countMatch reads from upstream's CondorQ: ``fetchStored()`` → {(ClusterId, ProcId): job}."""

    def __init__(self, jobs: list[dict]) -> None:
        self.stored = {(j["ClusterId"], j["ProcId"]): j for j in jobs}

    def fetchStored(self) -> dict:  # noqa: N802 -- upstream's name
        return self.stored


def upstream_count_match(lib: types.ModuleType, idle_jobs: list[dict], entries: list[dict]) -> dict[str, dict]:
    glideins = {(COLLECTOR, e["Name"], "bench"): {"attrs": e, "params": {}, "monitor": {}} for e in entries}
    count, prop, hereonly, prop_mc = lib.countMatch(
        compile(PYTHON_MATCH_EXPR, "<string>", "eval"), {SCHEDD: _StoredQueue(idle_jobs)}, glideins, {}, False,
        list(JOB_MATCH_ATTRS))
    return {key[1]: {"count": count[key], "prop": int(prop[key]), "hereonly": hereonly[key],
                     "prop_mc": int(prop_mc[key])} for key in glideins}


def compare(ours: dict[str, Any], theirs: dict[str, dict]) -> dict[str, bool]:
    """Per field, whether every entry's value agrees."""
    fields = {"count": "idle", "prop": "prop_idle", "hereonly": "unique_idle", "prop_mc": "prop_mc_idle"}
    out = {}
    for field, ours_field in fields.items():
        if all(field in v for v in theirs.values()):
            out[field] = all(getattr(ours[name], ours_field) == v[field] for name, v in theirs.items())
    return out


# ---------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", metavar="PATH",
                        help="a GlideinWMS checkout (e.g. 3.10): also time its own countMatch on this snapshot")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000)
    parser.add_argument("--glideins", type=int, default=400,
                        help="busy glideins, each also with an idle slot (>= 1000 trips idle_vms_total)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the fastest is recorded")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to the results file")
    args = parser.parse_args()
    upstream = load_upstream(args.upstream) if args.upstream else None

    rng = random.Random(args.seed)
    cfg, group = build_config()
    entries = build_entries(args.entries)
    maker = JobMaker(sites=len({e["GLIDEIN_Site"] for e in entries}), rng=rng)
    idle_jobs = maker.jobs(args.jobs)
    slots, running = build_running(entries, args.glideins, rng)
    snapshot = Snapshot(now=NOW, jobs=idle_jobs + running, entries=entries, slots=slots)
    # the next cycle: 2% of the idle jobs replaced by new ones, one entry's memory changed
    churn = args.jobs // 50
    next_entries = [dict(e) for e in entries]
    next_entries[len(entries) // 2]["GLIDEIN_MaxMemMBs"] = 3000
    next_snapshot = Snapshot(now=NOW + 60, jobs=idle_jobs[churn:] + maker.jobs(churn) + running,
                             entries=next_entries, slots=slots)

    decision_s, result = best_of(args.repeat, lambda: compute_group(snapshot, cfg, group, {}, MatchCache()),
                                 name="decision")

    def first_cycle() -> MatchCache:
        cache = MatchCache()
        compute_group(snapshot, cfg, group, {}, cache)
        return cache

    next_s, next_result = best_of(args.repeat, lambda cache: compute_group(next_snapshot, cfg, group, {}, cache),
                                  prepare=first_cycle, name="next_cycle")

    def matching_only():
        jobs = collect_jobs(snapshot.jobs, group.effective_job_match_attrs, NOW, 600, set(), SkipLog("jobs"))
        return match_jobs(list(jobs.clusters.values()), policy._read_entries(
            entries, group.effective_factory_match_attrs, []), MATCH_EXPR, False, MatchCache())

    matching_s, _ = best_of(args.repeat, matching_only, name="matching")
    reference_s, reference = best_of(args.repeat, lambda: _reference_compute_group(snapshot, cfg, group),
                                        name="reference")
    same = reference.requests == result.requests and reference.unmatched.idle == result.unmatched.idle

    tracemalloc.start()  # one more run under tracing: tracing slows it, so the timed runs are untraced
    compute_group(snapshot, cfg, group, {}, MatchCache())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    ours = {name: r.jobs for (_, name), r in result.requests.items()}
    baseline_s, baseline = best_of(args.repeat, lambda: baseline_count_match(idle_jobs, entries, PYTHON_MATCH_EXPR),
                                     name="baseline")
    figures: dict[str, Any] = {
        "jobs": len(snapshot.jobs), "idle_jobs": result.jobs.idle, "entries": len(entries), "slots": len(slots),
        "clusters": result.clusters, "entry_signatures": result.entry_signatures,
        "evaluations": result.evaluations, "next_cycle_evaluations": next_result.evaluations,
        "decision_s": round(decision_s, 3), "next_cycle_s": round(next_s, 3), "matching_s": round(matching_s, 3),
        "reference_s": round(reference_s, 3), "reference_evaluations": reference.evaluations,
        "same_results_as_reference": same,
        "baseline_s": round(baseline_s, 3), "baseline_agrees": compare(ours, baseline),
        "peak_traced_mb": round(peak / 2**20, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # whole process
        "unmatched_idle": result.unmatched.idle, "req_idle_total": sum(r.req_idle for r in result.requests.values()),
        "warnings": len(result.warnings),
        "speedup_vs_reference": _ratio(reference_s, decision_s),
        "baseline_over_matching": _ratio(baseline_s, matching_s),
        "baseline_over_decision": _ratio(baseline_s, decision_s),
    }
    figures["baseline_over_decision_cpu"] = _ratio(CPU["baseline"], CPU["decision"])
    record_upstream = None
    if upstream:
        lib, record_upstream = upstream
        upstream_s, theirs = best_of(args.repeat, lambda: upstream_count_match(lib, idle_jobs, entries),
                                      name="upstream")
        figures.update({
            "upstream_s": round(upstream_s, 3), "upstream_agrees": compare(ours, theirs),
            "upstream_over_matching": _ratio(upstream_s, matching_s),
            "upstream_over_decision": _ratio(upstream_s, decision_s),
            "upstream_over_next_cycle": _ratio(upstream_s, next_s),
            "upstream_over_decision_cpu": _ratio(CPU["upstream"], CPU["decision"]),
            "upstream_over_next_cycle_cpu": _ratio(CPU["upstream"], CPU["next_cycle"]),
        })
    figures["cpu_s"] = {name: round(value, 3) for name, value in CPU.items()}

    print(f"snapshot: {figures['jobs']} jobs ({result.jobs.idle} idle) × {len(entries)} entries, "
          f"{result.clusters} clusters, {result.entry_signatures} entry signatures")
    print(f"decision (compute_group, empty cache):  {decision_s:.3f} s  ({result.evaluations} evaluations)")
    print(f"next cycle (cache kept, 2% new jobs):   {next_s:.3f} s  ({next_result.evaluations} evaluations)")
    print(f"matching only (collect + match_jobs):   {matching_s:.3f} s")
    print(f"reference (previous implementation):    {reference_s:.3f} s  ({reference.evaluations} evaluations), "
          f"same requests: {'yes' if same else 'NO'}")
    print(f"baseline (upstream's algorithm, ours):  {baseline_s:.3f} s  agrees: {figures['baseline_agrees']}")
    if upstream:
        print(f"upstream countMatch ({record_upstream['version']}):  {figures['upstream_s']:.3f} s  "
              f"agrees: {figures['upstream_agrees']}")
        print(f"ratio upstream / ours: matching {figures['upstream_over_matching']}×, decision "
              f"{figures['upstream_over_decision']}×, next cycle {figures['upstream_over_next_cycle']}×")
    print(f"ratio baseline / ours: matching {figures['baseline_over_matching']}×, decision "
          f"{figures['baseline_over_decision']}×; previous implementation / ours {figures['speedup_vs_reference']}×")
    print("CPU time (best of the same runs): " + ", ".join(f"{k} {v:.3f} s" for k, v in CPU.items()))
    print(f"peak traced memory {figures['peak_traced_mb']} MB, process max RSS {figures['max_rss_mb']} MB")

    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bench": "frontend_decision",
        "machine": {"uname": " ".join(platform.uname()), "nproc": os.cpu_count(),
                    "loadavg": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version()},
        "htcondor": {"classad2": classad2.version(), "htcondor2": _htcondor2_version()},
        "params": {k: v for k, v in vars(args).items() if k not in ("upstream", "no_record")},
        "upstream": record_upstream,
        "figures": figures,
    }
    if not args.no_record:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as out:
            out.write(json.dumps(record) + "\n")
        print(f"recorded in {RESULTS}")
    return 0 if same else 1


def _reference_compute_group(snapshot: Snapshot, cfg: Any, group: Any) -> policy.GroupResult:
    """compute_group with the previous matching swapped in (bench only)."""
    saved = policy.collect_jobs, policy.match_jobs
    policy.collect_jobs = matching_reference.collect_jobs
    policy.match_jobs = lambda clusters, entries, expr, ignore, cache=None: matching_reference.match_jobs(
        clusters, entries, expr, ignore)
    try:
        return compute_group(snapshot, cfg, group, {})
    finally:
        policy.collect_jobs, policy.match_jobs = saved


def _ratio(slow: float, fast: float) -> float | None:
    return round(slow / fast, 1) if fast else None


def _htcondor2_version() -> str | None:
    try:
        import htcondor2
    except ImportError:
        return None
    return htcondor2.version()


if __name__ == "__main__":
    sys.exit(main())
