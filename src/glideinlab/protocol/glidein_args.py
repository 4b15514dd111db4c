"""The glidein's command line: what the factory puts in ``GLIDEIN_ARGUMENTS`` and the glidein parses.

Options are upstream's ``glidein_startup.sh`` ones (``-name -entry -clientname ... -param_<K> <V>
-cluster -subcluster``).  Parameter values travel through the HTCondor submit ``Arguments`` and a shell, so
upstream escapes every risky character as a ``.<token>,`` sequence (``.dot,``, ``.nbsp,``, ``.eq,`` ...).
We use upstream's tokens for the characters upstream escapes and ``.u<hex>,`` for anything else outside a
small safe set, which makes :func:`unescape_param` an exact inverse of :func:`escape_param`.
Every other value must be a single shell/ClassAd-safe word, so ``" ".join(args)`` is a valid
``Arguments`` string.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

SIGN_TYPE = "sha256"
VERBOSITIES = ("std", "nodebug", "fast", "check")
SLOTS_LAYOUTS = ("fixed", "partitionable")
#: condor_submit expands these in Arguments; the glidein sees its own cluster and process ids
CLUSTER_MACRO = "$(Cluster)"
PROCESS_MACRO = "$(Process)"

# upstream's escape tokens (glideFactoryLib.escape_table / glidein_startup.sh params_decode)
_ESCAPES = {
    ".": "dot",
    ",": "comma",
    "&": "amp",
    "\\": "backslash",
    "|": "pipe",
    "`": "fork",
    '"': "quot",
    "'": "singquot",
    "=": "eq",
    "+": "plus",
    "-": "minus",
    "<": "lt",
    ">": "gt",
    "(": "open",
    ")": "close",
    "{": "gopen",
    "}": "gclose",
    "[": "sopen",
    "]": "sclose",
    "#": "comment",
    "$": "dollar",
    "*": "star",
    "?": "question",
    "!": "not",
    "~": "tilde",
    ":": "colon",
    ";": "semicolon",
    " ": "nbsp",
}
_UNESCAPES = {token: char for char, token in _ESCAPES.items()}
# characters upstream passes through unescaped and that are harmless in Arguments and shells
_PASS_THROUGH = frozenset(string.ascii_letters + string.digits + "_/@%^")
_TOKEN = re.compile(r"\.([a-z0-9]+),")
_CODEPOINT_TOKEN = re.compile(r"u([0-9a-f]{1,6})")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[A-Za-z0-9._@:/%+=,~-]+")  # a plain value: no spaces, quotes, $ or shell metachars
_NUMBER_OR_MACRO = re.compile(r"\d+|\$\((Cluster|Process)\)")


class GlideinArgumentError(ValueError):
    """A glidein command line that cannot be built or parsed; ``str(err)`` is one line."""


def escape_param(value: str) -> str:
    """Encode a parameter value as one safe word (reversible by :func:`unescape_param`)."""
    out = []
    for char in value:
        if char in _PASS_THROUGH:
            out.append(char)
        elif char in _ESCAPES:
            out.append(f".{_ESCAPES[char]},")
        else:
            out.append(f".u{ord(char):x},")
    return "".join(out)


def unescape_param(value: str) -> str:
    """Decode a parameter value; any '.' must start a known ``.<token>,`` sequence."""
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
            raise GlideinArgumentError(f"bad escape at offset {dot} of {value!r}")
        token = match.group(1)
        codepoint = _CODEPOINT_TOKEN.fullmatch(token)
        if token in _UNESCAPES:
            out.append(_UNESCAPES[token])
        elif codepoint and int(codepoint.group(1), 16) <= 0x10FFFF:
            out.append(chr(int(codepoint.group(1), 16)))
        else:
            raise GlideinArgumentError(f"unknown escape .{token}, in {value!r}")
        pos = match.end()
    return "".join(out)


# (option, keyword) in upstream's order; params go between these and the cluster ids
_OPTIONS = (
    ("-v", "verbosity"),
    ("-name", "glidein_name"),
    ("-entry", "entry_name"),
    ("-clientname", "client_name"),
    ("-schedd", "schedd"),
    ("-factory", "factory_name"),
    ("-web", "web"),
    ("-sign", "sign"),
    ("-signentry", "sign_entry"),
    ("-signtype", None),
    ("-descript", "descript"),
    ("-descriptentry", "descript_entry"),
    ("-submitcredid", "submit_cred_id"),
    ("-slotslayout", "slots_layout"),
    ("-clientweb", "client_web"),
    ("-clientsign", "client_sign"),
    ("-clientsigntype", None),
    ("-clientdescript", "client_descript"),
    ("-clientgroup", "client_group"),
    ("-clientwebgroup", "client_web_group"),
    ("-clientsigngroup", "client_sign_group"),
    ("-clientdescriptgroup", "client_descript_group"),
)
_CLUSTER_OPTIONS = (("-cluster", "cluster"), ("-subcluster", "subcluster"))
_KEYWORD_OF = dict(_OPTIONS + _CLUSTER_OPTIONS)


def _check(keyword: str, value: Any) -> str:
    value = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(value, str):
        raise GlideinArgumentError(f"{keyword} must be a string, got {type(value).__name__}")
    if keyword in ("cluster", "subcluster"):
        ok = _NUMBER_OR_MACRO.fullmatch(value) is not None
    elif keyword == "verbosity":
        ok = value in VERBOSITIES
    elif keyword == "slots_layout":
        ok = value in SLOTS_LAYOUTS
    else:
        ok = _WORD.fullmatch(value) is not None
    if not ok:
        raise GlideinArgumentError(f"{keyword} {value!r} is not a valid value")
    return value


def build_glidein_arguments(
    *,
    verbosity: str,
    glidein_name: str,
    entry_name: str,
    client_name: str,
    schedd: str,
    factory_name: str,
    web: str,
    sign: str,
    sign_entry: str,
    descript: str,
    descript_entry: str,
    submit_cred_id: str,
    slots_layout: str,
    client_web: str,
    client_sign: str,
    client_descript: str,
    client_group: str,
    client_web_group: str,
    client_sign_group: str,
    client_descript_group: str,
    params: Mapping[str, str],
    cluster: str | int = CLUSTER_MACRO,
    subcluster: str | int = PROCESS_MACRO,
) -> list[str]:
    """The argv of ``glidein_startup`` (without the program name)."""
    values = dict(locals())
    args: list[str] = []
    for option, keyword in _OPTIONS:
        args += [option, SIGN_TYPE if keyword is None else _check(keyword, values[keyword])]
    for name, value in params.items():
        if not _PARAM_NAME.fullmatch(name):
            raise GlideinArgumentError(f"parameter name {name!r} is not [A-Za-z_][A-Za-z0-9_]*")
        if not isinstance(value, str):
            raise GlideinArgumentError(f"parameter {name} must be a string, got {type(value).__name__}")
        args += [f"-param_{name}", escape_param(value)]
    for option, keyword in _CLUSTER_OPTIONS:
        args += [option, _check(keyword, values[keyword])]
    return args


def parse_glidein_arguments(argv: list[str]) -> dict[str, Any]:
    """Parse an argv built by :func:`build_glidein_arguments` back into its keyword arguments."""
    if len(argv) % 2:
        raise GlideinArgumentError(f"option {argv[-1]!r} has no value")
    parsed: dict[str, Any] = {}
    params: dict[str, str] = {}
    seen: set[str] = set()
    for option, value in zip(argv[::2], argv[1::2], strict=True):
        if option.startswith("-param_"):
            name = option[len("-param_") :]
            if not _PARAM_NAME.fullmatch(name) or name in params:
                raise GlideinArgumentError(f"bad or repeated parameter option {option!r}")
            params[name] = unescape_param(value)
            continue
        if option not in _KEYWORD_OF:
            raise GlideinArgumentError(f"unknown option {option!r}")
        if option in seen:
            raise GlideinArgumentError(f"option {option} given twice")
        seen.add(option)
        keyword = _KEYWORD_OF[option]
        if keyword is None:
            if value != SIGN_TYPE:
                raise GlideinArgumentError(f"{option} {value!r}: only {SIGN_TYPE} signatures are supported")
        else:
            parsed[keyword] = _check(keyword, value)
    missing = [option for option in _KEYWORD_OF if option not in seen]
    if missing:
        raise GlideinArgumentError(f"missing options: {' '.join(missing)}")
    parsed["params"] = params
    return parsed
