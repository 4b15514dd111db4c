"""Which entries can run which jobs: job sets, clustering, match_expr evaluation, unique-set split.

Upstream's ``countMatch`` (reference §2.2 step 4) in plain data:

1. Jobs are read defensively (junk values skip the job, counted in a :class:`SkipLog`) and sorted into
   sets: ``idle`` (from good schedds), ``old_idle`` (waited ``old_idle_age``), ``idle_3600``, ``running``.
2. Jobs are clustered by the tuple of their job match attrs (``RequestCpus`` always included).  The job
   ad matched against entries is built from that tuple only, so every job of a cluster gets the same
   answer by construction (config validation guarantees match_expr reads no other job attribute).
3. ``match_expr`` is evaluated by classad2 (MY = the cluster's ad, TARGET = the entry's factory match
   attrs), never by Python.  ``GLIDEIN_CPUS >= RequestCpus`` is checked in Python per entry, and with
   ``ignore_down_entries`` entries in downtime match nothing.
4. A result of ``undefined``/``error`` is "no match" plus a warning, never an exception (#537).
5. Per entry: ``count`` (straight matches), ``prop`` (each job split evenly over the k entries it
   matches), ``hereonly`` (jobs matching only this entry), ``prop_mc`` (prop in glideins:
   Σ RequestCpus / k / (GLIDEIN_CPUS × GLIDEIN_NODES)).  Fractions are summed per entry and rounded up
   once at the end.  Idle jobs matching no entry are counted apart, each with the reason
   (:data:`UNMATCHED_REASONS`), and request nothing.

How step 3 stays cheap (100,000 jobs × 1,000 entries in well under a second; bench/frontend_decision.py):

* The expression is split into its top-level ``&&`` parts (:mod:`.match_plan`), each reading a few job
  and entry attributes.  A part is evaluated once per distinct (values it reads from a cluster × values
  it reads from an entry), and its outcome kept as two entry bitmasks per job value: where it is true,
  where it is false.  A cluster's matches are the entries where every part is true, by ClassAd's rules
  for ``a && b``: true && x is x, false && x is false.  Entries where a part is neither true nor false
  (undefined, error, a number) are settled by evaluating the whole expression there, exactly as before.
* Parts of the ``stringListMember(TARGET.X, MY.Y)`` / ``TARGET.X == MY.Y`` kind skip entries whose X
  does not even occur inside Y as a whole word (see :class:`.match_plan.Membership`); the rest are
  still evaluated.
* A :class:`MatchCache` carries results to the next cycle, keyed by the typed attribute values and by
  the part's text and attribute names: a changed entry or job has new keys, a changed match_expr has
  new parts, so nothing stale is ever read.  The masks themselves are reused while the entries'
  values are unchanged.

:mod:`.matching_reference` keeps the straightforward version (whole expression per cluster × entry
signature); tests compare both on randomized snapshots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Mapping, Sequence

import classad2

try:  # importing htcondor2 registers HTCondor's ClassAd functions (stringListMember, ...) with classad2
    import htcondor2  # noqa: F401
except ImportError:  # bindings without htcondor2: plain ClassAd functions still work
    pass

from .config import REQUEST_CPUS
from .match_plan import ANY, Part, plan_match
from .values import BadValue, SkipLog, as_bool, as_count, as_number, freeze, lookup

#: key an entry dict carries for the factory collector it was read from (part of the glideid)
COLLECTOR_KEY = "FactoryCollector"
#: key a job dict may carry for its schedd (else the schedd part of GlobalJobId is used)
SCHEDD_KEY = "ScheddName"

GlideId = tuple[str, str]  # (factory collector, entry ad Name "entry@glidein@factory")

IDLE, RUNNING = 1, 2
#: prop sums are rounded up once; this absorbs float noise like 7 × (1/7) = 1.0000000000000002
_ROUNDING_SLACK = 1e-9

#: why idle jobs match no entry, in the order they are checked; the keys name the
#: ``GlideClientMonitorJobsIdleUnmatched<reason>`` attributes of the glideresource ads
UNMATCHED_REASONS: dict[str, str] = {
    "Undefined": "match_expr is undefined or an error with their attribute values",
    "Cores": "RequestCpus is more than GLIDEIN_CPUS of every entry that satisfies match_expr",
    "Down": "every entry that could run them is in downtime (ignore_down_entries)",
    "Size": "match_expr's Request* conditions (memory, disk, ...) fail at every entry that satisfies the rest",
    "NoEntry": "no entry satisfies match_expr",
}


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
    cpus_auto: bool = False  # GLIDEIN_CPUS is decided on the node: ``cpus`` is only an estimate

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
class UnmatchedReason:
    """Idle jobs that match no entry for one reason of :data:`UNMATCHED_REASONS`, with one example."""

    reason: str
    idle: int
    example: str


@dataclass(frozen=True)
class Unmatched:
    idle: int = 0
    old_idle: int = 0
    running: int = 0
    reasons: tuple[UnmatchedReason, ...] = ()  # idle jobs only, in UNMATCHED_REASONS order

    def idle_by_reason(self) -> dict[str, int]:
        counts = dict.fromkeys(UNMATCHED_REASONS, 0)
        for r in self.reasons:
            counts[r.reason] += r.idle
        return counts


@dataclass
class MatchResult:
    counts: dict[GlideId, MatchCounts]
    unmatched: Unmatched
    evaluations: int  # ClassAd evaluations done this cycle (results reused from the cache not counted)
    signatures: int  # distinct entry values summed over the parts of match_expr
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



#: attribute value types that are their own cluster key (what freeze returns them as)
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
_ABSENT = object()


def collect_jobs(jobs: Sequence[Mapping[str, Any]], match_attrs: Sequence[str], now: float,
                 old_idle_age: int, bad: set[str], skipped: SkipLog) -> JobSets:
    """Sort jobs into sets and clusters; junk jobs are skipped into ``skipped``.

    Well-typed jobs (int JobStatus, RequestCpus and times, as schedds publish them) take a fast path;
    anything else goes through :func:`_read_job`, which checks every value.  All give the same result
    (``tests/unit/test_frontend_matching.py`` compares them with :mod:`.matching_reference`).
    """
    other_attrs = [a for a in match_attrs if a.lower() != REQUEST_CPUS.lower()]
    sets = JobSets()
    hosts = sets.running_hosts
    tallies: dict[tuple, list] = {}  # cluster key → [idle, old idle, idle 3600, running, values, cpus]
    plain = _PLAIN_TYPES
    every = itemgetter("JobStatus", REQUEST_CPUS, "ServerTime", "EnteredCurrentStatus", *other_attrs)
    idle_all = 0
    age: float = 0
    for job in jobs:
        try:  # fastest: every attribute present (the schedd's own ints)
            status, cpus, server_time, entered, *values = every(job)
        except KeyError:
            status = None
        else:
            if (type(status) is int and type(cpus) is int and type(server_time) is int and type(entered) is int
                    and cpus >= 1 and (status == IDLE or status == RUNNING)):
                age = server_time - entered
            else:
                status = None
        if status is None:  # fast: ints where present, absent ones looked up (RequestCpus defaults to 1)
            status, cpus, values = _read_job_fast(job, other_attrs, now)
            if status is not None:
                age = values.pop()
        if status is not None:
            key = (*values, cpus)
            for value in values:
                if type(value) not in plain:
                    key = (*(freeze(v) for v in values), cpus)
                    break
        else:  # anything else: every value checked
            try:
                status, cpus, age, values, key = _read_job(job, other_attrs, now)
            except BadValue as exc:
                skipped.add(str(exc).split("=")[0], f"{_job_id(job)} {exc}")
                continue
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = [0, 0, 0, 0, values, cpus]
        if status == RUNNING:
            tally[3] += 1
            host = job.get("RemoteHost")
            if isinstance(host, str):
                hosts.append(host)
            continue
        idle_all += 1
        if bad and schedd_of(job) in bad:
            continue
        tally[0] += 1
        if age >= old_idle_age:
            tally[1] += 1
        if age >= 3600:
            tally[2] += 1
    for key, (idle, old, idle_3600, running, values, cpus) in tallies.items():
        ad_values = {a: v for a, v in zip(other_attrs, values) if v is not None}
        ad_values[REQUEST_CPUS] = cpus
        sets.clusters[key] = Cluster(ad_values, cpus, idle, old, idle_3600, running, idle * cpus, old * cpus)
        sets.idle += idle
        sets.old_idle += old
        sets.idle_3600 += idle_3600
        sets.running += running
    sets.idle_all = idle_all
    return sets


def _read_job_fast(job: Mapping[str, Any], other_attrs: Sequence[str], now: float) -> tuple[Any, Any, list]:
    """(status, cpus, [match attr values..., idle age]) for a job with int values where present, else
    (None, None, []) for :func:`_read_job` to check."""
    get = job.get
    status = get("JobStatus")
    cpus = get(REQUEST_CPUS)
    if cpus is None:
        cpus = 1
    elif type(cpus) is not int or cpus < 1:
        return None, None, []
    age = 0
    if status == IDLE and type(status) is int:
        server_time, entered = get("ServerTime"), get("EnteredCurrentStatus")
        if not ((server_time is None or type(server_time) is int) and (entered is None or type(entered) is int)):
            return None, None, []
        age = 0 if entered is None else (now if server_time is None else server_time) - entered
    elif status != RUNNING or type(status) is not int:
        return None, None, []
    values = []
    for attr in other_attrs:
        value = get(attr, _ABSENT)
        values.append(lookup(job, attr) if value is _ABSENT else value)
    values.append(age)
    return status, cpus, values


def _read_job(job: Mapping[str, Any], other_attrs: Sequence[str], now: float
              ) -> tuple[int, int, float, list[Any], tuple]:
    """(status, RequestCpus, idle age, match attr values, cluster key); raises BadValue for junk."""
    status = job.get("JobStatus")
    if status not in (IDLE, RUNNING) or isinstance(status, bool):
        raise BadValue(f"JobStatus={status!r}")
    cpus = as_count(job.get(REQUEST_CPUS), REQUEST_CPUS, default=1, minimum=1)
    age = 0.0
    if status == IDLE:
        server_time = job.get("ServerTime")
        clock = now if server_time is None else as_number(server_time, "ServerTime")
        entered = job.get("EnteredCurrentStatus")
        age = 0.0 if entered is None else clock - as_number(entered, "EnteredCurrentStatus")
    values = [lookup(job, a) for a in other_attrs]
    return status, cpus, age, values, (*(freeze(v) for v in values), cpus)


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
    cpus, auto = _glidein_cpus(ad)
    return Entry(
        glideid=(collector, name),
        entry_name=triple[0],
        glidein_name=triple[1],
        factory_name=triple[2],
        cpus=cpus,
        nodes=as_count(ad.get("GLIDEIN_NODES"), "GLIDEIN_NODES", default=1, minimum=1),
        in_downtime=as_bool(ad.get("GLIDEIN_In_Downtime")),
        match_values=values,
        cpus_auto=auto,
    )


def glidein_cpus(ad: Mapping[str, Any]) -> int:
    """GLIDEIN_CPUS; "auto"/"node"/"slot" or ≤ 0 mean "decided on the node": use the estimate, else 1."""
    return _glidein_cpus(ad)[0]


def _glidein_cpus(ad: Mapping[str, Any]) -> tuple[int, bool]:
    """(cores, whether they are only an estimate because the node decides)."""
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
        return math.ceil(raw), False
    return as_count(ad.get("GLIDEIN_ESTIMATED_CPUS"), "GLIDEIN_ESTIMATED_CPUS", default=1, minimum=1), True


# -------------------------------------------------------------------------------------------- matching

_FALSE, _TRUE, _OTHER = 0, 1, 2  # outcome of one evaluation: false, true, anything else (undefined, error, 7)
_MISSING = ("<absent>",)  # the value of an attribute an ad does not have, in value keys


class MatchCache:
    """Evaluation outcomes one group keeps from cycle to cycle: pass the same object every cycle.

    ``results[part key][job values][entry values]`` is the outcome of one part of match_expr, where a part
    key is (part text, job attribute names, entry attribute names) and values are typed
    (:func:`typed_key`), so a changed expression, attribute list, job or entry can only miss, never
    read a stale outcome.  ``masks[part key]`` holds the entry bitmasks built from those outcomes together
    with the entries' values they were built for; they are reused only while those are unchanged.
    Bounded: past ``max_results`` outcomes and masks everything is dropped and rebuilt.
    """

    def __init__(self, max_results: int = 500_000) -> None:
        self.max_results = max_results
        self.results: dict[tuple, dict[tuple, dict[tuple, int]]] = {}
        self.masks: dict[tuple, tuple[tuple, dict[tuple, tuple[int, int]]]] = {}
        self.size = 0

    def keep_only(self, keys: set[tuple]) -> None:
        """Drop what belongs to parts not used this cycle (an old match_expr), and everything if too big."""
        for store in (self.results, self.masks):
            for key in [k for k in store if k not in keys]:
                del store[key]
        if self.size > self.max_results:
            self.results.clear()
            self.masks.clear()
            self.size = 0


def typed_key(value: Any) -> Any:
    """A hashable key for an attribute value that keeps ClassAd-relevant types apart (true, 1 and 1.0)."""
    kind = type(value)
    if kind is str or kind is int:
        return value
    if kind is bool:
        return ("bool", value)
    if kind is float:
        return ("real", value)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(typed_key(v) for v in value))
    if isinstance(value, dict):
        return ("record", tuple(sorted((str(k), typed_key(v)) for k, v in value.items())))
    try:
        hash(value)
    except TypeError:
        return (kind.__name__, repr(value))
    return (kind.__name__, value)


class _PartTable:
    """One part of match_expr in this cycle: the entries grouped by the values the part reads."""

    def __init__(self, part: Part, job_keys: tuple[str, ...], entry_keys: tuple[str, ...],
                 entries: Sequence[Entry], cache: MatchCache) -> None:
        self.part, self.job_keys, self.entry_keys, self.cache = part, job_keys, entry_keys, cache
        self.key = (part.text, job_keys, entry_keys)
        self.rows = cache.results.setdefault(self.key, {})
        groups: dict[tuple, list] = {}
        layout = []
        for index, entry in enumerate(entries):
            values = entry.match_values
            q = tuple(typed_key(values[k]) if k in values else _MISSING for k in entry_keys)
            layout.append(q)
            group = groups.get(q)
            if group is None:
                groups[q] = [1 << index, values]
            else:
                group[0] |= 1 << index
        self.layout = tuple(layout)
        self.values_of = {q: values for q, (_, values) in groups.items()}
        member = part.membership
        entry_attr = member and _spelled(member.entry_attr, entry_keys)
        self.needle_key = member and entry_attr and _spelled(member.job_attr, job_keys)
        self.groups = [(q, mask, _ascii_lower(values.get(entry_attr)) if self.needle_key else None)
                       for q, (mask, values) in groups.items()]
        self.texted_mask = 0  # entries whose membership text is known
        for _, mask, text in self.groups:
            if text is not None:
                self.texted_mask |= mask
        stored = cache.masks.get(self.key)
        if stored is not None and stored[0] == self.layout:
            self.masks = stored[1]
        else:
            self.masks = {}
            cache.masks[self.key] = (self.layout, self.masks)
        self.entry_ads: dict[tuple, Any] = {}
        self.evaluations = 0

    def job_key(self, typed: Mapping[str, Any]) -> tuple:
        return tuple(typed.get(k, _MISSING) for k in self.job_keys)

    def masks_for(self, p: tuple, ad_values: Mapping[str, Any]) -> tuple[int, int]:
        """(entries where the part is true, entries where it is false) for job values ``p``."""
        found = self.masks.get(p)
        if found is None:
            found = self.masks[p] = self._build_masks(p, ad_values)
            self.cache.size += 1  # the bound counts masks too: a job value may need no evaluation at all
        return found

    def _build_masks(self, p: tuple, ad_values: Mapping[str, Any]) -> tuple[int, int]:
        row = self.rows.setdefault(p, {})
        groups = self.groups
        true = false = 0
        needle = _ascii_lower(ad_values.get(self.needle_key)) if self.needle_key else None
        if needle is not None:
            # an entry whose text does not occur in the job's text as a whole word is false without an
            # evaluation (see match_plan.Membership)
            groups = [g for g in groups if g[2] is None or (g[2] in needle and _occurs_as_word(g[2], needle))]
            false = self.texted_mask
            for _, mask, text in groups:
                if text is not None:
                    false &= ~mask
        job_ad = None
        for q, mask, _ in groups:
            outcome = row.get(q)
            if outcome is None:
                if job_ad is None:
                    job_ad = self._job_ad(ad_values)
                outcome = row[q] = self._evaluate(job_ad, q)
            if outcome == _TRUE:
                true |= mask
            elif outcome == _FALSE:
                false |= mask
        return true, false

    def outcome(self, p: tuple, ad_values: Mapping[str, Any], index: int) -> int:
        """The outcome at one entry (for the whole expression, where parts alone cannot decide)."""
        q = self.layout[index]
        row = self.rows.setdefault(p, {})
        outcome = row.get(q)
        if outcome is None:
            outcome = row[q] = self._evaluate(self._job_ad(ad_values), q)
        return outcome

    def _job_ad(self, ad_values: Mapping[str, Any]) -> Any:
        try:
            return classad2.ClassAd({k: ad_values[k] for k in self.job_keys if k in ad_values})
        except Exception:  # checked for the whole cluster ad before; a subset cannot fail, but never raise
            return None

    def _evaluate(self, job_ad: Any, q: tuple) -> int:
        entry_ad = self.entry_ads.get(q, _ABSENT)
        if entry_ad is _ABSENT:
            values = self.values_of[q]
            try:
                entry_ad = classad2.ClassAd({k: values[k] for k in self.entry_keys if k in values})
            except Exception:  # an entry value classad2 cannot hold: it matches nothing
                entry_ad = None
            self.entry_ads[q] = entry_ad
        if job_ad is None or entry_ad is None:
            return _OTHER
        self.evaluations += 1
        self.cache.size += 1
        try:
            result = self.part.expr.eval(job_ad, entry_ad)
        except Exception:  # never let one job's values abort the group (#537)
            return _OTHER
        return _TRUE if result is True else _FALSE if result is False else _OTHER


def _occurs_as_word(item: str, text: str) -> bool:
    """Whether ``item`` occurs in ``text`` with no letter, digit or underscore right before or after it."""
    start = text.find(item)
    while start >= 0:
        end = start + len(item)
        if (start == 0 or not _is_word(text[start - 1])) and (end == len(text) or not _is_word(text[end])):
            return True
        start = text.find(item, start + 1)
    return False


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _spelled(lowered: str, keys: Sequence[str]) -> str | None:
    return next((k for k in keys if k.lower() == lowered), None)


def _ascii_lower(value: Any) -> str | None:
    """Lower-cased ASCII text, else None (the membership shortcut only handles ASCII case folding)."""
    return value.lower() if isinstance(value, str) and value.isascii() else None


def _reads(refs: frozenset[str], keys: tuple[str, ...]) -> tuple[str, ...]:
    return keys if ANY in refs else tuple(k for k in keys if k.lower() in refs)


def match_jobs(clusters: Sequence[Cluster], entries: Sequence[Entry], match_expr: str,
               ignore_down_entries: bool, cache: MatchCache | None = None) -> MatchResult:
    """Match every cluster to the entries, split jobs over the matched entries, explain the unmatched."""
    cache = MatchCache() if cache is None else cache
    plan = plan_match(match_expr)
    live = [c for c in clusters if c.idle or c.running]  # only idle jobs of bad schedds: nothing to count
    job_keys = tuple(sorted({k for c in live for k in c.ad_values}, key=str.lower))
    entry_keys = tuple(sorted({k for e in entries for k in e.match_values}, key=str.lower))
    tables = [_PartTable(part, _reads(part.job_refs, job_keys), _reads(part.entry_refs, entry_keys), entries,
                         cache) for part in plan.parts]
    whole = tables[0] if len(tables) == 1 else _PartTable(
        Part(plan.text, plan.expr, frozenset({ANY}), frozenset({ANY})), job_keys, entry_keys, entries, cache)
    everything = (1 << len(entries)) - 1
    active = everything
    if ignore_down_entries:
        for index, entry in enumerate(entries):
            if entry.in_downtime:
                active &= ~(1 << index)
    fit_by_cpus: dict[int, int] = {}

    warnings: list[str] = []
    by_set: dict[int, list[int]] = {}  # matched entries (bitmask) → summed cluster counters
    why: dict[str, list] = {}  # reason → [idle jobs, example]
    for cluster in live:
        ad_values = cluster.ad_values
        try:
            classad2.ClassAd(ad_values)
        except Exception:  # a value classad2 cannot represent: the cluster cannot match anything
            warnings.append(f"{_cluster_jobs(cluster)} job(s) with {_describe(cluster)}: attribute values "
                            "are not ClassAd values; not matched")
            matched, typed = 0, None
        else:
            typed = {k: typed_key(v) for k, v in ad_values.items()}
            fit = fit_by_cpus.get(cluster.request_cpus)
            if fit is None:
                fit = fit_by_cpus[cluster.request_cpus] = _mask(e.cpus >= cluster.request_cpus for e in entries)
            matched, undecided = _match_cluster(tables, whole, typed, ad_values, active & fit)
            if undecided:
                warnings.append(f"{_cluster_jobs(cluster)} job(s) with {_describe(cluster)}: match_expr is "
                                f"undefined or error against {undecided} entries; not matched there")
        totals = by_set.get(matched)
        if totals is None:
            totals = by_set[matched] = [0] * 6
        totals[0] += cluster.idle
        totals[1] += cluster.old_idle
        totals[2] += cluster.idle_3600
        totals[3] += cluster.running
        totals[4] += cluster.idle_cpus
        totals[5] += cluster.old_idle_cpus
        if not matched and cluster.idle:
            if typed is None:
                reason, detail = "Undefined", "attribute values are not ClassAd values"
            else:
                reason, detail = _why_unmatched(cluster, tables, whole, typed, entries, everything,
                                                fit_by_cpus[cluster.request_cpus])
            counted = why.setdefault(reason, [0, _describe(cluster) + (f": {detail}" if detail else "")])
            counted[0] += cluster.idle

    counts, unmatched = _split(by_set, entries)
    reasons = tuple(UnmatchedReason(r, *why[r]) for r in UNMATCHED_REASONS if r in why)
    unmatched = Unmatched(unmatched.idle, unmatched.old_idle, unmatched.running, reasons)
    used = [*tables] if whole in tables else [*tables, whole]
    cache.keep_only({t.key for t in used})
    return MatchResult(counts, unmatched, sum(t.evaluations for t in used), sum(len(t.groups) for t in tables),
                       warnings)


def _match_cluster(tables: Sequence[_PartTable], whole: _PartTable, typed: Mapping[str, Any],
                   ad_values: Mapping[str, Any], candidates: int) -> tuple[int, int]:
    """(entries among ``candidates`` where match_expr is true, how many gave undefined/error).

    ClassAd's ``a && b`` is false when a is false, b when a is true, and neither rule applies otherwise:
    so an entry is matched when every part is true there, unmatched when the first part that is not
    true is false, and anything else is settled by evaluating the whole expression at that entry.
    """
    current, pending = candidates, 0
    for table in tables:
        if not current:
            break
        true, false = table.masks_for(table.job_key(typed), ad_values)
        pending |= current & ~(true | false)
        current &= true
    undecided = 0
    if pending:
        p = whole.job_key(typed)
        for index in _bits(pending):
            outcome = whole.outcome(p, ad_values, index)
            if outcome == _TRUE:
                current |= 1 << index
            elif outcome == _OTHER:
                undecided += 1
    return current, undecided


def _why_unmatched(cluster: Cluster, tables: Sequence[_PartTable], whole: _PartTable, typed: Mapping[str, Any],
                   entries: Sequence[Entry], everything: int, fit: int) -> tuple[str, str]:
    """The :data:`UNMATCHED_REASONS` key for a cluster that matched nothing, and what blocks it."""
    ad_values = cluster.ad_values
    satisfied, undecided = _match_cluster(tables, whole, typed, ad_values, everything)
    if satisfied:
        if not satisfied & fit:
            there = [entries[i] for i in _bits(satisfied)]
            detail = f"largest GLIDEIN_CPUS of {_entries(len(there))} satisfying match_expr: {max(e.cpus for e in there)}"
            if any(e.cpus_auto for e in there):
                detail += (" (GLIDEIN_CPUS auto/node/slot: decided on the node, counted as GLIDEIN_ESTIMATED_CPUS, "
                           "or 1 without it)")
            return "Cores", detail
        return "Down", f"{_entries((satisfied & fit).bit_count())} would match, all in downtime"
    if undecided:
        return "Undefined", f"undefined or error at {_entries(undecided)}"
    size = [t for t in tables if t.part.reads_only_requests]
    if size and len(size) < len(tables):
        rest = everything
        for table in tables:
            if table not in size:
                rest &= table.masks_for(table.job_key(typed), ad_values)[0]
        failing = [t.part.text for t in size if t.masks_for(t.job_key(typed), ad_values)[0] & rest != rest]
        if rest and failing:
            return "Size", f"{' && '.join(failing)} fails at the {_entries(rest.bit_count())} satisfying the rest"
    return "NoEntry", ""


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _mask(flags: Any) -> int:
    mask = 0
    for index, flag in enumerate(flags):
        if flag:
            mask |= 1 << index
    return mask


def _bits(mask: int) -> list[int]:
    """Indexes of the set bits, ascending."""
    if mask.bit_count() > 64:
        return [i for i, c in enumerate(bin(mask)[:1:-1]) if c == "1"]
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def _split(by_set: dict[int, list[int]], entries: Sequence[Entry]) -> tuple[dict[GlideId, MatchCounts], Unmatched]:
    n = len(entries)
    count = [[0, 0, 0, 0] for _ in range(n)]
    prop_idle = [0.0] * n
    unique_idle = [0] * n
    cpus_idle = [0.0] * n
    cpus_old = [0.0] * n
    unmatched = Unmatched()
    for mask, (idle, old, idle_3600, running, idle_c, old_c) in by_set.items():
        if not mask:
            unmatched = Unmatched(unmatched.idle + idle, unmatched.old_idle + old, unmatched.running + running)
            continue
        members = _bits(mask)
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
