"""Benchmark: one frontend group decision (compute_group) on a large, realistic queue.

Builds 100,000 idle jobs whose (DESIRED_Sites, RequestCpus, RequestMemory) come from a few hundred
combinations with a long tail, 1,000 entries (250 sites × CPUS 1/4/8/8), some glidein slots and running
jobs, then runs ``compute_group`` and prints wall time, peak traced memory, clusters and evaluations.
Side by side, it times the naive approach (every job evaluated against every entry, as a matcher without
clustering would) on a sample of jobs and scales it up, so the ratio shows what clustering buys.

Appends one JSON line to bench/results/frontend_decision.jsonl. No assertions on time.

    python bench/frontend_decision.py [--jobs N] [--entries N] [--sample N] [--seed N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import classad2

from glideinlab.frontend.config import parse_frontend_config
from glideinlab.frontend.matching import glidein_cpus
from glideinlab.frontend.policy import Snapshot, compute_group

RESULTS = Path(__file__).resolve().parent / "results" / "frontend_decision.jsonl"
COLLECTOR = "factory.bench:9618"
MATCH_EXPR = ("stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites) && "
              "(TARGET.GLIDEIN_MaxMemMBs =?= undefined || TARGET.GLIDEIN_MaxMemMBs >= MY.RequestMemory)")
NOW = 1_800_000_000


def build_config():
    cfg = parse_frontend_config({
        "frontend_name": "bench",
        "user_collector": "user.bench:9618",
        "schedds": ["schedd.bench"],
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


def build_jobs(n: int, sites: int, rng: random.Random) -> list[dict]:
    """Jobs drawn from ~300 combinations with Zipf-like weights: a few big workflows, a long tail."""
    combos = []
    for _ in range(300):
        wanted = rng.sample(range(sites), k=min(sites, rng.choice((1, 1, 2, 5, 10, 20, 50))))
        combos.append((",".join(f"Site{s}" for s in wanted), rng.choice((1, 1, 1, 2, 4, 8)),
                       rng.choice((2000, 2000, 4000, 8000))))
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(combos))]
    jobs = []
    for i, (sites_list, cpus, memory) in enumerate(rng.choices(combos, weights=weights, k=n)):
        jobs.append({"ClusterId": i // 100, "ProcId": i % 100, "JobStatus": 1, "ScheddName": "schedd.bench",
                     "EnteredCurrentStatus": NOW - rng.randint(0, 7200), "ServerTime": NOW,
                     "RequestCpus": cpus, "RequestMemory": memory, "DESIRED_Sites": sites_list})
    return jobs


def build_running(entries: list[dict], n_glideins: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Slots of n glideins (one busy and one idle slot each) and a running job on every busy slot."""
    slots, jobs = [], []
    for g in range(n_glideins):
        e = entries[rng.randrange(len(entries))]
        base = {"GLIDECLIENT_Name": "bench.main", "GLIDEIN_Entry_Name": e["EntryName"], "GLIDEIN_Name": "gf",
                "GLIDEIN_Factory": "factory", "Cpus": 1, "Memory": 2500}
        slots.append({**base, "Name": f"slot1@glidein_{g}@wn{g}", "State": "Claimed", "Activity": "Busy"})
        slots.append({**base, "Name": f"slot2@glidein_{g}@wn{g}", "State": "Unclaimed", "Activity": "Idle"})
        jobs.append({"ClusterId": 900000 + g, "ProcId": 0, "JobStatus": 2, "ScheddName": "schedd.bench",
                     "RequestCpus": 1, "RequestMemory": 2000, "DESIRED_Sites": e["GLIDEIN_Site"],
                     "RemoteHost": f"slot1@glidein_{g}@wn{g}", "EnteredCurrentStatus": NOW - 60})
    return slots, jobs


def naive_cost(jobs: list[dict], entries: list[dict], sample: int, rng: random.Random) -> dict:
    """Time per-job matching (full job ad × every entry ad) on a sample; scale to all jobs."""
    expr = classad2.ExprTree(MATCH_EXPR)
    entry_ads = [(classad2.ClassAd(e), glidein_cpus(e)) for e in entries]
    chosen = rng.sample(jobs, k=min(sample, len(jobs)))
    evaluations = 0
    start = time.perf_counter()
    for job in chosen:
        job_ad = classad2.ClassAd(job)
        for entry_ad, cpus in entry_ads:
            if cpus >= job["RequestCpus"]:
                evaluations += 1
                expr.eval(job_ad, entry_ad)
    elapsed = time.perf_counter() - start
    scale = len(jobs) / len(chosen)
    return {"sample_jobs": len(chosen), "sample_wall_s": round(elapsed, 3),
            "evaluations_est": int(evaluations * scale), "wall_s_est": round(elapsed * scale, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000)
    parser.add_argument("--glideins", type=int, default=400,
                        help="busy glideins, each also with an idle slot (>= 1000 trips idle_vms_total)")
    parser.add_argument("--sample", type=int, default=100, help="jobs timed for the naive estimate")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    cfg, group = build_config()
    entries = build_entries(args.entries)
    idle_jobs = build_jobs(args.jobs, sites=len({e["GLIDEIN_Site"] for e in entries}), rng=rng)
    slots, running = build_running(entries, args.glideins, rng)
    snapshot = Snapshot(now=NOW, jobs=idle_jobs + running, entries=entries, slots=slots)

    start = time.perf_counter()
    result = compute_group(snapshot, cfg, group, {})
    wall = time.perf_counter() - start

    tracemalloc.start()  # second run under tracing: tracing slows it, so the timed run above is untraced
    compute_group(snapshot, cfg, group, {})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    naive = naive_cost(idle_jobs, entries, args.sample, rng)
    requested = sum(r.req_idle for r in result.requests.values())
    figures = {
        "jobs": len(snapshot.jobs), "idle_jobs": result.jobs.idle, "entries": len(entries), "slots": len(slots),
        "clusters": result.clusters, "entry_signatures": result.entry_signatures,
        "evaluations": result.evaluations, "wall_s": round(wall, 3), "peak_traced_mb": round(peak / 2**20, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # whole process
        "unmatched_idle": result.unmatched.idle, "req_idle_total": requested, "warnings": len(result.warnings),
        "naive": naive, "speedup_est": round(naive["wall_s_est"] / wall, 1) if wall else None,
    }
    print(f"compute_group: {figures['jobs']} jobs × {len(entries)} entries in {wall:.2f} s, "
          f"peak traced memory {figures['peak_traced_mb']} MB (process max RSS {figures['max_rss_mb']} MB)")
    print(f"  {result.clusters} clusters × {result.entry_signatures} entry signatures → "
          f"{result.evaluations} match_expr evaluations; {requested} idle glideins requested")
    print(f"naive (per job × per entry): ~{naive['evaluations_est']} evaluations, ~{naive['wall_s_est']} s "
          f"(timed {naive['sample_jobs']} jobs in {naive['sample_wall_s']} s, scaled)")
    print(f"clustering speedup ≈ {figures['speedup_est']}×")

    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bench": "frontend_decision",
        "machine": {"uname": " ".join(platform.uname()), "nproc": os.cpu_count(),
                    "python": platform.python_version()},
        "htcondor": {"classad2": classad2.version(), "htcondor2": _htcondor2_version()},
        "params": vars(args),
        "figures": figures,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(record) + "\n")
    print(f"recorded in {RESULTS}")
    return 0


def _htcondor2_version() -> str | None:
    try:
        import htcondor2
    except ImportError:
        return None
    return htcondor2.version()


if __name__ == "__main__":
    sys.exit(main())
