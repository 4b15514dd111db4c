"""Defaults for the glidein (filled in by its owner)."""

from . import Knob, Section

SECTIONS: tuple[Section, ...] = ()
