"""The factory's decisions, as pure functions over plain data (no daemons, no clock, no I/O).

Per entry and cycle the daemon passes the entry's config, the glidein jobs of that entry in the factory
schedd (dicts as ``condor_q`` returns them), the validated requests addressed to the entry and ``now``;
:func:`decide_entry` returns what to submit, remove and release, and the monitoring numbers of the
glidefactory / glidefactoryclient ads. The queue is the only state: nothing is remembered between
cycles, so a restarted factory decides exactly as before and never submits twice for the same need.

Upstream semantics kept (reference §3): grid sub-states, per-entry and per-frontend-security-class
limits, level-based ReqIdleGlideins/ReqMaxGlideins, RemoveExcess modes with margins judged on the
frontend's *original* idle request (#520), held release back-off and ``-forcex``, stale removal.
Deliberate differences, each for a reason:

* Glideins are counted per client (``GlideinClient``) and frontend security class
  (``GlideinFrontendName``), never only per credential id, so pilots submitted under an older
  credential or auth_method still count (#306 flooded a CE, #681 lost pilots from monitoring).
* ``submit.max_per_cycle`` caps the whole entry per cycle, and competing clients share the headroom
  max-min fairly instead of first come, first served.
* Held and stale cleanup runs every cycle (upstream only when the entry did no other work), within
  ``remove.max_per_cycle`` / ``release.max_per_cycle``.
* ``UNREG``: the factory cannot tell which running pilots never registered in the user pool, so it
  removes excess idle glideins like ``IDLE`` and never kills running ones for it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..defaults import factory as defaults
from .config import EntryConfig, FactoryConfig, Limits, parse_recoverable_exitcodes

# HTCondor JobStatus values the factory acts on.
JOB_IDLE, JOB_RUNNING, JOB_REMOVED, JOB_COMPLETED, JOB_HELD = 1, 2, 3, 4, 5

# GridJobStatus values (upper case) of every grid type, sorted into upstream's sub-states.
_GRID_PENDING = frozenset({
    "PENDING", "INLRMS: Q", "INLRMS:Q", "PREPARED", "SUBMITTING", "IDLE", "SUSPENDED", "REGISTERED", "QUEUING",
})
_GRID_STAGE_IN = frozenset({"STAGE_IN", "PREPARING", "ACCEPTING", "ACCEPTED"})
_GRID_RUNNING = frozenset({"ACTIVE", "REALLY-RUNNING", "INLRMS: R", "INLRMS:R", "RUNNING"})
# TRANSFERRING_OUTPUT is what an HTCondor-CE (gridtype condor) reports while the pilot's output returns.
_GRID_STAGE_OUT = frozenset({
    "STAGE_OUT", "INLRMS: E", "INLRMS:E", "EXECUTED", "FINISHING", "FINISHED", "DONE", "COMPLETED",
    "TRANSFERRING_OUTPUT",
})

#: sub-states that make up "Idle" (upstream 1001, 1002, 1010, 1100)
IDLE_STATES = ("Wait", "Pending", "StageIn", "IdleOther")
#: the Status counts of the monitoring ads (GlideinMonitorStatus<key>, GlideinMonitorTotalStatus<key>)
STATUS_KEYS = ("Idle", "Running", "Held", "Wait", "Pending", "StageIn", "IdleOther", "StageOut", "RunningCores")

#: ReqRemoveExcess values, least to most aggressive; UNREG acts like IDLE here (see module doc).
_REMOVE_EXCESS_RANK = {"NO": 0, "WAIT": 1, "IDLE": 2, "UNREG": 2, "ALL": 3}
LIMIT_ATTR_PREFIX = "GlideinMonitorStatus_GlideFactoryLimit"
_HOLD_REASON_CHARS = 80  # a HoldReason can be a whole stack trace; logs need only its start


# ----------------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True)
class FactoryLimits:
    """Factory-wide input to every entry decision: which holds are recoverable, factory downtime."""

    #: HoldReasonCode -> recoverable HoldReasonSubCodes (empty = any subcode)
    recoverable_exitcodes: Mapping[int, frozenset[int]] = field(default_factory=dict)
    in_downtime: bool = False

    @classmethod
    def from_config(cls, config: FactoryConfig, *, in_downtime: bool = False) -> FactoryLimits:
        return cls(config.recoverable_exitcodes, in_downtime)


@dataclass(frozen=True)
class GlideinRequest:
    """One validated glideclient request to this entry (one per client and credential)."""

    client_name: str  # "<frontend_name>.<group>"
    security_name: str
    security_class: str
    credential_id: str
    req_idle_glideins: int
    req_max_glideins: int
    req_remove_excess: str = "NO"
    req_remove_excess_margin: int = 0
    req_idle_lifetime: int = 0

    @property
    def frontend_name(self) -> str:
        """The ``GlideinFrontendName`` its glideins carry: '<security_name>:<security_class>'."""
        return f"{self.security_name}:{self.security_class}"


@dataclass(frozen=True)
class Authorized:
    username: str


@dataclass(frozen=True)
class Rejected:
    reason: str


@dataclass(frozen=True)
class GlideinCounts:
    """Status counts (:data:`STATUS_KEYS`) of one entry's glideins: total, per frontend class, per client."""

    entry: dict[str, int]
    per_frontend: dict[str, dict[str, int]]
    per_client: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Submission:
    """One ``condor_submit`` of ``count`` glideins (count <= submit.cluster_size)."""

    client_name: str
    frontend_name: str
    credential_id: str
    count: int
    idle_lifetime: int


@dataclass(frozen=True)
class Removal:
    cluster_id: int
    proc_id: int
    reason: str
    force: bool = False  # condor_rm -forcex after the plain condor_rm

    @property
    def job_id(self) -> str:
        return f"{self.cluster_id}.{self.proc_id}"


@dataclass(frozen=True)
class Release:
    cluster_id: int
    proc_id: int
    reason: str

    @property
    def job_id(self) -> str:
        return f"{self.cluster_id}.{self.proc_id}"


@dataclass(frozen=True)
class ClientDecision:
    """What the entry does for one requesting client, and its glidefactoryclient monitoring."""

    client_name: str
    frontend_name: str
    #: Idle (the frontend's original ReqIdleGlideins), AdjustedIdle (0 when blocked), MaxGlideins, *Cores
    requested: dict[str, int]
    status: dict[str, int]
    to_submit: int
    #: '<Limit>' -> 'count=N, limit=M' (entry limits and this client's frontend class limits)
    limits_triggered: dict[str, str]
    blocked_reasons: tuple[str, ...]

    def monitor_attrs(self) -> dict[str, int | str]:
        """The client's GlideinMonitor* attributes for its glidefactoryclient ad."""
        out: dict[str, int | str] = {f"GlideinMonitorStatus{k}": v for k, v in self.status.items()}
        out.update({f"GlideinMonitorRequested{k}": v for k, v in self.requested.items()})
        out.update({f"{LIMIT_ATTR_PREFIX}{k}": v for k, v in self.limits_triggered.items()})
        return out


@dataclass(frozen=True)
class EntryDecision:
    entry_name: str
    submissions: tuple[Submission, ...]
    removals: tuple[Removal, ...]
    releases: tuple[Release, ...]
    clients: dict[str, ClientDecision]
    counts: GlideinCounts
    #: every limit reached this cycle, entry-wide and per frontend class ('<Limit>' -> 'count=N, limit=M')
    limits_triggered: dict[str, str]
    #: why the entry submits nothing at all this cycle (empty if it may submit)
    blocked_reasons: tuple[str, ...]
    #: bad data seen (jobs or requests skipped), one line each, for the log
    warnings: tuple[str, ...]

    @property
    def submitted(self) -> int:
        return sum(s.count for s in self.submissions)

    def monitor_attrs(self) -> dict[str, int]:
        """The entry's GlideinMonitorTotal* attributes for its glidefactory ad."""
        out = {f"GlideinMonitorTotalStatus{k}": v for k, v in self.counts.entry.items()}
        for client in self.clients.values():
            for key, value in client.requested.items():
                name = f"GlideinMonitorTotalRequested{key}"
                out[name] = out.get(name, 0) + value
        return out


# ----------------------------------------------------------------------------------------------------
# Classification and counting


def glidein_state(job: Mapping[str, Any]) -> str:
    """Upstream's glidein sub-state from JobStatus + GridJobStatus.

    Wait (1001, idle, not yet at the CE), Pending (1002), StageIn (1010), IdleOther (1100: idle with an
    unknown grid status, or running with a grid status that is neither running nor stage-out), Running
    (2), StageOut (4010), Held (5); otherwise Removed, Completed or Other.
    """
    status = _int(job.get("JobStatus"))
    grid = job.get("GridJobStatus")
    grid = str(grid).strip().upper() if grid is not None else ""
    if status == JOB_IDLE:
        if not grid:
            return "Wait"
        if grid in _GRID_PENDING:
            return "Pending"
        return "StageIn" if grid in _GRID_STAGE_IN else "IdleOther"
    if status == JOB_RUNNING:
        if not grid or grid in _GRID_RUNNING:
            return "Running"
        return "StageOut" if grid in _GRID_STAGE_OUT else "IdleOther"
    return {JOB_HELD: "Held", JOB_REMOVED: "Removed", JOB_COMPLETED: "Completed"}.get(status, "Other")


def count_glideins(jobs: Iterable[Mapping[str, Any]], *, cores_per_glidein: int = 1) -> GlideinCounts:
    """Status counts of one entry's glideins, in total, per GlideinFrontendName and per GlideinClient.

    Idle is the sum of the idle sub-states; Running is only the Running sub-state (StageOut is apart),
    as upstream; RunningCores = Running x cores_per_glidein.
    """
    entry = _zero_counts()
    per_frontend: dict[str, dict[str, int]] = {}
    per_client: dict[str, dict[str, int]] = {}
    for job in jobs:
        state = glidein_state(job)
        if state not in IDLE_STATES + ("Running", "StageOut", "Held"):
            continue
        buckets = [entry]
        for key, table in (("GlideinFrontendName", per_frontend), ("GlideinClient", per_client)):
            name = job.get(key)
            if isinstance(name, str) and name:
                buckets.append(table.setdefault(name, _zero_counts()))
        for bucket in buckets:
            bucket[state] += 1
            if state in IDLE_STATES:
                bucket["Idle"] += 1
            elif state == "Running":
                bucket["RunningCores"] += cores_per_glidein
    return GlideinCounts(entry, per_frontend, per_client)


def is_recoverable_hold(
    job: Mapping[str, Any],
    recoverable_exitcodes: Mapping[int, frozenset[int]] | str,
    *,
    max_release_count: int = defaults.RELEASE["max_release_count"].default,
) -> bool:
    """Whether a held glidein is worth releasing: its HoldReasonCode (and, if listed, HoldReasonSubCode)
    is in recoverable_exitcodes and it was held at most max_release_count times (NumSystemHolds,
    1 if absent). Jobs that are not held, and holds with junk codes, are not recoverable."""
    if isinstance(recoverable_exitcodes, str):
        recoverable_exitcodes = parse_recoverable_exitcodes(recoverable_exitcodes)
    if _int(job.get("JobStatus")) != JOB_HELD:
        return False
    code = _int(job.get("HoldReasonCode"))
    if code is None or code not in recoverable_exitcodes:
        return False
    subcodes = recoverable_exitcodes[code]
    if subcodes and _int(job.get("HoldReasonSubCode")) not in subcodes:
        return False
    return _num_holds(job) <= max_release_count


# ----------------------------------------------------------------------------------------------------
# Authorization


def authorize_request(
    factory_config: FactoryConfig,
    entry: EntryConfig,
    request_security_name: str,
    security_class: str,
    authenticated_identity: str | None,
) -> Authorized | Rejected:
    """May this frontend security class use this entry, and as which local user?

    The frontend must be configured (security.frontends), the collector must have authenticated it as
    the configured identity, the entry must allow it (allow_frontends, 'All' admits every class), and
    the security class must map to a username.
    """
    frontend = factory_config.security.frontends.get(request_security_name)
    if frontend is None:
        return Rejected(f"frontend {request_security_name!r} is not in security.frontends")
    if not authenticated_identity:
        return Rejected(f"frontend {request_security_name!r} was not authenticated by the collector "
                        "(no AuthenticatedIdentity)")
    if authenticated_identity != frontend.identity:
        return Rejected(f"frontend {request_security_name!r} authenticated as {authenticated_identity!r}, "
                        f"expected {frontend.identity!r}")
    if not entry.allows(request_security_name, security_class):
        return Rejected(f"entry {entry.name} does not allow {request_security_name}:{security_class} "
                        "(allow_frontends)")
    username = frontend.security_classes.get(security_class)
    if username is None:
        return Rejected(f"security class {security_class!r} of frontend {request_security_name!r} "
                        "maps to no local user")
    return Authorized(username)


# ----------------------------------------------------------------------------------------------------
# The entry decision


def decide_entry(
    entry: EntryConfig,
    factory_limits: FactoryLimits,
    requests: Sequence[GlideinRequest],
    jobs: Sequence[Mapping[str, Any]],
    now: float,
    *,
    in_downtime: bool = False,
) -> EntryDecision:
    """Everything the entry does this cycle, decided from the queue, the requests and the config only.

    Submissions keep each client's idle glideins at its ReqIdleGlideins within ReqMaxGlideins, the
    per-entry and per-frontend-class limits and submit.max_per_cycle, split max-min fairly between
    clients and then between a client's credentials, in chunks of submit.cluster_size. A disabled entry,
    one in downtime, a factory in downtime or a reached limit stops submissions, never the cleanup.
    Removals (at most remove.max_per_cycle): excess per ReqRemoveExcess, then unrecoverable held
    (-forcex when held very often), then stale running, then stale idle. Releases (at most
    release.max_per_cycle): recoverable held glideins whose back-off has passed.
    """
    warnings: list[str] = []
    live = _usable_jobs(entry, jobs, warnings)
    cores = entry.expected_cores()
    counts = count_glideins(live, cores_per_glidein=cores)
    by_client = _requests_by_client(requests, warnings)

    entry_limits, entry_blocks = _entry_limits(entry.limits.per_entry, counts.entry)
    blocked = tuple(
        reason for reason, on in (
            ("entry is disabled", not entry.enabled),
            ("entry is in downtime", in_downtime),
            ("factory is in downtime", factory_limits.in_downtime),
        ) if on
    ) + entry_blocks
    frontend_names = sorted({reqs[0].frontend_name for reqs in by_client.values()} | set(counts.per_frontend))
    frontend_limits = {}
    frontend_blocks = {}
    for name in frontend_names:
        limits = entry.limits.for_frontend(name)
        frontend_limits[name], frontend_blocks[name] = _frontend_limits(name, limits, counts.per_frontend.get(name))

    to_submit = _share_submissions(entry, counts, by_client, blocked, frontend_blocks)
    submissions = _submissions(entry, live, by_client, to_submit)
    removals = _removals(entry, factory_limits, live, counts, by_client, now, warnings)
    releases = _releases(entry, factory_limits, live, {(r.cluster_id, r.proc_id) for r in removals}, now)

    clients = {}
    for client, reqs in by_client.items():
        fe_name = reqs[0].frontend_name
        client_blocked = blocked + frontend_blocks[fe_name]
        req_idle, req_max = _requested(reqs)
        adjusted = 0 if client_blocked else req_idle
        clients[client] = ClientDecision(
            client_name=client,
            frontend_name=fe_name,
            requested={"Idle": req_idle, "AdjustedIdle": adjusted, "MaxGlideins": req_max,
                       "IdleCores": req_idle * cores, "MaxCores": req_max * cores},
            status=dict(counts.per_client.get(client, _zero_counts())),
            to_submit=to_submit.get(client, 0),
            limits_triggered={**entry_limits, **frontend_limits[fe_name]},
            blocked_reasons=client_blocked,
        )
    all_limits = dict(entry_limits)
    for triggered in frontend_limits.values():
        all_limits.update(triggered)
    return EntryDecision(
        entry_name=entry.name,
        submissions=tuple(submissions),
        removals=tuple(removals),
        releases=tuple(releases),
        clients=clients,
        counts=counts,
        limits_triggered=all_limits,
        blocked_reasons=blocked,
        warnings=tuple(warnings),
    )


def _usable_jobs(entry: EntryConfig, jobs: Sequence[Mapping[str, Any]], warnings: list[str]) -> list[Mapping]:
    """Jobs the factory can act on: with integer ids, of this entry."""
    usable = []
    for job in jobs:
        if _job_id(job) is None:
            warnings.append(f"skipped a glidein with bad ids ClusterId={job.get('ClusterId')!r} "
                            f"ProcId={job.get('ProcId')!r}")
            continue
        job_entry = job.get("GlideinEntryName")
        if job_entry is not None and job_entry != entry.name:
            warnings.append(f"skipped glidein {_job_label(job)} of entry {job_entry!r}, not {entry.name}")
            continue
        usable.append(job)
    return usable


def _requests_by_client(requests: Sequence[GlideinRequest], warnings: list[str]) -> dict[str, list[GlideinRequest]]:
    """Requests grouped by client; a client speaks for one frontend class and one request per credential."""
    by_client: dict[str, list[GlideinRequest]] = {}
    for request in requests:
        reqs = by_client.setdefault(request.client_name, [])
        if reqs and reqs[0].frontend_name != request.frontend_name:
            warnings.append(f"ignored request of {request.client_name} as {request.frontend_name}: "
                            f"the client already requests as {reqs[0].frontend_name}")
        elif any(r.credential_id == request.credential_id for r in reqs):
            warnings.append(f"ignored a second request of {request.client_name} for credential "
                            f"{request.credential_id}")
        else:
            if request.req_remove_excess not in _REMOVE_EXCESS_RANK:
                warnings.append(f"unknown ReqRemoveExcess {request.req_remove_excess!r} from "
                                f"{request.client_name}, treated as NO")
            reqs.append(request)
    return dict(sorted(by_client.items()))


def _entry_limits(limits: Limits, status: Mapping[str, int]) -> tuple[dict[str, str], tuple[str, ...]]:
    idle, running, held = status["Idle"], status["Running"], status["Held"]
    checks = (
        ("IdleGlideinsPerEntry", "per-entry idle limit", idle, limits.idle),
        ("TotalGlideinsPerEntry", "per-entry glideins limit", idle + running, limits.glideins),
        ("HeldGlideinsPerEntry", "per-entry held limit", held, limits.held),
    )
    return _triggered(checks)


def _frontend_limits(name: str, limits: Limits, status: Mapping[str, int] | None) -> tuple[dict, tuple]:
    status = status or _zero_counts()
    idle, running, held = status["Idle"], status["Running"], status["Held"]
    checks = (
        (f"IdlePerClass_{name}", f"idle limit of {name}", idle, limits.idle),
        (f"TotalPerClass_{name}", f"glideins limit of {name}", idle + running, limits.glideins),
        (f"HeldPerClass_{name}", f"held limit of {name}", held, limits.held),
    )
    return _triggered(checks)


def _triggered(checks) -> tuple[dict[str, str], tuple[str, ...]]:
    """Limits reached (count >= limit: not one more glidein fits) and the matching block reasons."""
    triggered, reasons = {}, []
    for key, label, count, limit in checks:
        if count >= limit:
            triggered[key] = f"count={count}, limit={limit}"
            reasons.append(f"{label} reached ({triggered[key]})")
    return triggered, tuple(reasons)


def _share_submissions(
    entry: EntryConfig,
    counts: GlideinCounts,
    by_client: Mapping[str, list[GlideinRequest]],
    blocked: tuple[str, ...],
    frontend_blocks: Mapping[str, tuple[str, ...]],
) -> dict[str, int]:
    """How many glideins each client gets this cycle: its need, within the shared headrooms."""
    demands, pools_of = {}, {}
    for client, reqs in by_client.items():
        fe_name = reqs[0].frontend_name
        status = counts.per_client.get(client, _zero_counts())
        req_idle, req_max = _requested(reqs)
        need = min(req_idle - status["Idle"], req_max - status["Idle"] - status["Running"])
        demands[client] = 0 if blocked or frontend_blocks[fe_name] else max(0, need)
        pools_of[client] = ("entry", fe_name)
    per_entry = entry.limits.per_entry
    total = counts.entry
    capacities = {"entry": max(0, min(per_entry.idle - total["Idle"],
                                      per_entry.glideins - total["Idle"] - total["Running"],
                                      entry.submit.max_per_cycle))}
    for fe_name in {pools[1] for pools in pools_of.values()}:
        limits = entry.limits.for_frontend(fe_name)
        status = counts.per_frontend.get(fe_name, _zero_counts())
        capacities[fe_name] = max(0, min(limits.idle - status["Idle"],
                                         limits.glideins - status["Idle"] - status["Running"]))
    return _share_fairly(demands, capacities, pools_of)


def _submissions(
    entry: EntryConfig,
    jobs: Sequence[Mapping[str, Any]],
    by_client: Mapping[str, list[GlideinRequest]],
    to_submit: Mapping[str, int],
) -> list[Submission]:
    """Each client's share split over its credentials (by their own idle deficit), in clusters."""
    submissions = []
    for client, count in to_submit.items():
        if count <= 0:
            continue
        reqs = {r.credential_id: r for r in by_client[client]}
        idle_by_credential: dict[str, int] = {}
        for job in jobs:
            if job.get("GlideinClient") == client and glidein_state(job) in IDLE_STATES:
                credential = job.get("GlideinCredentialIdentifier")
                idle_by_credential[credential] = idle_by_credential.get(credential, 0) + 1
        deficits = {cred: max(0, r.req_idle_glideins - idle_by_credential.get(cred, 0)) for cred, r in reqs.items()}
        shares = _share_fairly(deficits, {"client": count}, {cred: ("client",) for cred in deficits})
        for cred, share in shares.items():
            request = reqs[cred]
            for chunk in _chunks(share, entry.submit.cluster_size):
                submissions.append(Submission(client, request.frontend_name, cred, chunk, request.req_idle_lifetime))
    return submissions


def _removals(
    entry: EntryConfig,
    factory_limits: FactoryLimits,
    jobs: Sequence[Mapping[str, Any]],
    counts: GlideinCounts,
    by_client: Mapping[str, list[GlideinRequest]],
    now: float,
    warnings: list[str],
) -> list[Removal]:
    budget = entry.remove.max_per_cycle
    removals: list[Removal] = []
    chosen: set[tuple[int, int]] = set()

    def take(candidates: Iterable[tuple[Mapping[str, Any], str, bool]], limit: int | None = None) -> None:
        taken = 0
        for job, reason, force in candidates:
            if len(removals) >= budget or (limit is not None and taken >= limit):
                return
            job_id = _job_id(job)
            if job_id not in chosen:
                chosen.add(job_id)
                removals.append(Removal(job_id[0], job_id[1], reason, force))
                taken += 1

    for client, reqs in by_client.items():
        client_jobs = [j for j in jobs if j.get("GlideinClient") == client]
        for candidates, reason, limit in _excess(reqs, counts.per_client.get(client, _zero_counts()), client_jobs):
            take(((job, reason, False) for job in candidates), limit)

    forcex_after = entry.remove.forcex_after_holds
    unrecoverable = [
        job for job in jobs
        if glidein_state(job) == "Held" and not is_recoverable_hold(
            job, factory_limits.recoverable_exitcodes, max_release_count=entry.release.max_release_count)
    ]
    # -forcex ones first (stuck the longest), then the longest held
    unrecoverable.sort(key=lambda j: (_num_holds(j) <= forcex_after, _number(j.get("EnteredCurrentStatus")) or now))
    take((job, _unrecoverable_reason(job), _num_holds(job) > forcex_after) for job in unrecoverable)

    for status, age_limit, label in ((JOB_RUNNING, entry.stale_age.running, "running"),
                                     (JOB_IDLE, entry.stale_age.idle, "idle")):
        stale = []
        for job in jobs:
            if _int(job.get("JobStatus")) != status:
                continue
            entered = _number(job.get("EnteredCurrentStatus"))
            if entered is None:
                warnings.append(f"glidein {_job_label(job)} has no usable EnteredCurrentStatus, "
                                "not checked for staleness")
            elif now - entered > age_limit:
                reason = f"stale: {label} for {int(now - entered)} s > stale_age.{label} {age_limit} s"
                stale.append((entered, job, reason))
        stale.sort(key=lambda item: item[0])  # oldest first
        take((job, reason, False) for _, job, reason in stale)
    return removals


def _excess(
    reqs: Sequence[GlideinRequest],
    status: Mapping[str, int],
    client_jobs: Sequence[Mapping[str, Any]],
) -> list[tuple[list[Mapping[str, Any]], str, int | None]]:
    """(candidates youngest first, reason, most to take) for a client's ReqRemoveExcess.

    Judged against the frontend's original ReqIdleGlideins and ReqMaxGlideins, summed over the
    client's credentials, with the least aggressive mode and the largest margin the client sent.
    """
    mode = min((r.req_remove_excess for r in reqs), key=lambda m: _REMOVE_EXCESS_RANK.get(m, 0))
    rank = _REMOVE_EXCESS_RANK.get(mode, 0)
    if rank == 0:
        return []
    margin = max(max(0, r.req_remove_excess_margin) for r in reqs)
    req_idle, req_max = _requested(reqs)
    idle, running = status["Idle"], status["Running"]
    remove_all = rank >= _REMOVE_EXCESS_RANK["ALL"]
    idle_excess = idle > req_idle + margin
    running_excess = remove_all and idle + running > req_max + margin

    def newest(states: tuple[str, ...], key: str) -> list[Mapping[str, Any]]:
        found = [j for j in client_jobs if glidein_state(j) in states]
        return sorted(found, key=lambda j: (_number(j.get(key)) or 0, _job_id(j)), reverse=True)

    plan: list[tuple[list[Mapping[str, Any]], str, int | None]] = []
    if idle_excess or running_excess:
        count = idle - req_idle - margin
        if running_excess and running + req_idle > req_max:
            count = idle + running - req_max - margin  # past max running, min idle no longer matters
        why = (f"excess ({mode}): idle {idle} + running {running} > max {req_max} + margin {margin}"
               if running_excess else f"excess ({mode}): idle {idle} > requested {req_idle} + margin {margin}")
        queued = ("Pending", "StageIn", "IdleOther")
        candidates = newest(("Wait",), "QDate")
        if rank >= _REMOVE_EXCESS_RANK["IDLE"]:
            candidates += newest(queued, "QDate")
        if running_excess:
            candidates += newest(("Running",), "EnteredCurrentStatus")
        plan.append((candidates, why, max(0, count)))
    if remove_all and (running_excess or req_max == 0):
        # killing pilots anyway: held ones have no reason to stay either
        plan.append((newest(("Held",), "EnteredCurrentStatus"), f"held while removing excess ({mode})", None))
    return plan


def _releases(
    entry: EntryConfig,
    factory_limits: FactoryLimits,
    jobs: Sequence[Mapping[str, Any]],
    removed: set[tuple[int, int]],
    now: float,
) -> list[Release]:
    """Recoverable held glideins whose back-off (NumSystemHolds x min_release_time) has passed."""
    due = []
    for job in jobs:
        if _job_id(job) in removed or not is_recoverable_hold(
                job, factory_limits.recoverable_exitcodes, max_release_count=entry.release.max_release_count):
            continue
        entered = _number(job.get("EnteredCurrentStatus"))
        holds = _num_holds(job)
        wait = holds * entry.release.min_release_time
        if entered is not None and now - entered >= wait:
            due.append((entered, job, holds, wait))
    due.sort(key=lambda item: item[0])
    releases = []
    for entered, job, holds, wait in due[: entry.release.max_per_cycle]:
        cluster, proc = _job_id(job)
        releases.append(Release(cluster, proc, f"recoverable hold (code {job.get('HoldReasonCode')}), held "
                                               f"{int(now - entered)} s >= {holds} x "
                                               f"{entry.release.min_release_time} s"))
    return releases


def _unrecoverable_reason(job: Mapping[str, Any]) -> str:
    hold_reason = str(job.get("HoldReason") or "").strip()
    if len(hold_reason) > _HOLD_REASON_CHARS:
        hold_reason = hold_reason[:_HOLD_REASON_CHARS] + "..."
    return (f"unrecoverable hold (code {job.get('HoldReasonCode')}/{job.get('HoldReasonSubCode')}, "
            f"{_num_holds(job)} holds): {hold_reason}")


# ----------------------------------------------------------------------------------------------------
# Helpers

_Key = TypeVar("_Key", bound=Hashable)


def _share_fairly(
    demands: Mapping[_Key, int],
    capacities: Mapping[str, int],
    pools_of: Mapping[_Key, tuple[str, ...]],
) -> dict[_Key, int]:
    """Max-min fair integer shares of capacities that several claimants draw on (progressive filling).

    Every claimant grows at the same pace until its demand is met or one of its pools is empty; when
    fewer units are left than claimants, they go one each in key order (deterministic).
    """
    alloc = {key: 0 for key in demands}
    left = dict(capacities)

    def can_grow(key) -> bool:
        return alloc[key] < demands[key] and all(left[pool] > 0 for pool in pools_of[key])

    def grant(key, units: int) -> None:
        alloc[key] += units
        for pool in pools_of[key]:
            left[pool] -= units

    active = sorted(key for key in demands if can_grow(key))
    while active:
        step = min(demands[key] - alloc[key] for key in active)
        for pool in {pool for key in active for pool in pools_of[key]}:
            step = min(step, left[pool] // sum(1 for key in active if pool in pools_of[key]))
        if step:
            for key in active:
                grant(key, step)
        else:  # some pool has fewer units than claimants: one each while they last
            for key in active:
                if can_grow(key):
                    grant(key, 1)
        active = [key for key in active if can_grow(key)]
    return alloc


def _requested(reqs: Sequence[GlideinRequest]) -> tuple[int, int]:
    """A client's ReqIdleGlideins and ReqMaxGlideins, summed over its credentials."""
    return (sum(max(0, r.req_idle_glideins) for r in reqs), sum(max(0, r.req_max_glideins) for r in reqs))


def _chunks(count: int, size: int) -> list[int]:
    return [min(size, count - start) for start in range(0, count, size)]


def _zero_counts() -> dict[str, int]:
    return dict.fromkeys(STATUS_KEYS, 0)


def _num_holds(job: Mapping[str, Any]) -> int:
    holds = _int(job.get("NumSystemHolds"))
    return 1 if holds is None else holds  # upstream counts a held job with no count as held once


def _job_id(job: Mapping[str, Any]) -> tuple[int, int] | None:
    cluster, proc = _int(job.get("ClusterId")), _int(job.get("ProcId"))
    return None if cluster is None or proc is None else (cluster, proc)


def _job_label(job: Mapping[str, Any]) -> str:
    return f"{job.get('ClusterId')}.{job.get('ProcId')}"


def _number(value: Any) -> float | None:
    """A ClassAd number, or None for junk (strings, booleans, undefined)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None
