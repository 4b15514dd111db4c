"""The component configs (frontend.yaml, factory.yaml, issuer.yaml) a workspace gives its nodes.

These are the same files an operator would write by hand; the workspace just fills in its host names,
identities and timing profile.  The daemons validate them at start like any other config.
"""

from __future__ import annotations

import yaml

from ..defaults import workspace as D
from . import condor_config as C
from .spec import Node, WorkspaceSpec
from .trust import FACTORY_USER, FRONTEND_SERVICE, GLIDEIN_KEY_ID, ISSUER_KID

FRONTEND_STAGE = "/var/lib/gwms-frontend/web-area"
FACTORY_STAGE = "/var/lib/gwms-factory/web-area"
ISSUER_KEY = "/var/lib/gwms-frontend/issuer/issuer.pem"
FRONTEND_SIGNING_KEY = f"/var/lib/gwms-frontend/passwords.d/{GLIDEIN_KEY_ID}"
SITE_JOB_MATCH = "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites ?: TARGET.GLIDEIN_Site)"


def component_configs(node: Node, spec: WorkspaceSpec) -> dict[str, str]:
    if node.role == "frontend":
        return {"frontend.yaml": _dump(frontend_config(spec)), "issuer.yaml": _dump(issuer_config(spec))}
    if node.role == "factory":
        return {"factory.yaml": _dump(factory_config(spec))}
    return {}


def issuer_config(spec: WorkspaceSpec) -> dict:
    fe = spec.fqdn("frontend-workspace")
    return {
        "issuer": C.issuer_url(spec),
        "key_file": ISSUER_KEY,
        "key_id": ISSUER_KID,
        "listen": f"0.0.0.0:{D.ISSUER_HTTPS_PORT}",
        "cert_file": "/var/lib/gwms-frontend/issuer/host.crt",
        "cert_key_file": "/var/lib/gwms-frontend/issuer/host.key",
        "server_name": fe,
    }


def _glidein_update_intervals(spec: WorkspaceSpec) -> dict:
    """Fast profile: glidein daemons update the user pool as often as the workspace's own daemons do (the
    glidein's own defaults, upstream's 370/300 s, stay in the production profile)."""
    if spec.profile != "fast":
        return {}
    condor = D.timing(D.HTCONDOR_TIMING, spec.profile)
    return {k: condor[k] for k in ("UPDATE_INTERVAL", "MASTER_UPDATE_INTERVAL", "STARTER_UPDATE_INTERVAL")}


def frontend_config(spec: WorkspaceSpec) -> dict:
    fe = spec.fqdn("frontend-workspace")
    fa = spec.fqdn("factory-workspace")
    t = D.timing(D.GLIDEINWMS_TIMING, spec.profile)
    return {
        "frontend_name": FRONTEND_SERVICE,
        "security_name": FRONTEND_SERVICE,
        "loop_delay": t["frontend_loop_delay"],
        "advertise_delay": t["frontend_advertise_delay"],
        "user_collector": f"{fe}:{D.POOL_PORT}",
        "schedds": [fe],
        "factories": [{
            "collector": f"{fa}:{D.POOL_PORT}",
            "factory_identity": f"{FACTORY_USER}@{fa}",
            "my_identity": f"{FRONTEND_SERVICE}@{fa}",
        }],
        "stage": {"base_dir": f"{FRONTEND_STAGE}/stage",
                  "web_base_url": f"http://{fe}:{D.STAGE_HTTP_PORT}/stage"},
        "credentials": {
            "scitoken": {"issuer": C.issuer_url(spec), "key_file": ISSUER_KEY, "key_id": ISSUER_KID,
                         "subject": FRONTEND_SERVICE, "lifetime": 3600},
            "idtoken": {"signing_key_file": FRONTEND_SIGNING_KEY, "key_id": GLIDEIN_KEY_ID, "trust_domain": fe,
                        "identity_subdomain": C.GLIDEIN_DOMAIN_PREFIX.rstrip("."), "lifetime": 86400},
        },
        "attrs": {"GLIDEIN_Max_Idle": t["GLIDEIN_Max_Idle"], "GLIDEIN_Max_Tail": t["GLIDEIN_Max_Tail"],
                  "GLIDEIN_Failed_Wait": t["GLIDEIN_Failed_Wait"], **_glidein_update_intervals(spec)},
        "groups": {
            "main": {
                "enabled": True,
                # jobs may restrict sites with DESIRED_Sites; without it they match every entry
                "match_expr": SITE_JOB_MATCH,
                "job_match_attrs": ["DESIRED_Sites"],
                "factory_match_attrs": ["GLIDEIN_Site"],
                "start_expr": "true",
                "config": {
                    "idle_glideins_per_entry": {"max": 100, "reserve": 5},
                    # fast profile: react at once instead of ramping up over several cycles
                    "ramp_up_attenuation": 1 if spec.profile == "fast" else 3,
                    "partitionable_glidein": {"min_memory": 256},
                },
            },
        },
    }


def factory_config(spec: WorkspaceSpec) -> dict:
    fa = spec.fqdn("factory-workspace")
    t = D.timing(D.GLIDEINWMS_TIMING, spec.profile)
    entries = {}
    for entry in spec.entries:
        ce = spec.fqdn(entry.ce)
        entries[entry.name] = {
            "enabled": True,
            "gatekeeper": f"{ce} {ce}:{D.CE_PORT}",
            "gridtype": "condor",
            "auth_method": "scitoken",
            "trust_domain": "grid",
            "attrs": {
                "GLIDEIN_Site": entry.site,
                "GLIDEIN_CPUS": entry.cpus,
                "GLIDEIN_MaxMemMBs": entry.memory,
                "GLIDEIN_Max_Walltime": t["GLIDEIN_Max_Walltime"],
                "GLIDEIN_Supported_VOs": "glideinlab",
            },
            "config": {"submit": {"sleep": t["submit_sleep"]}},
            "allow_frontends": {FRONTEND_SERVICE: "frontend"},
        }
    return {
        "factory_name": "gfactory_service",
        "glidein_name": "gfactory_instance",
        "loop_delay": t["factory_loop_delay"],
        "advertise_delay": t["factory_advertise_delay"],
        "collector": f"{fa}:{D.POOL_PORT}",
        "schedds": [f"schedd_glideins1@{fa}"],
        "stage": {"base_dir": f"{FACTORY_STAGE}/stage", "web_base_url": f"http://{fa}:{D.STAGE_HTTP_PORT}/stage"},
        "submit": {"base_dir": "/var/lib/gwms-factory/work-dir",
                   "base_log_dir": "/var/log/gwms-factory/server",
                   "base_client_log_dir": "/var/log/gwms-factory/client",
                   "base_client_proxies_dir": "/var/lib/gwms-factory/client-proxies"},
        "security": {"frontends": {FRONTEND_SERVICE: {
            "identity": f"{FRONTEND_SERVICE}@{fa}",
            "security_classes": {"frontend": {"username": FACTORY_USER}}}}},
        "entries": entries,
    }


def _dump(data: dict) -> str:
    return "# Rendered by glideinlab for this workspace; validated by the daemon at start.\n" + \
        yaml.safe_dump(data, sort_keys=False)
