"""HTCondor configuration of every node, rendered from the spec.

Each function returns ``{file name: text}`` for one HTCondor instance's ``config.d``.  Security is the
same everywhere: authentication and integrity required, no anonymous or unmapped identity may WRITE,
DAEMON, ADVERTISE or ADMINISTER, and every pool has its own trust domain whose ``POOL`` signing key
only its central manager holds.  Identities:

* ``FS`` (local processes): ``<user>@<UID_DOMAIN>``;
* IDTOKENs: ``vofrontend_service@<pool>``, ``gfactory@<pool>``, ``condor@<ce pool>`` (workers) and the
  glideins' ``<GLIDEIN_Site>@glideins.<user pool>``, minted by the frontend (a separate domain so no
  local user of the user pool can advertise a startd);
* SciTokens at the CE, mapped to a local account by the CE's mapfile, as HTCondor-CE does.
"""

from __future__ import annotations

from ..defaults import workspace as D
from .spec import Node, WorkspaceSpec

SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HOST_CERT = "/etc/grid-security/hostcert.pem"
HOST_KEY = "/etc/grid-security/hostkey.pem"
PILOT_ACCOUNT = "gwms"  # local account the CE maps the frontend's pilot SciToken to (upstream workspace's name)
GLIDEIN_DOMAIN_PREFIX = "glideins."
DENIED = "anonymous@*, unmapped@*"


def issuer_url(spec: WorkspaceSpec) -> str:
    return f"https://{spec.fqdn('frontend-workspace')}:{D.ISSUER_HTTPS_PORT}/scitokens"


def ce_audience(spec: WorkspaceSpec) -> str:
    return f"{spec.fqdn('ce-workspace')}:{D.CE_PORT}"


def glidein_identity_domain(spec: WorkspaceSpec) -> str:
    return GLIDEIN_DOMAIN_PREFIX + spec.fqdn("frontend-workspace")


def _timing(spec: WorkspaceSpec) -> str:
    knobs = D.timing(D.HTCONDOR_TIMING, spec.profile)
    lines = [f"# Timing profile '{spec.profile}' (glideinlab.defaults.workspace.HTCONDOR_TIMING)"]
    lines += [f"{name} = {value}" for name, value in knobs.items()]
    return "\n".join(lines) + "\n"


def _security(trust_domain: str, uid_domain: str, methods: str, client_methods: str) -> str:
    return f"""\
# Every connection authenticates and is integrity-checked; nobody unauthenticated gets anything.
TRUST_DOMAIN = {trust_domain}
UID_DOMAIN = {uid_domain}
SEC_DEFAULT_AUTHENTICATION = REQUIRED
SEC_CLIENT_AUTHENTICATION = REQUIRED
SEC_DEFAULT_INTEGRITY = REQUIRED
SEC_CLIENT_INTEGRITY = REQUIRED
SEC_DEFAULT_ENCRYPTION = OPTIONAL
SEC_DEFAULT_AUTHENTICATION_METHODS = {methods}
SEC_CLIENT_AUTHENTICATION_METHODS = {client_methods}
SEC_PASSWORD_DIRECTORY = /etc/condor/passwords.d
SEC_TOKEN_SYSTEM_DIRECTORY = /etc/condor/tokens.d
SEC_TOKEN_POOL_SIGNING_KEY_FILE = /etc/condor/passwords.d/POOL
# Host certificates carry subjectAltNames, so host names are checked (no SSL_SKIP_HOST_CHECK).
AUTH_SSL_CLIENT_CAFILE = {SYSTEM_CA_BUNDLE}
AUTH_SSL_SERVER_CAFILE = {SYSTEM_CA_BUNDLE}
AUTH_SSL_SERVER_CERTFILE = {HOST_CERT}
AUTH_SSL_SERVER_KEYFILE = {HOST_KEY}
DENY_READ = {DENIED}
DENY_WRITE = {DENIED}
DENY_DAEMON = {DENIED}
DENY_ADMINISTRATOR = {DENIED}
DENY_NEGOTIATOR = {DENIED}
DENY_ADVERTISE_STARTD = {DENIED}
DENY_ADVERTISE_SCHEDD = {DENIED}
DENY_ADVERTISE_MASTER = {DENIED}
LOCAL_DAEMONS = condor@$(UID_DOMAIN), root@$(UID_DOMAIN)
ALLOW_READ = *
ALLOW_ADMINISTRATOR = $(LOCAL_DAEMONS)
ALLOW_DAEMON = $(LOCAL_DAEMONS)
ALLOW_NEGOTIATOR = $(LOCAL_DAEMONS)
ALLOW_WRITE = $(LOCAL_DAEMONS)
ALLOW_ADVERTISE_MASTER = $(LOCAL_DAEMONS)
ALLOW_ADVERTISE_SCHEDD = $(LOCAL_DAEMONS)
ALLOW_ADVERTISE_STARTD = $(LOCAL_DAEMONS)
"""


def _base(node: Node, spec: WorkspaceSpec, condor_host: str, daemons: tuple[str, ...]) -> str:
    return f"""\
# {node.fqdn}: role {node.role}, workspace {spec.name}
CONDOR_HOST = {condor_host}
COLLECTOR_HOST = $(CONDOR_HOST):{D.POOL_PORT}
DAEMON_LIST = MASTER {' '.join(daemons)}
MASTER_NAME = {node.service}
MAIL = /bin/true
DISCARD_SESSION_KEYRING_ON_STARTUP = False
ENABLE_IPV6 = False
LOG_TO_SYSLOG = False
"""


def pool_config(node: Node, spec: WorkspaceSpec) -> dict[str, str]:
    """The node's ordinary HTCondor instance (/etc/condor/config.d)."""
    daemons = node.instances["pool"]
    if node.role == "frontend":
        return _frontend(node, spec, daemons)
    if node.role == "factory":
        return _factory(node, spec, daemons)
    if node.role == "ce":
        return _ce_pool(node, spec, daemons)
    return _worker(node, spec, daemons)


def _frontend(node: Node, spec: WorkspaceSpec, daemons) -> dict[str, str]:
    fqdn = node.fqdn
    glideins = f"*@{glidein_identity_domain(spec)}"
    frontend = f"vofrontend_service@{fqdn}"
    return {
        "00-base.conf": _base(node, spec, fqdn, daemons),
        "10-security.conf": _security(fqdn, fqdn, "FS, IDTOKENS", "FS, IDTOKENS"),
        "20-user-pool.conf": f"""\
# The user pool: collector + negotiator (CM) and the users' schedd (AP).
GLIDEIN_IDENTITIES = {glideins}
FRONTEND_IDENTITY = {frontend}
# Glideins join with IDTOKENs the frontend mints; only they may advertise startds.
COLLECTOR.ALLOW_ADVERTISE_STARTD = $(GLIDEIN_IDENTITIES)
COLLECTOR.ALLOW_ADVERTISE_MASTER = $(LOCAL_DAEMONS), $(GLIDEIN_IDENTITIES)
# The frontend advertises glideresource ads (generic ads need DAEMON at the collector).
COLLECTOR.ALLOW_DAEMON = $(LOCAL_DAEMONS), $(FRONTEND_IDENTITY)
# Local users submit with FS; the negotiator and glidein startds talk to the schedd via claim sessions.
SCHEDD.ALLOW_WRITE = *@$(UID_DOMAIN)
SEC_ENABLE_MATCH_PASSWORD_AUTHENTICATION = True
SCHEDD_NAME = {fqdn}
""",
        "90-timing.conf": _timing(spec),
    }


def _factory(node: Node, spec: WorkspaceSpec, daemons) -> dict[str, str]:
    fqdn = node.fqdn
    return {
        "00-base.conf": _base(node, spec, fqdn, daemons),
        # The factory's gridmanager authenticates to CEs with SciTokens (over SSL).
        "10-security.conf": _security(fqdn, fqdn, "FS, IDTOKENS", "FS, IDTOKENS, SCITOKENS, SSL"),
        "20-wms.conf": f"""\
# The WMS collector (frontends and factory exchange ads here) and the glidein schedd.
FRONTEND_IDENTITIES = vofrontend_service@{fqdn}
FACTORY_IDENTITY = gfactory@{fqdn}
# glideclient/glideclientglobal are master ads (UPDATE_MASTER_AD), as upstream.
COLLECTOR.ALLOW_ADVERTISE_MASTER = $(LOCAL_DAEMONS), $(FRONTEND_IDENTITIES), $(FACTORY_IDENTITY)
# glidefactory/glidefactoryglobal (generic) and glidefactoryclient (license) ads need DAEMON.
COLLECTOR.ALLOW_DAEMON = $(LOCAL_DAEMONS), $(FACTORY_IDENTITY)
SCHEDD_NAME = schedd_glideins1
SCHEDD.ALLOW_WRITE = $(LOCAL_DAEMONS), gfactory@$(UID_DOMAIN), $(FACTORY_IDENTITY)
QUEUE_SUPER_USERS = root, condor, gfactory
# HTCondor-G's condor-C client may read a CE anonymously (HTCondor-CE allows it), so a pilot the CE
# refuses is held with the CE's authentication error instead of waiting on a "down" resource forever.
C_GAHP.SEC_CLIENT_AUTHENTICATION = OPTIONAL
C_GAHP.SEC_CLIENT_INTEGRITY = OPTIONAL
C_GAHP_WORKER_THREAD.SEC_CLIENT_AUTHENTICATION = OPTIONAL
C_GAHP_WORKER_THREAD.SEC_CLIENT_INTEGRITY = OPTIONAL
# Glideins are grid jobs; give the gridmanager room.
GRIDMANAGER_MAX_SUBMITTED_JOBS_PER_RESOURCE = 1000
GRIDMANAGER_DEBUG = D_FULLDEBUG
""",
        "90-timing.conf": _timing(spec),
    }


def _ce_pool(node: Node, spec: WorkspaceSpec, daemons) -> dict[str, str]:
    fqdn = node.fqdn
    return {
        "00-base.conf": _base(node, spec, fqdn, daemons),
        "10-security.conf": _security(fqdn, fqdn, "FS, IDTOKENS", "FS, IDTOKENS"),
        "20-site-pool.conf": f"""\
# The site's local batch pool behind the CE; its startds are the worker nodes.
WORKER_IDENTITY = condor@{fqdn}
COLLECTOR.ALLOW_ADVERTISE_STARTD = $(WORKER_IDENTITY)
COLLECTOR.ALLOW_ADVERTISE_MASTER = $(LOCAL_DAEMONS), $(WORKER_IDENTITY)
# The CE's JobRouter (local, FS) submits routed jobs on behalf of their owners, who may never
# have had a job here before (by default a super user may only impersonate past owners).
SCHEDD.ALLOW_WRITE = *@$(UID_DOMAIN)
QUEUE_SUPER_USERS = root, condor
QUEUE_SUPER_USER_MAY_IMPERSONATE = .*
SCHEDD_NAME = {fqdn}
SEC_ENABLE_MATCH_PASSWORD_AUTHENTICATION = True
""",
        "90-timing.conf": _timing(spec),
    }


def _worker(node: Node, spec: WorkspaceSpec, daemons) -> dict[str, str]:
    ce = spec.fqdn("ce-workspace")
    return {
        "00-base.conf": _base(node, spec, ce, daemons),
        # Same trust and UID domain as the CE pool: jobs run as their (mapped) owner account.
        "10-security.conf": _security(ce, ce, "FS, IDTOKENS", "FS, IDTOKENS"),
        "20-worker.conf": f"""\
# A worker node of the CE's batch pool; advertises configured resources, not the host's.
NUM_CPUS = {spec.worker_cpus}
MEMORY = {spec.worker_memory}
STARTD_NAME = {node.service}
SEC_ENABLE_MATCH_PASSWORD_AUTHENTICATION = True
# Run jobs as their owner (the account the CE mapped the pilot to), not as nobody: the CE's schedd
# shares our UID_DOMAIN, though its host name is not under it.
TRUST_UID_DOMAIN = True
# One partitionable slot, so several glideins can share a worker.
NUM_SLOTS = 1
NUM_SLOTS_TYPE_1 = 1
SLOT_TYPE_1 = 100%
SLOT_TYPE_1_PARTITIONABLE = True
START = True
SUSPEND = False
PREEMPT = False
KILL = False
# Glideins run their own condor_master; let them keep their process tree and signals.
USE_PID_NAMESPACES = False
""",
        "90-timing.conf": _timing(spec),
    }


def ce_config(node: Node, spec: WorkspaceSpec) -> dict[str, str]:
    """The HTCondor-CE instance on 9619 (/etc/condor-ce/config.d), HTCondor-CE's layout."""
    fqdn = node.fqdn
    return {
        "00-base.conf": f"""\
# HTCondor-CE instance: its own collector + schedd on the shared port {D.CE_PORT}, and the JobRouter.
CONDOR_HOST = {fqdn}
PORT = {D.CE_PORT}
COLLECTOR_HOST = $(CONDOR_HOST):$(PORT)
COLLECTOR_PORT = $(PORT)
SHARED_PORT_PORT = $(PORT)
DAEMON_LIST = MASTER COLLECTOR SCHEDD JOB_ROUTER
MASTER_NAME = htcondor-ce
SCHEDD_NAME = {fqdn}
# No negotiator: jobs leave only through the JobRouter.
SCHEDD_SEND_RESCHEDULE = False
MAIL = /bin/true
ENABLE_IPV6 = False
""",
        "10-security.conf": _security(f"{fqdn}:{D.CE_PORT}", fqdn, "FS, SCITOKENS, IDTOKENS",
                                      "FS, IDTOKENS") + f"""\
# As HTCondor-CE: READ (finding the schedd, job status) may be anonymous, so a pilot whose token is
# missing or forged reaches the schedd and its submission is refused there, and HTCondor-G holds it with
# the authentication error as the reason. WRITE, DAEMON, ADVERTISE and ADMINISTRATOR stay authenticated.
SEC_READ_AUTHENTICATION = OPTIONAL
SEC_READ_INTEGRITY = OPTIONAL
DENY_READ = unmapped@*
# Pilot SciTokens: audience is this CE, issuer/subject mapped to a local account by the mapfile.
SCITOKENS_SERVER_AUDIENCE = {ce_audience(spec)}
CERTIFICATE_MAPFILE = /etc/condor-ce/condor_mapfile
# As HTCondor-CE: exact keys are hashed, regexes are written between slashes.
CERTIFICATE_MAPFILE_ASSUME_HASH_KEYS = True
SCHEDD.ALLOW_WRITE = $(LOCAL_DAEMONS), {PILOT_ACCOUNT}@$(UID_DOMAIN)
SCHEDD.ALLOW_READ = *
QUEUE_SUPER_USERS = root, condor
""",
        "20-router.conf": f"""\
# Move accepted jobs into the site's batch pool (the local schedd on {D.POOL_PORT}), as HTCondor-CE does.
JOB_ROUTER_NAME = htcondor-ce
JOB_ROUTER_SCHEDD2_NAME = {fqdn}
JOB_ROUTER_SCHEDD2_POOL = {fqdn}:{D.POOL_PORT}
JOB_ROUTER_SCHEDD2_SPOOL = /var/spool/condor
JOB_ROUTER_SOURCE_JOB_CONSTRAINT = target.JobUniverse =?= 5
JOB_ROUTER_USE_DEPRECATED_ROUTER_ENTRIES = False
JOB_ROUTER_ROUTE_NAMES = Local_Condor
JOB_ROUTER_ROUTE_Local_Condor @=jrt
    TargetUniverse = 5
    MaxJobs = {D.CE["max_jobs"].default}
    MaxIdleJobs = {D.CE["max_idle_jobs"].default}
    # Pilots ask for cores and memory with xcount / maxMemory (MB), as HTCondor-CE reads them.
    EVALSET RequestCpus xcount ?: 1
    EVALSET RequestMemory maxMemory ?: 1024
    SET RoutedJob True
@jrt
""",
        "90-timing.conf": _timing(spec),
    }


def ce_mapfile(spec: WorkspaceSpec) -> str:
    issuer = issuer_url(spec).replace("/", r"\/").replace(".", r"\.")
    return f"""\
# HTCondor-CE style mapfile: SCITOKENS /<issuer>,<subject>/ <local account>
SCITOKENS /^{issuer},vofrontend_service$/ {PILOT_ACCOUNT}
"""
