"""Counting glidein slots (startd ads from the user collector) the way the frontend's requests need.

Rules (upstream semantics, reference §2.2 step 3; partitionable slots per #46/#405):

* **Total** counts every slot ad (static, partitionable, dynamic), as upstream counts startd ads.
* **Idle**: ``Unclaimed``/``Idle`` static slots, and partitionable slots that are ``Unclaimed``/``Idle``
  and either have no children yet (``TotalSlots <= 1``) or still have ``Cpus > 0``, ``Memory >
  min_memory`` and, when the slot has GPUs, a free GPU.  A partitionable slot that fails this is busy
  carving jobs, not idle: counting it idle would under-request (#405).
* **Running**: ``Claimed`` and ``Busy``/``Retiring`` static or dynamic slots (the partitionable parent
  is not counted; its children are).
* **Failed**: ``Drained``/``Retiring`` slots (how a glidein that failed validation advertises itself).
* **Cores**: total = static ``Cpus`` + partitionable ``TotalSlotCpus`` (dynamic slots are carved from
  those); idle and running = ``Cpus`` of the idle and running slots.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping

from .values import BadValue, SkipLog, as_bool, as_count, lookup


@dataclass(frozen=True)
class SlotCounts:
    """Slot and core counts for one entry, one group, the frontend or the pool."""

    total: int = 0
    idle: int = 0
    running: int = 0
    failed: int = 0
    total_cores: int = 0
    idle_cores: int = 0
    running_cores: int = 0

    def __add__(self, other: SlotCounts) -> SlotCounts:
        return SlotCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def slot_counts(ad: Mapping[str, Any], min_memory: int) -> SlotCounts:
    """What one slot ad contributes; raises BadValue when a counted attribute is junk."""
    state = ad.get("State")
    activity = ad.get("Activity")
    cpus = as_count(ad.get("Cpus"), "Cpus", default=1)
    failed = int(state == "Drained" and activity == "Retiring")
    if as_bool(ad.get("PartitionableSlot")):
        total_cpus = as_count(ad.get("TotalSlotCpus"), "TotalSlotCpus", default=cpus)
        idle = state == "Unclaimed" and activity == "Idle" and _partitionable_has_room(ad, cpus, min_memory)
        return SlotCounts(total=1, idle=int(idle), failed=failed, total_cores=total_cpus,
                          idle_cores=cpus if idle else 0)
    dynamic = as_bool(ad.get("DynamicSlot")) or ad.get("SlotType") == "Dynamic"
    running = state == "Claimed" and activity in ("Busy", "Retiring")
    idle = not dynamic and state == "Unclaimed" and activity == "Idle"
    return SlotCounts(
        total=1,
        idle=int(idle),
        running=int(running),
        failed=failed,
        total_cores=0 if dynamic else cpus,
        idle_cores=cpus if idle else 0,
        running_cores=cpus if running else 0,
    )


def _partitionable_has_room(ad: Mapping[str, Any], cpus: int, min_memory: int) -> bool:
    if as_count(ad.get("TotalSlots"), "TotalSlots", default=1) <= 1:
        return True  # no child yet: the whole glidein is free
    memory = as_count(ad.get("Memory"), "Memory", default=0)
    if cpus <= 0 or memory <= min_memory:
        return False
    if as_count(lookup(ad, "TotalSlotGPUs"), "TotalSlotGPUs", default=0) > 0:
        return as_count(ad.get("GPUs"), "GPUs", default=0) > 0
    return True


def count_slots(ads: Iterable[Mapping[str, Any]], min_memory: int, skipped: SkipLog | None = None) -> SlotCounts:
    """Sum of :func:`slot_counts` over ``ads``; junk ads are skipped (and tallied in ``skipped``).

    Also the helper for the frontend-wide and pool-wide totals the ``*_total``/``*_global`` limits need.
    """
    total = SlotCounts()
    for ad in ads:
        try:
            total = total + slot_counts(ad, min_memory)
        except BadValue as exc:
            if skipped is not None:
                skipped.add(str(exc).split("=")[0], f"{ad.get('Name', '?')} {exc}")
    return total


def glidein_of(slot_name: str) -> str:
    """The glidein (startd) a slot or RemoteHost belongs to: ``slot1_2@glidein_7@wn`` → ``glidein_7@wn``."""
    return slot_name.split("@", 1)[1] if "@" in slot_name else slot_name
