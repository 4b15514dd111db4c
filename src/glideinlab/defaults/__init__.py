"""Every default of glideinlab, in one place, with units and help.

Upstream GlideinWMS keeps its defaults in ``creation/lib/cgWParams.py`` (factory) and ``cvWParams.py``
(frontend); we do the same with one module per component under this package.  Each knob is a
:class:`Knob`; a component's knobs form a :class:`Section`, and config files are validated against it
(see :mod:`glideinlab.config`).  ``glideinlab defaults`` prints them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator


@dataclass(frozen=True)
class Knob:
    """One configurable value: its upstream-style name, default, unit and a one-line help."""

    name: str
    default: Any
    unit: str
    help: str
    #: allowed values, when the knob is an enumeration
    choices: tuple[Any, ...] = ()

    @property
    def type(self) -> type:
        return type(self.default)


@dataclass(frozen=True)
class Section:
    """A named group of knobs, e.g. a frontend group's ``idle_glideins_per_entry`` limits."""

    name: str
    help: str
    knobs: tuple[Knob, ...] = field(default_factory=tuple)

    def __iter__(self) -> Iterator[Knob]:
        return iter(self.knobs)

    def __getitem__(self, name: str) -> Knob:
        for knob in self.knobs:
            if knob.name == name:
                return knob
        raise KeyError(f"{self.name} has no knob {name!r}")

    def defaults(self) -> dict[str, Any]:
        """The section's defaults as a plain dict (a fresh copy each call)."""
        return {k.name: k.default for k in self.knobs}


def all_sections() -> list[Section]:
    """Every section of every component, for ``glideinlab defaults`` and the docs."""
    from . import factory, frontend, glidein, workspace

    sections: list[Section] = []
    for module in (workspace, frontend, factory, glidein):
        sections.extend(getattr(module, "SECTIONS", ()))
    return sections
