"""The workspace's HTCondor security, on the real daemons: health, refusals, and condor-C with SciTokens."""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from glideinlab.cli.main import main as cli_main

# (node that runs the daemon, collector address) of every collector in the workspace
COLLECTORS = [
    ("frontend-workspace", "frontend-workspace.glideinwms.org:9618"),
    ("factory-workspace", "factory-workspace.glideinwms.org:9618"),
    ("ce-workspace", "ce-workspace.glideinwms.org:9618"),
    ("ce-workspace", "ce-workspace.glideinwms.org:9619"),
]
# schedds: (node, collector that knows it)
SCHEDDS = [
    ("frontend-workspace", "frontend-workspace.glideinwms.org:9618"),
    ("factory-workspace", "factory-workspace.glideinwms.org:9618"),
    ("ce-workspace", "ce-workspace.glideinwms.org:9618"),
    ("ce-workspace", "ce-workspace.glideinwms.org:9619"),
]
# a client that cannot authenticate: no token, and only methods the servers do not accept
ANONYMOUS = {"_condor_SEC_CLIENT_AUTHENTICATION_METHODS": "CLAIMTOBE", "_condor_SEC_TOKEN_DIRECTORY": "/nonexistent"}


def test_status_reports_every_node_and_daemon_healthy(workspace, capsys):
    rc = cli_main(["status", "--json", "--name", workspace.spec.name])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["ok"], report
    roles = {n["node"]: n for n in report["nodes"]}
    assert set(roles) == {n.service for n in workspace.spec.nodes}
    # the CE is two instances: the HTCondor-CE one (with its JobRouter) and the site pool
    assert {"ce:COLLECTOR", "ce:SCHEDD", "ce:JOB_ROUTER", "condor:COLLECTOR", "condor:NEGOTIATOR",
            "condor:SCHEDD"} <= set(roles["ce-workspace"]["daemons"])
    assert {"frontend", "issuer", "stage-http"} <= set(roles["frontend-workspace"]["services"])
    assert "factory" in roles["factory-workspace"]["services"]
    assert all(d["ok"] for n in report["nodes"] for d in n["daemons"].values())


def _own_ads(node, collector, name):
    return node.json(textwrap.dedent(f"""
        import json, htcondor2
        ads = htcondor2.Collector({collector!r}).query(htcondor2.AdTypes.Any, 'Name == "{name}"', ["Name"])
        print(json.dumps(len(ads)))
    """))


@pytest.mark.parametrize("owner,collector", COLLECTORS, ids=[c for _, c in COLLECTORS])
@pytest.mark.parametrize("command", ["UPDATE_MASTER_AD", "UPDATE_STARTD_AD", "UPDATE_AD_GENERIC"])
def test_unauthenticated_advertise_is_refused(nodes, owner, collector, command):
    name = f"intruder-{command.lower()}"
    attempt = nodes["worker-1"].python(textwrap.dedent(f"""
        import classad2, htcondor2
        ad = classad2.ClassAd({{"MyType": "glideclient", "GlideinMyType": "glideclient", "Name": "{name}",
                                "ReqIdleGlideins": 1000}})
        try:
            htcondor2.Collector({collector!r}).advertise([ad], {command!r}, True)
            print("sent")
        except Exception as exc:
            print("refused:", exc)
    """), user="nobody", env=ANONYMOUS)
    assert attempt.returncode == 0, attempt.stderr
    time.sleep(1)
    # whatever the client was told, the ad must not be in the collector
    assert _own_ads(nodes[owner], collector, name) == 0


@pytest.mark.parametrize("owner,pool", SCHEDDS, ids=[c for _, c in SCHEDDS])
def test_unauthenticated_submit_is_refused(nodes, owner, pool):
    location = nodes[owner].json(textwrap.dedent(f"""
        import json, htcondor2
        ad = htcondor2.Collector({pool!r}).locate(htcondor2.DaemonTypes.Schedd)
        print(json.dumps({{k: ad[k] for k in ("MyAddress", "Name", "CondorVersion", "CondorPlatform",
                                              "Machine") if k in ad}}))
    """))
    attempt = nodes["worker-1"].python(textwrap.dedent(f"""
        import classad2, htcondor2
        schedd = htcondor2.Schedd(classad2.ClassAd({location!r}))
        try:
            schedd.submit(htcondor2.Submit({{"executable": "/bin/true"}}))
            print("SUBMITTED")
        except Exception as exc:
            print("refused:", exc)
    """), user="nobody", env=ANONYMOUS)
    assert attempt.returncode == 0, attempt.stderr
    assert "SUBMITTED" not in attempt.stdout and "refused" in attempt.stdout, attempt.stdout


# -- condor-C from the factory to the CE, as the factory's account, with a SciToken ------------------

MINT = """
import sys
from pathlib import Path
from glideinlab.protocol import scitoken
key = {key}
print(scitoken.mint_scitoken(key, kid="glideinlab-1",
    issuer="https://frontend-workspace.glideinwms.org:8443/scitokens", subject="vofrontend_service",
    audience="ce-workspace.glideinwms.org:9619",
    scope="condor:/READ condor:/WRITE compute.create compute.read compute.modify compute.cancel",
    lifetime=3600))
"""
SUBMIT = """
import json, time, htcondor2
from pathlib import Path
d = Path("/var/lib/gwms-factory/ctest-{tag}"); d.mkdir(exist_ok=True)
(d / "job.sh").write_text('#!/bin/sh\\necho "host=$(hostname -f) user=$(id -un)"\\n')
(d / "job.sh").chmod(0o755)
(d / "token").write_text({token!r})
sub = {{"universe": "grid", "executable": str(d / "job.sh"), "initialdir": str(d),
       "grid_resource": "condor ce-workspace.glideinwms.org ce-workspace.glideinwms.org:9619",
       "output": "out", "error": "err", "log": "log", "+xcount": "1", "+maxMemory": "256"}}
if {use_token}:
    sub["scitokens_file"] = str(d / "token")
cluster = htcondor2.Schedd().submit(htcondor2.Submit(sub)).cluster()
deadline = time.time() + {timeout}
state = {{}}
while time.time() < deadline:
    ads = htcondor2.Schedd().query(f"ClusterId == {{cluster}}", ["JobStatus", "HoldReason", "GridJobStatus"])
    if not ads:
        state = {{"JobStatus": 4}}
        break
    state = {{k: ads[0].get(k) for k in ("JobStatus", "HoldReason", "GridJobStatus")}}
    if state["JobStatus"] == 5:
        break
    time.sleep(2)
out = (d / "out").read_text() if (d / "out").exists() else ""
if state.get("JobStatus") != 4:
    htcondor2.Schedd().act(htcondor2.JobAction.Remove, f"ClusterId == {{cluster}}")
print(json.dumps({{**state, "out": out}}))
"""


def _submit_to_ce(nodes, tag, token, use_token=True, timeout=180):
    return nodes["factory-workspace"].json(
        SUBMIT.format(tag=tag, token=token, use_token=use_token, timeout=timeout), user="gfactory")


def test_condor_c_job_with_workspace_scitoken_runs_as_mapped_account(nodes):
    token = nodes["frontend-workspace"].python(
        MINT.format(key='Path("/var/lib/gwms-frontend/issuer/issuer.pem").read_bytes()'),
        user="frontend").stdout.strip()
    result = _submit_to_ce(nodes, "good", token)
    assert result["JobStatus"] == 4, result
    # ran on a worker of the site pool, as the account the CE mapped the token to, output came back
    assert "host=worker-" in result["out"] and "user=gwms" in result["out"], result


def test_condor_c_job_without_token_is_held_for_authentication(nodes):
    result = _submit_to_ce(nodes, "notoken", "", use_token=False, timeout=120)
    assert result["JobStatus"] == 5, result
    assert "authenticat" in (result.get("HoldReason") or "").lower() or \
        "permission" in (result.get("HoldReason") or "").lower(), result


def test_condor_c_job_with_token_from_unknown_key_is_held(nodes):
    forged = nodes["frontend-workspace"].python(
        MINT.format(key="scitoken.new_signing_key()"), user="frontend").stdout.strip()
    result = _submit_to_ce(nodes, "forged", forged, timeout=120)
    assert result["JobStatus"] == 5, result
    assert result.get("HoldReason"), result
