"""The smoke test's stage logic on observation snapshots (no daemons): what counts as reached, what an
earlier run left behind, and the wait for an empty pool before submitting."""

from __future__ import annotations

import pytest

from glideinlab.smoke import run
from glideinlab.smoke.run import CLIENT_NAME, Smoke, _ids, _leftover_glideins


def obs(glideins=(), slots=(), ce_jobs=(), site_jobs=(), jobs=(), history=(), requests=()):
    return {"factory": {"glideins": list(glideins), "requests": list(requests)},
            "ce": {"ce_jobs": list(ce_jobs), "site_jobs": list(site_jobs)},
            "frontend": {"slots": list(slots), "jobs": list(jobs), "history": list(history)}}


def slot(name, client=CLIENT_NAME):
    return {"Name": name, "GLIDECLIENT_Name": client}


def job(cluster, proc, status=1, **kw):
    return {"ClusterId": cluster, "ProcId": proc, "JobStatus": status, **kw}


class FakeSmoke(Smoke):
    """A Smoke whose observations come from a list instead of node followers."""

    def __init__(self, views, timeout=30.0):
        self.said: list[str] = []
        super().__init__(ws=None, jobs=2, timeout=timeout, progress=self.said.append)
        self.views = list(views)

    def observe(self):
        return self.views.pop(0) if len(self.views) > 1 else self.views[0]


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(run.time, "sleep", lambda s: None)


def test_leftovers_count_glidein_startds_not_their_dynamic_slots():
    view = obs(slots=[slot("slot1@glidein_1_1@w1"), slot("slot1_1@glidein_1_1@w1"), slot("slot1_2@glidein_1_1@w1"),
                      slot("slot1@glidein_2_7@w1"), slot("slot1@other@w1", client="vofrontend_service.other")])
    assert _leftover_glideins(view) == 2


def test_leftovers_count_glideins_still_in_the_factory_queue():
    assert _leftover_glideins(obs(glideins=[job(3, 0), job(3, 1), job(4, 0, status=5)])) == 3
    assert _leftover_glideins(obs()) == 0


def test_the_smoke_waits_for_an_earlier_runs_glideins_before_submitting():
    smoke = FakeSmoke([obs(glideins=[job(1, 0, 2)], slots=[slot("slot1@glidein_1_1@w1")]),
                       obs(glideins=[job(1, 0, 4)]), obs()])
    smoke._wait_for_an_empty_pool()
    assert smoke.views == [obs()]  # it looked until the pool was empty
    assert len(smoke.said) == 1 and "waiting for 1 glideins of an earlier run" in smoke.said[0]


def test_the_smoke_goes_on_with_a_baseline_when_glideins_never_leave():
    smoke = FakeSmoke([obs(slots=[slot("slot1@glidein_1_1@w1")])], timeout=-1)
    smoke._wait_for_an_empty_pool()
    assert "still there" in smoke.said[-1]


def test_an_empty_pool_is_not_waited_for():
    smoke = FakeSmoke([obs()])
    smoke._wait_for_an_empty_pool()
    assert smoke.said == [] and smoke.result.settle == 0.0


def test_things_older_than_the_run_do_not_reach_a_stage():
    old = obs(glideins=[job(1, 0, 2)], ce_jobs=[job(5, 0, 2)], site_jobs=[job(9, 0, 2)],
              slots=[slot("slot1@glidein_1_1@w1")])
    smoke = FakeSmoke([old])
    smoke.baseline = _ids(old)
    smoke.submitted = {"cluster": 20}
    assert smoke.reached_now(old) == set()
    new = obs(glideins=[job(1, 0, 2), job(2, 0, 1)], ce_jobs=[job(5, 0, 2), job(6, 0, 1)],
              site_jobs=[job(9, 0, 2), job(10, 0, 2)], slots=[slot("slot1@glidein_1_1@w1"), slot("slot1@glidein_3_1@w1")],
              jobs=[job(20, 0, 2)], requests=[{"ReqIdleGlideins": 2}])
    assert smoke.reached_now(new) == {"request", "submitted", "ce_accepted", "worker_running", "startd_joined",
                                      "job_running"}
