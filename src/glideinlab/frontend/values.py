"""Reading values out of ClassAds that may hold junk, and tallying what was skipped.

Schedd and collector ads are user- or site-controlled: ``RequestCpus = "abc"`` must cost one job, not
a frontend cycle (upstream #537).  Readers raise :class:`BadValue`; callers skip the ad and record it in
a :class:`SkipLog`, which turns into a few summary warnings instead of one line per ad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping


class BadValue(ValueError):
    """An ad attribute has a value the policy cannot use."""


def lookup(ad: Mapping[str, Any], name: str) -> Any:
    """``ad[name]``, falling back to a case-insensitive match (ClassAd names are case-insensitive)."""
    if name in ad:
        return ad[name]
    lowered = name.lower()
    for key, value in ad.items():
        if key.lower() == lowered:
            return value
    return None


def as_number(value: Any, name: str) -> float:
    """A finite int or float (bools and numeric strings are junk in a numeric attribute)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadValue(f"{name}={value!r}")
    return value


def as_count(value: Any, name: str, default: int | None = None, minimum: int = 0) -> int:
    """A whole number >= minimum; floats are rounded up (1.5 CPUs need 2). None → default."""
    if value is None and default is not None:
        return default
    count = math.ceil(as_number(value, name))
    if count < minimum:
        raise BadValue(f"{name}={value!r}")
    return count


def as_bool(value: Any) -> bool:
    """ClassAd booleans may reach us as bool, 0/1 or the strings "True"/"False"."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value) if isinstance(value, (bool, int)) else False


def freeze(value: Any) -> Any:
    """A hashable stand-in for an attribute value, for clustering and de-duplication."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


@dataclass
class SkipLog:
    """Counts of skipped ads per reason, with the first example of each."""

    kind: str
    reasons: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, reason: str, example: str) -> None:
        entry = self.reasons.setdefault(reason, [0, example])
        entry[0] += 1

    @property
    def total(self) -> int:
        return sum(count for count, _ in self.reasons.values())

    def warnings(self) -> list[str]:
        return [
            f"skipped {count} {self.kind} with bad {reason} (e.g. {example})"
            for reason, (count, example) in sorted(self.reasons.items())
        ]
