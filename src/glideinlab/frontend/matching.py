"""Which entries can run which jobs: job sets, clustering, match_expr evaluation, unique-set split.

Upstream's ``countMatch`` (reference §2.2 step 4) in plain data:

1. Jobs are read defensively (junk values skip the job, counted in a :class:`SkipLog`) and sorted into
   sets: ``idle`` (from good schedds), ``old_idle`` (waited ``old_idle_age``), ``idle_3600``, ``running``.
2. Jobs are clustered by the tuple of their job match attrs (``RequestCpus`` always included).  The job
   ad matched against entries is built from that tuple only, so every job of a cluster gets the same
   answer by construction (config validation guarantees match_expr reads no other job attribute).
3. Entries are grouped by their factory match attr values (the entry ad is built from those only), so
   match_expr runs once per (cluster, distinct entry signature); ``GLIDEIN_CPUS >= RequestCpus`` is
   checked in Python per entry first, and only signatures with a fitting entry are evaluated.
4. A result of ``undefined``/``error`` is "no match" plus a warning, never an exception (#537).
5. Per entry: ``count`` (straight matches), ``prop`` (each job split evenly over the k entries it
   matches), ``hereonly`` (jobs matching only this entry), ``prop_mc`` (prop in glideins:
   Σ RequestCpus / k / (GLIDEIN_CPUS × GLIDEIN_NODES)).  Fractions are summed per entry and rounded up
   once at the end.  Jobs matching no entry are counted apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import classad2

try:  # importing htcondor2 registers HTCondor's ClassAd functions (stringListMember, ...) with classad2
    import htcondor2  # noqa: F401
except ImportError:  # bindings without htcondor2: plain ClassAd functions still work
    pass

from .config import REQUEST_CPUS
from .values import BadValue, SkipLog, as_bool, as_count, as_number, freeze, lookup

#: key an entry dict carries for the factory collector it was read from (part of the glideid)
COLLECTOR_KEY = "FactoryCollector"
#: key a job dict may carry for its schedd (else the schedd part of GlobalJobId is used)
SCHEDD_KEY = "ScheddName"

GlideId = tuple[str, str]  # (factory collector, entry ad Name "entry@glidein@factory")

IDLE, RUNNING = 1, 2
#: prop sums are rounded up once; this absorbs float noise like 7 × (1/7) = 1.0000000000000002
_ROUNDING_SLACK = 1e-9


@dataclass(frozen=True)
class Entry:
    """What the policy needs from one glidefactory ad."""

    glideid: GlideId
    entry_name: str
    glidein_name: str
    factory_name: str
    cpus: int  # GLIDEIN_CPUS of one glidein (auto/node → GLIDEIN_ESTIMATED_CPUS or 1)
    nodes: int  # GLIDEIN_NODES
    in_downtime: bool
    match_values: dict[str, Any] = field(hash=False)  # factory match attrs present in the ad

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.entry_name, self.glidein_name, self.factory_name)


@dataclass
class Cluster:
    """Jobs with equal match-attr values; ``ad_values`` builds the job ad (MY) for matching."""

    ad_values: dict[str, Any]
    request_cpus: int
    idle: int = 0
    old_idle: int = 0
    idle_3600: int = 0
    running: int = 0
    idle_cpus: int = 0
    old_idle_cpus: int = 0


@dataclass
class JobSets:
    """Counts over all jobs of the group, plus the clusters and running jobs' RemoteHosts."""

    clusters: dict[tuple, Cluster] = field(default_factory=dict)
    idle: int = 0  # from good schedds
    idle_all: int = 0  # including bad schedds
    old_idle: int = 0
    idle_3600: int = 0
    running: int = 0
    running_hosts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MatchCounts:
    """Per-entry outcome of matching (upstream's count / prop / hereonly / prop_mc)."""

    idle: int = 0
    old_idle: int = 0
    idle_3600: int = 0
    running: int = 0
    prop_idle: int = 0
    unique_idle: int = 0
    prop_mc_idle: int = 0
    prop_mc_old_idle: int = 0


@dataclass(frozen=True)
class Unmatched:
    idle: int = 0
    old_idle: int = 0
    running: int = 0


@dataclass
class MatchResult:
    counts: dict[GlideId, MatchCounts]
    unmatched: Unmatched
    evaluations: int
    signatures: int
    warnings: list[str]


# ------------------------------------------------------------------------------------------------ jobs


def bad_schedds(schedd_ads: Sequence[Mapping[str, Any]], full_fraction: float) -> set[str]:
    """Schedds too loaded to start more jobs (upstream: ≥95% running or uploading, or curbing matches)."""
    bad: set[str] = set()
    for ad in schedd_ads:
        name = ad.get("Name")
        if not isinstance(name, str):
            continue
        if as_bool(ad.get("CurbMatchmaking")):
            bad.add(name)
            continue
        for used, limit in (("TotalRunningJobs", "MaxJobsRunning"),
                            ("TransferQueueNumUploading", "TransferQueueMaxUploading")):
            try:
                have, cap = as_number(ad.get(used), used), as_number(ad.get(limit), limit)
            except BadValue:
                continue  # attribute absent or junk: no evidence the schedd is full
            if cap > 0 and have >= full_fraction * cap:
                bad.add(name)
    return bad


def schedd_of(job: Mapping[str, Any]) -> str:
    name = job.get(SCHEDD_KEY)
    if isinstance(name, str):
        return name
    global_id = job.get("GlobalJobId")
    return global_id.split("#", 1)[0] if isinstance(global_id, str) else ""


def _job_id(job: Mapping[str, Any]) -> str:
    return f"{schedd_of(job) or '?'}#{job.get('ClusterId', '?')}.{job.get('ProcId', '?')}"


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


# --------------------------------------------------------------------------------------------- entries


def read_entry(ad: Mapping[str, Any], factory_match_attrs: Sequence[str]) -> Entry:
    """An :class:`Entry` from a glidefactory ad; raises BadValue if it cannot be used."""
    name, collector = ad.get("Name"), ad.get(COLLECTOR_KEY)
    if not isinstance(name, str) or name.count("@") != 2:
        raise BadValue(f"Name={name!r}")
    if not isinstance(collector, str) or not collector:
        raise BadValue(f"{COLLECTOR_KEY}={collector!r}")
    parts = name.split("@")
    triple = [ad.get(k) if isinstance(ad.get(k), str) else p
              for k, p in zip(("EntryName", "GlideinName", "FactoryName"), parts)]
    values = {a: v for a in factory_match_attrs if (v := lookup(ad, a)) is not None}
    return Entry(
        glideid=(collector, name),
        entry_name=triple[0],
        glidein_name=triple[1],
        factory_name=triple[2],
        cpus=glidein_cpus(ad),
        nodes=as_count(ad.get("GLIDEIN_NODES"), "GLIDEIN_NODES", default=1, minimum=1),
        in_downtime=as_bool(ad.get("GLIDEIN_In_Downtime")),
        match_values=values,
    )


def glidein_cpus(ad: Mapping[str, Any]) -> int:
    """GLIDEIN_CPUS; "auto"/"node"/"slot" or ≤ 0 mean "decided on the node": use the estimate, else 1."""
    raw = ad.get("GLIDEIN_CPUS", 1)
    if isinstance(raw, str):  # factory attrs are often published as strings
        text = raw.strip().lower()
        if text in ("auto", "node", "slot"):
            raw = 0
        elif text.lstrip("-").isdigit():
            raw = int(text)
        else:
            raise BadValue(f"GLIDEIN_CPUS={raw!r}")
    if as_number(raw, "GLIDEIN_CPUS") > 0:
        return math.ceil(raw)
    return as_count(ad.get("GLIDEIN_ESTIMATED_CPUS"), "GLIDEIN_ESTIMATED_CPUS", default=1, minimum=1)


# -------------------------------------------------------------------------------------------- matching


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


def _round_up(value: float) -> int:
    return max(math.ceil(value - _ROUNDING_SLACK), 0)


def _cluster_jobs(cluster: Cluster) -> int:
    return cluster.idle + cluster.running


def _describe(cluster: Cluster) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in cluster.ad_values.items())
    return text if len(text) <= 120 else text[:117] + "..."
