"""The factory's pure decisions: states, counts, authorization, limits, fairness, removal, held, stale."""

from __future__ import annotations

import copy
import itertools

import pytest

from glideinlab.factory.config import parse_factory_config
from glideinlab.factory.policy import (
    Authorized,
    FactoryLimits,
    GlideinRequest,
    Rejected,
    authorize_request,
    count_glideins,
    decide_entry,
    glidein_state,
    is_recoverable_hold,
)

NOW = 1_700_000_000
FE = "vofrontend_service"
FE_CLASS = f"{FE}:frontend"
CLIENT = "vofrontend_service.main"
RECOVERABLE = "13,30 2 3"

BASE = {
    "collector": "factory.example.org:9618",
    "schedds": ["schedd_glideins1@factory.example.org"],
    "stage": {"web_base_url": "http://factory.example.org:8000/factory/stage"},
    "recoverable_exitcodes": RECOVERABLE,
    "security": {"frontends": {
        FE: {"identity": f"{FE}@factory.example.org",
             "security_classes": {"frontend": {"username": "frontend"}, "pilot": {"username": "pilot"}}},
        "other_fe": {"identity": "other_fe@factory.example.org",
                     "security_classes": {"frontend": {"username": "other"}}},
    }},
    "entries": {"ce1": {"gatekeeper": "ce.example.org ce.example.org:9619",
                        "attrs": {"GLIDEIN_CPUS": 4}}},
}

# state -> (JobStatus, GridJobStatus)
STATES = {
    "Wait": (1, None), "Pending": (1, "IDLE"), "StageIn": (1, "STAGE_IN"), "IdleOther": (1, "WEIRD"),
    "Running": (2, "RUNNING"), "StageOut": (2, "TRANSFERRING_OUTPUT"), "Held": (5, None),
}
_ids = itertools.count(100)


def make_factory(config=None, **entry_overrides):
    data = copy.deepcopy(BASE)
    entry = data["entries"]["ce1"]
    entry.update(entry_overrides)
    if config:
        entry["config"] = config
    return parse_factory_config(data, "factory.yaml")


def make_entry(config=None, **entry_overrides):
    return make_factory(config, **entry_overrides).entries[0]


LIMITS = FactoryLimits.from_config(make_factory())


def job(state="Wait", *, client=CLIENT, fe=FE_CLASS, cred="cred1", age=60, qdate=None, cluster=None, **extra):
    status, grid = STATES[state]
    ad = {"ClusterId": cluster if cluster is not None else next(_ids), "ProcId": 0, "JobStatus": status,
          "EnteredCurrentStatus": NOW - age, "QDate": qdate if qdate is not None else NOW - age,
          "GlideinClient": client, "GlideinFrontendName": fe, "GlideinCredentialIdentifier": cred,
          "GlideinEntryName": "ce1"}
    if grid is not None:
        ad["GridJobStatus"] = grid
    ad.update(extra)
    return ad


def jobs(n, state="Wait", **kw):
    return [job(state, **kw) for _ in range(n)]


def request(idle, max_glideins=1000, *, client=CLIENT, cred="cred1", mode="NO", margin=0,
            security_name=FE, security_class="frontend", lifetime=0):
    return GlideinRequest(client, security_name, security_class, cred, idle, max_glideins, mode, margin, lifetime)


def submitted_by(decision):
    out = {}
    for sub in decision.submissions:
        out[sub.client_name] = out.get(sub.client_name, 0) + sub.count
    return out


def apply_submissions(queue, decision):
    """What the schedd would hold after the decision's condor_submits (new glideins wait)."""
    queue = list(queue)
    for sub in decision.submissions:
        queue += jobs(sub.count, client=sub.client_name, fe=sub.frontend_name, cred=sub.credential_id, age=0)
    return queue


# ---------------------------------------------------------------------------------------------- states


@pytest.mark.parametrize("job_status, grid_status, state", [
    (1, None, "Wait"),
    (1, "", "Wait"),
    (1, "IDLE", "Pending"),
    (1, "inlrms:q", "Pending"),
    (1, "ACCEPTED", "StageIn"),
    (1, "HELD", "IdleOther"),
    (2, None, "Running"),
    (2, "RUNNING", "Running"),
    (2, "TRANSFERRING_OUTPUT", "StageOut"),
    (2, "DONE", "StageOut"),
    (2, "IDLE", "IdleOther"),
    (5, "RUNNING", "Held"),
    (3, None, "Removed"),
    (4, None, "Completed"),
    ("abc", None, "Other"),
    (None, None, "Other"),
    (1.0, None, "Wait"),
])
def test_glidein_state(job_status, grid_status, state):
    ad = {"JobStatus": job_status}
    if grid_status is not None:
        ad["GridJobStatus"] = grid_status
    assert glidein_state(ad) == state


def test_count_glideins():
    queue = (jobs(2) + jobs(1, "Pending") + jobs(1, "StageIn") + jobs(1, "IdleOther") + jobs(3, "Running")
             + jobs(1, "StageOut") + jobs(2, "Held")
             + jobs(2, "Running", client="other.main", fe="other_fe:frontend")
             + [job("Wait", client=None, fe=None), {"ClusterId": 1, "ProcId": 0, "JobStatus": 3}])
    counts = count_glideins(queue, cores_per_glidein=4)
    assert counts.entry == {"Idle": 6, "Running": 5, "Held": 2, "Wait": 3, "Pending": 1, "StageIn": 1,
                            "IdleOther": 1, "StageOut": 1, "RunningCores": 20}
    assert counts.per_frontend[FE_CLASS]["Idle"] == 5 and counts.per_frontend[FE_CLASS]["Running"] == 3
    assert counts.per_frontend["other_fe:frontend"]["RunningCores"] == 8
    assert counts.per_client[CLIENT]["Held"] == 2 and counts.per_client[CLIENT]["StageOut"] == 1
    assert set(counts.per_client) == {CLIENT, "other.main"}  # untagged glideins count only for the entry


# ---------------------------------------------------------------------------------------------- holds


@pytest.mark.parametrize("code, subcode, holds, status, recoverable", [
    (13, 99, 1, 5, True),
    (30, 2, 1, 5, True),
    (30, 3, 4, 5, True),
    (30, 5, 1, 5, False),
    (12, 0, 1, 5, False),
    (13, 0, 10, 5, True),
    (13, 0, 11, 5, False),  # held more often than max_release_count: give up
    (13, 0, None, 5, True),  # no NumSystemHolds: counted as held once
    ("abc", 0, 1, 5, False),
    (13, 0, 1, 2, False),  # not held at all
])
def test_is_recoverable_hold(code, subcode, holds, status, recoverable):
    ad = {"JobStatus": status, "HoldReasonCode": code, "HoldReasonSubCode": subcode}
    if holds is not None:
        ad["NumSystemHolds"] = holds
    assert is_recoverable_hold(ad, RECOVERABLE) is recoverable
    assert is_recoverable_hold(ad, {13: frozenset(), 30: frozenset({2, 3})}) is recoverable


def test_is_recoverable_hold_release_count_is_configurable():
    ad = {"JobStatus": 5, "HoldReasonCode": 13, "NumSystemHolds": 3}
    assert is_recoverable_hold(ad, "13", max_release_count=2) is False
    assert is_recoverable_hold(ad, "13", max_release_count=3) is True


# ---------------------------------------------------------------------------------------------- authorization


@pytest.mark.parametrize("allow, security_name, security_class, identity, expected", [
    ({}, FE, "frontend", f"{FE}@factory.example.org", Authorized("frontend")),
    ({}, FE, "pilot", f"{FE}@factory.example.org", Authorized("pilot")),
    ({FE: "frontend"}, FE, "frontend", f"{FE}@factory.example.org", Authorized("frontend")),
    ({FE: "All"}, FE, "pilot", f"{FE}@factory.example.org", Authorized("pilot")),
    ({}, "intruder", "frontend", "intruder@factory.example.org", Rejected("not in security.frontends")),
    ({}, FE, "frontend", None, Rejected("was not authenticated")),
    ({}, FE, "frontend", "other_fe@factory.example.org", Rejected("authenticated as 'other_fe@")),
    ({FE: "frontend"}, FE, "pilot", f"{FE}@factory.example.org", Rejected("does not allow")),
    ({"other_fe": "frontend"}, FE, "frontend", f"{FE}@factory.example.org", Rejected("does not allow")),
    ({FE: "All"}, FE, "admins", f"{FE}@factory.example.org", Rejected("maps to no local user")),
])
def test_authorize_request(allow, security_name, security_class, identity, expected):
    factory = make_factory(allow_frontends=allow)
    result = authorize_request(factory, factory.entries[0], security_name, security_class, identity)
    assert type(result) is type(expected)
    if isinstance(expected, Authorized):
        assert result == expected
    else:
        assert expected.reason in result.reason and "\n" not in result.reason


# ---------------------------------------------------------------------------------------------- limits


@pytest.mark.parametrize("config, requests, queue, submitted, limits", [
    # a plain request, in clusters of cluster_size
    (None, [request(25)], [], 25, {}),
    # already enough idle: nothing
    (None, [request(5)], jobs(5, "Pending"), 0, {}),
    # ReqMaxGlideins caps idle + running
    (None, [request(20, 12)], jobs(5, "Running"), 7, {}),
    (None, [request(20, 5)], jobs(6, "Running"), 0, {}),
    # submit.max_per_cycle caps the entry per cycle
    ({"submit": {"max_per_cycle": 30}}, [request(500)], [], 30, {}),
    # per-entry idle: headroom used, then the limit stops everything
    ({"max_jobs": {"per_entry": {"idle": 10}}}, [request(20)], jobs(7, client="x.y", fe="other_fe:frontend"), 3, {}),
    ({"max_jobs": {"per_entry": {"idle": 10}}}, [request(20)], jobs(10, client="x.y", fe="other_fe:frontend"), 0,
     {"IdleGlideinsPerEntry": "count=10, limit=10"}),
    # per-entry total (idle + running)
    ({"max_jobs": {"per_entry": {"glideins": 10}}}, [request(20)], jobs(4) + jobs(6, "Running"), 0,
     {"TotalGlideinsPerEntry": "count=10, limit=10"}),
    ({"max_jobs": {"per_entry": {"glideins": 12}}}, [request(20)], jobs(4) + jobs(6, "Running"), 2, {}),
    # per-entry held
    ({"max_jobs": {"per_entry": {"held": 2}}}, [request(5)], jobs(2, "Held", HoldReasonCode=13), 0,
     {"HeldGlideinsPerEntry": "count=2, limit=2"}),
    # per frontend class: default, override, held
    ({"max_jobs": {"default_per_frontend": {"idle": 8}}}, [request(20)], jobs(3), 5, {}),
    ({"max_jobs": {"per_frontends": {FE_CLASS: {"idle": 4}}}}, [request(20)], jobs(4), 0,
     {f"IdlePerClass_{FE_CLASS}": "count=4, limit=4"}),
    ({"max_jobs": {"per_frontends": {FE_CLASS: {"glideins": 6}}}}, [request(20)], jobs(1) + jobs(3, "Running"), 2,
     {}),
    ({"max_jobs": {"default_per_frontend": {"held": 1}}}, [request(20)], jobs(1, "Held", HoldReasonCode=13), 0,
     {f"HeldPerClass_{FE_CLASS}": "count=1, limit=1"}),
    # another frontend's class limit does not stop this one
    ({"max_jobs": {"per_frontends": {"other_fe:frontend": {"idle": 1}}}}, [request(3)],
     jobs(1, client="x.y", fe="other_fe:frontend"), 3, {}),
])
def test_limits(config, requests, queue, submitted, limits):
    decision = decide_entry(make_entry(config), LIMITS, requests, queue, NOW)
    assert decision.submitted == submitted
    client = decision.clients[CLIENT]
    assert client.to_submit == submitted
    assert client.limits_triggered == limits
    assert all(s.count <= 10 for s in decision.submissions)
    if limits:
        assert decision.submitted == 0 and client.blocked_reasons
        # the original request stays visible next to the adjusted one (#520)
        assert client.requested["Idle"] == requests[0].req_idle_glideins and client.requested["AdjustedIdle"] == 0


def test_submissions_are_clusters_carrying_the_request():
    decision = decide_entry(make_entry(), LIMITS, [request(25, lifetime=3600)], [], NOW)
    assert [(s.client_name, s.frontend_name, s.credential_id, s.count, s.idle_lifetime)
            for s in decision.submissions] == [(CLIENT, FE_CLASS, "cred1", n, 3600) for n in (10, 10, 5)]


def test_limit_strings_go_into_monitoring_attrs():
    entry = make_entry({"max_jobs": {"per_entry": {"idle": 3}}})
    decision = decide_entry(entry, LIMITS, [request(5)], jobs(3) + jobs(2, "Running"), NOW)
    attrs = decision.clients[CLIENT].monitor_attrs()
    assert attrs["GlideinMonitorStatus_GlideFactoryLimitIdleGlideinsPerEntry"] == "count=3, limit=3"
    assert attrs["GlideinMonitorStatusIdle"] == 3 and attrs["GlideinMonitorStatusRunningCores"] == 8
    assert attrs["GlideinMonitorRequestedIdle"] == 5 and attrs["GlideinMonitorRequestedAdjustedIdle"] == 0
    assert attrs["GlideinMonitorRequestedMaxCores"] == 4000
    totals = decision.monitor_attrs()
    assert totals["GlideinMonitorTotalStatusRunning"] == 2 and totals["GlideinMonitorTotalRequestedIdle"] == 5


# ---------------------------------------------------------------------------------------------- fairness


def two_fe_request(name, idle, fe="frontend"):
    security_name = FE if fe == "frontend" else "other_fe"
    return request(idle, client=name, security_name=security_name)


@pytest.mark.parametrize("config, requests, expected", [
    # equal needs split the per-cycle cap evenly
    ({"submit": {"max_per_cycle": 100}}, [request(80, client="a.g"), request(80, client="b.g")],
     {"a.g": 50, "b.g": 50}),
    # a small need is met in full, the rest goes to the big one (max-min fair)
    ({"submit": {"max_per_cycle": 100}}, [request(10, client="a.g"), request(200, client="b.g")],
     {"a.g": 10, "b.g": 90}),
    # indivisible leftovers go in client-name order
    ({"submit": {"max_per_cycle": 100}}, [request(100, client=c) for c in ("c.g", "a.g", "b.g")],
     {"a.g": 34, "b.g": 33, "c.g": 33}),
    # two clients of one frontend class share that class's idle headroom; another class is not held back
    ({"submit": {"max_per_cycle": 100}, "max_jobs": {"per_frontends": {FE_CLASS: {"idle": 30}}}},
     [request(100, client="a.g"), request(100, client="b.g"), two_fe_request("c.g", 100, fe="other")],
     {"a.g": 15, "b.g": 15, "c.g": 70}),
    # per-entry idle headroom shared
    ({"max_jobs": {"per_entry": {"idle": 20}}}, [request(15, client="a.g"), request(15, client="b.g")],
     {"a.g": 10, "b.g": 10}),
])
def test_fair_share(config, requests, expected):
    decision = decide_entry(make_entry(config), LIMITS, requests, [], NOW)
    assert submitted_by(decision) == expected


def test_credentials_of_one_client_split_by_their_own_deficit():
    requests = [request(10, cred="cred1"), request(10, cred="cred2")]
    decision = decide_entry(make_entry(), LIMITS, requests, jobs(10, cred="cred1"), NOW)
    assert {(s.credential_id, s.count) for s in decision.submissions} == {("cred2", 10)}


def test_pilots_of_an_old_credential_still_count():
    # #306: after an entry moved from grid_proxy to scitoken the factory did not see its idle pilots
    # (other credential id) and flooded the CE; here the client's idle glideins count whatever the credential.
    decision = decide_entry(make_entry(), LIMITS, [request(10, cred="scitoken1")], jobs(10, cred="proxy1"), NOW)
    assert decision.submitted == 0
    assert decision.clients[CLIENT].status["Idle"] == 10  # #681: monitoring keeps them too


# ---------------------------------------------------------------------------------------------- removal


def ids(removals):
    return [r.cluster_id for r in removals]


def client_jobs(spec):
    """Jobs with predictable ids: spec is [(state, cluster_id, age)]."""
    return [job(state, cluster=cluster, age=age) for state, cluster, age in spec]


WAITING = [("Wait", 1, 50), ("Wait", 2, 40), ("Wait", 3, 30), ("Wait", 4, 20)]
QUEUED = [("Pending", 11, 50), ("Pending", 12, 40), ("Pending", 13, 30)]
RUNNING = [("Running", 21, 500), ("Running", 22, 400), ("Running", 23, 300), ("Running", 24, 200)]
HELD = [("Held", 31, 100)]


@pytest.mark.parametrize("mode, margin, req_idle, req_max, spec, removed", [
    ("NO", 0, 0, 0, WAITING + QUEUED + RUNNING, []),
    # WAIT: only unsubmitted idle, youngest first, above req idle + margin
    ("WAIT", 0, 2, 100, WAITING + QUEUED, [4, 3, 2, 1]),
    ("WAIT", 3, 2, 100, WAITING + QUEUED, [4, 3]),
    ("WAIT", 0, 7, 100, WAITING + QUEUED, []),
    # IDLE: then queued idle
    ("IDLE", 0, 1, 100, WAITING + QUEUED, [4, 3, 2, 1, 13, 12]),
    ("UNREG", 0, 1, 100, WAITING + QUEUED, [4, 3, 2, 1, 13, 12]),
    # ALL: idle first, then the most recently started running glideins, and held ones with them
    ("ALL", 1, 0, 1, RUNNING + HELD, [24, 23, 31]),
    ("ALL", 0, 0, 2, [("Wait", 1, 50)] + RUNNING, [1, 24, 23]),
    ("ALL", 0, 2, 10, WAITING + RUNNING, [4, 3]),  # under max: only the idle excess
    ("ALL", 0, 0, 0, HELD, [31]),  # nothing wanted any more: held ones go too
    # UNREG never kills running glideins
    ("UNREG", 0, 0, 1, RUNNING, []),
])
def test_remove_excess(mode, margin, req_idle, req_max, spec, removed):
    entry = make_entry({"remove": {"max_per_cycle": 100}})
    requests = [request(req_idle, req_max, mode=mode, margin=margin)]
    # downtime: nothing is submitted, and removal still follows the frontend's original request
    decision = decide_entry(entry, LIMITS, requests, client_jobs(spec), NOW, in_downtime=True)
    assert ids(decision.removals) == removed
    assert all(r.reason.startswith(("excess", "held while removing")) for r in decision.removals)
    assert decision.submitted == 0


def test_least_aggressive_mode_and_largest_margin_of_a_client():
    entry = make_entry({"remove": {"max_per_cycle": 100}})
    requests = [request(0, 0, cred="cred1", mode="ALL", margin=0), request(0, 0, cred="cred2", mode="WAIT", margin=1)]
    decision = decide_entry(entry, LIMITS, requests, client_jobs(WAITING + RUNNING), NOW)
    assert ids(decision.removals) == [4, 3, 2]


def test_blocked_entry_keeps_idle_pilots_for_the_original_request():
    # #520: a factory limit or downtime forces the adjusted request to 0; removal must not follow it
    entry = make_entry({"max_jobs": {"per_entry": {"idle": 4}}})
    decision = decide_entry(entry, LIMITS, [request(4, mode="WAIT")], client_jobs(WAITING), NOW)
    assert decision.removals == () and decision.submitted == 0
    assert decision.clients[CLIENT].requested["AdjustedIdle"] == 0


def test_removal_budget_per_cycle():
    entry = make_entry({"remove": {"max_per_cycle": 3}})
    decision = decide_entry(entry, LIMITS, [request(0, mode="WAIT")], client_jobs(WAITING), NOW)
    assert ids(decision.removals) == [4, 3, 2]


def test_clients_without_a_request_are_only_sanitized():
    stale_age = 7 * 86400
    queue = [job("Wait", client="gone.group", cluster=1, age=60),
             job("Wait", client="gone.group", cluster=2, age=stale_age + 1),
             job("Held", client="gone.group", cluster=3, age=60, HoldReasonCode=99)]
    decision = decide_entry(make_entry(), LIMITS, [], queue, NOW)
    assert sorted(ids(decision.removals)) == [2, 3]
    assert decision.submissions == () and decision.clients == {}


# ---------------------------------------------------------------------------------------------- held


def held(cluster, code, holds, held_for, subcode=0):
    return job("Held", cluster=cluster, age=held_for, HoldReasonCode=code, HoldReasonSubCode=subcode,
               NumSystemHolds=holds, HoldReason=f"hold {code}")


@pytest.mark.parametrize("queue, removed, released", [
    # unrecoverable code: removed; held very often: -forcex, and first
    ([held(1, 99, 3, 60), held(2, 99, 21, 60)], [(2, True), (1, False)], []),
    ([held(1, 99, 20, 60), held(2, 99, 21, 60)], [(2, True), (1, False)], []),  # -forcex above 20 holds
    ([held(1, 99, 1, 60), held(2, 99, 1, 600)], [(2, False), (1, False)], []),  # the longest held first
    # recoverable, back-off passed (2 holds x 300 s)
    ([held(1, 13, 2, 600)], [], [1]),
    # recoverable, still backing off
    ([held(1, 13, 2, 599)], [], []),
    # subcode listed / not listed
    ([held(1, 30, 1, 300, subcode=2), held(2, 30, 1, 300, subcode=7)], [(2, False)], [1]),
    # recoverable code but released too often already: removed (not forced below 21 holds)
    ([held(1, 13, 11, 10_000)], [(1, False)], []),
])
def test_held(queue, removed, released):
    decision = decide_entry(make_entry(), LIMITS, [], queue, NOW)
    assert [(r.cluster_id, r.force) for r in decision.removals] == removed
    assert [r.cluster_id for r in decision.releases] == released
    assert all("unrecoverable hold" in r.reason for r in decision.removals)
    assert all("recoverable hold" in r.reason for r in decision.releases)


def test_release_cap_takes_the_longest_held_first():
    queue = [held(i, 13, 1, 1000 + i) for i in range(1, 26)]
    decision = decide_entry(make_entry(), LIMITS, [], queue, NOW)
    assert [r.cluster_id for r in decision.releases] == list(range(25, 5, -1))


def test_held_entry_limit_still_cleans_up():
    entry = make_entry({"max_jobs": {"per_entry": {"held": 1}}})
    decision = decide_entry(entry, LIMITS, [request(5)], [held(1, 99, 1, 60)], NOW)
    assert decision.submitted == 0 and ids(decision.removals) == [1]


# ---------------------------------------------------------------------------------------------- stale, downtime


@pytest.mark.parametrize("state, age, stale_age, removed", [
    ("Wait", 7 * 86400 + 1, {}, True),
    ("Pending", 7 * 86400 - 1, {}, False),
    ("Running", 31 * 86400 + 1, {}, True),
    ("Running", 30 * 86400, {}, False),
    ("StageOut", 3601, {"running": 3600}, True),
    ("IdleOther", 3601, {"idle": 3600}, True),
])
def test_stale(state, age, stale_age, removed):
    entry = make_entry({"stale_age": stale_age})
    decision = decide_entry(entry, LIMITS, [], [job(state, cluster=1, age=age)], NOW)
    assert bool(decision.removals) is removed
    if removed:
        assert decision.removals[0].reason.startswith("stale:")


@pytest.mark.parametrize("entry_overrides, in_downtime, factory_downtime, reason", [
    ({"enabled": False}, False, False, "entry is disabled"),
    ({}, True, False, "entry is in downtime"),
    ({}, False, True, "factory is in downtime"),
])
def test_no_submission_but_cleanup(entry_overrides, in_downtime, factory_downtime, reason):
    entry = make_entry(**entry_overrides)
    limits = FactoryLimits(LIMITS.recoverable_exitcodes, in_downtime=factory_downtime)
    queue = [job("Wait", cluster=1, age=8 * 86400), held(2, 13, 1, 600)]
    decision = decide_entry(entry, limits, [request(10)], queue, NOW, in_downtime=in_downtime)
    assert decision.submissions == ()
    assert reason in decision.blocked_reasons
    assert ids(decision.removals) == [1] and [r.cluster_id for r in decision.releases] == [2]


# ---------------------------------------------------------------------------------------------- restart safety


@pytest.mark.parametrize("config, requests, queue", [
    (None, [request(25)], []),
    (None, [request(20, 30)], jobs(3, "Pending") + jobs(8, "Running")),
    (None, [request(10, cred="c1"), request(7, cred="c2")], jobs(4, cred="c1")),
    ({"max_jobs": {"per_frontends": {FE_CLASS: {"idle": 12}}}},
     [request(30, client="a.g"), request(30, client="b.g"), two_fe_request("c.g", 9, fe="other")], []),
    (None, [request(10, mode="ALL", margin=2)], jobs(2, "Held", HoldReasonCode=13, NumSystemHolds=1)),
])
def test_deciding_again_after_submitting_submits_nothing(config, requests, queue):
    # The queue is the state: a factory that crashed right after submitting and restarted sees the new
    # glideins and must not submit them again.
    entry = make_entry(config)
    first = decide_entry(entry, LIMITS, requests, queue, NOW)
    assert first.submitted > 0
    second = decide_entry(entry, LIMITS, requests, apply_submissions(queue, first), NOW + 1)
    assert second.submissions == ()
    assert not [r for r in second.removals if r.reason.startswith("excess")]


@pytest.mark.parametrize("config, per_cycle", [
    ({"max_jobs": {"default_per_frontend": {"idle": 1000}}}, [100, 100, 50, 0, 0]),
    ({}, [100, 0, 0, 0, 0]),  # upstream's default_per_frontend idle limit is 100
    ({"submit": {"max_per_cycle": 40}}, [40, 40, 20, 0, 0]),
])
def test_rate_capped_request_converges_without_overshoot(config, per_cycle):
    entry = make_entry(config)
    queue, submitted = [], []
    for cycle in range(5):
        decision = decide_entry(entry, LIMITS, [request(250)], queue, NOW + cycle)
        submitted.append(decision.submitted)
        queue = apply_submissions(queue, decision)
    assert submitted == per_cycle


# ---------------------------------------------------------------------------------------------- bad data


def test_bad_jobs_and_requests_are_skipped_with_a_warning():
    queue = [job("Wait", cluster="abc"), job("Wait", GlideinEntryName="ce2"),
             job("Wait", EnteredCurrentStatus="yesterday"), {"ClusterId": 5, "ProcId": 0, "JobStatus": "x"}]
    requests = [request(2, mode="SOME"), request(3, cred="cred1")]
    decision = decide_entry(make_entry(), LIMITS, requests, queue, NOW)
    text = "\n".join(decision.warnings)
    assert "ClusterId='abc'" in text and "of entry 'ce2'" in text and "EnteredCurrentStatus" in text
    assert "ReqRemoveExcess 'SOME'" in text and "second request" in text
    assert decision.counts.entry["Idle"] == 1  # only the glidein with usable ids of this entry
    assert decision.submitted == 1  # request 2 minus that one idle glidein


def test_conflicting_frontend_class_for_one_client_is_ignored():
    requests = [request(2), request(3, cred="cred2", security_class="pilot")]
    decision = decide_entry(make_entry(), LIMITS, requests, [], NOW)
    assert decision.submitted == 2
    assert any("already requests as" in w for w in decision.warnings)
