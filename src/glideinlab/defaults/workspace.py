"""Defaults for the workspace: node layout, images, and the two timing profiles.

The ``fast`` profile cuts every HTCondor and GlideinWMS cycle to about 2 s, the way HTCondor's own
``PersonalPool`` and test harnesses do, so a whole pilot cycle takes seconds; ``production`` keeps
HTCondor's and upstream GlideinWMS's defaults (NEGOTIATOR_INTERVAL 60 s, UPDATE_INTERVAL 300 s,
loop_delay 60 s, GLIDEIN_Max_Idle 1200 s ...) so a configuration can be tried as it would run.
"""

from __future__ import annotations

from . import Knob, Section

HTCONDOR_LINES = {"23": "trixie", "25": "sid"}  # HTCondor release line -> Debian suite that ships it
PROFILES = ("fast", "production")

WORKSPACE = Section(
    "workspace",
    "Shape of a workspace (what `glideinlab up` creates).",
    (
        Knob("name", "default", "", "Workspace name; resources are prefixed glideinlab-<name>."),
        Knob("workers", 1, "nodes", "Worker nodes in the CE's local batch pool."),
        Knob("htcondor", "23", "", "HTCondor release line: 23 (Debian 13) or 25 (Debian sid).",
             choices=tuple(HTCONDOR_LINES)),
        Knob("profile", "fast", "", "Timing profile: fast (~2 s cycles) or production (upstream defaults).",
             choices=PROFILES),
        Knob("domain", "glideinwms.org", "", "DNS domain of the node FQDNs (upstream's fake domain)."),
        Knob("worker_cpus", 2, "cores", "CPUs each worker's startd advertises (not the host's)."),
        Knob("worker_memory", 2048, "MB", "Memory each worker's startd advertises (not the host's)."),
        Knob("publish_ports", False, "", "Publish node ports on 127.0.0.1 (CE 2xxxx, factory 3xxxx, frontend 4xxxx)."),
        Knob("up_timeout", 300, "s", "How long `up` waits for every node to become healthy."),
        Knob("code_mount", True, "", "Mount this checkout's glideinlab package into every node (like upstream's "
             "GWMS_PATH), so a code change needs only a service restart; false runs the code baked into "
             "the images by `glideinlab build`."),
    ),
)

IMAGES = Section(
    "images",
    "How node images are built (offline: debootstrap + docker import, then Dockerfiles).",
    (
        Knob("mirror", "http://deb.debian.org/debian", "", "Debian mirror for debootstrap and apt inside builds."),
        Knob("base_image", "", "", "Start the Dockerfiles from this image (e.g. debian:trixie-slim) instead of "
             "the debootstrapped root; only where a registry is reachable."),
        Knob("prefix", "glideinlab", "", "Image name prefix: <prefix>/<role>:<suite> ($GLIDEINLAB_IMAGE_PREFIX overrides it)."),
    ),
)

CE = Section(
    "ce",
    "The CE node's JobRouter (HTCondor-CE layout: CE schedd on 9619 routing into the site pool).",
    (
        # HTCondor's own route defaults (MaxJobs 100, MaxIdleJobs 50) capped the scale bench at 100
        # glideins; HTCondor-CE raises them the same way
        Knob("max_jobs", 10000, "jobs", "Most routed jobs per route at once (HTCondor-CE's CONDORCE_MAX_JOBS)."),
        Knob("max_idle_jobs", 2000, "jobs", "Most routed jobs per route idle in the site pool at once; the "
             "router stops routing beyond it."),
    ),
)

# Published ports, upstream workspaces' convention: CE 2xxxx, factory 3xxxx, frontend 4xxxx.
PUBLISHED_PORTS = {
    "ce-workspace": {29619: 9619, 29618: 9618},
    "factory-workspace": {39618: 9618, 38000: 8000},
    "frontend-workspace": {49618: 9618, 48000: 8000, 48443: 8443},
}

# Service ports inside the nodes.
CE_PORT = 9619  # HTCondor-CE's schedd+collector (shared port)
POOL_PORT = 9618  # every ordinary HTCondor pool
STAGE_HTTP_PORT = 8000  # factory and frontend staging areas (plain HTTP, content is signed)
ISSUER_HTTPS_PORT = 8443  # the frontend's SciToken issuer (HTTPS under the workspace CA)

_T = {"fast": 0, "production": 1}


def _profile_knob(name: str, fast, production, unit: str, help: str) -> Knob:
    return Knob(name, (fast, production), unit, help)


#: HTCondor knobs per profile: (fast, production). Production values are HTCondor's defaults.
HTCONDOR_TIMING = Section(
    "htcondor_timing",
    "HTCondor cycle knobs per profile, as (fast, production).",
    (
        _profile_knob("NEGOTIATOR_INTERVAL", 2, 60, "s", "Time between negotiation cycles."),
        _profile_knob("NEGOTIATOR_MIN_INTERVAL", 1, 5, "s", "Minimum time between negotiation cycles."),
        _profile_knob("NEGOTIATOR_CYCLE_DELAY", 1, 20, "s", "Minimum delay before the next cycle starts."),
        _profile_knob("UPDATE_INTERVAL", 2, 300, "s", "How often daemons (startd, schedd) update the collector."),
        _profile_knob("MASTER_UPDATE_INTERVAL", 5, 300, "s", "How often condor_master updates the collector."),
        _profile_knob("SCHEDD_INTERVAL", 2, 300, "s", "How often the schedd re-evaluates and advertises."),
        _profile_knob("SCHEDD_MIN_INTERVAL", 1, 5, "s", "Minimum time between schedd updates."),
        _profile_knob("STARTER_UPDATE_INTERVAL", 2, 300, "s", "How often the starter updates the shadow."),
        _profile_knob("PERIODIC_EXPR_INTERVAL", 5, 60, "s", "How often periodic job expressions run."),
        _profile_knob("JOB_ROUTER_POLLING_PERIOD", 2, 10, "s", "How often the CE's JobRouter looks for jobs."),
        _profile_knob("GRIDMANAGER_JOB_PROBE_INTERVAL", 5, 60, "s", "How often HTCondor-G probes a grid job."),
        _profile_knob("CONDOR_JOB_POLL_INTERVAL", 2, 10, "s", "How often condor-C polls the remote schedd."),
        _profile_knob("GRIDMANAGER_RESOURCE_PROBE_INTERVAL", 5, 300, "s",
                      "How often HTCondor-G pings a grid resource it believes down."),
        _profile_knob("NEGOTIATOR_UPDATE_INTERVAL", 5, 300, "s", "How often the negotiator advertises itself."),
        _profile_knob("COLLECTOR_UPDATE_INTERVAL", 10, 900, "s", "How often a collector advertises itself."),
        _profile_knob("CLASSAD_LIFETIME", 60, 900, "s", "How long the collector keeps an ad not refreshed "
                      "(longer than every update interval above, or daemons vanish between updates)."),
    ),
)

#: GlideinWMS knobs per profile: (fast, production). Production values are upstream's defaults.
GLIDEINWMS_TIMING = Section(
    "glideinwms_timing",
    "Frontend, factory and glidein cycle knobs per profile, as (fast, production).",
    (
        _profile_knob("frontend_loop_delay", 3, 60, "s", "Frontend loop_delay."),
        _profile_knob("frontend_advertise_delay", 1, 5, "loops", "Frontend advertise_delay."),
        _profile_knob("factory_loop_delay", 3, 60, "s", "Factory loop_delay."),
        _profile_knob("factory_advertise_delay", 1, 5, "loops", "Factory advertise_delay."),
        _profile_knob("GLIDEIN_Max_Idle", 60, 1200, "s", "Glidein exits if never claimed for this long."),
        _profile_knob("GLIDEIN_Max_Tail", 20, 400, "s", "Glidein exits when idle this long after jobs ran."),
        _profile_knob("GLIDEIN_Failed_Wait", 10, 1199, "s", "How long a glidein that failed validation waits "
                      "before exiting (keeps a black-hole node from eating pilots)."),
        _profile_knob("GLIDEIN_Max_Walltime", 3600, 172800, "s", "Pilot walltime the entry advertises."),
        _profile_knob("submit_sleep", 0.0, 0.2, "s", "Factory sleep between submitting clusters of glideins."),
    ),
)

SECTIONS = (WORKSPACE, IMAGES, CE, HTCONDOR_TIMING, GLIDEINWMS_TIMING)


def timing(section: Section, profile: str) -> dict[str, object]:
    """The knobs of a (fast, production) section for one profile, as a plain dict."""
    if profile not in _T:
        raise ValueError(f"unknown profile {profile!r}")
    idx = _T[profile]
    return {k.name: k.default[idx] for k in section}
