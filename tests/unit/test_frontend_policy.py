"""The frontend's pure decision code: slots, matching, request formulas, removal and the blind-view guard."""

from __future__ import annotations

import re
from typing import Any

import pytest

from glideinlab.frontend.config import parse_frontend_config
from glideinlab.frontend.matching import glidein_cpus
from glideinlab.frontend.policy import (
    EntryHistory,
    QueryStatus,
    Snapshot,
    compute_group,
    format_table,
    history_from_data,
    history_to_data,
)
from glideinlab.frontend.requests import (
    Demand,
    RemovalCounters,
    compute_glidein_max_run,
    compute_glidein_min_idle,
    decide_removal,
)
from glideinlab.frontend.slots import SlotCounts, count_slots, slot_counts
from glideinlab.frontend.values import BadValue, SkipLog

COLL = "factory.example.org:9618"
COLL2 = "factory2.example.org:9618"
CLIENT = "fe.main"
NOW = 100_000


def config(group_config: dict | None = None, fe_config: dict | None = None, **group_keys: Any):
    group = {
        "match_expr": "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)",
        "job_match_attrs": ["DESIRED_Sites"],
        "factory_match_attrs": ["GLIDEIN_Site"],
        "config": group_config or {},
        **group_keys,
    }
    cfg = parse_frontend_config({
        "frontend_name": "fe",
        "user_collector": "fe.example.org:9618",
        "schedds": ["s1"],
        "factories": [{"collector": COLL, "factory_identity": "g@f", "my_identity": "fe@f"}],
        "stage": {"web_base_url": "http://fe/stage"},
        "config": fe_config or {},
        "groups": {"main": group},
    }, "test.yaml")
    return cfg, cfg.group("main")


def entry(name: str, site: str = "A", cpus: Any = 1, collector: str = COLL, **extra: Any) -> dict:
    return {"Name": f"{name}@gf@fact", "EntryName": name, "GlideinName": "gf", "FactoryName": "fact",
            "FactoryCollector": collector, "GLIDEIN_Site": site, "GLIDEIN_CPUS": cpus, **extra}


def job(cluster: int, status: int = 1, sites: str = "A", cpus: Any = 1, age: int = 0, schedd: str = "s1",
        **extra: Any) -> dict:
    return {"ClusterId": cluster, "ProcId": 0, "JobStatus": status, "DESIRED_Sites": sites, "RequestCpus": cpus,
            "EnteredCurrentStatus": NOW - age, "ServerTime": NOW, "ScheddName": schedd, **extra}


def jobs(n: int, **kw: Any) -> list[dict]:
    return [job(i, **kw) for i in range(n)]


def slot(name: str, entry_name: str, state: str = "Unclaimed", activity: str = "Idle", cpus: int = 1,
         **extra: Any) -> dict:
    return {"Name": name, "GLIDECLIENT_Name": CLIENT, "GLIDEIN_Entry_Name": entry_name, "GLIDEIN_Name": "gf",
            "GLIDEIN_Factory": "fact", "State": state, "Activity": activity, "Cpus": cpus, "Memory": 4000, **extra}


def run(snapshot: Snapshot, group_config: dict | None = None, history: dict | None = None, **kw: Any):
    cfg, group = config(group_config, **kw)
    return compute_group(snapshot, cfg, group, history or {})


def req(result, name: str, collector: str = COLL):
    return result.requests[(collector, f"{name}@gf@fact")]


# ------------------------------------------------------------------------------------------- slots


@pytest.mark.parametrize(
    "ad, expected",
    [
        ({"State": "Unclaimed", "Activity": "Idle", "Cpus": 4},
         SlotCounts(total=1, idle=1, total_cores=4, idle_cores=4)),
        ({"State": "Claimed", "Activity": "Busy", "Cpus": 2},
         SlotCounts(total=1, running=1, total_cores=2, running_cores=2)),
        ({"State": "Claimed", "Activity": "Retiring", "Cpus": 1},
         SlotCounts(total=1, running=1, total_cores=1, running_cores=1)),
        ({"State": "Drained", "Activity": "Retiring", "Cpus": 1}, SlotCounts(total=1, failed=1, total_cores=1)),
        # p-slot with no child yet: the whole glidein is idle
        ({"PartitionableSlot": True, "State": "Unclaimed", "Activity": "Idle", "Cpus": 8, "TotalSlotCpus": 8,
          "TotalSlots": 1, "Memory": 100}, SlotCounts(total=1, idle=1, total_cores=8, idle_cores=8)),
        # p-slot with children and room left
        ({"PartitionableSlot": True, "State": "Unclaimed", "Activity": "Idle", "Cpus": 3, "TotalSlotCpus": 8,
          "TotalSlots": 3, "Memory": 3000}, SlotCounts(total=1, idle=1, total_cores=8, idle_cores=3)),
        # ... but not enough memory for a job (#405): not idle
        ({"PartitionableSlot": True, "State": "Unclaimed", "Activity": "Idle", "Cpus": 3, "TotalSlotCpus": 8,
          "TotalSlots": 3, "Memory": 2500}, SlotCounts(total=1, total_cores=8)),
        # ... or no free cpu
        ({"PartitionableSlot": True, "State": "Unclaimed", "Activity": "Idle", "Cpus": 0, "TotalSlotCpus": 8,
          "TotalSlots": 9, "Memory": 9000}, SlotCounts(total=1, total_cores=8)),
        # ... or it has GPUs and none is free (#46)
        ({"PartitionableSlot": True, "State": "Unclaimed", "Activity": "Idle", "Cpus": 3, "TotalSlotCpus": 8,
          "TotalSlots": 3, "Memory": 9000, "TotalSlotGPUs": 1, "GPUs": 0}, SlotCounts(total=1, total_cores=8)),
        ({"PartitionableSlot": True, "State": "Unclaimed", "Activity": "Idle", "Cpus": 3, "TotalSlotCpus": 8,
          "TotalSlots": 3, "Memory": 9000, "TotalSlotGPUs": 2, "GPUs": 1},
         SlotCounts(total=1, idle=1, total_cores=8, idle_cores=3)),
        # dynamic child: running, its cores belong to the parent's total
        ({"DynamicSlot": True, "State": "Claimed", "Activity": "Busy", "Cpus": 5},
         SlotCounts(total=1, running=1, running_cores=5)),
    ],
)
def test_slot_counts(ad, expected):
    assert slot_counts(ad, min_memory=2500) == expected


def test_count_slots_skips_junk_and_sums():
    skipped = SkipLog("slot ads")
    ads = [{"State": "Unclaimed", "Activity": "Idle", "Cpus": 2},
           {"Name": "bad", "State": "Unclaimed", "Activity": "Idle", "Cpus": "abc"},
           {"State": "Claimed", "Activity": "Busy", "Cpus": 1}]
    assert count_slots(ads, 2500, skipped) == SlotCounts(total=2, idle=1, running=1, total_cores=3, idle_cores=2,
                                                         running_cores=1)
    assert skipped.total == 1 and "Cpus" in skipped.warnings()[0]


@pytest.mark.parametrize(
    "ad, cpus",
    [
        ({"GLIDEIN_CPUS": 4}, 4),
        ({"GLIDEIN_CPUS": "8"}, 8),
        ({}, 1),
        ({"GLIDEIN_CPUS": "auto", "GLIDEIN_ESTIMATED_CPUS": 16}, 16),
        ({"GLIDEIN_CPUS": "Node"}, 1),
        ({"GLIDEIN_CPUS": 0, "GLIDEIN_ESTIMATED_CPUS": 6}, 6),
        ({"GLIDEIN_CPUS": "-1", "GLIDEIN_ESTIMATED_CPUS": 2}, 2),
    ],
)
def test_glidein_cpus(ad, cpus):
    assert glidein_cpus(ad) == cpus


@pytest.mark.parametrize("ad", [{"GLIDEIN_CPUS": "many"}, {"GLIDEIN_CPUS": [4]},
                                {"GLIDEIN_CPUS": "auto", "GLIDEIN_ESTIMATED_CPUS": "x"}])
def test_glidein_cpus_junk(ad):
    with pytest.raises(BadValue):
        glidein_cpus(ad)


# ------------------------------------------------------------------------------------------- formulas

_, GROUP = config()
LIMITS = GROUP.limits
FE_LIMITS = config()[0].limits


def limits(**changes: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in LIMITS.items()}
    for key, value in changes.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) else value
    return out


@pytest.mark.parametrize(
    "demand, here, group, frontend, down, group_limits, expected_req, expected_limits, expected_curbs",
    [
        # 30 effective idle / attenuation 3 = 10
        (Demand(30, 0), SlotCounts(), SlotCounts(), None, False, LIMITS, 10, [], []),
        # idle slots at the entry are subtracted first: 30 - 3 = 27 → 9 ... and a curb (3 ≥ 5? no)
        (Demand(30, 0), SlotCounts(total=3, idle=3), SlotCounts(total=3, idle=3), None, False, LIMITS, 9, [], []),
        # reserve for old idle: + min(old // 3, reserve 5)
        (Demand(30, 30), SlotCounts(), SlotCounts(), None, False, LIMITS, 15, [], []),
        (Demand(30, 6), SlotCounts(), SlotCounts(), None, False, LIMITS, 12, [], []),
        # capped by the headrooms first (idle_vms_per_entry room 100 → 100/3 = 33) ...
        (Demand(3000, 0), SlotCounts(), SlotCounts(), None, False, LIMITS, 33, [], []),
        # ... then by idle_glideins_per_entry.max
        (Demand(3000, 0), SlotCounts(), SlotCounts(), None, False, limits(idle_glideins_per_entry={"max": 20}),
         20, [], []),
        # capped by headroom: per-entry max 10 with 4 slots → room 6 → 6/3 = 2
        (Demand(300, 0), SlotCounts(total=4, running=4), SlotCounts(total=4, running=4), None, False,
         limits(running_glideins_per_entry={"max": 10}), 2, [], []),
        # at least 1
        (Demand(1, 0), SlotCounts(), SlotCounts(), None, False, LIMITS, 1, [], []),
        # no demand → 0
        (Demand(0, 50), SlotCounts(), SlotCounts(), None, False, LIMITS, 0, [], []),
        # downtime → 0
        (Demand(30, 0), SlotCounts(), SlotCounts(), None, True, LIMITS, 0, [], []),
        # hard limits → 0, recorded
        (Demand(300, 0), SlotCounts(total=10, running=10), SlotCounts(total=10), None, False,
         limits(running_glideins_per_entry={"max": 10}), 0, ["TotalGlideinsPerEntry"], []),
        (Demand(300, 0), SlotCounts(total=7, idle=7), SlotCounts(total=7, idle=7), None, False,
         limits(idle_vms_per_entry={"max": 7, "curb": 5}), 0, ["IdleGlideinsPerEntry"], ["IdleGlideinsPerEntry"]),
        (Demand(300, 0), SlotCounts(), SlotCounts(total=50, idle=2), None, False,
         limits(running_glideins_total={"max": 50, "curb": 40}), 0, ["TotalGlideinsPerGroup"],
         ["TotalGlideinsPerGroup"]),
        (Demand(300, 0), SlotCounts(), SlotCounts(), SlotCounts(total=100000), False, LIMITS, 0,
         ["TotalGlideinsPerFrontend", "TotalGlideinsGlobal"], ["TotalGlideinsPerFrontend", "TotalGlideinsGlobal"]),
        # curbs halve once each: 30/3 = 10 → one curb (idle at entry ≥ 5) → 27/3=9 → 4
        (Demand(32, 0), SlotCounts(total=5, idle=5), SlotCounts(total=5, idle=5), None, False, LIMITS, 4, [],
         ["IdleGlideinsPerEntry"]),
        # two curbs: 9 → 4 → 2
        (Demand(32, 0), SlotCounts(total=5, idle=5), SlotCounts(total=5, idle=5), None, False,
         limits(idle_vms_total={"max": 1000, "curb": 5}), 2, [], ["IdleGlideinsPerEntry", "IdleGlideinsPerGroup"]),
    ],
)
def test_compute_glidein_min_idle(demand, here, group, frontend, down, group_limits, expected_req,
                                  expected_limits, expected_curbs):
    decision = compute_glidein_min_idle(demand, here, group, frontend, frontend, down, group_limits, FE_LIMITS)
    assert decision.req_idle == expected_req
    assert sorted(decision.limits_triggered) == sorted(expected_limits)
    assert sorted(decision.curbs_triggered) == sorted(expected_curbs)


def test_triggered_limit_says_count_and_limit():
    decision = compute_glidein_min_idle(Demand(5, 0), SlotCounts(total=10), SlotCounts(total=10), None, None,
                                        False, limits(running_glideins_per_entry={"max": 10}), FE_LIMITS)
    assert decision.limits_triggered == {"TotalGlideinsPerEntry": "count=10, limit=10"}


@pytest.mark.parametrize(
    "prop_mc, minimum, expected",
    [(0, 0, 0), (3, 0, 3), (0, 4, 4), (2, 4, 4), (9, 4, 9)],
)
def test_demand_min_floor(prop_mc, minimum, expected):
    assert Demand.of(prop_mc, 0, minimum).idle == expected


@pytest.mark.parametrize(
    "demand, idle_slots, busy, down, group_limits, expected",
    [
        (Demand(10, 0), 0, 0, False, LIMITS, 12),  # 10 × 1.15 + 1
        (Demand(10, 0), 4, 6, False, LIMITS, 14),  # (10 - 4 + 6) × 1.15 + 1 = 14.8
        (Demand(0, 0), 0, 7, False, LIMITS, 7),  # no idle: keep the busy ones
        (Demand(0, 0), 0, 0, False, LIMITS, 0),
        (Demand(10, 0), 0, 5, True, LIMITS, 0),  # downtime
        (Demand(100, 0), 0, 0, False, limits(running_glideins_per_entry={"max": 20}), 20),
    ],
)
def test_compute_glidein_max_run(demand, idle_slots, busy, down, group_limits, expected):
    assert compute_glidein_max_run(demand, idle_slots, busy, down, group_limits) == expected


ESCALATION = FE_LIMITS["removal_escalation"]
NO_CONFIG = {"type": "NO", "wait": 0, "requests_tracking": False, "margin": 0}


@pytest.mark.parametrize(
    "counters, removal, expected",
    [
        (RemovalCounters(5, 99, 99), NO_CONFIG, ("NO", 0)),
        (RemovalCounters(6, 0, 0), NO_CONFIG, ("WAIT", 0)),
        (RemovalCounters(6, 11, 0), NO_CONFIG, ("IDLE", 0)),
        (RemovalCounters(6, 11, 11), NO_CONFIG, ("ALL", 0)),
        (RemovalCounters(6, 10, 11), NO_CONFIG, ("WAIT", 0)),
        (RemovalCounters(6, 11, 11), {**NO_CONFIG, "type": "DISABLE"}, ("NO", 0)),
        # configured type after `wait` cycles without idle jobs; the larger wins
        (RemovalCounters(1, 0, 0), {**NO_CONFIG, "type": "IDLE"}, ("IDLE", 0)),
        (RemovalCounters(0, 0, 0), {**NO_CONFIG, "type": "IDLE"}, ("NO", 0)),
        (RemovalCounters(3, 0, 0), {**NO_CONFIG, "type": "IDLE", "wait": 3}, ("NO", 0)),
        (RemovalCounters(6, 11, 11), {**NO_CONFIG, "type": "WAIT"}, ("ALL", 0)),
        # requests_tracking applies every cycle and sends the margin
        (RemovalCounters(0, 0, 0), {**NO_CONFIG, "type": "ALL", "requests_tracking": True, "margin": 3}, ("ALL", 3)),
    ],
)
def test_decide_removal(counters, removal, expected):
    assert decide_removal(counters, removal, ESCALATION) == expected


# ------------------------------------------------------------------------------------------- matching


def test_unique_set_split_count_prop_hereonly_prop_mc():
    # 12 one-core jobs for A or B; 6 for C only; entries a1 (A, 1 cpu), a4 (A, 4 cpus), b (B), c (C)
    snap = Snapshot(now=NOW, entries=[entry("a1"), entry("a4", cpus=4), entry("b", site="B"), entry("c", site="C")],
                    jobs=jobs(12, sites="A,B") + [job(100 + i, sites="C") for i in range(6)])
    result = run(snap)
    a1, a4, b, c = (req(result, n).jobs for n in ("a1", "a4", "b", "c"))
    assert (a1.idle, a4.idle, b.idle, c.idle) == (12, 12, 12, 6)
    assert (a1.prop_idle, a4.prop_idle, b.prop_idle, c.prop_idle) == (4, 4, 4, 6)
    assert (a1.unique_idle, c.unique_idle) == (0, 6)
    assert (a1.prop_mc_idle, a4.prop_mc_idle) == (4, 1)  # 4 cores of demand fill one 4-core glidein
    assert result.unmatched.idle == 0 and result.jobs.idle == 18


def test_request_cpus_must_fit_glidein_cpus():
    snap = Snapshot(now=NOW, entries=[entry("small", cpus=2), entry("big", cpus="auto", GLIDEIN_ESTIMATED_CPUS=8)],
                    jobs=jobs(4, cpus=4) + [job(9, cpus=16)])
    result = run(snap)
    assert req(result, "small").jobs.idle == 0
    assert req(result, "big").jobs.idle == 4
    assert req(result, "big").jobs.prop_mc_idle == 2  # 16 cores / 8 per glidein
    assert result.unmatched.idle == 1


MEMORY_MATCH = {
    "match_expr": "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites) && "
                  "TARGET.GLIDEIN_MaxMemMBs >= MY.RequestMemory",
    "job_match_attrs": ["DESIRED_Sites", "RequestMemory"],
    "factory_match_attrs": ["GLIDEIN_Site", "GLIDEIN_MaxMemMBs"],
}


@pytest.mark.parametrize(
    "entries, unservable, group_keys, fe_config, reason, example",
    [
        # issue 9: request_cpus = 2 with only 1-core entries
        ([entry("a"), entry("b", site="B")], job(50, sites="A,B", cpus=2), {}, {}, "Cores",
         "DESIRED_Sites='A,B', RequestCpus=2: largest GLIDEIN_CPUS of 2 entries satisfying match_expr: 1"),
        # GLIDEIN_CPUS auto without GLIDEIN_ESTIMATED_CPUS: the cores are unknown, counted as 1
        ([entry("a", cpus="auto")], job(50, cpus=2), {}, {}, "Cores", "decided on the node"),
        # issue 9: +DESIRED_Sites = "NoSuchSite"
        ([entry("a"), entry("b", site="B")], job(50, sites="NoSuchSite"), {}, {}, "NoEntry",
         "DESIRED_Sites='NoSuchSite', RequestCpus=1"),
        # memory: the Request* part of match_expr fails where the site part holds
        ([entry("a", GLIDEIN_MaxMemMBs=2500), entry("b", site="B", GLIDEIN_MaxMemMBs=9000)],
         job(50, RequestMemory=4000), MEMORY_MATCH, {}, "Size",
         "TARGET.GLIDEIN_MaxMemMBs >= MY.RequestMemory fails at the 1 entry satisfying the rest"),
        # the only entry that could run it is in downtime, and down entries are ignored
        ([entry("a"), entry("b", site="B", GLIDEIN_In_Downtime=True)], job(50, sites="B"), {},
         {"ignore_down_entries": True}, "Down", "1 entry would match, all in downtime"),
        # the job's values break the expression
        ([entry("a")], job(50, sites=7), {}, {}, "Undefined", "undefined or error at 1 entry"),
        ([entry("a")], job(50, sites=1j), {}, {}, "Undefined", "not ClassAd values"),
    ],
)
def test_unservable_jobs_get_no_glidein_and_a_visible_reason(entries, unservable, group_keys, fe_config, reason,
                                                               example):
    cfg, group = config(fe_config=fe_config, **group_keys)
    history: dict = {}
    for _ in range(3):  # cycle after cycle: never a stream of pilots for them
        result = compute_group(Snapshot(now=NOW, entries=entries, jobs=[unservable] * 4), cfg, group, history)
        history = result.history
        assert [(r.req_idle, r.req_max_run) for r in result.requests.values()] == [(0, 0)] * len(entries)
    assert result.unmatched.idle == 4
    (why,) = result.unmatched.reasons
    assert (why.reason, why.idle) == (reason, 4) and example in why.example
    monitor = result.unmatched_monitor()
    assert monitor["JobsIdleUnmatched"] == 4 and monitor[f"JobsIdleUnmatched{reason}"] == 4
    assert sum(v for k, v in monitor.items() if k.startswith("JobsIdleUnmatched") and isinstance(v, int)) == 8
    assert monitor["JobsIdleUnmatchedReasons"].startswith(f"{reason}: 4 (")
    assert f"unmatched idle job(s), {reason}: " in format_table(result)


def test_unservable_jobs_change_nothing_for_the_others():
    entries = [entry("a"), entry("a4", cpus=4), entry("b", site="B")]
    servable = jobs(7, sites="A,B") + [job(20 + i, cpus=4) for i in range(3)]
    unservable = [job(40, cpus=8), job(41, sites="Nowhere"), job(42, sites="B", cpus=2)]
    alone, mixed = (run(Snapshot(now=NOW, entries=entries, jobs=js)) for js in (servable, servable + unservable))
    assert {g: (r.req_idle, r.req_max_run, r.jobs) for g, r in mixed.requests.items()} == \
        {g: (r.req_idle, r.req_max_run, r.jobs) for g, r in alone.requests.items()}
    assert mixed.unmatched.idle_by_reason() == {"Undefined": 0, "Cores": 2, "Down": 0, "Size": 0, "NoEntry": 1}
    assert alone.unmatched_monitor()["JobsIdleUnmatchedReasons"] == ""


def test_unmatched_monitor_is_valid_glideresource_content():
    result = run(Snapshot(now=NOW, entries=[entry("a")], jobs=[job(1, sites="Z")]))
    for key, value in result.unmatched_monitor().items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", "GlideClientMonitor" + key)
        assert isinstance(value, (int, str)) and not isinstance(value, bool)


def test_clusters_and_entry_signatures_bound_evaluations():
    # 3 distinct (sites, cpus) clusters × 2 distinct sites = at most 6 evaluations for 300 jobs and 6
    # entries; the membership shortcut skips "B" for "A" and "A" for "B": 1 + 1 + 2
    entries = [entry(f"a{i}") for i in range(3)] + [entry(f"b{i}", site="B") for i in range(3)]
    js = jobs(100, sites="A") + [job(200 + i, sites="B") for i in range(100)] + \
        [job(400 + i, sites="A,B") for i in range(100)]
    result = run(Snapshot(now=NOW, entries=entries, jobs=js))
    assert (result.clusters, result.entry_signatures, result.evaluations) == (3, 2, 4)
    assert req(result, "a0").jobs.idle == 200


@pytest.mark.parametrize(
    "bad_job, reason",
    [
        (job(1, cpus="abc"), "RequestCpus"),
        (job(1, cpus=0), "RequestCpus"),
        (job(1, cpus=None) | {"JobStatus": "x"}, "JobStatus"),
        (job(1) | {"EnteredCurrentStatus": "yesterday"}, "EnteredCurrentStatus"),
        (job(1) | {"ServerTime": [1]}, "ServerTime"),
    ],
)
def test_junk_job_values_skip_the_job_with_a_warning(bad_job, reason):
    result = run(Snapshot(now=NOW, entries=[entry("a")], jobs=jobs(3) + [bad_job]))
    assert req(result, "a").jobs.idle == 3
    assert any(f"bad {reason}" in w and "#1.0" in w for w in result.warnings)


@pytest.mark.parametrize(
    "sites, warned",
    [
        (7, True),  # stringListMember on an int: error
        ([1, 2], True),  # a list: error
        ({1, 2}, True),  # not representable as a ClassAd value at all
        (None, False),  # absent: stringListMember(x, undefined) is false, a plain no-match
    ],
)
def test_expression_errors_do_not_raise(sites, warned):
    bad = job(50) | {"DESIRED_Sites": sites}
    result = run(Snapshot(now=NOW, entries=[entry("a")], jobs=jobs(2) + [bad]))
    assert req(result, "a").jobs.idle == 2
    assert result.unmatched.idle == 1
    assert any("not matched" in w for w in result.warnings) == warned


def test_missing_request_cpus_means_one():
    no_cpus = job(1)
    del no_cpus["RequestCpus"]
    result = run(Snapshot(now=NOW, entries=[entry("a")], jobs=[no_cpus]))
    assert req(result, "a").jobs.idle == 1


def test_job_sets_old_idle_bad_schedds_running():
    js = jobs(4, age=10) + [job(10 + i, age=700) for i in range(3)] + [job(20, age=4000)] + \
        [job(30 + i, schedd="full") for i in range(5)] + [job(40, status=2, RemoteHost="slot1@g1@wn")]
    full = {"Name": "full", "TotalRunningJobs": 96, "MaxJobsRunning": 100}
    ok = {"Name": "s1", "TotalRunningJobs": 10, "MaxJobsRunning": 100}
    result = run(Snapshot(now=NOW, entries=[entry("a")], jobs=js, schedd_ads=[full, ok]))
    counts = req(result, "a").jobs
    assert (result.jobs.idle, result.jobs.idle_all, result.jobs.running) == (8, 13, 1)
    assert (counts.idle, counts.old_idle, counts.idle_3600, counts.running) == (8, 4, 1, 1)
    assert result.bad_schedds == ("full",)


def test_empty_queue_requests_nothing():
    # upstream #443: no jobs must mean no requests
    result = run(Snapshot(now=NOW, entries=[entry("a"), entry("b", site="B", GLIDEIN_In_Downtime=True)]))
    assert [(r.req_idle, r.req_max_run, r.remove_excess) for r in result.requests.values()] == [(0, 0, "NO")] * 2


def test_downtime_entries_match_but_get_zero_unless_ignored():
    snap = Snapshot(now=NOW, entries=[entry("a"), entry("b", GLIDEIN_In_Downtime="True")], jobs=jobs(10))
    result = run(snap)
    assert (req(result, "b").jobs.idle, req(result, "b").req_idle, req(result, "b").in_downtime) == (10, 0, True)
    assert req(result, "a").jobs.prop_idle == 5
    cfg, group = config(fe_config={"ignore_down_entries": True})
    result = compute_group(snap, cfg, group, {})
    assert req(result, "b").jobs.idle == 0 and req(result, "a").jobs.prop_idle == 10


def test_frontend_downtime_zeroes_every_request():
    result = run(Snapshot(now=NOW, entries=[entry("a")], jobs=jobs(10), frontend_in_downtime=True))
    assert (req(result, "a").req_idle, req(result, "a").req_max_run) == (0, 0)


def test_bad_entry_ads_are_skipped():
    entries = [entry("a"), {"Name": "broken", "FactoryCollector": COLL}, entry("c", cpus="lots"),
               entry("a")]  # duplicate glideid
    result = run(Snapshot(now=NOW, entries=entries, jobs=jobs(3)))
    assert list(result.requests) == [(COLL, "a@gf@fact")]
    text = " ".join(result.warnings)
    assert "bad Name" in text and "bad GLIDEIN_CPUS" in text and "bad duplicate" in text


# ------------------------------------------------------------------------------------------- slots → entries


def test_slots_and_running_jobs_are_attributed_per_entry():
    slots = [
        slot("slot1@g1@wn1", "a", "Claimed", "Busy"),
        slot("slot2@g1@wn1", "a"),
        slot("slot1@g2@wn2", "b", "Claimed", "Busy", cpus=4),
        slot("slot1@g3@wn3", "b", "Drained", "Retiring"),
        slot("slot1@other@wn9", "a") | {"GLIDECLIENT_Name": "fe.other"},  # another group: ignored
        slot("slot1@mon@wn9", "a") | {"IS_MONITOR_VM": True},  # monitoring slot: ignored
        slot("slot1@gone@wn8", "vanished"),  # entry no longer advertised: group totals only
    ]
    js = [job(1, status=2, RemoteHost="slot1@g1@wn1"), job(2, status=2, RemoteHost="slot1@g2@wn2"),
          job(3, status=2, RemoteHost="slot1_3@g2@wn2"), job(4, status=2, RemoteHost="slot1@elsewhere")]
    result = run(Snapshot(now=NOW, entries=[entry("a"), entry("b", site="B", cpus=4)], jobs=js, slots=slots))
    a, b = req(result, "a"), req(result, "b")
    assert a.glideins == SlotCounts(total=2, idle=1, running=1, total_cores=2, idle_cores=1, running_cores=1)
    assert b.glideins == SlotCounts(total=2, running=1, failed=1, total_cores=5, running_cores=4)
    assert (a.running_here, a.glideins_running_here, b.running_here, b.glideins_running_here) == (1, 1, 2, 1)
    assert result.glideins.total == 5


def test_same_entry_name_at_two_factories_is_split_by_req_node():
    entries = [entry("a"), entry("a", collector=COLL2)]
    slots = [slot("slot1@g1@wn1", "a", GLIDECLIENT_ReqNode=COLL),
             slot("slot1@g2@wn2", "a", GLIDECLIENT_ReqNode="factory2.example.org"),
             slot("slot1@g3@wn3", "a")]  # no ReqNode: ambiguous
    result = run(Snapshot(now=NOW, entries=entries, jobs=jobs(4), slots=slots))
    assert len(result.requests) == 2
    assert req(result, "a").glideins.idle == 1 and req(result, "a", COLL2).glideins.idle == 1
    assert result.glideins.idle == 3
    assert any("several factories" in w for w in result.warnings)
    assert req(result, "a").jobs.prop_idle == 2  # jobs split over the two glideids


def test_min_memory_comes_from_group_config():
    pslot = slot("slot1@g1@wn1", "a", PartitionableSlot=True, TotalSlots=2, TotalSlotCpus=8, Cpus=4, Memory=3000)
    snap = Snapshot(now=NOW, entries=[entry("a")], slots=[pslot])
    assert req(run(snap), "a").glideins.idle == 1
    assert req(run(snap, {"partitionable_glidein": {"min_memory": 4000}}), "a").glideins.idle == 0


def test_requests_end_to_end():
    # 30 matching jobs, 3 idle slots: eff 27 → 9 idle; max run (27 + 1 busy glidein) × 1.15 + 1 = 33
    slots = [slot(f"slot1@g{i}@wn", "a") for i in range(3)] + [slot("slot1@busy@wn", "a", "Claimed", "Busy")]
    js = jobs(30) + [job(99, status=2, RemoteHost="slot1@busy@wn")]
    r = req(run(Snapshot(now=NOW, entries=[entry("a")], jobs=js, slots=slots),
                {"idle_glideins_lifetime": {"max": 7200}}), "a")
    assert (r.req_idle, r.req_max_run, r.effective_idle, r.idle_lifetime) == (9, 33, 27, 7200)
    assert r.glideclient_monitor()["Idle"] == 30
    assert r.glideclient_monitor()["RunningHere"] == 1
    resource = r.glideresource_monitor()
    assert (resource["GlideinsIdle"], resource["GlideinsRequestIdle"], resource["JobsIdleEffective"]) == (3, 9, 27)
    assert len(resource) == 16


def test_frontend_and_pool_totals_apply_global_limits():
    snap = Snapshot(now=NOW, entries=[entry("a")], jobs=jobs(30), pool_slots=SlotCounts(total=10, idle=1000))
    r = req(run(snap), "a")
    assert r.req_idle == 0 and r.limits_triggered == {"IdleGlideinsGlobal": "count=1000, limit=1000"}


# ------------------------------------------------------------------------------------------- removal + guard

EMPTY = Snapshot(now=NOW, entries=[entry("a")])


def cycles(snapshots, group_config=None, history=None):
    """Run consecutive cycles, carrying history; returns the list of results."""
    cfg, group = config(group_config)
    results = []
    history = history or {}
    for snap in snapshots:
        result = compute_group(snap, cfg, group, history)
        history = result.history
        results.append(result)
    return results


def test_automatic_escalation_over_cycles():
    removals = [req(r, "a").remove_excess for r in cycles([EMPTY] * 12)]
    assert removals == ["NO"] * 5 + ["WAIT"] * 5 + ["ALL"] * 2


def test_escalation_resets_when_idle_jobs_return():
    results = cycles([EMPTY] * 7 + [Snapshot(now=NOW, entries=[entry("a")], jobs=jobs(2))] + [EMPTY])
    assert [req(r, "a").remove_excess for r in results][-3:] == ["WAIT", "NO", "NO"]
    assert results[-1].history[(COLL, "a@gf@fact")].removal == RemovalCounters(1, 9, 9)


@pytest.mark.parametrize(
    "queries",
    [QueryStatus(failed_schedds=("s1",)), QueryStatus(user_collector_ok=False),
     QueryStatus(failed_schedds=("s1", "s2"), user_collector_ok=False)],
)
def test_blind_view_never_removes_and_freezes_escalation(queries):
    # #282: history says ALL is due, then the view goes blind (empty): no removal, counters unchanged
    due = {(COLL, "a@gf@fact"): EntryHistory(RemovalCounters(50, 50, 50), last_req_idle=0, last_req_max_run=0)}
    result = run(Snapshot(now=NOW, entries=[entry("a")], queries=queries), history=due)
    r = req(result, "a")
    assert (r.remove_excess, r.remove_excess_margin) == ("NO", 0)
    assert result.history == due
    assert result.blind and any("blind view" in w for w in result.warnings)
    # the same snapshot with all queries fine does escalate to ALL
    assert req(run(Snapshot(now=NOW, entries=[entry("a")]), history=due), "a").remove_excess == "ALL"


def test_blind_view_also_suppresses_configured_removal():
    result = run(Snapshot(now=NOW, entries=[entry("a")], queries=QueryStatus(failed_schedds=("s1",))),
                 {"glideins_removal": {"type": "ALL", "requests_tracking": True, "margin": 2}})
    assert req(result, "a").remove_excess == "NO"


def test_blind_cycle_delays_escalation_by_one_cycle():
    blind = Snapshot(now=NOW, entries=[entry("a")], queries=QueryStatus(user_collector_ok=False))
    removals = [req(r, "a").remove_excess for r in cycles([EMPTY] * 5 + [blind] + [EMPTY] * 7)]
    assert removals == ["NO"] * 6 + ["WAIT"] * 5 + ["ALL"] * 2


@pytest.mark.parametrize(
    "queries, jobs_seen, previous, expected",
    [
        # a schedd failed, collector fine: never below last cycle, but may rise on the jobs we did see
        (QueryStatus(failed_schedds=("s2",)), 0, (40, 50), (40, 50)),
        (QueryStatus(failed_schedds=("s2",)), 300, (40, 50), (40, 346)),
        (QueryStatus(failed_schedds=("s2",)), 30, (5, 5), (10, 35)),
        # collector failed: slot counts unknown, repeat last cycle's requests exactly
        (QueryStatus(user_collector_ok=False), 300, (40, 50), (40, 50)),
        (QueryStatus(user_collector_ok=False), 0, (40, 50), (40, 50)),
        # not blind: requests follow the view, down to zero
        (QueryStatus(), 0, (40, 50), (0, 0)),
    ],
)
def test_blind_view_does_not_lower_requests(queries, jobs_seen, previous, expected):
    history = {(COLL, "a@gf@fact"): EntryHistory(RemovalCounters(), *previous)}
    result = run(Snapshot(now=NOW, entries=[entry("a")], jobs=jobs(jobs_seen), queries=queries), history=history)
    r = req(result, "a")
    assert (r.req_idle, r.req_max_run) == expected
    assert (result.history[(COLL, "a@gf@fact")].last_req_idle,
            result.history[(COLL, "a@gf@fact")].last_req_max_run) == expected


def test_blind_view_still_honours_downtime():
    history = {(COLL, "a@gf@fact"): EntryHistory(RemovalCounters(), 40, 50)}
    snap = Snapshot(now=NOW, entries=[entry("a", GLIDEIN_In_Downtime=True)],
                    queries=QueryStatus(user_collector_ok=False))
    r = req(run(snap, history=history), "a")
    assert (r.req_idle, r.req_max_run) == (0, 0)


@pytest.mark.parametrize(
    "slots, js, expected",
    [
        ([slot("slot1@g1@wn", "a", "Claimed", "Busy")], [], "IDLE"),  # busy slot at the entry
        ([slot("slot1@g1@wn", "a", "Claimed", "Busy")], [job(1, status=2, RemoteHost="slot1@g1@wn")], "IDLE"),
        ([slot("slot1@g1@wn", "a")], [], "ALL"),  # only idle glideins: ALL allowed
    ],
)
def test_never_all_for_an_entry_running_our_jobs(slots, js, expected):
    result = run(Snapshot(now=NOW, entries=[entry("a")], slots=slots, jobs=js),
                 {"glideins_removal": {"type": "ALL", "requests_tracking": True}})
    assert req(result, "a").remove_excess == expected
    assert any("lowered to IDLE" in w for w in result.warnings) == (expected == "IDLE")


def test_history_of_vanished_entries_is_dropped():
    history = {(COLL, "gone@gf@fact"): EntryHistory(RemovalCounters(9, 9, 9), 1, 1)}
    assert list(run(EMPTY, history=history).history) == [(COLL, "a@gf@fact")]


def test_history_round_trip_and_junk_rows():
    history = {(COLL, "a@gf@fact"): EntryHistory(RemovalCounters(1, 2, 3), 4, 5),
               (COLL2, "a@gf@fact"): EntryHistory()}
    data = history_to_data(history)
    junk = [{"collector": COLL, "name": "x@y@z", "without_idle_jobs": "many"}, "row", {"name": 1}]
    assert history_from_data(data + junk) == history
    assert history_from_data("not a list") == {}


def test_format_table_lists_entries_totals_and_unmatched():
    snap = Snapshot(now=NOW, entries=[entry("a"), entry("b", site="B", GLIDEIN_In_Downtime=True)],
                    jobs=jobs(30) + [job(99, sites="Z")], slots=[slot("slot1@g1@wn", "a")])
    text = format_table(run(snap))
    lines = text.splitlines()
    assert lines[0].startswith("group main (fe.main): 31 idle jobs")
    row_a = next(line for line in lines if "a@gf@fact" in line)
    assert row_a.split()[:3] == ["30", "30", "29"] and "[down]" not in row_a
    assert "[down]" in next(line for line in lines if "b@gf@fact" in line)
    assert lines[-2].split()[0] == "1" and lines[-2].endswith("Unmatched")
    assert lines[-3].endswith("Total")
    assert lines[-1].split()[:4] == ["1", "unmatched", "idle", "job(s),"] and "NoEntry" in lines[-1]
