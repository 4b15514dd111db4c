"""Defaults for the VO Frontend: ``frontend.yaml`` keys, per-group limits and the policy's constants.

Names and values follow upstream's ``creation/lib/cvWParams.py`` (as summarised in
``/work/shared/reference/glideinwms-protocol.md`` §2), so an upstream operator finds the knobs they know.
Section names mirror the YAML path: ``frontend.config.idle_vms_total`` is ``config: {idle_vms_total: …}``
at the top of ``frontend.yaml``; ``group.config.idle_glideins_per_entry`` is the same key under
``groups: {<name>: {config: …}}``.  Knobs whose default is ``""`` are required (see their help).
"""

from __future__ import annotations

from . import Knob, Section

#: upstream's default job constraint (cvWParams): vanilla jobs that are not monitoring jobs
DEFAULT_JOB_QUERY_EXPR = "(JobUniverse==5)&&(GLIDEIN_Is_Monitor =!= TRUE)&&(JOB_Is_Monitor =!= TRUE)"

#: ``glideins_removal type`` values; order matters: a later value removes more (the larger one wins)
REMOVAL_TYPES = ("NO", "WAIT", "IDLE", "ALL")

FRONTEND = Section(
    "frontend",
    "Top-level keys of frontend.yaml (the <frontend> element upstream).",
    (
        Knob("frontend_name", "", "", "Frontend name; client names are '<frontend_name>.<group>' (required)."),
        Knob("security_name", "", "", "Name the factories know this frontend by (default: frontend_name)."),
        Knob("loop_delay", 60, "s", "Target duration of one frontend cycle; no sleep when a cycle runs late."),
        Knob("advertise_delay", 5, "loops", "Full re-advertisement of monitoring ads every this many loops."),
        Knob("group_parallel_workers", 2, "processes", "Groups computed concurrently in one cycle."),
        Knob("restart_attempts", 3, "count", "Group failures tolerated within restart_interval before abort."),
        Knob("restart_interval", 1800, "s", "Window for counting group failures."),
        Knob("user_collector", "", "host:port", "User pool collector; becomes GLIDEIN_Collector (required)."),
        Knob("schedds", [], "names", "User schedds to query for jobs, as named in their ads (required)."),
    ),
)

FACTORY = Section(
    "frontend.factories[]",
    "One factory (WMS) collector the frontend talks to; there may be several.",
    (
        Knob("collector", "", "host:port", "Factory collector address (required)."),
        Knob("factory_identity", "", "user@domain", "Expected AuthenticatedIdentity of factory ads (required)."),
        Knob("my_identity", "", "user@domain", "Our identity as the factory collector sees it (required)."),
    ),
)

STAGE = Section(
    "frontend.stage",
    "Frontend web stage the glideins download frontend/group files from.",
    (
        Knob("base_dir", "/var/lib/gwms-frontend/web-area/stage", "path", "Directory served over HTTP."),
        Knob("web_base_url", "", "URL", "URL of base_dir as the glideins see it (required)."),
    ),
)

SCITOKEN = Section(
    "frontend.credentials.scitoken",
    "SciToken the frontend mints for the factory to present to the CE.",
    (
        Knob("issuer", "", "URL", "Token issuer (iss) (required)."),
        Knob("key_file", "", "path", "PEM private key that signs the tokens (required)."),
        Knob("key_id", "", "", "Key id (kid) published by the issuer (required)."),
        Knob("lifetime", 3600, "s", "Token lifetime."),
        Knob("subject", "", "", "Token subject (sub) the CE maps to a local user (required)."),
        Knob("scope", "condor:/READ condor:/WRITE compute.create compute.read compute.modify compute.cancel", "",
             "Token scopes. HTCondor 23 turns the condor:/ scopes into authorizations (the pilot's HTCondor-G "
             "needs READ at the CE collector and WRITE at its schedd); compute.* are the CE-profile scopes."),
    ),
)

IDTOKEN = Section(
    "frontend.credentials.idtoken",
    "HTCondor IDTOKEN the frontend signs for glideins to join the user pool.",
    (
        Knob("signing_key_file", "", "path", "Pool signing key (passwords.d file) (required)."),
        Knob("key_id", "POOL", "", "Key id (kid); upstream doubles the key when it is POOL."),
        Knob("trust_domain", "", "domain", "Pool TRUST_DOMAIN, the token's issuer (required)."),
        Knob("lifetime", 86400, "s", "Token lifetime (upstream idtoken_lifetime, 24 h)."),
        Knob("identity_subdomain", "glideins", "", "Glidein identities are <GLIDEIN_Site>@<this>.<trust_domain> "
             "(upstream: <site>@<frontend host>); a separate domain lets the pool let glideins, and no "
             "local user, advertise startds."),
    ),
)

FRONTEND_MATCH = Section(
    "frontend.match",
    "Frontend-wide match settings; each is AND'ed (expressions) or merged (attrs) with the group's.",
    (
        Knob("match_expr", "true", "ClassAd", "Where to request glideins: MY = job, TARGET = entry ad."),
        Knob("start_expr", "true", "ClassAd", "Evaluated by the glidein startd (GLIDECLIENT_Start)."),
        Knob("job_query_expr", DEFAULT_JOB_QUERY_EXPR, "ClassAd", "Constraint on user jobs."),
        Knob("factory_query_expr", "true", "ClassAd", "Constraint on glidefactory (entry) ads."),
        Knob("job_match_attrs", [], "names", "Job attributes used by match_expr; jobs are clustered on them."),
        Knob("factory_match_attrs", [], "names", "Entry attributes used by match_expr (TARGET.<name>)."),
    ),
)

GROUP_MATCH = Section(
    "group.match",
    "Per-group match settings, AND'ed with (expressions) or added to (attrs) the frontend-wide ones.",
    (
        Knob("match_expr", "true", "ClassAd", "Where to request glideins: MY = job, TARGET = entry ad."),
        Knob("start_expr", "true", "ClassAd", "Evaluated by the glidein startd (GLIDECLIENT_Group_Start)."),
        Knob("job_query_expr", "true", "ClassAd", "Constraint on user jobs of this group."),
        Knob("factory_query_expr", "true", "ClassAd", "Constraint on entries for this group."),
        Knob("job_match_attrs", [], "names", "Job attributes used by match_expr; jobs are clustered on them."),
        Knob("factory_match_attrs", [], "names", "Entry attributes used by match_expr (TARGET.<name>)."),
    ),
)

GROUP = Section(
    "group",
    "Keys of one group under groups: (besides match settings, config and attrs).",
    (Knob("enabled", True, "", "A disabled group is loaded but gets no cycles."),),
)

# Shared by frontend.config and group.config: a group inherits the frontend's value unless it sets its own.
RAMP_UP_ATTENUATION = Knob(
    "ramp_up_attenuation", 3.0, "ratio", "Divide the idle-glidein request by this, so requests grow gradually."
)
MIN_MEMORY = Knob(
    "min_memory", 2500, "MB", "A partitionable slot with less free memory is not counted idle (#405)."
)

FRONTEND_CONFIG = Section(
    "frontend.config",
    "Frontend-wide scalar settings under config:.",
    (
        RAMP_UP_ATTENUATION,
        Knob("ignore_down_entries", False, "", "Entries in downtime match no jobs (else they match, get 0)."),
        Knob("old_idle_age", 600, "s", "An idle job waiting at least this long is OldIdle."),
        Knob("schedd_full_fraction", 0.95, "ratio",
             "A schedd at this fraction of MaxJobsRunning or TransferQueueMaxUploading is 'bad'."),
    ),
)

GROUP_CONFIG = Section(
    "group.config",
    "Per-group scalar settings under config: (defaults to the frontend's value).",
    (RAMP_UP_ATTENUATION,),
)

PARTITIONABLE_GLIDEIN = Section(
    "config.partitionable_glidein",
    "How partitionable slots count as idle (frontend-wide default, group override).",
    (MIN_MEMORY,),
)


def _max_curb(name: str, what: str, max_: int, curb: int) -> Section:
    return Section(
        name,
        what,
        (
            Knob("max", max_, "glideins", "Hard limit: no new idle glideins requested once reached."),
            Knob("curb", curb, "glideins", "Soft limit: the idle request is halved once reached."),
        ),
    )


FE_RUNNING_TOTAL = _max_curb(
    "frontend.config.running_glideins_total", "All glideins of this frontend (all groups).", 100000, 90000
)
FE_IDLE_TOTAL = _max_curb(
    "frontend.config.idle_vms_total", "Idle slots of this frontend (all groups).", 1000, 200
)
GLOBAL_RUNNING_TOTAL = _max_curb(
    "frontend.config.running_glideins_total_global", "All glideins in the user pool.", 100000, 90000
)
GLOBAL_IDLE_TOTAL = _max_curb(
    "frontend.config.idle_vms_total_global", "Idle slots in the user pool.", 1000, 200
)

REMOVAL_ESCALATION = Section(
    "frontend.config.removal_escalation",
    "Automatic ReqRemoveExcess escalation (cycle thresholds upstream hard-codes).",
    (
        Knob("wait_after", 5, "cycles", "No matching idle jobs for more cycles than this: WAIT."),
        Knob("idle_after", 10, "cycles", "And no glidein running a job for more cycles than this: IDLE."),
        Knob("all_after", 10, "cycles", "And no glidein at all for more cycles than this: ALL."),
    ),
)

RUNNING_PER_ENTRY = Section(
    "group.config.running_glideins_per_entry",
    "Glideins of this group at one entry.",
    (
        Knob("max", 10000, "glideins", "Hard limit on glideins at the entry; also caps ReqMaxGlideins."),
        Knob("min", 0, "glideins", "Keep asking for at least this many even without idle jobs."),
        Knob("relative_to_queue", 1.15, "ratio", "ReqMaxGlideins = (idle demand + busy glideins) x this + 1."),
    ),
)

IDLE_GLIDEINS_PER_ENTRY = Section(
    "group.config.idle_glideins_per_entry",
    "The idle-glidein request for one entry (ReqIdleGlideins).",
    (
        Knob("max", 100, "glideins", "Largest ReqIdleGlideins sent for one entry."),
        Knob("reserve", 5, "glideins", "Extra idle glideins asked for when jobs have waited long (OldIdle)."),
    ),
)

IDLE_VMS_PER_ENTRY = _max_curb(
    "group.config.idle_vms_per_entry", "Idle slots of this group at one entry.", 100, 5
)
GROUP_IDLE_TOTAL = _max_curb("group.config.idle_vms_total", "Idle slots of this group.", 1000, 200)
GROUP_RUNNING_TOTAL = _max_curb(
    "group.config.running_glideins_total", "All glideins of this group.", 100000, 90000
)

IDLE_GLIDEINS_LIFETIME = Section(
    "group.config.idle_glideins_lifetime",
    "ReqIdleLifetime: the factory removes glideins idle in its queue longer than this.",
    (Knob("max", 0, "s", "0 means no limit."),),
)

GLIDEINS_REMOVAL = Section(
    "group.config.glideins_removal",
    "Configured ReqRemoveExcess, combined with the automatic escalation (the larger wins).",
    (
        Knob("type", "NO", "", "NO, WAIT, IDLE, ALL, or DISABLE (turns the automatic escalation off too).",
             choices=REMOVAL_TYPES + ("DISABLE",)),
        Knob("wait", 0, "cycles", "Apply type after this many cycles with no matching idle jobs."),
        Knob("requests_tracking", False, "", "Apply type every cycle, keeping glideins at the request."),
        Knob("margin", 0, "glideins", "With requests_tracking: tolerated excess (ReqRemoveExcessMargin)."),
    ),
)

#: nested sections allowed under the frontend's ``config:``, by key
FRONTEND_CONFIG_SECTIONS: dict[str, Section] = {
    "running_glideins_total": FE_RUNNING_TOTAL,
    "idle_vms_total": FE_IDLE_TOTAL,
    "running_glideins_total_global": GLOBAL_RUNNING_TOTAL,
    "idle_vms_total_global": GLOBAL_IDLE_TOTAL,
    "partitionable_glidein": PARTITIONABLE_GLIDEIN,
    "removal_escalation": REMOVAL_ESCALATION,
}

#: nested sections allowed under a group's ``config:``, by key
GROUP_CONFIG_SECTIONS: dict[str, Section] = {
    "running_glideins_per_entry": RUNNING_PER_ENTRY,
    "idle_glideins_per_entry": IDLE_GLIDEINS_PER_ENTRY,
    "idle_vms_per_entry": IDLE_VMS_PER_ENTRY,
    "idle_vms_total": GROUP_IDLE_TOTAL,
    "running_glideins_total": GROUP_RUNNING_TOTAL,
    "idle_glideins_lifetime": IDLE_GLIDEINS_LIFETIME,
    "glideins_removal": GLIDEINS_REMOVAL,
    "partitionable_glidein": PARTITIONABLE_GLIDEIN,
}

DAEMON = Section(
    "frontend.daemon",
    "Where the frontend daemon keeps its state (command-line options of `python3 -m glideinlab.frontend`).",
    (
        Knob("work_dir", "/var/lib/gwms-frontend/work", "path",
             "Per-group history (removal escalation counters) survives restarts here."),
        Knob("token_refresh", 0.5, "fraction", "Mint a new SciToken/IDTOKEN when this fraction of its lifetime "
             "has passed (upstream regenerates glidein IDTOKENs after an hour)."),
    ),
)

SECTIONS: tuple[Section, ...] = (
    DAEMON,
    FRONTEND,
    FACTORY,
    STAGE,
    SCITOKEN,
    IDTOKEN,
    FRONTEND_MATCH,
    FRONTEND_CONFIG,
    *FRONTEND_CONFIG_SECTIONS.values(),
    GROUP,
    GROUP_MATCH,
    GROUP_CONFIG,
    *(s for s in GROUP_CONFIG_SECTIONS.values() if s is not PARTITIONABLE_GLIDEIN),
)
