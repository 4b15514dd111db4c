"""The straightforward matching the optimized :mod:`.matching` must agree with; used only by tests and bench.

This is the frontend's matching as it was before the per-conjunct index and the cross-cycle cache: jobs
clustered by their match attrs, ``match_expr`` evaluated by classad2 once per (cluster, distinct entry
signature), jobs split evenly over the entries they match.  ``tests/unit/test_frontend_matching.py``
compares :func:`.matching.collect_jobs`/:func:`.matching.match_jobs` with these functions on randomized
snapshots, and ``bench/frontend_decision.py`` times both.  Keep it simple and do not optimize it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import classad2

try:  # importing htcondor2 registers HTCondor's ClassAd functions (stringListMember, ...) with classad2
    import htcondor2  # noqa: F401
except ImportError:  # bindings without htcondor2: plain ClassAd functions still work
    pass

from .config import REQUEST_CPUS
from .matching import (
    IDLE,
    RUNNING,
    Cluster,
    Entry,
    GlideId,
    JobSets,
    MatchCounts,
    MatchResult,
    Unmatched,
    _job_id,
    _round_up,
    schedd_of,
)
from .values import BadValue, SkipLog, as_count, as_number, freeze, lookup


def collect_jobs(jobs: Sequence[Mapping[str, Any]], match_attrs: Sequence[str], now: float,
                 old_idle_age: int, bad: set[str], skipped: SkipLog) -> JobSets:
    """Sort jobs into sets and clusters; junk jobs are skipped into ``skipped``."""
    other_attrs = [a for a in match_attrs if a.lower() != REQUEST_CPUS.lower()]
    sets = JobSets()
    for job in jobs:
        try:
            status = job.get("JobStatus")
            if status not in (IDLE, RUNNING) or isinstance(status, bool):
                raise BadValue(f"JobStatus={status!r}")
            cpus = as_count(job.get(REQUEST_CPUS), REQUEST_CPUS, default=1, minimum=1)
            if status == IDLE:
                server_time = job.get("ServerTime")
                clock = now if server_time is None else as_number(server_time, "ServerTime")
                entered = job.get("EnteredCurrentStatus")
                age = 0.0 if entered is None else clock - as_number(entered, "EnteredCurrentStatus")
            values = [lookup(job, a) for a in other_attrs]
            key = (*(freeze(v) for v in values), cpus)
        except BadValue as exc:
            skipped.add(str(exc).split("=")[0], f"{_job_id(job)} {exc}")
            continue
        cluster = sets.clusters.get(key)
        if cluster is None:
            ad_values = {a: v for a, v in zip(other_attrs, values) if v is not None}
            ad_values[REQUEST_CPUS] = cpus
            cluster = sets.clusters[key] = Cluster(ad_values, cpus)
        if status == RUNNING:
            sets.running += 1
            cluster.running += 1
            host = job.get("RemoteHost")
            if isinstance(host, str):
                sets.running_hosts.append(host)
            continue
        sets.idle_all += 1
        if schedd_of(job) in bad:
            continue
        sets.idle += 1
        cluster.idle += 1
        cluster.idle_cpus += cpus
        if age >= old_idle_age:
            sets.old_idle += 1
            cluster.old_idle += 1
            cluster.old_idle_cpus += cpus
        if age >= 3600:
            sets.idle_3600 += 1
            cluster.idle_3600 += 1
    return sets


def match_jobs(clusters: Sequence[Cluster], entries: Sequence[Entry], match_expr: str,
               ignore_down_entries: bool) -> MatchResult:
    """Evaluate match_expr per (cluster, entry signature) and split jobs over the matched entries."""
    expr = classad2.ExprTree(match_expr)
    signatures: dict[tuple, tuple[Any, list[int]]] = {}
    for index, entry in enumerate(entries):
        if ignore_down_entries and entry.in_downtime:
            continue
        sig = tuple(sorted((k.lower(), freeze(v)) for k, v in entry.match_values.items()))
        if sig not in signatures:
            signatures[sig] = (classad2.ClassAd(dict(entry.match_values)), [])
        signatures[sig][1].append(index)

    warnings: list[str] = []
    evaluations = 0
    by_set: dict[tuple[int, ...], list[int]] = {}  # matched entry indexes → summed cluster counters
    for cluster in clusters:
        if not (cluster.idle or cluster.running):
            continue  # only idle jobs of bad schedds: nothing to count
        try:
            job_ad = classad2.ClassAd(cluster.ad_values)
        except Exception:  # a value classad2 cannot represent: the cluster cannot match anything
            warnings.append(f"{_cluster_jobs(cluster)} job(s) with {_describe(cluster)}: attribute values "
                            "are not ClassAd values; not matched")
            matched: list[int] = []
        else:
            matched, undecided, evaluated = _match_cluster(expr, job_ad, cluster, signatures, entries)
            evaluations += evaluated
            if undecided:
                warnings.append(f"{_cluster_jobs(cluster)} job(s) with {_describe(cluster)}: match_expr is "
                                f"undefined or error against {undecided} entries; not matched there")
        totals = by_set.setdefault(tuple(sorted(matched)), [0] * 6)
        for i, value in enumerate((cluster.idle, cluster.old_idle, cluster.idle_3600, cluster.running,
                                   cluster.idle_cpus, cluster.old_idle_cpus)):
            totals[i] += value

    counts, unmatched = _split(by_set, entries)
    return MatchResult(counts, unmatched, evaluations, len(signatures), warnings)


def _match_cluster(expr: Any, job_ad: Any, cluster: Cluster, signatures: dict[tuple, tuple[Any, list[int]]],
                   entries: Sequence[Entry]) -> tuple[list[int], int, int]:
    matched: list[int] = []
    undecided = evaluated = 0
    for entry_ad, indexes in signatures.values():
        fitting = [i for i in indexes if entries[i].cpus >= cluster.request_cpus]
        if not fitting:
            continue
        evaluated += 1
        try:
            result = expr.eval(job_ad, entry_ad)
        except Exception:  # never let one job's values abort the group (#537)
            result = None
        if result is True:
            matched.extend(fitting)
        elif result is not False:
            undecided += len(fitting)
    return matched, undecided, evaluated


def _split(by_set: dict[tuple[int, ...], list[int]], entries: Sequence[Entry]
           ) -> tuple[dict[GlideId, MatchCounts], Unmatched]:
    n = len(entries)
    count = [[0, 0, 0, 0] for _ in range(n)]
    prop_idle = [0.0] * n
    unique_idle = [0] * n
    cpus_idle = [0.0] * n
    cpus_old = [0.0] * n
    unmatched = Unmatched()
    for members, (idle, old, idle_3600, running, idle_c, old_c) in by_set.items():
        if not members:
            unmatched = Unmatched(unmatched.idle + idle, unmatched.old_idle + old, unmatched.running + running)
            continue
        k = len(members)
        for i in members:
            c = count[i]
            c[0] += idle
            c[1] += old
            c[2] += idle_3600
            c[3] += running
            prop_idle[i] += idle / k
            cpus_idle[i] += idle_c / k
            cpus_old[i] += old_c / k
            if k == 1:
                unique_idle[i] += idle
    counts: dict[GlideId, MatchCounts] = {}
    for i, entry in enumerate(entries):
        per_glidein = entry.cpus * entry.nodes
        counts[entry.glideid] = MatchCounts(
            idle=count[i][0],
            old_idle=count[i][1],
            idle_3600=count[i][2],
            running=count[i][3],
            prop_idle=_round_up(prop_idle[i]),
            unique_idle=unique_idle[i],
            prop_mc_idle=_round_up(cpus_idle[i] / per_glidein),
            prop_mc_old_idle=_round_up(cpus_old[i] / per_glidein),
        )
    return counts, unmatched


def _cluster_jobs(cluster: Cluster) -> int:
    return cluster.idle + cluster.running


def _describe(cluster: Cluster) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in cluster.ad_values.items())
    return text if len(text) <= 120 else text[:117] + "..."
