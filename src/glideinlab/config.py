"""Loading and validating YAML config files against the knobs in :mod:`glideinlab.defaults`.

Every error names the file, the field (dotted path) and the reason, in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .defaults import Section
from .errors import ConfigError


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, a syntax error or a non-mapping is a ConfigError."""
    import yaml  # imported here: the node side gets PyYAML from Debian, the host from PyPI

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(where, None, f"invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), None, f"expected a mapping at top level, got {type(data).__name__}")
    return data


def _coerce(value: Any, default: Any, where: str, field: str) -> Any:
    """Check ``value`` against the type of ``default`` (ints may stand for floats)."""
    if default is None:
        return value
    want = type(default)
    if want is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(where, field, f"expected true or false, got {value!r}")
    if want is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if want in (list, tuple) and isinstance(value, (list, tuple)):
        return list(value)
    if want is dict and isinstance(value, dict):
        return value
    if want is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(where, field, f"expected {want.__name__}, got {type(value).__name__} {value!r}")


def apply_section(
    given: Mapping[str, Any] | None, section: Section, where: str, prefix: str = ""
) -> dict[str, Any]:
    """Merge ``given`` over the section's defaults, rejecting unknown keys and wrong types."""
    given = {} if given is None else given
    field_base = f"{prefix}." if prefix else ""
    if not isinstance(given, Mapping):
        raise ConfigError(where, prefix or None, f"expected a mapping, got {type(given).__name__}")
    out = section.defaults()
    known = {k.name for k in section}
    for key, value in given.items():
        field = f"{field_base}{key}"
        if key not in known:
            valid = ", ".join(sorted(known))
            raise ConfigError(where, field, f"unknown setting (valid: {valid})")
        knob = section[key]
        value = _coerce(value, knob.default, where, field)
        if knob.choices and value not in knob.choices:
            valid = ", ".join(str(c) for c in knob.choices)
            raise ConfigError(where, field, f"{value!r} is not one of: {valid}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(where, field, f"must not be negative, got {value}")
        out[key] = value
    return out


def require(mapping: Mapping[str, Any], key: str, where: str, field: str, kind: type = str) -> Any:
    """Fetch a required field of a given type, or raise a ConfigError naming it."""
    if key not in mapping or mapping[key] is None:
        raise ConfigError(where, field, "is required")
    value = mapping[key]
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, kind):
        raise ConfigError(where, field, f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value
