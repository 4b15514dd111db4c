"""Defaults for the factory: ``factory.yaml`` top level, security, directories and per-entry config.

Values are upstream's (``creation/lib/cgWParams.py``, ``factory_defaults.xml`` and the constants of
``factory/glideFactoryLib.py``) unless a help text says otherwise. Section names are the dotted path
of the mapping they validate in ``factory.yaml``; an empty string default means "required".
"""

from __future__ import annotations

from . import Knob, Section

#: ``slots_layout`` values a glidein understands (``-slotslayout``).
SLOTS_LAYOUTS = ("partitionable", "fixed")
#: attr ``type`` values, as upstream's ``<attr type=...>``.
ATTR_TYPES = ("string", "int", "expr")
#: glidein ``-v`` verbosity modes.
VERBOSITIES = ("std", "nodebug", "fast", "check")
#: where the glidein makes its work dir (``-dir``).
WORK_DIRS = (".", "Condor", "OSG", "TMPDIR", "AUTO")

FACTORY = Section(
    "factory",
    "Top level of factory.yaml: who the factory is, how often it loops, where it submits.",
    (
        Knob("factory_name", "gfactory_service", "", "Factory name; last part of every ad Name "
             "(entry@glidein@factory)."),
        Knob("glidein_name", "gfactory_instance", "", "Glidein (factory instance) name; middle part of ad Names."),
        Knob("loop_delay", 60, "s", "Time between the starts of two factory cycles."),
        Knob("advertise_delay", 5, "loops", "Re-advertise glidefactory ads every this many loops "
             "(and on any loop that did work)."),
        Knob("collector", "", "", "The WMS (factory) collector, host[:port] (required)."),
        Knob("schedds", (), "", "Factory schedds glideins are submitted to, by Name (required, at least one)."),
        Knob("restart_attempts", 3, "", "Abort the factory when an entry process dies more often than this "
             "within restart_interval."),
        Knob("restart_interval", 1800, "s", "Window for restart_attempts."),
        Knob("recoverable_exitcodes", "", "", "Held glideins worth releasing: comma-separated "
             "'HoldReasonCode [HoldReasonSubCode ...]' items, e.g. '13,30 2 3' (code 13 with any subcode, "
             "code 30 with subcode 2 or 3). Every other hold is unrecoverable, as upstream since 3.6.2."),
    ),
)

SECURITY = Section(
    "factory.security",
    "The factory's RSA key and the frontends it serves (security.frontends is a mapping, not a knob).",
    (
        Knob("key_length", 2048, "bits", "RSA key length of the factory key (PubKeyValue)."),
        Knob("pub_key", "RSA", "", "Public key type advertised as PubKeyType.", choices=("RSA",)),
        Knob("reuse_oldkey_onstartup_gracetime", 900, "s", "Reuse rsa.key at startup when younger than this; "
             "otherwise make a new one and keep accepting the old one for this long."),
        Knob("remove_old_cred_freq", 24, "h", "How often unused credentials are looked for."),
        Knob("remove_old_cred_age", 30, "d", "Delete client credential files not used for this long."),
    ),
)

FRONTEND = Section(
    "factory.security.frontends.<name>",
    "One frontend the factory serves, keyed by its security_name.",
    (
        Knob("identity", "", "", "The AuthenticatedIdentity the WMS collector must show for this frontend "
             "(user@host, required)."),
        Knob("security_classes", {}, "", "security_class -> {username: local user} (required, at least one)."),
    ),
)

STAGE = Section(
    "factory.stage",
    "The factory's web staging area (signed files glideins download).",
    (
        Knob("base_dir", "/var/lib/gwms-factory/web-area/stage", "", "Directory served over HTTP."),
        Knob("web_base_url", "", "", "URL of base_dir as glideins see it (required)."),
    ),
)

SUBMIT_DIRS = Section(
    "factory.submit",
    "Factory-side directories (upstream <submit>).",
    (
        Knob("base_dir", "/var/lib/gwms-factory/work-dir", "", "Work dir: descripts, rsa.key, entry_<e>/."),
        Knob("base_log_dir", "/var/log/gwms-factory/server", "", "Factory process logs."),
        Knob("base_client_log_dir", "/var/log/gwms-factory/client", "", "Glidein job logs (user_<u>/glidein_<g>/"
             "entry_<e>/)."),
        Knob("base_client_proxies_dir", "/var/lib/gwms-factory/client-proxies", "", "Credentials received from "
             "frontends (user_<u>/glidein_<g>/)."),
    ),
)

ENTRY = Section(
    "entry",
    "One entry (a CE the factory submits glideins to); entries.<name> in factory.yaml.",
    (
        Knob("enabled", True, "", "A disabled entry gets no new glideins but its queue is still cleaned."),
        Knob("gatekeeper", "", "", "CE contact (required); for gridtype condor: '<ce host> <ce host>:<port>'."),
        Knob("gridtype", "condor", "", "HTCondor-G grid type: 'condor' (HTCondor-CE) or 'batch <lrms>' "
             "(pbs, lsf, sge, slurm, condor). gt2/gt5 are rejected, as upstream."),
        Knob("auth_method", "scitoken", "", "Credential the CE needs: scitoken, grid_proxy, voms_proxy, "
             "key_pair, cert_pair, username_password, auth_file, with +vm_id/+vm_type/+project_id/+voms_attr "
             "modifiers. Upstream's default is grid_proxy; glideinlab is token-only, so scitoken."),
        Knob("trust_domain", "grid", "", "Trust domain a frontend credential must match (GLIDEIN_TrustDomain)."),
        Knob("schedd_name", "", "", "Factory schedd for this entry; empty = the first of schedds."),
        Knob("verbosity", "std", "", "Glidein verbosity (-v).", choices=VERBOSITIES),
        Knob("work_dir", ".", "", "Where the glidein makes its work dir (-dir).", choices=WORK_DIRS),
        Knob("allow_frontends", {}, "", "security_name -> security_class (or a list, or 'All'); empty = any "
             "configured frontend may use the entry."),
    ),
)

ATTR = Section(
    "entry.attrs.<name>",
    "One attr: a bare value, or a mapping with value (required) and these flags, as upstream <attr>.",
    (
        Knob("type", "string", "", "Value type.", choices=ATTR_TYPES),
        Knob("publish", True, "", "Publish in the glidefactory ad."),
        Knob("parameter", True, "", "Pass to the glidein; with const false the frontend may override it "
             "(advertised as GlideinParam<name>)."),
        Knob("const", True, "", "Fixed by the factory (staged constants file); false lets frontends override."),
        Knob("glidein_publish", False, "", "Publish in the glidein's startd ad."),
        Knob("job_publish", False, "", "Put in the user job's environment."),
    ),
)

PER_ENTRY = Section(
    "entry.config.max_jobs.per_entry",
    "Limits on the whole entry, from its factory queue; when one is reached no glidein is submitted.",
    (
        Knob("glideins", 10000, "glideins", "Idle + running glideins of the entry."),
        Knob("idle", 2000, "glideins", "Idle glideins of the entry (all grid sub-states)."),
        Knob("held", 1000, "glideins", "Held glideins of the entry."),
    ),
)

DEFAULT_PER_FRONTEND = Section(
    "entry.config.max_jobs.default_per_frontend",
    "Limits per frontend security class (GlideinFrontendName = '<security_name>:<security_class>'); "
    "max_jobs.per_frontends.'<fe>:<class>' overrides them key by key.",
    (
        Knob("glideins", 5000, "glideins", "Idle + running glideins of one frontend security class."),
        Knob("idle", 100, "glideins", "Idle glideins of one frontend security class."),
        Knob("held", 50, "glideins", "Held glideins of one frontend security class."),
    ),
)

STALE_AGE = Section(
    "entry.config.stale_age",
    "Glideins in one state longer than this are removed (upstream #486 made these configurable).",
    (
        Knob("idle", 7 * 24 * 3600, "s", "Idle (queued) longer than this: removed."),
        Knob("running", 31 * 24 * 3600, "s", "Running longer than this: removed."),
        Knob("unclaimed", 2 * 3600, "s", "Running but never claimed in the user pool. Accepted for upstream "
             "compatibility only: it needs the pool's startd ads, which glideinlab's factory does not read."),
    ),
)

RELEASE = Section(
    "entry.config.release",
    "Releasing recoverable held glideins, with back-off.",
    (
        Knob("max_per_cycle", 20, "glideins", "Most condor_release per entry per cycle."),
        Knob("sleep", 0.2, "s", "Pause between two condor_release."),
        Knob("max_release_count", 10, "holds", "A glidein held more often than this (NumSystemHolds) is "
             "unrecoverable whatever its hold code."),
        Knob("min_release_time", 300, "s", "Back-off: release only after being held NumSystemHolds x this."),
    ),
)

REMOVE = Section(
    "entry.config.remove",
    "Removing glideins (excess, stale, unrecoverable held).",
    (
        Knob("max_per_cycle", 5, "glideins", "Most condor_rm per entry per cycle."),
        Knob("sleep", 0.2, "s", "Pause between two condor_rm."),
        Knob("forcex_after_holds", 20, "holds", "Unrecoverable held glideins with NumSystemHolds above this "
             "are removed with condor_rm -forcex."),
    ),
)

SUBMIT = Section(
    "entry.config.submit",
    "Submitting glideins.",
    (
        Knob("cluster_size", 10, "glideins", "Glideins per condor_submit (one cluster)."),
        Knob("max_per_cycle", 100, "glideins", "Most glideins submitted to the entry per cycle, all clients "
             "together (upstream counts it per request)."),
        Knob("sleep", 0.2, "s", "Pause between two condor_submit."),
        Knob("slots_layout", "partitionable", "", "Slots the glidein's startd makes (-slotslayout).",
             choices=SLOTS_LAYOUTS),
    ),
)

SECTIONS = (
    FACTORY,
    SECURITY,
    FRONTEND,
    STAGE,
    SUBMIT_DIRS,
    ENTRY,
    ATTR,
    PER_ENTRY,
    DEFAULT_PER_FRONTEND,
    STALE_AGE,
    RELEASE,
    REMOVE,
    SUBMIT,
)
