"""How the Factory submits glideins: paths, parameters and the grid-universe submit description.

Pure functions (no HTCondor, no I/O) so the exact job a glidein becomes can be read and tested.  The
description follows upstream's ``job.condor`` (cgWCreate): ``universe = grid``, ``grid_resource =
condor <ce> <ce>:9619``, the glidein script as executable with upstream's argument list, the pilot
SciToken for the CE, the IDTOKEN transferred (encrypted) next to the glidein, HTCondor-CE's
``xcount``/``maxMemory``/``maxWallTime``, and upstream's ``Glidein*`` tags that the factory's own queue
queries and monitoring rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..protocol import glidein_args
from ..protocol.ads import ClientRequest
from .config import EntryConfig, FactoryConfig, ad_name
from .policy import Submission

EXECUTABLE_NAME = "glidein_startup.py"


@dataclass(frozen=True)
class StageRef:
    """One staging area as the glidein needs it: base URL, description file, sha256 root of trust."""

    url: str
    descript: str
    sign: str


@dataclass(frozen=True)
class ClientPaths:
    """Per (user, entry, client) directories, upstream's layout."""

    credentials: Path  # <base_client_proxies_dir>/user_<u>/glidein_<g>/
    logs: Path  # <base_client_log_dir>/user_<u>/glidein_<g>/entry_<e>/

    def scitoken(self, client: str, entry: str) -> Path:
        return self.credentials / f"credential_{client}_{entry}.scitoken"

    def idtoken(self, client: str, entry: str) -> Path:
        return self.credentials / f"credential_{client}_{entry}.idtoken"


def client_paths(config: FactoryConfig, username: str, entry: EntryConfig) -> ClientPaths:
    glidein = f"glidein_{config.glidein_name}"
    return ClientPaths(
        credentials=Path(config.submit.base_client_proxies_dir) / f"user_{username}" / glidein,
        logs=Path(config.submit.base_client_log_dir) / f"user_{username}" / glidein / f"entry_{entry.name}",
    )


def glidein_params(entry: EntryConfig, client_params: Mapping[str, Any]) -> dict[str, str]:
    """The glidein's ``-param_*``: the entry's overridable parameters, then the frontend's (which win)."""
    params = {k: str(v) for k, v in entry.params().items()}
    params.update({k: str(v) for k, v in client_params.items()})
    return params


def submit_description(
    *,
    config: FactoryConfig,
    entry: EntryConfig,
    request: ClientRequest,
    submission: Submission,
    main_stage: StageRef,
    entry_stage: StageRef,
    executable: Path,
    paths: ClientPaths,
    schedd_name: str,
    scitoken_file: Path | None,
    idtoken_file: Path | None,
    now: float,
) -> dict[str, str]:
    web = request.web
    client = request.client_name
    args = glidein_args.build_glidein_arguments(
        verbosity=entry.verbosity if entry.verbosity in glidein_args.VERBOSITIES else "std",
        glidein_name=config.glidein_name,
        entry_name=entry.name,
        client_name=client,
        schedd=schedd_name,
        factory_name=config.factory_name,
        web=main_stage.url,
        sign=main_stage.sign,
        sign_entry=entry_stage.sign,
        descript=main_stage.descript,
        descript_entry=entry_stage.descript,
        submit_cred_id=submission.credential_id,
        slots_layout=entry.submit.slots_layout,
        client_web=str(web.get("URL", "")),
        client_sign=str(web.get("DescriptSign", "")),
        client_descript=str(web.get("DescriptFile", "")),
        client_group=request.group_name,
        client_web_group=str(web.get("GroupURL", "")),
        client_sign_group=str(web.get("GroupDescriptSign", "")),
        client_descript_group=str(web.get("GroupDescriptFile", "")),
        params=glidein_params(entry, request.params),
    )
    attrs = {a: entry.attrs[a].value for a in entry.attrs}
    walltime = int(attrs.get("GLIDEIN_Max_Walltime", 0) or 0)
    stamp = _date(now)
    desc = {
        "universe": "grid",
        "grid_resource": entry.grid_resource,
        "executable": str(executable),
        "transfer_executable": "True",
        "arguments": " ".join(args),
        "output": str(paths.logs / "job.$(Cluster).$(Process).out"),
        "error": str(paths.logs / "job.$(Cluster).$(Process).err"),
        "log": str(paths.logs / f"condor_activity_{stamp}_{client}.log"),
        "notification": "Never",
        "when_to_transfer_output": "ON_EXIT",
        # HTCondor-CE reads the pilot's size from these (and its JobRouter turns them into requests)
        "+xcount": str(entry.expected_cores()),
        "+maxMemory": str(int(attrs.get("GLIDEIN_MaxMemMBs", 0) or 0) or 1024),
        # upstream's tags: the factory finds its glideins, and monitoring splits them, by these
        "+GlideinFactory": _q(config.factory_name),
        "+GlideinName": _q(config.glidein_name),
        "+GlideinEntryName": _q(entry.name),
        "+GlideinEntrySubmitFile": _q(ad_name(entry)),
        "+GlideinClient": _q(client),
        "+GlideinFrontendName": _q(submission.frontend_name),
        "+GlideinCredentialIdentifier": _q(submission.credential_id),
        "+GlideinSecurityClass": _q(request.security_class),
        "+GlideinWebBase": _q(main_stage.url),
        "+GlideinWorkDir": _q(entry.work_dir),
        "+GlideinSlotsLayout": _q(entry.submit.slots_layout),
        "+GlideinMaxWalltime": str(walltime),
        "+fename": _q(request.frontend_name),
    }
    if walltime:
        desc["+maxWallTime"] = str(max(1, walltime // 60))  # minutes, as HTCondor-CE expects
        # upstream: a glidein running far past its walltime is stuck; remove it
        desc["periodic_remove"] = f"(JobStatus == 2) && (time() - EnteredCurrentStatus > {walltime + 12 * 3600})"
    if submission.idle_lifetime > 0:
        idle = f"(JobStatus == 1) && (time() - EnteredCurrentStatus > {submission.idle_lifetime})"
        desc["periodic_remove"] = f"({desc['periodic_remove']}) || ({idle})" if "periodic_remove" in desc else idle
    if scitoken_file is not None:
        desc["scitokens_file"] = str(scitoken_file)
    if idtoken_file is not None:
        desc["transfer_input_files"] = str(idtoken_file)
        desc["encrypt_input_files"] = str(idtoken_file)
    return desc


def _q(value: str) -> str:
    """A ClassAd string literal for a ``+Attr`` submit line."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _date(now: float) -> str:
    import time

    return time.strftime("%Y%m%d", time.gmtime(now))
