#!/usr/bin/env python3
"""The glidein: the pilot job the factory submits, which turns a batch slot into a startd of the user pool.

Runs on a worker node as ``python3 startup.py <arguments>`` (the arguments of
``glideinlab.protocol.glidein_args``) with only the standard library and HTCondor's binaries in PATH, so
this file imports nothing from glideinlab and repeats the few facts it shares with it (argument decoding,
stage formats, defaults); unit tests keep the copies equal.  What it does, as upstream's
``glidein_startup.sh`` + ``condor_startup.sh``:

1. Parse the arguments; make a work dir ``glide_XXXXXXXX`` under ``-dir`` (``Condor`` = the job's scratch
   dir, the default; ``.``, ``TMPDIR``, ``OSG``, ``AUTO`` or an absolute path); copy the ``*.idtoken`` that
   HTCondor transferred next to this file into ``cred.d/idtokens`` (mode 0600).
2. Download and verify the four signed stages (formats: ``glideinlab.glidein.stage``) in the order main,
   entry, client, client_group: description, the signature it names (its sha256 must equal ``-sign`` and
   friends), the description's own entry in it, then every signed file.  Files are saved under their
   logical names in ``main/``, ``entry_<entry>/``, ``client/`` and ``client_group_<group>/``.
3. Write ``glidein_config`` (``KEY VALUE`` lines): the identity keys (GLIDEIN_UUID, GLIDEIN_Factory,
   GLIDEIN_Name, GLIDEIN_Entry_Name, GLIDECLIENT_Name, GLIDECLIENT_Group, GLIDEIN_CredentialIdentifier,
   CONDORG_CLUSTER, CONDORG_SUBCLUSTER, CONDORG_SCHEDD, GLIDEIN_WORK_DIR, SLOTS_LAYOUT), which nothing may
   override, then the constants of main < entry < client < client_group, then every ``-param_*``.
4. Run the ``exec`` files of the file lists, stage by stage in the same order (the order of upstream's
   regular file lists), each as ``<file> <glidein_config>`` in the work dir; scripts may append lines to
   glidein_config (the last value of a key wins).  A non-zero exit is a validation failure.
5. On a validation failure: print the results, advertise a master ad with ``GLIDEIN_Failed = True`` to
   the user collector (best effort), sleep GLIDEIN_Failed_Wait (so a broken node does not eat pilots;
   any signal ends the sleep), exit 1.
6. Otherwise write ``condor_config`` (one partitionable slot of GLIDEIN_CPUS cores and GLIDEIN_MaxMemMBs
   MB, or GLIDEIN_CPUS static slots with ``-slotslayout fixed``; IDTOKENS to the user collector, claim
   sessions for the schedd, the lifetime of upstream's §4.3) and run ``condor_master -f`` with
   CONDOR_CONFIG pointing at it.  The glidein exits when no job claims it for GLIDEIN_Max_Idle s, or — once a
   job ran — when no job has run for GLIDEIN_Max_Tail s (both watched by the glidein itself, see
   ``_supervise``: HTCondor's STARTD_NOCLAIM_SHUTDOWN did not stop a partitionable-slot startd, and the
   startd publishes nothing that measures the tail), or at GLIDEIN_ToDie (STARTD.DAEMON_SHUTDOWN).
7. SIGTERM and SIGHUP are forwarded to condor_master as SIGTERM (graceful: jobs get
   GLIDEIN_Graceful_Shutdown s; SIGHUP would mean "reconfig" to HTCondor), SIGINT and SIGQUIT as SIGQUIT
   (fast); a second signal, or a master still alive past its deadline, gets SIGQUIT and then SIGKILL.
   At the end the glidein prints one JSON object between ``=== glidein exit report ===`` and
   ``=== end of report ===`` on stdout, and the tails of its HTCondor logs on stderr.

Exit codes: 0 ran normally (even with no job), 1 validation failure, 2 bad arguments, 3 HTCondor failed,
4 interrupted by a signal before HTCondor started.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Same values as glideinlab.defaults.glidein.GLIDEIN (a unit test keeps them equal).
DEFAULTS: dict[str, Any] = {
    "GLIDEIN_Max_Idle": 1200,
    "GLIDEIN_Max_Tail": 400,
    "GLIDEIN_Job_Max_Time": 129600,
    "GLIDEIN_Retire_Time": 21600,
    "GLIDEIN_Retire_Time_Spread": 10,
    "GLIDEIN_Min_Retire_Time": 600,
    "GLIDEIN_Max_Walltime": 0,
    "GLIDEIN_Graceful_Shutdown": 120,
    "GLIDEIN_CPUS": 1,
    "GLIDEIN_MaxMemMBs": 2048,
    "GLIDEIN_MinDiskMBs": 100,
    "GLIDEIN_Failed_Wait": 1199,
    "GLIDEIN_Failed_Wait_Fast": 150,
    "UPDATE_INTERVAL": 370,
    "MASTER_UPDATE_INTERVAL": 300,
    "CLAIM_WORKLIFE": 3600,
    "GLIDEIN_Start": "True",
    "GLIDEIN_Entry_Start": "True",
    "GLIDECLIENT_Start": "True",
    "GLIDECLIENT_Group_Start": "True",
    "GLIDEIN_TrustDomain": "",
    "USE_CCB": False,
    "GLIDEIN_Download_Timeout": 30,
    "GLIDEIN_Download_Retries": 3,
    "GLIDEIN_Script_Timeout": 600,
    "GLIDEIN_Poll_Interval": 5,
    "GLIDEIN_Kill_Margin": 60,
    "GLIDEIN_Log_Tail_Lines": 200,
}
#: settings that must be at least 1
POSITIVE_SETTINGS = frozenset({"GLIDEIN_CPUS", "GLIDEIN_MaxMemMBs", "UPDATE_INTERVAL", "MASTER_UPDATE_INTERVAL",
                               "GLIDEIN_Download_Timeout", "GLIDEIN_Download_Retries", "GLIDEIN_Poll_Interval"})
#: ClassAd expressions AND'ed into START (published as expressions, not as strings)
START_EXPRESSIONS = ("GLIDEIN_Start", "GLIDEIN_Entry_Start", "GLIDECLIENT_Start", "GLIDECLIENT_Group_Start")
#: HTCondor knobs a constant or param of the same name is copied to verbatim
CONDOR_PASSTHROUGH = ("STARTER_UPDATE_INTERVAL", "ALIVE_INTERVAL", "ALL_DEBUG", "MASTER_DEBUG", "STARTD_DEBUG",
                      "STARTER_DEBUG", "ENABLE_IPV6", "NETWORK_INTERFACE")
#: glidein_config keys published in the startd and master ads (besides the identity and lifetime ones)
PUBLISHED_PREFIXES = ("GLIDEIN_", "GLIDECLIENT_")
#: the frontend must override the factory's placeholder collector
FAKE_COLLECTOR = "Fake"

EXIT_OK, EXIT_VALIDATION, EXIT_USAGE, EXIT_CONDOR, EXIT_INTERRUPTED = 0, 1, 2, 3, 4
#: condor_master exits 99 after a DAEMON_SHUTDOWN, like 0 a normal end
NORMAL_MASTER_EXITS = (0, 99)
REPORT_BEGIN = "=== glidein exit report ==="
REPORT_END = "=== end of report ==="
#: logged by the startd once per claim activation (one per job start); upstream counts the same line
JOB_ACTIVATION_LINE = "Got activate_claim request from shadow"
_REMOTE_JOB_ID = re.compile(r"Remote job ID is (\d+\.\d+)")
WORK_DIR_CHOICES = (".", "Condor", "OSG", "TMPDIR", "AUTO")
#: signal received -> signal sent to condor_master the first time
FORWARDED_SIGNALS = {signal.SIGTERM: signal.SIGTERM, signal.SIGHUP: signal.SIGTERM,
                     signal.SIGINT: signal.SIGQUIT, signal.SIGQUIT: signal.SIGQUIT}
LAYOUT_KNOBS = ("RELEASE_DIR", "BIN", "SBIN", "LIB", "LIBEXEC")
LOG_FILES = ("MasterLog", "StartdLog", "StarterLog")


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} glidein: {message}", flush=True)


class ArgumentError(ValueError):
    """A command line the glidein cannot use; ``str(err)`` is one line."""


class ValidationFailure(Exception):
    """The node or the stages are not fit to run jobs; ``reason`` is one line."""

    def __init__(self, reason: str, last_script: str):
        super().__init__(reason)
        self.reason = reason
        self.last_script = last_script


class Interrupted(Exception):
    """A signal arrived before HTCondor started (raised by the main flow, never by the handler)."""


# --------------------------------------------------------------------------------------------------------
# Command line: the format of glideinlab.protocol.glidein_args (copied; a test checks they agree)

_ESCAPES = {
    ".": "dot", ",": "comma", "&": "amp", "\\": "backslash", "|": "pipe", "`": "fork", '"': "quot",
    "'": "singquot", "=": "eq", "+": "plus", "-": "minus", "<": "lt", ">": "gt", "(": "open", ")": "close",
    "{": "gopen", "}": "gclose", "[": "sopen", "]": "sclose", "#": "comment", "$": "dollar", "*": "star",
    "?": "question", "!": "not", "~": "tilde", ":": "colon", ";": "semicolon", " ": "nbsp",
}
_UNESCAPES = {token: char for char, token in _ESCAPES.items()}
_TOKEN = re.compile(r"\.([a-z0-9]+),")
_CODEPOINT_TOKEN = re.compile(r"u([0-9a-f]{1,6})")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[A-Za-z0-9._@:/%+=,~-]+")
_NUMBER_OR_MACRO = re.compile(r"\d+|\$\((Cluster|Process)\)")
SIGN_TYPE = "sha256"
VERBOSITIES = ("std", "nodebug", "fast", "check")
SLOTS_LAYOUTS = ("fixed", "partitionable")
_OPTIONS = {
    "-v": "verbosity", "-name": "glidein_name", "-entry": "entry_name", "-clientname": "client_name",
    "-schedd": "schedd", "-factory": "factory_name", "-web": "web", "-sign": "sign", "-signentry": "sign_entry",
    "-signtype": None, "-descript": "descript", "-descriptentry": "descript_entry",
    "-submitcredid": "submit_cred_id", "-slotslayout": "slots_layout", "-clientweb": "client_web",
    "-clientsign": "client_sign", "-clientsigntype": None, "-clientdescript": "client_descript",
    "-clientgroup": "client_group", "-clientwebgroup": "client_web_group",
    "-clientsigngroup": "client_sign_group", "-clientdescriptgroup": "client_descript_group",
    "-cluster": "cluster", "-subcluster": "subcluster",
}
#: upstream's -dir, optional (absent = Condor); glidein_args does not emit it
WORK_DIR_OPTION = "-dir"


def unescape_param(value: str) -> str:
    """Decode a ``-param_`` value (upstream's ``.<token>,`` escapes plus ``.u<hex>,``)."""
    out = []
    pos = 0
    while pos < len(value):
        dot = value.find(".", pos)
        if dot < 0:
            out.append(value[pos:])
            break
        out.append(value[pos:dot])
        match = _TOKEN.match(value, dot)
        if match is None:
            raise ArgumentError(f"bad escape at offset {dot} of {value!r}")
        token = match.group(1)
        codepoint = _CODEPOINT_TOKEN.fullmatch(token)
        if token in _UNESCAPES:
            out.append(_UNESCAPES[token])
        elif codepoint and int(codepoint.group(1), 16) <= 0x10FFFF:
            out.append(chr(int(codepoint.group(1), 16)))
        else:
            raise ArgumentError(f"unknown escape .{token}, in {value!r}")
        pos = match.end()
    return "".join(out)


def _checked(keyword: str, value: str) -> str:
    if keyword in ("cluster", "subcluster"):
        ok = _NUMBER_OR_MACRO.fullmatch(value) is not None
    elif keyword == "verbosity":
        ok = value in VERBOSITIES
    elif keyword == "slots_layout":
        ok = value in SLOTS_LAYOUTS
    else:
        ok = _WORD.fullmatch(value) is not None
    if not ok:
        raise ArgumentError(f"{keyword} {value!r} is not a valid value")
    return value


def parse_arguments(argv: Sequence[str]) -> dict[str, Any]:
    """The keyword dict of ``glidein_args.build_glidein_arguments``, plus ``work_dir`` if ``-dir`` is given."""
    if len(argv) % 2:
        raise ArgumentError(f"option {argv[-1]!r} has no value")
    parsed: dict[str, Any] = {}
    params: dict[str, str] = {}
    seen: set[str] = set()
    for option, value in zip(argv[::2], argv[1::2]):
        if option.startswith("-param_"):
            name = option[len("-param_"):]
            if not _PARAM_NAME.fullmatch(name) or name in params:
                raise ArgumentError(f"bad or repeated parameter option {option!r}")
            params[name] = unescape_param(value)
            continue
        if option not in _OPTIONS and option != WORK_DIR_OPTION:
            raise ArgumentError(f"unknown option {option!r}")
        if option in seen:
            raise ArgumentError(f"option {option} given twice")
        seen.add(option)
        if option == WORK_DIR_OPTION:
            if value not in WORK_DIR_CHOICES and not (value.startswith("/") and _WORD.fullmatch(value)):
                raise ArgumentError(f"-dir {value!r} is not one of {', '.join(WORK_DIR_CHOICES)} or an absolute path")
            parsed["work_dir"] = value
        elif _OPTIONS[option] is None:
            if value != SIGN_TYPE:
                raise ArgumentError(f"{option} {value!r}: only {SIGN_TYPE} signatures are supported")
        else:
            parsed[_OPTIONS[option]] = _checked(_OPTIONS[option], value)
    missing = [option for option in _OPTIONS if option not in seen]
    if missing:
        raise ArgumentError(f"missing options: {' '.join(missing)}")
    parsed["params"] = params
    return parsed


def choose_work_base(choice: str | None, environ: Mapping[str, str], cwd: Path) -> Path:
    """Where ``glide_*`` goes, for upstream's ``-dir`` values (absent = ``Condor``)."""
    scratch = environ.get("_CONDOR_SCRATCH_DIR")
    if choice in (None, "Condor"):
        return Path(scratch) if scratch else cwd
    if choice == ".":
        return cwd
    if choice == "TMPDIR":
        return Path(environ.get("TMPDIR") or "/tmp")
    if choice == "OSG":
        return Path(environ.get("OSG_WN_TMP") or cwd)
    if choice == "AUTO":
        for candidate in (scratch, environ.get("OSG_WN_TMP"), environ.get("TMPDIR")):
            if candidate:
                return Path(candidate)
        return cwd
    return Path(choice)


# --------------------------------------------------------------------------------------------------------
# Stages: download and verify (formats documented in glideinlab.glidein.stage)

@dataclass(frozen=True)
class StageLocation:
    """Where one stage lives and what its trust root is."""

    name: str  # main, entry, client, client_group
    url: str
    descript: str
    sign: str
    local_dir: str  # under the work dir


@dataclass
class StageContent:
    """A verified stage: every signed file by logical name, the parsed file list and constants."""

    location: StageLocation
    files: dict[str, bytes]
    file_list: list[tuple[str, str]]
    constants: dict[str, str]
    warnings: list[str] = field(default_factory=list)


class DownloadError(Exception):
    """A staged file could not be fetched after the allowed retries."""


def stage_locations(args: Mapping[str, Any]) -> list[StageLocation]:
    """The four stages of a glidein, in download and run order: main, entry, client, client_group."""
    entry, group = args["entry_name"], args["client_group"]
    return [
        StageLocation("main", args["web"], args["descript"], args["sign"], "main"),
        StageLocation("entry", f"{args['web'].rstrip('/')}/entry_{entry}", args["descript_entry"],
                      args["sign_entry"], _one_path_component(f"entry_{entry}")),
        StageLocation("client", args["client_web"], args["client_descript"], args["client_sign"], "client"),
        StageLocation("client_group", args["client_web_group"], args["client_descript_group"],
                      args["client_sign_group"], _one_path_component(f"client_group_{group}")),
    ]


def _one_path_component(name: str) -> str:
    # entry and group names may hold '/' or '..' (any command-line word): keep the stage dir in the work dir
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name).replace("..", "__")


def staged_name(logical: str, digest: str) -> str:
    """``name.ext`` -> ``name.<digest[:16]>.ext`` (the same rule as ``stage.staged_name``)."""
    stem, dot, ext = logical.rpartition(".")
    tag = digest[:16]
    return f"{stem}.{tag}.{ext}" if dot and stem else f"{logical}.{tag}"


_LOGICAL_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.+-]*[A-Za-z0-9_+-])?")


def logical_name(staged: str, digest: str) -> str | None:
    """Invert :func:`staged_name` for a file whose sha256 is ``digest``; None if the name does not fit
    (or is no safe file name)."""
    stem, tag, ext = staged.rpartition("." + digest[:16])
    logical = stem + ext
    if not tag or not _LOGICAL_NAME.fullmatch(logical):
        return None
    return logical if staged_name(logical, digest) == staged else None


def parse_key_values(text: str) -> tuple[dict[str, str], list[str]]:
    """``KEY VALUE`` lines (value = rest of the line) -> dict (last wins), and the lines skipped as bad."""
    values: dict[str, str] = {}
    bad: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if not _PARAM_NAME.fullmatch(key):
            bad.append(line)
            continue
        values.pop(key, None)  # keep the order of last definition
        values[key] = value
    return values, bad


def format_key_values(values: Mapping[str, str]) -> str:
    # "KEY " even for empty values: `cut -d' ' -f2-` then yields "" instead of the whole line
    return "".join(f"{key} {value}\n" for key, value in values.items())


def _mismatch(name: str, url: str) -> ValidationFailure:
    return ValidationFailure(f"signature mismatch for {name} from {url}", "")


def verify_stage(fetch: Callable[[str], bytes], location: StageLocation) -> StageContent:
    """Download a stage through ``fetch(staged name) -> bytes`` and check its whole trust chain.

    Raises :class:`ValidationFailure` ("signature mismatch for <file> from <url>", or why the stage
    is unusable) and lets :class:`DownloadError` through.
    """
    url = location.url
    description = fetch(location.descript)
    try:
        described = dict(line.split(" ", 1) for line in description.decode().splitlines() if line.strip())
    except (UnicodeDecodeError, ValueError):
        raise _mismatch(location.descript, url) from None
    signature_name = described.get("signature")
    if not signature_name:
        raise ValidationFailure(f"{location.descript} from {url} names no signature file", "")
    signature = fetch(signature_name)
    if hashlib.sha256(signature).hexdigest() != location.sign:
        raise _mismatch(signature_name, url)
    signed: dict[str, str] = {}
    for line in signature.decode(errors="replace").splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest) or not name or "/" in name:
            raise ValidationFailure(f"malformed line in {signature_name} from {url}: {line!r}", "")
        signed[name] = digest
    if signed.get(location.descript) != hashlib.sha256(description).hexdigest():
        raise _mismatch(location.descript, url)

    files: dict[str, bytes] = {}
    staged_of: dict[str, str] = {}
    for name, digest in signed.items():
        if name == location.descript:
            continue
        logical = logical_name(name, digest)
        if logical is None:
            raise ValidationFailure(f"{name} from {url} is not named after its content", "")
        content = fetch(name)
        if hashlib.sha256(content).hexdigest() != digest:
            raise _mismatch(name, url)
        files[logical] = content
        staged_of[name] = logical

    def described_file(kind: str) -> str:
        name = described.get(kind)
        if name not in staged_of:
            raise ValidationFailure(f"{kind} {name} of {location.descript} from {url} is not signed", "")
        return staged_of[name]

    warnings: list[str] = []
    file_list: list[tuple[str, str]] = []
    for line in files[described_file("file_list")].decode(errors="replace").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, kind = line.partition(" ")
        if name not in files:
            raise ValidationFailure(f"file_list of {url} names {name}, which is not signed", "")
        if kind not in ("regular", "exec"):
            warnings.append(f"{location.name} stage: {name} has unknown type {kind!r}; treated as regular")
            kind = "regular"
        file_list.append((name, kind))
    constants, bad = parse_key_values(files[described_file("consts_file")].decode(errors="replace"))
    warnings += [f"{location.name} stage: bad constant line skipped: {line!r}" for line in bad]
    return StageContent(location, files, file_list, constants, warnings)


def http_fetcher(base_url: str, *, timeout: float, attempts: int, user_agent: str,
                 backoff: float = 1.0) -> Callable[[str], bytes]:
    """``fetch(name)`` for the files of the stage at ``base_url``, with bounded retries."""

    def fetch(name: str) -> bytes:
        url = f"{base_url.rstrip('/')}/{urllib.parse.quote(name)}"
        reason = "no attempt"
        for attempt in range(max(1, attempts)):
            if attempt:
                time.sleep(backoff * attempt)
            try:
                request = urllib.request.Request(url, headers={"User-Agent": user_agent})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                reason = f"HTTP {exc.code} {exc.reason}"
            except (urllib.error.URLError, OSError) as exc:
                reason = str(getattr(exc, "reason", exc))
        raise DownloadError(f"cannot download {url}: {reason}")

    return fetch


# --------------------------------------------------------------------------------------------------------
# glidein_config and the settings derived from it

def build_glidein_config(identity: Mapping[str, str], constants: Sequence[tuple[str, Mapping[str, str]]],
                         params: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Identity keys, then each stage's constants in order, then params; identity keys cannot be overridden
    and values must be one line."""
    config = dict(identity)
    protected = {key.lower() for key in identity}
    warnings: list[str] = []
    for source, values in [*constants, ("params", params)]:
        for key, value in values.items():
            if key.lower() in protected:
                warnings.append(f"{source} may not set {key}; ignored")
            elif not _PARAM_NAME.fullmatch(key) or "\n" in value or "\r" in value:
                warnings.append(f"{source}: bad entry {key}={value!r} skipped")
            else:
                config.pop(key, None)
                config[key] = value
    return config, warnings


def effective_settings(config: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """:data:`DEFAULTS` overridden by glidein_config values of the same name, typed like the default."""
    settings = dict(DEFAULTS)
    warnings: list[str] = []
    for name, default in DEFAULTS.items():
        if name not in config:
            continue
        raw = config[name].strip()
        if isinstance(default, bool):
            value: Any = {"true": True, "false": False}.get(raw.lower())
        elif isinstance(default, int):
            value = int(raw) if re.fullmatch(r"\d+", raw) else None
            if value is not None and name in POSITIVE_SETTINGS and value < 1:
                value = None
        else:
            value = raw
        if value is None:
            warnings.append(f"{name} {raw!r} is not valid; using {default!r}")
        else:
            settings[name] = value
    return settings, warnings


def failed_wait_seconds(settings: Mapping[str, Any], config: Mapping[str, str], verbosity: str) -> int:
    """GLIDEIN_Failed_Wait if given, else the -v fast/check wait, else the default."""
    if "GLIDEIN_Failed_Wait" not in config and verbosity in ("fast", "check"):
        return settings["GLIDEIN_Failed_Wait_Fast"]
    return settings["GLIDEIN_Failed_Wait"]


@dataclass(frozen=True)
class Lifetime:
    """Upstream's §4.3 lifetime: seconds from start to retirement/death and the absolute times."""

    retire_seconds: int
    die_seconds: int
    job_max_time: int
    spread_seconds: int
    to_retire: int
    to_die: int


def compute_lifetime(settings: Mapping[str, Any], now: int, spread_fraction: float) -> Lifetime:
    """Retire/die times; ``spread_fraction`` in [0, 1) is the random part of the spread.

    With GLIDEIN_Max_Walltime: die = walltime - UPDATE_INTERVAL - Graceful_Shutdown and retire =
    die - Job_Max_Time, Job_Max_Time lowered to keep GLIDEIN_Min_Retire_Time of retire; else retire =
    Retire_Time and die = retire + Job_Max_Time.  Both move earlier by a random share of
    Retire_Time_Spread % of retire, never below the minimum.  Raises ValidationFailure when even the
    unspread retire is below the minimum.
    """
    minimum = settings["GLIDEIN_Min_Retire_Time"]
    job_max = settings["GLIDEIN_Job_Max_Time"]
    walltime = settings["GLIDEIN_Max_Walltime"]
    if walltime > 0:
        die = walltime - settings["UPDATE_INTERVAL"] - settings["GLIDEIN_Graceful_Shutdown"]
        job_max = min(job_max, max(die - minimum, 0))
        retire = die - job_max
    else:
        retire = settings["GLIDEIN_Retire_Time"]
        die = retire + job_max
    if retire < minimum:
        raise ValidationFailure(f"the glidein would retire after {retire} s, less than GLIDEIN_Min_Retire_Time "
                                f"{minimum} s (GLIDEIN_Max_Walltime {walltime} s)", "lifetime")
    spread = int(spread_fraction * retire * settings["GLIDEIN_Retire_Time_Spread"] / 100)
    spread = min(spread, retire - minimum)
    retire, die = retire - spread, die - spread
    return Lifetime(retire, die, job_max, spread, now + retire, now + die)


_PORT_RANGE = re.compile(r"(?P<host>\[[^\]]+\]|[^:?\[]+):(?P<low>\d+)-(?P<high>\d+)(?P<rest>\?.*)?")
_SOCK_RANGE = re.compile(r"sock=(?P<name>[A-Za-z_]+)(?P<low>\d+)-(?P<high>\d+)")


def pick_collectors(value: str, rng: random.Random) -> list[str]:
    """Upstream's collector_setup: ``;``-separated groups of ``,``-separated collectors; one random element
    per group, with a port range ``host:A-B`` or a ``sock=nameA-B`` range resolved to one random member."""
    chosen = []
    for group in value.split(";"):
        elements = [element.strip() for element in group.split(",") if element.strip()]
        if not elements:
            continue
        element = rng.choice(elements)
        ports = _PORT_RANGE.fullmatch(element)
        if ports:
            port = rng.randint(int(ports["low"]), int(ports["high"]))
            element = f"{ports['host']}:{port}{ports['rest'] or ''}"
        socks = _SOCK_RANGE.search(element)
        if socks:
            number = rng.randint(int(socks["low"]), int(socks["high"]))
            element = element[:socks.start()] + f"sock={socks['name']}{number}" + element[socks.end():]
        chosen.append(element)
    if not chosen or chosen == [FAKE_COLLECTOR]:
        raise ValidationFailure(f"GLIDEIN_Collector {value!r} names no collector (the frontend must pass it)",
                                "collector_setup")
    return chosen


def collector_host(collector: str) -> str:
    """``host[:port][?sock=...]`` -> ``host`` (brackets kept off an IPv6 literal)."""
    address = collector.split("?", 1)[0]
    if address.startswith("["):
        return address[1:address.find("]")]
    return address.split(":", 1)[0]


# --------------------------------------------------------------------------------------------------------
# HTCondor configuration

def classad_literal(value: str) -> str:
    """A glidein_config value as a ClassAd literal for a config file: ints, reals and booleans bare,
    everything else a quoted string.  ``$`` becomes the ClassAd octal escape ``\\044``: HTCondor's config
    reader then sees no macro to expand (``$(DOLLAR)`` would turn ``$$`` into a match-time reference)."""
    if re.fullmatch(r"-?\d{1,18}", value):
        return str(int(value))
    if re.fullmatch(r"-?\d+\.\d+([eE][-+]?\d+)?", value):
        return value
    if value.lower() in ("true", "false"):
        return value.capitalize()
    quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\044")
    return f'"{quoted}"'


def _config_value_ok(value: str) -> bool:
    # one line, no continuation backslash
    return bool(value.strip()) and "\n" not in value and not value.rstrip().endswith("\\")


def published_attributes(config: Mapping[str, str], settings: Mapping[str, Any], lifetime: Lifetime,
                         collectors: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Attribute name -> config-file value for STARTD_ATTRS/MASTER_ATTRS: every GLIDEIN_*/GLIDECLIENT_*
    key of glidein_config, the identity attributes the frontend counts, the lifetime and the START clauses.
    Computed attributes win over glidein_config keys of the same (case-insensitive) name."""
    published: dict[str, str] = {}
    warnings: list[str] = []
    for key, value in config.items():
        if key.startswith(PUBLISHED_PREFIXES) and key not in START_EXPRESSIONS:
            published[key] = classad_literal(value)
    computed = {
        "GLIDEIN_Schedd": classad_literal(config["CONDORG_SCHEDD"]),
        "GLIDEIN_ClusterId": classad_literal(config["CONDORG_CLUSTER"]),
        "GLIDEIN_ProcId": classad_literal(config["CONDORG_SUBCLUSTER"]),
        "GLIDEIN_ToRetire": str(lifetime.to_retire),
        "GLIDEIN_ToDie": str(lifetime.to_die),
        "GLIDEIN_MASTER_NAME": '"$(MASTER_NAME)@$(FULL_HOSTNAME)"',
        "GLIDEIN_COLLECTOR_NAME": classad_literal(", ".join(collectors)),
    }
    for name in START_EXPRESSIONS:
        expression = str(settings[name])
        if not _config_value_ok(expression):
            raise ValidationFailure(f"{name} {expression!r} is not a one-line ClassAd expression", "condor_config")
        computed[name] = expression
    lowered = {name.lower() for name in computed}
    published = {name: value for name, value in published.items() if name.lower() not in lowered}
    published.update(computed)
    for required in ("GLIDEIN_Site", "GLIDECLIENT_ReqNode"):
        if required not in published:
            warnings.append(f"{required} is not set by any stage or param; not published")
    return published, warnings


@dataclass(frozen=True)
class CondorSetup:
    """Everything ``condor_config`` is rendered from."""

    local_dir: str
    token_dir: str
    password_dir: str
    system_token_dir: str
    account: str
    collectors: tuple[str, ...]
    trust_domain: str
    master_name: str
    slots_layout: str
    settings: Mapping[str, Any]
    published: Mapping[str, str]
    passthrough: Mapping[str, str]
    layout: Mapping[str, str]


def _security_lines(setup: CondorSetup, methods: str) -> list[str]:
    return [
        "# Security: IDTOKENS to the user pool, FS locally, claim sessions for the schedd; nothing else.",
        f"TRUST_DOMAIN = {setup.trust_domain}",
        "SEC_DEFAULT_AUTHENTICATION = REQUIRED",
        "SEC_CLIENT_AUTHENTICATION = REQUIRED",
        "SEC_DEFAULT_INTEGRITY = REQUIRED",
        "SEC_CLIENT_INTEGRITY = REQUIRED",
        "# claim ids travel to the collector in the private ad: always encrypt",
        "SEC_DEFAULT_ENCRYPTION = REQUIRED",
        "SEC_CLIENT_ENCRYPTION = REQUIRED",
        f"SEC_DEFAULT_AUTHENTICATION_METHODS = {methods}",
        f"SEC_CLIENT_AUTHENTICATION_METHODS = {methods}",
        f"SEC_TOKEN_DIRECTORY = {setup.token_dir}",
        f"SEC_TOKEN_SYSTEM_DIRECTORY = {setup.system_token_dir}",
        f"SEC_PASSWORD_DIRECTORY = {setup.password_dir}",
        "SEC_TOKEN_POOL_SIGNING_KEY_FILE = $(SEC_PASSWORD_DIRECTORY)/POOL",
    ]


def _layout_lines(setup: CondorSetup) -> list[str]:
    lines = ["# Nothing but this file is read: no local config, no system config.d",
             "LOCAL_CONFIG_FILE =", "LOCAL_CONFIG_DIR =", "REQUIRE_LOCAL_CONFIG_FILE = False"]
    lines += [f"{name} = {setup.layout[name]}" for name in LAYOUT_KNOBS if name in setup.layout]
    lines += [
        f"LOCAL_DIR = {setup.local_dir}",
        "LOG = $(LOCAL_DIR)/log",
        "SPOOL = $(LOCAL_DIR)/spool",
        "EXECUTE = $(LOCAL_DIR)/execute",
        "LOCK = $(LOCAL_DIR)/lock",
        "RUN = $(LOCAL_DIR)/run",
        "MASTER_LOG = $(LOG)/MasterLog",
        "STARTD_LOG = $(LOG)/StartdLog",
        "STARTER_LOG = $(LOG)/StarterLog",
    ]
    return lines


def render_condor_config(setup: CondorSetup) -> str:
    """The glidein's whole HTCondor configuration (CONDOR_CONFIG)."""
    s = setup.settings
    cpus, memory = s["GLIDEIN_CPUS"], s["GLIDEIN_MaxMemMBs"]
    if setup.slots_layout == "partitionable":
        slots = ["NUM_SLOTS = 1", "NUM_SLOTS_TYPE_1 = 1", "SLOT_TYPE_1 = 100%", "SLOT_TYPE_1_PARTITIONABLE = True"]
    else:
        slots = [f"NUM_SLOTS_TYPE_1 = {cpus}", f"SLOT_TYPE_1 = cpus=1, ram={max(memory // cpus, 1)}",
                 "SLOT_TYPE_1_PARTITIONABLE = False"]
    noclaim = s["GLIDEIN_Max_Idle"]
    attrs = ["IS_GLIDEIN", *setup.published]
    lines = [
        f"# glidein {setup.master_name}: written by startup.py; CONDOR_CONFIG points here.",
        *_layout_lines(setup),
        "UID_DOMAIN = $(FULL_HOSTNAME)",
        "FILESYSTEM_DOMAIN = $(FULL_HOSTNAME)",
        "MAIL = /bin/true",
        "CONDOR_ADMIN =",
        "DISCARD_SESSION_KEYRING_ON_STARTUP = False",
        "# binaries do not change under a glidein; never restart daemons for that",
        "MASTER_CHECK_NEW_EXEC_INTERVAL = 3600000",
        "",
        "# The user pool",
        f"CONDOR_HOST = {collector_host(setup.collectors[0])}",
        f"COLLECTOR_HOST = {', '.join(setup.collectors)}",
        "DAEMON_LIST = MASTER, STARTD",
        "# several glideins may share a worker: no fixed ports",
        "USE_SHARED_PORT = False",
        "UPDATE_COLLECTOR_WITH_TCP = True",
        f"UPDATE_INTERVAL = {s['UPDATE_INTERVAL']}",
        f"MASTER_UPDATE_INTERVAL = {s['MASTER_UPDATE_INTERVAL']}",
        f"MASTER_NAME = {setup.master_name}",
        f"STARTD_NAME = {setup.master_name}",
    ]
    if s["USE_CCB"]:
        ccb = setup.passthrough.get("GLIDEIN_CCB") or ", ".join(setup.collectors)
        lines.append(f"CCB_ADDRESS = {ccb}")
    lines += [
        "",
        *_security_lines(setup, "IDTOKENS, FS"),
        f"GLIDEINLAB_ACCOUNT = {setup.account}@$(UID_DOMAIN)",
        "ALLOW_ADMINISTRATOR = $(GLIDEINLAB_ACCOUNT)",
        "ALLOW_OWNER = $(GLIDEINLAB_ACCOUNT)",
        "ALLOW_CONFIG = $(GLIDEINLAB_ACCOUNT)",
        "ALLOW_NEGOTIATOR = $(GLIDEINLAB_ACCOUNT)",
        "ALLOW_DAEMON = $(GLIDEINLAB_ACCOUNT), submit-side@matchsession/*",
        "ALLOW_WRITE = $(GLIDEINLAB_ACCOUNT), submit-side@matchsession/*",
        "ALLOW_READ = *",
        "SEC_ENABLE_MATCH_PASSWORD_AUTHENTICATION = True",
        "DENY_WRITE = anonymous@*, unmapped@*",
        "DENY_DAEMON = anonymous@*, unmapped@*",
        "DENY_ADMINISTRATOR = anonymous@*, unmapped@*",
        "DENY_NEGOTIATOR = anonymous@*, unmapped@*",
        "",
        "# Resources: set, never detected",
        f"NUM_CPUS = {cpus}",
        f"MEMORY = {memory}",
        *slots,
        "RUNBENCHMARKS = False",
        "STARTD_SENDS_ALIVES = True",
        "USE_PID_NAMESPACES = False",
        f"CLAIM_WORKLIFE = {s['CLAIM_WORKLIFE']}",
        "SUSPEND = False",
        "CONTINUE = True",
        "PREEMPT = False",
        "KILL = False",
        "WANT_SUSPEND = False",
        "RANK = 0",
        "",
        "# Identity and lifetime, published in the startd and master ads",
        "IS_GLIDEIN = True",
        *(f"{name} = {value}" for name, value in setup.published.items()),
        f"STARTD_ATTRS = {', '.join(attrs)}",
        f"MASTER_ATTRS = {', '.join(attrs)}",
        "START = " + " && ".join(f"({name})" for name in START_EXPRESSIONS) + " && (CurrentTime < GLIDEIN_ToRetire)",
        "",
        "# Shutdown: never claimed for GLIDEIN_Max_Idle, or past GLIDEIN_ToDie, and the master follows its",
        "# startd (the tail after the last job, GLIDEIN_Max_Tail, is watched by the glidein itself)",
        f"STARTD_NOCLAIM_SHUTDOWN = {noclaim}",
        "STARTD.DAEMON_SHUTDOWN = CurrentTime > GLIDEIN_ToDie",
        "MASTER.DAEMON_SHUTDOWN = STARTD_StartTime =?= 0",
        f"SHUTDOWN_GRACEFUL_TIMEOUT = {s['GLIDEIN_Graceful_Shutdown']}",
    ]
    passthrough = [f"{name} = {value}" for name, value in setup.passthrough.items() if name in CONDOR_PASSTHROUGH]
    if passthrough:
        lines += ["", "# Given by the stages or params", *passthrough]
    return "\n".join(lines) + "\n"


def render_advertise_config(setup: CondorSetup) -> str:
    """A client-only configuration for ``condor_advertise`` of the failure ad: it authenticates with the
    glidein's IDTOKEN only, like the daemons would have (FS would name the local account instead)."""
    lines = [*_layout_lines(setup), f"COLLECTOR_HOST = {', '.join(setup.collectors)}",
             *_security_lines(setup, "IDTOKENS")]
    return "\n".join(lines) + "\n"


def _ad_value(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    # old ClassAd syntax has no dependable escapes: keep the text readable and unquotable
    text = str(value).replace('"', "'").replace("\\", "/").replace("\n", " ")
    return f'"{text}"'


def render_failure_ad(attributes: Mapping[str, Any]) -> str:
    """The master-like ad (``UPDATE_MASTER_AD``) of a glidein that failed validation."""
    ad = {"MyType": "DaemonMaster", "IS_GLIDEIN": True, "GLIDEIN_Failed": True, **attributes}
    return "".join(f"{name} = {_ad_value(value)}\n" for name, value in ad.items())


# --------------------------------------------------------------------------------------------------------
# After the run: job counting, why it stopped, the exit report

@dataclass(frozen=True)
class JobActivity:
    starts: int
    job_ids: tuple[str, ...]


def _jobs_running(execute_dir: Path) -> bool:
    """A job is running: the starter keeps each job's sandbox as ``dir_<pid>`` under EXECUTE."""
    try:
        return any(p.name.startswith("dir_") for p in execute_dir.iterdir())
    except OSError:
        return False


def job_activity(startd_log: str) -> JobActivity:
    """Job starts (claim activations) and the distinct job ids seen in StartdLog text."""
    starts = startd_log.count(JOB_ACTIVATION_LINE)
    ids = dict.fromkeys(_REMOTE_JOB_ID.findall(startd_log))
    return JobActivity(starts, tuple(ids))


def signal_to_forward(received: int, already_forwarded: int) -> int:
    """The first signal is translated (:data:`FORWARDED_SIGNALS`); any later one asks for a fast stop."""
    return signal.SIGQUIT if already_forwarded else FORWARDED_SIGNALS[received]


def stop_reason(*, failed: bool, signal_name: str | None, master_exit_code: int | None, end_time: float,
                lifetime: Lifetime | None, jobs_started: int) -> str:
    """validation, signal, condor_failure, lifetime (past ToDie, or retired), idle (no job ever) or tail."""
    if failed:
        return "validation"
    if signal_name:
        return "signal"
    if master_exit_code not in NORMAL_MASTER_EXITS or lifetime is None:
        return "condor_failure"
    if end_time >= lifetime.to_die:
        return "lifetime"
    if jobs_started == 0:
        return "idle"
    return "lifetime" if end_time >= lifetime.to_retire else "tail"


@dataclass(frozen=True)
class ScriptResult:
    stage: str
    name: str
    exit_code: int | None  # None: could not run or timed out
    seconds: float
    last_line: str


def format_exit_report(report: Mapping[str, Any]) -> str:
    return f"{REPORT_BEGIN}\n{json.dumps(report, indent=2, sort_keys=True)}\n{REPORT_END}\n"


def parse_exit_report(text: str) -> dict[str, Any] | None:
    """The report object from a glidein's stdout (the factory reads job.<c>.<p>.out with this)."""
    begin = text.rfind(REPORT_BEGIN)
    end = text.find(REPORT_END, begin)
    if begin < 0 or end < 0:
        return None
    try:
        return json.loads(text[begin + len(REPORT_BEGIN):end])
    except json.JSONDecodeError:
        return None


#: where an HTCondor install keeps its daemons; a batch job's PATH often lacks the sbin directories
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def clean_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment without the outer HTCondor's ``_CONDOR_*`` config overrides (they would
    reconfigure our daemons); ``_CONDOR_ANCESTOR_*`` stays for the outer starter's process tracking.
    PATH keeps the job's entries first and gains the system directories it lacks."""
    env = {key: value for key, value in environ.items()
           if not key.upper().startswith("_CONDOR_") or key.upper().startswith("_CONDOR_ANCESTOR_")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    env["PATH"] = os.pathsep.join(path + [p for p in SYSTEM_PATH if p not in path])
    return env


# --------------------------------------------------------------------------------------------------------
# The run

class Glidein:
    """One glidein run: the side effects around the pure functions above."""

    def __init__(self, args: Mapping[str, Any], environ: Mapping[str, str], cwd: Path, program_dir: Path):
        self.args = args
        self.environ = dict(environ)
        self.env = clean_environment(environ)
        self.cwd = cwd
        self.program_dir = program_dir
        self.start_time = int(time.time())
        self.rng = random.Random()
        self.uuid = str(uuid.uuid4())
        self.master_name = f"glidein_{os.getpid()}_{self.rng.randrange(1_000_000)}"
        self.host = socket.getfqdn()
        self.config: dict[str, str] = dict(args["params"])
        self.settings, warnings = effective_settings(self.config)
        for warning in warnings:
            log(warning)
        self.results: list[ScriptResult] = []
        self.failure: ValidationFailure | None = None
        self.work_dir: Path | None = None
        self.lifetime: Lifetime | None = None
        self.collectors: list[str] | None = None
        self.master: subprocess.Popen | None = None
        self.child: subprocess.Popen | None = None
        self.signal_name: str | None = None
        self.forwarded = 0
        self.next_escalation: float | None = None
        self.quit_sent = False
        self.interruptible = True  # until HTCondor is about to start, a signal ends the glidein
        self.stop_requested = False
        self.pending_signal: int | None = None
        self.notes: list[str] = []  # what the signal handler did, logged by the main flow
        self.condor_start_time: int | None = None
        self.identity: dict[str, str] = {}

    # -- entry point ------------------------------------------------------------------------------------
    def run(self) -> int:
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, self._on_signal)
        log(f"glidein {self.uuid} ({self.master_name}) on {self.host}: entry {self.args['entry_name']} of "
            f"{self.args['glidein_name']}@{self.args['factory_name']} for {self.args['client_name']}")
        try:
            setup = self._prepare()
            self.interruptible = False  # from now on signals go to condor_master (held until it starts)
            self._check_stop()
        except ValidationFailure as failure:
            return self._fail(failure)
        except Interrupted:
            self.interruptible = False
            return self._finish(EXIT_INTERRUPTED, master_exit_code=None)
        except Exception as exc:  # a pilot must always report and wait: an unexpected error fails validation
            return self._fail(ValidationFailure(f"unexpected {type(exc).__name__}: {exc}", "startup.py"))
        return self._run_condor(setup)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """Runs between two bytecodes of the main flow, so it only records and sends signals: no output
        (the interrupted code may be writing) and no exception (it may be inside Popen)."""
        name = signal.Signals(signum).name
        self.signal_name = self.signal_name or name
        if self.master is not None:
            if self.master.returncode is None:
                forward = signal_to_forward(signum, self.forwarded)
                self.forwarded += 1
                self.master.send_signal(forward)
                self.notes.append(f"got {name}; sent {signal.Signals(forward).name} to condor_master")
                margin = self.settings["GLIDEIN_Kill_Margin"]
                if forward == signal.SIGQUIT:
                    self.quit_sent = True
                    self.next_escalation = time.time() + margin
                else:
                    self.next_escalation = time.time() + self.settings["GLIDEIN_Graceful_Shutdown"] + margin
        elif self.interruptible:
            self.stop_requested = True
            if self.child is not None:
                _kill_process_group(self.child)
            self.notes.append(f"got {name}; stopping")
        else:
            self.pending_signal = signum  # condor_master is about to start: forwarded then

    def _flush_notes(self) -> None:
        notes, self.notes = self.notes, []
        for note in notes:
            log(note)

    def _check_stop(self) -> None:
        self._flush_notes()
        if self.stop_requested:
            raise Interrupted(self.signal_name)

    # -- validation ---------------------------------------------------------------------------------------
    def _prepare(self) -> CondorSetup:
        base = choose_work_base(self.args.get("work_dir"), self.environ, self.cwd)
        try:
            self.work_dir = Path(tempfile.mkdtemp(prefix="glide_", dir=base))
            for sub in ("cred.d/idtokens", "cred.d/passwords.d", "cred.d/tokens.d", "tmp",
                        "condor/log", "condor/spool", "condor/execute", "condor/lock", "condor/run"):
                (self.work_dir / sub).mkdir(parents=True, exist_ok=True)
            for private in ("cred.d", "cred.d/idtokens"):
                os.chmod(self.work_dir / private, 0o700)
        except OSError as exc:
            raise ValidationFailure(f"cannot create the work dir under {base}: {exc}", "work_dir") from None
        log(f"work dir {self.work_dir}")
        self._install_tokens()
        self._check_stop()

        self.identity = self._identity()
        stages = self._download_stages()
        self.config, warnings = build_glidein_config(
            self.identity, [(stage.location.name, stage.constants) for stage in stages], self.args["params"])
        self._refresh_settings(warnings)
        config_path = self.work_dir / "glidein_config"
        config_path.write_text(format_key_values(self.config))

        for stage in stages:
            for name, kind in stage.file_list:
                if kind == "exec":
                    self._run_script(stage.location.name, self.work_dir / stage.location.local_dir / name,
                                     config_path)

        values, bad = parse_key_values(config_path.read_text(errors="replace"))
        warnings = [f"glidein_config: bad line skipped: {line!r}" for line in bad]
        warnings += [f"glidein_config: scripts may not change {key}; kept {value!r}"
                     for key, value in self.identity.items() if values.get(key, value) != value]
        self.config = {**values, **self.identity}
        self._refresh_settings(warnings)
        self.lifetime = compute_lifetime(self.settings, int(time.time()), self.rng.random())
        collectors = self._collectors()
        published, warnings = published_attributes(self.config, self.settings, self.lifetime, collectors)
        for warning in warnings:
            log(warning)
        return self._condor_setup(collectors, published)

    def _identity(self) -> dict[str, str]:
        args = self.args
        return {
            "GLIDEIN_UUID": self.uuid,
            "GLIDEIN_Factory": args["factory_name"],
            "GLIDEIN_Name": args["glidein_name"],
            "GLIDEIN_Entry_Name": args["entry_name"],
            "GLIDECLIENT_Name": args["client_name"],
            "GLIDECLIENT_Group": args["client_group"],
            "GLIDEIN_CredentialIdentifier": args["submit_cred_id"],
            "CONDORG_CLUSTER": args["cluster"],
            "CONDORG_SUBCLUSTER": args["subcluster"],
            "CONDORG_SCHEDD": args["schedd"],
            "GLIDEIN_WORK_DIR": str(self.work_dir),
            "SLOTS_LAYOUT": args["slots_layout"],
        }

    def _refresh_settings(self, warnings: list[str]) -> None:
        self.settings, more = effective_settings(self.config)
        for warning in warnings + more:
            log(warning)

    def _install_tokens(self) -> None:
        assert self.work_dir is not None
        found = sorted({path.resolve() for folder in (self.cwd, self.program_dir)
                        for path in folder.glob("*.idtoken") if path.is_file()})
        if not found:
            raise ValidationFailure(f"no *.idtoken next to the glidein (looked in {self.cwd} and "
                                    f"{self.program_dir})", "idtoken")
        for path in found:
            target = self.work_dir / "cred.d" / "idtokens" / path.name
            target.write_bytes(path.read_bytes())
            os.chmod(target, 0o600)
        log(f"IDTOKEN(s) installed: {', '.join(path.name for path in found)}")

    def _download_stages(self) -> list[StageContent]:
        assert self.work_dir is not None
        args = self.args
        agent = (f"glideinlab-glidein/{args['entry_name']}/{args['schedd']}/{args['cluster']}."
                 f"{args['subcluster']}/{args['client_name']}")
        stages = []
        for location in stage_locations(args):
            fetch = http_fetcher(location.url, timeout=self.settings["GLIDEIN_Download_Timeout"],
                                 attempts=self.settings["GLIDEIN_Download_Retries"], user_agent=agent)
            try:
                stage = verify_stage(fetch, location)
            except DownloadError as exc:
                raise ValidationFailure(str(exc), f"{location.name} stage") from None
            except ValidationFailure as failure:
                raise ValidationFailure(failure.reason, f"{location.name} stage") from None
            for warning in stage.warnings:
                log(warning)
            folder = self.work_dir / location.local_dir
            folder.mkdir(exist_ok=True)
            executable = {name for name, kind in stage.file_list if kind == "exec"}
            for name, content in stage.files.items():
                (folder / name).write_bytes(content)
                os.chmod(folder / name, 0o755 if name in executable else 0o644)
            log(f"{location.name} stage verified: {len(stage.files)} files from {location.url}")
            stages.append(stage)
            self._check_stop()
        return stages

    def _run_script(self, stage: str, path: Path, config_path: Path) -> None:
        timeout = self.settings["GLIDEIN_Script_Timeout"]
        started = time.monotonic()
        exit_code: int | None = None
        try:
            # its own session, so a timeout or a signal kills whatever the script started too
            self.child = subprocess.Popen([str(path), str(config_path)], cwd=self.work_dir, env=self.env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          errors="replace", start_new_session=True)
        except OSError as exc:
            output = f"cannot run: {exc}"
        else:
            output, exit_code = self._collect(self.child, started + timeout, timeout)
        finally:
            self.child = None
        self._check_stop()
        lines = [line for line in output.splitlines() if line.strip()]
        for line in lines:
            print(f"  [{stage}/{path.name}] {line}", flush=True)
        result = ScriptResult(stage, path.name, exit_code, round(time.monotonic() - started, 3),
                              lines[-1] if lines else "")
        self.results.append(result)
        log(f"{stage}/{path.name}: exit {exit_code} in {result.seconds:.1f} s")
        if exit_code != 0:
            raise ValidationFailure(f"{path.name}: {result.last_line or f'exit code {exit_code}'}", path.name)

    def _collect(self, child: subprocess.Popen, deadline: float, timeout: int) -> tuple[str, int | None]:
        """Output and exit code of a validation script; killed (with its session) on timeout or signal."""
        while True:
            try:
                output, _ = child.communicate(timeout=self.settings["GLIDEIN_Poll_Interval"])
                return output, child.returncode
            except subprocess.TimeoutExpired:
                if not self.stop_requested and time.monotonic() < deadline:
                    continue
            _kill_process_group(child)
            try:
                output, _ = child.communicate(timeout=self.settings["GLIDEIN_Kill_Margin"])
            except subprocess.TimeoutExpired:  # a descendant that left the session holds the pipe
                output = "(output lost: a process the script started keeps it open)"
                child.wait()
            return output + ("" if self.stop_requested else f"\ntimed out after {timeout} s"), None

    def _collectors(self) -> list[str]:
        if self.collectors is None:
            value = self.config.get("GLIDEIN_Collector", "")
            self.collectors = pick_collectors(value, self.rng)
        return self.collectors

    def _condor_setup(self, collectors: list[str], published: dict[str, str]) -> CondorSetup:
        assert self.work_dir is not None
        try:
            import pwd  # POSIX only; the glidein never runs elsewhere
            account = pwd.getpwuid(os.getuid()).pw_name
        except (ImportError, KeyError):
            account = self.env.get("USER", "nobody")
        cred = self.work_dir / "cred.d"
        passthrough = {name: self.config[name] for name in (*CONDOR_PASSTHROUGH, "GLIDEIN_CCB")
                       if name in self.config and _config_value_ok(self.config[name])}
        return CondorSetup(
            local_dir=str(self.work_dir / "condor"), token_dir=str(cred / "idtokens"),
            password_dir=str(cred / "passwords.d"), system_token_dir=str(cred / "tokens.d"), account=account,
            collectors=tuple(collectors),
            trust_domain=self.settings["GLIDEIN_TrustDomain"] or collector_host(collectors[0]),
            master_name=self.master_name, slots_layout=self.args["slots_layout"], settings=dict(self.settings),
            published=published, passthrough=passthrough, layout=self._condor_layout())

    def _condor_layout(self) -> dict[str, str]:
        """Where the worker's HTCondor lives: guessed from PATH, then asked of condor_config_val."""
        layout: dict[str, str] = {}
        path = self.env.get("PATH")
        master = shutil.which("condor_master", path=path)
        if master:
            layout["SBIN"] = str(Path(master).parent)
            layout["RELEASE_DIR"] = str(Path(master).parent.parent)
        version = shutil.which("condor_version", path=path)
        if version:
            layout["BIN"] = str(Path(version).parent)
        config_val = shutil.which("condor_config_val", path=path)
        for name in LAYOUT_KNOBS if config_val else ():
            try:
                answer = subprocess.run([config_val, name], env=self.env, capture_output=True, text=True,
                                        timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                continue
            value = answer.stdout.strip()
            if answer.returncode == 0 and value and "\n" not in value:
                layout[name] = value
        return layout

    # -- failure --------------------------------------------------------------------------------------------
    def _fail(self, failure: ValidationFailure) -> int:
        self.failure = failure
        log(f"VALIDATION FAILED in {failure.last_script}: {failure.reason}")
        for result in self.results:
            log(f"  {result.stage}/{result.name}: exit {result.exit_code} in {result.seconds} s: {result.last_line}")
        self._advertise_failure()
        wait = failed_wait_seconds(self.settings, self.config, self.args["verbosity"])
        log(f"waiting {wait} s before exiting (GLIDEIN_Failed_Wait; any signal ends the wait)")
        deadline = time.time() + wait
        while time.time() < deadline and not self.stop_requested:
            time.sleep(min(1.0, deadline - time.time()))
        self.interruptible = False
        self._flush_notes()
        return self._finish(EXIT_VALIDATION, master_exit_code=None)

    def _advertise_failure(self) -> None:
        """Best effort: a failed glidein still tells the user pool why (condor_status -master)."""
        tool = shutil.which("condor_advertise", path=self.env.get("PATH"))
        tokens = self.work_dir and any((self.work_dir / "cred.d" / "idtokens").glob("*"))
        try:
            collectors = self._collectors() if tool and tokens else None
        except ValidationFailure:
            collectors = None
        if not (tool and tokens and collectors):
            log("failure not advertised: needs condor_advertise, an IDTOKEN and GLIDEIN_Collector")
            return
        assert self.work_dir is not None
        setup = self._condor_setup(collectors, {})
        attributes = {
            "Name": f"{self.master_name}@{self.host}", "Machine": self.host, "DaemonStartTime": self.start_time,
            "GLIDEIN_FAILURE_REASON": self.failure.reason if self.failure else "",
            "GLIDEIN_LAST_SCRIPT": self.failure.last_script if self.failure else "",
            "GLIDEIN_EXIT_CODE": EXIT_VALIDATION, **self._identity_report(),
        }
        config_path = self.work_dir / "condor_config.advertise"
        ad_path = self.work_dir / "failure.ad"
        config_path.write_text(render_advertise_config(setup))
        ad_path.write_text(render_failure_ad(attributes))
        try:
            answer = subprocess.run([tool, "-tcp", "UPDATE_MASTER_AD", str(ad_path)],
                                    env={**self.env, "CONDOR_CONFIG": str(config_path)},
                                    capture_output=True, text=True, timeout=60)
            outcome = f"exit {answer.returncode} {(answer.stdout + answer.stderr).strip()}".strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            outcome = str(exc)
        log(f"failure ad sent to {', '.join(collectors)}: {outcome}")

    # -- HTCondor ---------------------------------------------------------------------------------------------
    def _run_condor(self, setup: CondorSetup) -> int:
        assert self.work_dir is not None and self.lifetime is not None
        config_path = self.work_dir / "condor_config"
        env = {**self.env, "CONDOR_CONFIG": str(config_path)}
        master = shutil.which("condor_master", path=self.env.get("PATH")) or "condor_master"
        log(f"starting condor_master: collector {', '.join(setup.collectors)}, retire at "
            f"{self.lifetime.to_retire}, die at {self.lifetime.to_die}")
        self.condor_start_time = int(time.time())
        try:
            config_path.write_text(render_condor_config(setup))
            self.master = subprocess.Popen([master, "-f"], cwd=self.work_dir, env=env)
        except OSError as exc:
            log(f"cannot start condor_master: {exc}")
            return self._finish(EXIT_CONDOR, master_exit_code=None)
        if self.pending_signal is not None:
            self._on_signal(self.pending_signal, None)
            self._flush_notes()
        exit_code = self._supervise(setup)
        log(f"condor_master exited with {exit_code}")
        normal = exit_code in NORMAL_MASTER_EXITS
        return self._finish(EXIT_OK if normal else EXIT_CONDOR, master_exit_code=exit_code)

    def _supervise(self, setup: CondorSetup) -> int:
        assert self.master is not None and self.lifetime is not None
        s = self.settings
        deadline = (self.lifetime.to_die + s["UPDATE_INTERVAL"] + s["GLIDEIN_Graceful_Shutdown"]
                    + s["GLIDEIN_Kill_Margin"])
        startd_log = Path(setup.local_dir) / "log" / "StartdLog"
        execute_dir = Path(setup.local_dir) / "execute"
        condor_started = time.time()
        starts_seen = 0  # job activations counted in StartdLog so far
        ran = False  # a job has run on this glidein
        idle_since: float | None = None  # when the last job ended (None while one runs)
        while True:
            try:
                exit_code = self.master.wait(timeout=s["GLIDEIN_Poll_Interval"])
                self._flush_notes()
                return exit_code
            except subprocess.TimeoutExpired:
                pass
            self._flush_notes()
            now = time.time()
            # Idle and tail limits. HTCondor's STARTD_NOCLAIM_SHUTDOWN (kept in the config, as upstream
            # has it) did not stop a partitionable-slot startd here, and nothing in the startd ad measures
            # "time since the last job ended", so the glidein watches the job sandboxes itself.
            busy = _jobs_running(execute_dir)
            starts = job_activity(_read_text(startd_log)).starts
            if busy or starts > starts_seen:  # a job runs, or one started and ended between two looks
                idle_since = None if busy else now
            elif idle_since is None:
                idle_since = now
            starts_seen = starts
            ran = ran or busy or starts > 0
            limit, why = (s["GLIDEIN_Max_Tail"], "after the last one") if ran else (s["GLIDEIN_Max_Idle"], "ever")
            since = idle_since if ran else condor_started
            if not busy and now - since >= limit and self.next_escalation is None:
                name = "GLIDEIN_Max_Tail" if ran else "GLIDEIN_Max_Idle"
                log(f"no job for {name} {limit} s {why}; shutting down")
                self.master.send_signal(signal.SIGTERM)  # graceful: the master stops its daemons and exits
                self.next_escalation = now + s["GLIDEIN_Graceful_Shutdown"] + s["GLIDEIN_Kill_Margin"]
            if self.next_escalation is None and now > deadline:
                log("condor_master is past its lifetime; sending SIGQUIT")
                self.master.send_signal(signal.SIGQUIT)
                self.quit_sent = True
                self.next_escalation = now + s["GLIDEIN_Kill_Margin"]
            elif self.next_escalation is not None and now > self.next_escalation:
                if self.quit_sent:
                    log("condor_master ignores SIGQUIT; killing it")
                    self.master.kill()
                    self.next_escalation = float("inf")
                else:
                    log("condor_master still running after the graceful timeout; sending SIGQUIT")
                    self.master.send_signal(signal.SIGQUIT)
                    self.quit_sent = True
                    self.next_escalation = now + s["GLIDEIN_Kill_Margin"]

    # -- report --------------------------------------------------------------------------------------------
    def _identity_report(self) -> dict[str, Any]:
        identity: dict[str, Any] = {
            "GLIDEIN_UUID": self.uuid, "GLIDEIN_Factory": self.args["factory_name"],
            "GLIDEIN_Name": self.args["glidein_name"], "GLIDEIN_Entry_Name": self.args["entry_name"],
            "GLIDECLIENT_Name": self.args["client_name"], "GLIDECLIENT_Group": self.args["client_group"],
            "GLIDEIN_CredentialIdentifier": self.args["submit_cred_id"], "GLIDEIN_Schedd": self.args["schedd"],
            "GLIDEIN_ClusterId": self.args["cluster"], "GLIDEIN_ProcId": self.args["subcluster"],
        }
        for optional in ("GLIDEIN_Site", "GLIDECLIENT_ReqNode"):
            if optional in self.config:
                identity[optional] = self.config[optional]
        return identity

    def _finish(self, exit_code: int, master_exit_code: int | None) -> int:
        self._flush_notes()
        end_time = int(time.time())
        log_dir = self.work_dir / "condor" / "log" if self.work_dir else None
        activity = job_activity(_read_text(log_dir / "StartdLog.old") + _read_text(log_dir / "StartdLog")
                                if log_dir else "")
        report = {
            "uuid": self.uuid,
            "identity": self._identity_report(),
            "host": self.host,
            "master_name": self.master_name,
            "work_dir": str(self.work_dir) if self.work_dir else None,
            "validation": [vars(result) for result in self.results],
            "failure": ({"reason": self.failure.reason, "last_script": self.failure.last_script}
                        if self.failure else None),
            "start_time": self.start_time,
            "end_time": end_time,
            "seconds": end_time - self.start_time,
            "condor_start_time": self.condor_start_time,
            "lifetime": asdict(self.lifetime) if self.lifetime else None,
            "master_exit_code": master_exit_code,
            "jobs_started": activity.starts,
            "job_ids": list(activity.job_ids),
            "stop_reason": stop_reason(failed=self.failure is not None, signal_name=self.signal_name,
                                       master_exit_code=master_exit_code, end_time=end_time,
                                       lifetime=self.lifetime, jobs_started=activity.starts),
            "signal": self.signal_name,
            "exit_code": exit_code,
        }
        sys.stdout.write(format_exit_report(report))
        sys.stdout.flush()
        if log_dir:
            self._print_log_tails(log_dir)
        self._remove_work_dir()
        return exit_code

    def _remove_work_dir(self) -> None:
        """HTCondor cleans the job's scratch dir; a work dir elsewhere (-dir TMPDIR ...) is ours to remove."""
        if self.work_dir is None:
            return
        owned_by_htcondor = {Path(folder) for folder in (self.environ.get("_CONDOR_SCRATCH_DIR"), self.cwd) if folder}
        if self.work_dir.parent not in owned_by_htcondor:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _print_log_tails(self, log_dir: Path) -> None:
        lines = self.settings["GLIDEIN_Log_Tail_Lines"]
        for path in sorted(log_dir.glob("*Log*")):
            if not path.name.startswith(LOG_FILES):
                continue
            tail = _read_text(path).splitlines()[-lines:] if lines else []
            sys.stderr.write(f"=== tail of {path.name} ({len(tail)} lines) ===\n")
            sys.stderr.write("".join(line + "\n" for line in tail))
        sys.stderr.flush()


def _kill_process_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        with contextlib.suppress(OSError):
            process.kill()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_arguments(argv)
    except ArgumentError as exc:
        print(f"glidein: bad arguments: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return Glidein(args, os.environ, Path.cwd(), Path(__file__).resolve().parent).run()


if __name__ == "__main__":
    sys.exit(main())
