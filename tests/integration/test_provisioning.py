"""The pilot cycle on the real workspace: ads, the smoke test, site matching, restarts, failures."""

from __future__ import annotations

import copy
import json
import sys
import textwrap
import threading
import time

import yaml

from glideinlab.smoke.run import STAGES, Smoke

CLIENT = "vofrontend_service.main"


def _progress(message: str) -> None:
    print(f"[smoke] {message}", file=sys.stderr, flush=True)


def _smoke(ws, jobs=10, timeout=240.0, **kw):
    result = Smoke(ws, jobs, timeout, _progress, **kw).run()
    print(result.table(), file=sys.stderr)
    print(result.verdict(), file=sys.stderr)
    return result


def _ads(node, constraint, projection):
    return node.json(textwrap.dedent(f"""
        import json
        from glideinlab.condor.adapter import Condor
        print(json.dumps(Condor().query_ads(None, {constraint!r}, {projection!r}), default=str))
    """))


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_smoke_ten_jobs_pass_every_stage(workspace):
    result = _smoke(workspace, jobs=10)
    assert result.ok, result.verdict()
    assert {s.key for s in STAGES} == set(result.reached), result.reached
    times = [result.reached[s.key] for s in STAGES]
    assert times == sorted(times), result.reached  # the data path happens in order


def test_factory_collector_shows_every_ad_type_with_upstream_names(nodes):
    fa = nodes["factory-workspace"]
    ads = _wait(lambda: (lambda a: a if {x["GlideinMyType"] for x in a} >= {
        "glidefactory", "glidefactoryglobal", "glideclient", "glidefactoryclient"} else None)(
        _ads(fa, "GlideinMyType =!= undefined", [])), 60, "all four ad types")
    by_type = {}
    for ad in ads:
        by_type.setdefault(ad["GlideinMyType"], []).append(ad)
    entry = by_type["glidefactory"][0]
    assert {"EntryName", "GLIDEIN_Site", "GLIDEIN_CPUS", "GLIDEIN_Gatekeeper", "PubKeyID", "WebURL",
            "WebDescriptSign", "GlideinParamGLIDEIN_Collector", "AuthenticatedIdentity"} <= set(entry)
    assert entry["AuthenticatedIdentity"] == "gfactory@factory-workspace.glideinwms.org"
    assert {"PubKeyID", "PubKeyType", "PubKeyValue"} <= set(by_type["glidefactoryglobal"][0])
    request = by_type["glideclient"][0]
    assert {"ReqIdleGlideins", "ReqMaxGlideins", "ReqRemoveExcess", "ReqPubKeyID", "ReqEncKeyCode",
            "ReqEncIdentity", "ClientName", "GlideinParamGLIDEIN_Collector"} <= set(request)
    assert request["AuthenticatedIdentity"] == "vofrontend_service@factory-workspace.glideinwms.org"
    assert any(k.startswith("GlideinEncParam") for k in request)
    assert all(not str(v).startswith("eyJ") for v in request.values())  # tokens never travel in clear
    status = by_type["glidefactoryclient"][0]
    assert status["ReqClientName"] == CLIENT and "GlideinMonitorRequestedIdle" in status
    resources = _ads(nodes["frontend-workspace"], 'GlideinMyType =?= "glideresource"', [])
    assert resources and all(r["GlideClientName"] == CLIENT for r in resources)
    assert {"GlideClientMonitorJobsIdle", "GlideClientMonitorGlideinsRequestIdle"} <= set(resources[0])


def test_jobs_for_one_site_get_glideins_only_at_that_site(workspace, nodes):
    fe, fa = nodes["frontend-workspace"], nodes["factory-workspace"]
    start = int(time.time())
    extra = ['+DESIRED_Sites="SiteB"', "requirements=stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)"]
    sub = json.loads(fe.run("python3", "-m", "glideinlab.smoke.jobs", "submit", "3", "2", *extra,
                            user="testuser").stdout)
    results = _wait(lambda: (lambda r: r if all(r.values()) else None)(json.loads(fe.run(
        "python3", "-m", "glideinlab.smoke.jobs", "results", sub["dir"], "3", user="testuser").stdout)),
        300, "the site-restricted jobs")
    assert {v["GLIDEIN_Site"] for v in results.values()} == {"SiteB"}
    glideins = _glidein_values_since(fa, start, "GlideinEntryName")
    assert glideins == ["ce-workspace-siteb"], glideins


def test_a_second_frontend_group_provisions_only_its_own_jobs(workspace, nodes):
    """Two groups in one frontend, partitioned by a job attribute (upstream's usual job query_expr split):
    the second group's jobs get glideins requested by, and running for, that group only."""
    fe, fa = nodes["frontend-workspace"], nodes["factory-workspace"]
    path = "/etc/gwms-frontend/frontend.yaml"  # installed by the node's init from the rendered config
    original = fe.run("cat", path).stdout
    config = yaml.safe_load(original)
    main = config["groups"]["main"]
    second = copy.deepcopy(main)
    # each group counts only its own jobs, and its glideins (START) take only its own jobs
    main["job_query_expr"], main["start_expr"] = 'JobGroup =!= "second"', 'TARGET.JobGroup =!= "second"'
    second["job_query_expr"], second["start_expr"] = 'JobGroup =?= "second"', 'TARGET.JobGroup =?= "second"'
    config["groups"]["second"] = second
    # glideins already running keep the START they were born with: let the earlier ones leave first
    _wait(lambda: _quiet(nodes), 300, "earlier glideins to leave the user pool and the factory queue")
    _write(fe, path, yaml.safe_dump(config))
    start = int(time.time())
    try:
        assert fe.run("supervisorctl", "restart", "frontend").returncode == 0
        sub = json.loads(fe.run("python3", "-m", "glideinlab.smoke.jobs", "submit", "2", "2", '+JobGroup="second"',
                                user="testuser").stdout)
        results = _wait(lambda: (lambda r: r if all(r.values()) else None)(json.loads(fe.run(
            "python3", "-m", "glideinlab.smoke.jobs", "results", sub["dir"], "2", user="testuser").stdout)),
            300, "the second group's jobs")
        assert {(v["GLIDECLIENT_Name"], v["GLIDECLIENT_Group"]) for v in results.values()} == {
            ("vofrontend_service.second", "second")}, results
        clients = _glidein_values_since(fa, start, "GlideinClient")
        assert clients == ["vofrontend_service.second"], clients  # main asked for nothing
    finally:
        _write(fe, path, original)
        fe.run("supervisorctl", "restart", "frontend")
        _cleanup_user_jobs(nodes)


def test_killing_factory_and_frontend_mid_cycle_loses_nothing_and_overshoots_nothing(workspace, nodes):
    fe, fa = nodes["frontend-workspace"], nodes["factory-workspace"]
    jobs = 6
    sub = json.loads(fe.run("python3", "-m", "glideinlab.smoke.jobs", "submit", str(jobs), "10",
                            user="testuser").stdout)
    seen = {"over": [], "max_glideins": 0}
    stop = threading.Event()

    def watch():
        # glideins in the factory queue per entry never exceed the largest ReqMaxGlideins advertised
        while not stop.is_set():
            obs = fa.json("from glideinlab.smoke import observe; import json; "
                          "from glideinlab.condor.adapter import Condor; "
                          "print(json.dumps(observe.observe_factory(Condor()), default=str))")
            per_entry = {}
            for g in obs["glideins"] if isinstance(obs["glideins"], list) else []:
                if g.get("JobStatus") in (1, 2):
                    per_entry[g["GlideinEntryName"]] = per_entry.get(g["GlideinEntryName"], 0) + 1
            req_max = {}
            for r in obs["requests"] if isinstance(obs["requests"], list) else []:
                entry = r["Name"].split("_", 1)[1].split("@")[0]
                req_max[entry] = max(req_max.get(entry, 0), r.get("ReqMaxGlideins") or 0)
            seen["max_glideins"] = max([seen["max_glideins"], *per_entry.values()])
            seen["req_max"] = max([seen.get("req_max", 0), *req_max.values()])
            time.sleep(1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _wait(lambda: fa.json("import json, htcondor2; print(json.dumps(len(htcondor2.Schedd().query("
                              "'GlideinFactory =!= undefined', ['ClusterId']))))"), 180, "a first glidein")
        for node, service in ((fa, "factory"), (fe, "frontend"), (fa, "factory")):
            assert node.run("supervisorctl", "signal", "KILL", service).returncode == 0
            time.sleep(4)  # supervisord restarts it (autorestart)
        done = _wait(lambda: (lambda r: r if all(r.values()) else None)(json.loads(fe.run(
            "python3", "-m", "glideinlab.smoke.jobs", "results", sub["dir"], str(jobs), user="testuser").stdout)),
            400, "every job after the restarts")
    finally:
        stop.set()
        watcher.join(10)
    assert len(done) == jobs  # no user job lost
    assert seen["max_glideins"] <= max(seen.get("req_max", 0), 1) + 1, seen
    for node, service in ((fa, "factory"), (fe, "frontend")):
        assert "RUNNING" in node.run("supervisorctl", "status", service).stdout


def test_smoke_fails_when_the_factory_is_stopped_and_points_at_it(workspace, nodes):
    fa = nodes["factory-workspace"]
    assert fa.run("supervisorctl", "stop", "factory").returncode == 0
    try:
        result = _smoke(workspace, jobs=2, timeout=45)
    finally:
        fa.run("supervisorctl", "start", "factory")
        _cleanup_user_jobs(nodes)
    assert not result.ok
    # a stopped factory withdraws its entry ads (as upstream's does on exit), so the frontend has no
    # entry to request glideins from: the first stage that cannot happen is the request
    assert result.failed_stage == "request", result.verdict()
    assert "factory" in result.first_error and "STOPPED" in result.first_error, result.first_error
    assert (workspace.dir / "bundles").exists() and result.bundle.startswith(str(workspace.dir))


def test_smoke_fails_at_the_startd_stage_when_the_glidein_token_is_revoked(workspace, nodes):
    fe = nodes["frontend-workspace"]
    # earlier tests' glideins must be gone from the factory queue too, not only from the user pool: one
    # still holding the worker would keep this test's glidein from ever starting
    _wait(lambda: _quiet(nodes), 300, "earlier glideins to leave the user pool and the factory queue")
    # glidein IDTOKENs are signed with the user pool's FRONTEND key (upstream's passwords.d/FRONTEND);
    # taking it away from the collector revokes every glidein token and nothing else
    key, aside = "/etc/condor/passwords.d/FRONTEND", "/root/FRONTEND.revoked"
    assert fe.run("sh", "-c", f"mv {key} {aside} && condor_reconfig").returncode == 0
    try:
        result = _smoke(workspace, jobs=2, timeout=90)
    finally:
        fe.run("sh", "-c", f"mv {aside} {key} && condor_reconfig")
        _cleanup_user_jobs(nodes)
    assert not result.ok
    assert result.failed_stage == "startd_joined", result.verdict()
    assert "worker_running" in result.reached  # the glidein did start
    assert "revoked" in result.first_error.lower() or "token" in result.first_error.lower(), result.first_error


def _glidein_values_since(factory, start: int, attr: str) -> list:
    """The distinct values of ``attr`` over the glideins the factory submitted since ``start`` (queue and
    history)."""
    return factory.json(textwrap.dedent(f"""
        import json
        from glideinlab.condor.adapter import Condor
        c = Condor(); s = c.schedd()
        q = 'GlideinFactory =!= undefined && QDate >= {start}'
        jobs = c.query_jobs(s, q, [{attr!r}]) + c.query_jobs(s, q, [{attr!r}], history=True)
        print(json.dumps(sorted({{j[{attr!r}] for j in jobs}})))
    """))


def _write(node, path: str, text: str) -> None:
    """Overwrite a file in a node, keeping its owner and mode."""
    assert node.run("sh", "-c", f"cat > {path}", input=text).returncode == 0


def _quiet(nodes) -> bool:
    """No glidein left anywhere: no glidein startd in the user pool, no glidein job at the factory."""
    if _ads(nodes["frontend-workspace"], "GLIDECLIENT_Name =!= undefined", ["Name"]):
        return False
    factory = nodes["factory-workspace"].json(
        "import json; from glideinlab.smoke.observe import observe_factory; "
        "from glideinlab.condor.adapter import Condor; print(json.dumps(observe_factory(Condor()), default=str))")
    return factory["glideins"] == []


def _cleanup_user_jobs(nodes):
    """The failure tests' own jobs: remove them so they do not feed later tests."""
    nodes["frontend-workspace"].run("condor_rm", "-all", user="testuser")


def test_unservable_jobs_get_no_glidein_and_a_visible_reason(workspace, nodes):
    """Issue 9: a job asking for more cores than any entry has, and one asking for a site that does not
    exist, get no glidein; the glideresource ads say how many wait and why."""
    fe, fa = nodes["frontend-workspace"], nodes["factory-workspace"]
    _wait(lambda: _quiet(nodes), 300, "earlier glideins to leave the user pool and the factory queue")
    start = int(time.time())
    try:
        for extra in (["request_cpus=2"], ['+DESIRED_Sites="NoSuchSite"']):
            assert fe.run("python3", "-m", "glideinlab.smoke.jobs", "submit", "1", "2", *extra,
                          user="testuser").returncode == 0
        wanted = ["GlideClientMonitorJobsIdleUnmatched", "GlideClientMonitorJobsIdleUnmatchedCores",
                  "GlideClientMonitorJobsIdleUnmatchedNoEntry", "GlideClientMonitorJobsIdleUnmatchedReasons"]
        resources = _wait(lambda: (lambda r: r if r and all(
            (x.get(wanted[0]), x.get(wanted[1]), x.get(wanted[2])) == (2, 1, 1) for x in r) else None)(
            _ads(fe, f'GlideinMyType =?= "glideresource" && GlideClientName =?= "{CLIENT}"', wanted)),
            120, "glideresource ads counting the two unservable jobs")
        reasons = resources[0][wanted[3]]
        assert "Cores: 1 (" in reasons and "RequestCpus=2" in reasons, reasons
        assert "NoEntry: 1 (" in reasons and "NoSuchSite" in reasons, reasons
        time.sleep(10)  # a few more frontend and factory cycles (fast profile: 3 s each)
        requests = _ads(fa, f'GlideinMyType =?= "glideclient" && ClientName =?= "{CLIENT}"', ["ReqIdleGlideins"])
        assert requests and all(r["ReqIdleGlideins"] == 0 for r in requests), requests
        assert _glidein_values_since(fa, start, "GlideinEntryName") == []
    finally:
        _cleanup_user_jobs(nodes)
