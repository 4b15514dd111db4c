"""The frontend's per-group decision: from one snapshot of jobs, entries and slots to per-entry requests.

One entry point, :func:`compute_group`, pure (no daemons, no I/O): the caller queries schedds and
collectors, builds a :class:`Snapshot`, calls it, advertises ``GroupResult.requests`` and stores
``GroupResult.history`` for the next cycle (see :func:`history_to_data`).

Steps (upstream ``glideinFrontendElement.iterate_one``, reference §2.2–2.3): bad schedds and job sets,
clustering and matching (:mod:`.matching`), slot counting per entry (:mod:`.slots`), running jobs
attributed to entries through ``RemoteHost`` (upstream ``countRealRunning``), then the request formulas
(:mod:`.requests`).

**Blind-view guard (upstream #282: ReqRemoveExcess=ALL drained a pool when its view went empty).**
The view is *blind* when any user schedd query or the user collector query failed this cycle
(``Snapshot.queries``).  A blind view can only have *lost* jobs and slots, so nothing it shows can prove
that fewer glideins are needed.  Therefore, while blind:

1. every entry gets ``ReqRemoveExcess = NO`` (margin 0): no removal follows from a blind view;
2. the removal escalation counters are carried over unchanged (neither advanced nor reset);
3. requests are not lowered: with the collector answering (only schedds failed) each entry gets
   ``max(computed, last cycle's)`` for ReqIdleGlideins and ReqMaxGlideins; with the collector failed
   (slot counts and totals unknown) the last cycle's values are repeated (0 on a first cycle).
   Downtime, which comes from the factory ads, still sends 0.

And, blind or not, an entry whose glideins run this group's jobs (running jobs seen there, or busy
slots) never gets ALL: it is lowered to IDLE with a warning, so only idle glideins can be removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .config import FrontendConfig, GroupConfig
from .matching import (
    COLLECTOR_KEY,
    Entry,
    GlideId,
    MatchCache,
    MatchCounts,
    UNMATCHED_REASONS,
    Unmatched,
    bad_schedds,
    collect_jobs,
    match_jobs,
    read_entry,
)
from .requests import (
    Demand,
    RemovalCounters,
    compute_glidein_max_run,
    compute_glidein_min_idle,
    decide_removal,
)
from .slots import SlotCounts, glidein_of, slot_counts
from .values import BadValue, SkipLog, as_bool, as_count


@dataclass(frozen=True)
class QueryStatus:
    """Which of this cycle's user-side queries failed (drives the blind-view guard)."""

    failed_schedds: tuple[str, ...] = ()
    user_collector_ok: bool = True

    def blind_reasons(self) -> tuple[str, ...]:
        reasons = []
        if self.failed_schedds:
            reasons.append(f"schedd query failed: {', '.join(sorted(self.failed_schedds))}")
        if not self.user_collector_ok:
            reasons.append("user collector query failed")
        return tuple(reasons)


@dataclass(frozen=True)
class Snapshot:
    """Everything one group cycle looks at, as plain ads (dicts).

    ``entries`` are glidefactory ads, each with ``FactoryCollector`` (:data:`COLLECTOR_KEY`) set to the
    factory collector it came from.  ``slots`` are this group's startd ads (others are ignored).
    ``jobs`` carry ``ScheddName`` or ``GlobalJobId``.  ``frontend_slots``/``pool_slots`` are the slot
    totals of the whole frontend and the whole pool (:func:`.slots.count_slots`); None = unknown.
    """

    now: float
    jobs: Sequence[Mapping[str, Any]] = ()
    entries: Sequence[Mapping[str, Any]] = ()
    slots: Sequence[Mapping[str, Any]] = ()
    schedd_ads: Sequence[Mapping[str, Any]] = ()
    frontend_slots: SlotCounts | None = None
    pool_slots: SlotCounts | None = None
    queries: QueryStatus = QueryStatus()
    frontend_in_downtime: bool = False


@dataclass(frozen=True)
class EntryHistory:
    """What one entry carries to the next cycle."""

    removal: RemovalCounters = RemovalCounters()
    last_req_idle: int = 0
    last_req_max_run: int = 0


@dataclass(frozen=True)
class EntryRequest:
    """The decision for one entry plus the counts upstream advertises with it."""

    glideid: GlideId
    req_idle: int
    req_max_run: int
    remove_excess: str
    remove_excess_margin: int
    idle_lifetime: int
    in_downtime: bool
    limits_triggered: dict[str, str]
    curbs_triggered: dict[str, str]
    jobs: MatchCounts
    effective_idle: int
    running_here: int
    glideins_running_here: int
    glideins: SlotCounts

    def glideclient_monitor(self) -> dict[str, int]:
        """The glideclient ad's ``GlideinMonitor*`` values, keyed without the prefix (as the ad builders
        in :mod:`glideinlab.protocol.ads` take them)."""
        return {k: v for k, v in (
            ("Idle", self.jobs.idle),
            ("OldIdle", self.jobs.old_idle),
            ("Idle_3600", self.jobs.idle_3600),
            ("Running", self.jobs.running),
            ("RunningHere", self.running_here),
            *self._glidein_counts(),
        )}

    def glideresource_monitor(self) -> dict[str, int]:
        """The glideresource ad's ``GlideClientMonitor*`` values, keyed without the prefix.

        JobsIdle = idle jobs matching here, JobsIdleMatching = their unique-set share (prop),
        JobsIdleEffective = demand not covered by idle slots, JobsIdleUnique = jobs matching only here.
        """
        return {k: v for k, v in (
            ("JobsIdle", self.jobs.idle),
            ("JobsIdleMatching", self.jobs.prop_idle),
            ("JobsIdleEffective", self.effective_idle),
            ("JobsIdleOld", self.jobs.old_idle),
            ("JobsIdleUnique", self.jobs.unique_idle),
            ("JobsRunning", self.jobs.running),
            ("JobsRunningHere", self.running_here),
            *self._glidein_counts(),
            ("GlideinsRequestIdle", self.req_idle),
            ("GlideinsRequestMaxRun", self.req_max_run),
        )}

    def _glidein_counts(self) -> tuple[tuple[str, int], ...]:
        g = self.glideins
        return (("GlideinsTotal", g.total), ("GlideinsIdle", g.idle), ("GlideinsRunning", g.running),
                ("GlideinsFailed", g.failed), ("GlideinsTotalCores", g.total_cores),
                ("GlideinsIdleCores", g.idle_cores), ("GlideinsRunningCores", g.running_cores))


@dataclass(frozen=True)
class JobTotals:
    idle: int = 0
    idle_all: int = 0
    old_idle: int = 0
    idle_3600: int = 0
    running: int = 0


@dataclass(frozen=True)
class GroupResult:
    group: str
    client_name: str
    requests: dict[GlideId, EntryRequest]
    jobs: JobTotals
    unmatched: Unmatched
    glideins: SlotCounts
    history: dict[GlideId, EntryHistory]
    warnings: list[str]
    blind: tuple[str, ...]
    clusters: int
    evaluations: int
    entry_signatures: int
    bad_schedds: tuple[str, ...] = field(default=())

    def unmatched_monitor(self) -> dict[str, int | str]:
        """Group-wide ``GlideClientMonitor*`` values published in every glideresource ad of the group.

        ``JobsIdleUnmatched``: idle jobs (good schedds) that match no entry and so request no glidein;
        ``JobsIdleUnmatched<Reason>`` per reason of :data:`~glideinlab.frontend.matching.UNMATCHED_REASONS`;
        ``JobsIdleUnmatchedReasons``: a readable summary with one example per reason ("" if none).
        """
        u = self.unmatched
        out: dict[str, int | str] = {"JobsIdleUnmatched": u.idle}
        out.update((f"JobsIdleUnmatched{reason}", n) for reason, n in u.idle_by_reason().items())
        out["JobsIdleUnmatchedReasons"] = "; ".join(f"{r.reason}: {r.idle} ({r.example})" for r in u.reasons)
        return out


def compute_group(snapshot: Snapshot, frontend_config: FrontendConfig, group_config: GroupConfig,
                  history: Mapping[GlideId, EntryHistory], cache: MatchCache | None = None) -> GroupResult:
    """Decide every entry's request for one group. Never raises on bad data; see the module docstring.

    ``cache`` (one per group, kept by the caller between cycles) only saves work: the result is the same
    with or without it.
    """
    fe_limits, limits = frontend_config.limits, group_config.limits
    client_name = frontend_config.client_name(group_config)
    warnings: list[str] = []

    bad = bad_schedds(snapshot.schedd_ads, fe_limits["schedd_full_fraction"])
    job_skips = SkipLog("jobs")
    jobs = collect_jobs(snapshot.jobs, group_config.effective_job_match_attrs, snapshot.now,
                        fe_limits["old_idle_age"], bad, job_skips)
    entries = _read_entries(snapshot.entries, group_config.effective_factory_match_attrs, warnings)
    matched = match_jobs(list(jobs.clusters.values()), entries, group_config.effective_match_expr,
                         fe_limits["ignore_down_entries"], cache)
    warnings += matched.warnings

    slots = _count_entry_slots(snapshot.slots, entries, client_name,
                               limits["partitionable_glidein"]["min_memory"], warnings)
    jobs_here, glideins_here = _attribute_running(jobs.running_hosts, slots)

    blind = snapshot.queries.blind_reasons()
    if blind:
        warnings.append(f"blind view ({'; '.join(blind)}): no removal, escalation frozen, requests not lowered")
    requests: dict[GlideId, EntryRequest] = {}
    new_history: dict[GlideId, EntryHistory] = {}
    for index, entry in enumerate(entries):
        here = slots.per_entry[index]
        request, entry_history = _decide_entry(
            entry, matched.counts[entry.glideid], here, slots.group, jobs_here[index], len(glideins_here[index]),
            snapshot, bool(blind), history.get(entry.glideid, EntryHistory()), limits, fe_limits, warnings)
        requests[entry.glideid] = request
        new_history[entry.glideid] = entry_history

    warnings += job_skips.warnings() + slots.skipped.warnings()
    return GroupResult(
        group=group_config.name,
        client_name=client_name,
        requests=requests,
        jobs=JobTotals(jobs.idle, jobs.idle_all, jobs.old_idle, jobs.idle_3600, jobs.running),
        unmatched=matched.unmatched,
        glideins=slots.group,
        history=new_history,
        warnings=warnings,
        blind=blind,
        clusters=len(jobs.clusters),
        evaluations=matched.evaluations,
        entry_signatures=matched.signatures,
        bad_schedds=tuple(sorted(bad)),
    )


def _decide_entry(entry: Entry, counts: MatchCounts, here: SlotCounts, group: SlotCounts, running_here: int,
                  busy_glideins: int, snapshot: Snapshot, blind: bool, previous: EntryHistory,
                  limits: Mapping[str, Any], fe_limits: Mapping[str, Any],
                  warnings: list[str]) -> tuple[EntryRequest, EntryHistory]:
    down = snapshot.frontend_in_downtime or entry.in_downtime
    demand = Demand.of(counts.prop_mc_idle, counts.prop_mc_old_idle, limits["running_glideins_per_entry"]["min"])
    idle = compute_glidein_min_idle(demand, here, group, snapshot.frontend_slots, snapshot.pool_slots, down,
                                    limits, fe_limits)
    req_idle = idle.req_idle
    req_max_run = compute_glidein_max_run(demand, here.idle, busy_glideins, down, limits)
    busy = running_here > 0 or here.running > 0

    if blind:
        if not down and not snapshot.queries.user_collector_ok:
            req_idle, req_max_run = previous.last_req_idle, previous.last_req_max_run
        elif not down:
            req_idle = max(req_idle, previous.last_req_idle)
            req_max_run = max(req_max_run, previous.last_req_max_run)
        removal, margin, counters = "NO", 0, previous.removal
    else:
        counters = previous.removal.advance(counts.idle, busy, here.total)
        removal, margin = decide_removal(counters, limits["glideins_removal"], fe_limits["removal_escalation"])
        if removal == "ALL" and busy:
            removal = "IDLE"
            warnings.append(f"{entry.glideid[1]}: ReqRemoveExcess ALL lowered to IDLE: its glideins run "
                            f"{running_here} job(s) of this group ({here.running} busy slots)")

    request = EntryRequest(
        glideid=entry.glideid,
        req_idle=req_idle,
        req_max_run=req_max_run,
        remove_excess=removal,
        remove_excess_margin=margin,
        idle_lifetime=limits["idle_glideins_lifetime"]["max"],
        in_downtime=down,
        limits_triggered=idle.limits_triggered,
        curbs_triggered=idle.curbs_triggered,
        jobs=counts,
        effective_idle=idle.effective_idle,
        running_here=running_here,
        glideins_running_here=busy_glideins,
        glideins=here,
    )
    return request, EntryHistory(counters, req_idle, req_max_run)


def _read_entries(ads: Sequence[Mapping[str, Any]], factory_match_attrs: Sequence[str],
                  warnings: list[str]) -> list[Entry]:
    skipped = SkipLog("entry ads")
    entries: dict[GlideId, Entry] = {}
    for ad in ads:
        try:
            entry = read_entry(ad, factory_match_attrs)
        except BadValue as exc:
            skipped.add(str(exc).split("=")[0], f"{ad.get('Name', '?')}@{ad.get(COLLECTOR_KEY, '?')} {exc}")
            continue
        if entry.glideid in entries:
            skipped.add("duplicate", f"{entry.glideid[1]} from {entry.glideid[0]}")
            continue
        entries[entry.glideid] = entry
    warnings += skipped.warnings()
    return sorted(entries.values(), key=lambda e: (e.glideid[1], e.glideid[0]))


@dataclass
class _EntrySlots:
    per_entry: list[SlotCounts]
    group: SlotCounts
    by_slot: dict[str, int]  # slot Name → entry index
    by_glidein: dict[str, int]  # glidein (startd) name → entry index
    skipped: SkipLog


def _count_entry_slots(ads: Sequence[Mapping[str, Any]], entries: Sequence[Entry], client_name: str,
                       min_memory: int, warnings: list[str]) -> _EntrySlots:
    by_triple: dict[tuple[str, str, str], list[int]] = {}
    for index, entry in enumerate(entries):
        by_triple.setdefault(entry.triple, []).append(index)
    out = _EntrySlots([SlotCounts()] * len(entries), SlotCounts(), {}, {}, SkipLog("slot ads"))
    ambiguous = 0
    for ad in ads:
        if ad.get("GLIDECLIENT_Name") != client_name or as_bool(ad.get("IS_MONITOR_VM")):
            continue
        try:
            counts = slot_counts(ad, min_memory)
        except BadValue as exc:
            out.skipped.add(str(exc).split("=")[0], f"{ad.get('Name', '?')} {exc}")
            continue
        out.group = out.group + counts
        index, unsure = _entry_of_slot(ad, by_triple, entries)
        ambiguous += unsure
        if index is None:
            continue
        out.per_entry[index] = out.per_entry[index] + counts
        name = ad.get("Name")
        if isinstance(name, str):
            out.by_slot[name] = index
            out.by_glidein.setdefault(glidein_of(name), index)
    if ambiguous:
        warnings.append(f"{ambiguous} slot(s) match entries of several factories and carry no usable "
                        "GLIDECLIENT_ReqNode; counted for the group only")
    return out


def _entry_of_slot(ad: Mapping[str, Any], by_triple: dict[tuple[str, str, str], list[int]],
                   entries: Sequence[Entry]) -> tuple[int | None, int]:
    """(entry index or None, 1 if the slot was ambiguous)."""
    triple = (ad.get("GLIDEIN_Entry_Name"), ad.get("GLIDEIN_Name"), ad.get("GLIDEIN_Factory"))
    candidates = by_triple.get(triple, [])  # type: ignore[arg-type]
    if len(candidates) <= 1:
        return (candidates[0] if candidates else None), 0
    # same entry name at several factories: the glidein carries the collector it was requested from
    req_node = ad.get("GLIDECLIENT_ReqNode")
    if isinstance(req_node, str):
        exact = [i for i in candidates if entries[i].glideid[0] == req_node]
        hosts = [i for i in candidates if entries[i].glideid[0].split(":")[0] == req_node.split(":")[0]]
        for chosen in (exact, hosts):
            if len(chosen) == 1:
                return chosen[0], 0
    return None, 1


def _attribute_running(hosts: Sequence[str], slots: _EntrySlots) -> tuple[list[int], list[set[str]]]:
    """Running jobs (and distinct glideins running them) per entry, via RemoteHost (countRealRunning)."""
    jobs_here = [0] * len(slots.per_entry)
    glideins_here: list[set[str]] = [set() for _ in slots.per_entry]
    for host in hosts:
        glidein = glidein_of(host)
        index = slots.by_slot.get(host, slots.by_glidein.get(glidein))
        if index is not None:
            jobs_here[index] += 1
            glideins_here[index].add(glidein)
    return jobs_here, glideins_here


# ----------------------------------------------------------------------------------- history storage


def history_to_data(history: Mapping[GlideId, EntryHistory]) -> list[dict[str, Any]]:
    """JSON-ready form of a history (glideid tuples are not valid JSON keys)."""
    return [
        {"collector": collector, "name": name,
         "without_idle_jobs": h.removal.without_idle_jobs,
         "without_busy_glideins": h.removal.without_busy_glideins,
         "without_glideins": h.removal.without_glideins,
         "last_req_idle": h.last_req_idle, "last_req_max_run": h.last_req_max_run}
        for (collector, name), h in sorted(history.items())
    ]


def history_from_data(data: Any) -> dict[GlideId, EntryHistory]:
    """Inverse of :func:`history_to_data`; unreadable rows are dropped (counters restart at 0, the safe way)."""
    history: dict[GlideId, EntryHistory] = {}
    for row in data if isinstance(data, list) else ():
        try:
            glideid = (row["collector"], row["name"])
            if not all(isinstance(part, str) for part in glideid):
                continue
            counters = RemovalCounters(*(as_count(row[k], k) for k in (
                "without_idle_jobs", "without_busy_glideins", "without_glideins")))
            history[glideid] = EntryHistory(counters, as_count(row["last_req_idle"], "last_req_idle"),
                                            as_count(row["last_req_max_run"], "last_req_max_run"))
        except (KeyError, TypeError, BadValue):
            continue
    return history


# ------------------------------------------------------------------------------------------ the table

_HEADER = (
    f"{'Jobs: Idle':>10} {'Match':>6} {'Eff':>6} {'Old':>6} {'Uniq':>6} {'Run':>6} {'Here':>6} | "
    f"{'Slots: Tot':>10} {'Idle':>5} {'Run':>5} {'Fail':>5} | "
    f"{'Cores: Tot':>10} {'Idle':>5} {'Run':>5} | "
    f"{'Req: Idle':>9} {'MaxRun':>6} {'Remove':>6} | Entry"
)


def format_table(result: GroupResult) -> str:
    """The per-entry table logged each cycle, like upstream's group log, with totals and unmatched, then
    one line per reason idle jobs match no entry."""
    lines = [f"group {result.group} ({result.client_name}): {result.jobs.idle} idle jobs "
             f"({result.jobs.old_idle} old, {result.jobs.idle_all - result.jobs.idle} in bad schedds), "
             f"{result.jobs.running} running; {result.clusters} clusters, {result.evaluations} evaluations",
             _HEADER]
    for glideid, r in sorted(result.requests.items(), key=lambda item: (item[0][1], item[0][0])):
        j, g = r.jobs, r.glideins
        flags = " [down]" if r.in_downtime else ""
        if r.limits_triggered:
            flags += " [limit: " + ", ".join(sorted(r.limits_triggered)) + "]"
        lines.append(
            f"{j.idle:>10} {j.prop_idle:>6} {r.effective_idle:>6} {j.old_idle:>6} {j.unique_idle:>6} "
            f"{j.running:>6} {r.running_here:>6} | {g.total:>10} {g.idle:>5} {g.running:>5} {g.failed:>5} | "
            f"{g.total_cores:>10} {g.idle_cores:>5} {g.running_cores:>5} | "
            f"{r.req_idle:>9} {r.req_max_run:>6} {r.remove_excess:>6} | {glideid[1]} ({glideid[0]}){flags}")
    g = result.glideins
    lines.append(
        f"{result.jobs.idle:>10} {'':>6} {'':>6} {result.jobs.old_idle:>6} {'':>6} {result.jobs.running:>6} "
        f"{'':>6} | {g.total:>10} {g.idle:>5} {g.running:>5} {g.failed:>5} | "
        f"{g.total_cores:>10} {g.idle_cores:>5} {g.running_cores:>5} | "
        f"{sum(r.req_idle for r in result.requests.values()):>9} "
        f"{sum(r.req_max_run for r in result.requests.values()):>6} {'':>6} | Total")
    u = result.unmatched
    lines.append(f"{u.idle:>10} {'':>6} {'':>6} {u.old_idle:>6} {'':>6} {u.running:>6} {'':>6} | "
                 f"{'':>10} {'':>5} {'':>5} {'':>5} | {'':>10} {'':>5} {'':>5} | {'':>9} {'':>6} {'':>6} | Unmatched")
    for r in u.reasons:  # why those idle jobs get no glidein, so a user need not guess
        lines.append(f"{r.idle:>10} unmatched idle job(s), {r.reason}: {UNMATCHED_REASONS[r.reason]}; e.g. {r.example}")
    return "\n".join(lines)
