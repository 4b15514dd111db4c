"""The per-entry request formulas: ReqIdleGlideins, ReqMaxGlideins, ReqRemoveExcess (reference §2.3).

Pure functions over numbers and the merged ``limits`` dicts of :mod:`glideinlab.frontend.config`.
The blind-view guard (#282) is applied by the caller, :func:`glideinlab.frontend.policy.compute_group`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..defaults.frontend import REMOVAL_TYPES
from .slots import SlotCounts


@dataclass(frozen=True)
class Demand:
    """How many glideins the matched idle jobs need at one entry (prop_mc), floored by ``min``."""

    idle: int
    old_idle: int

    @classmethod
    def of(cls, prop_mc_idle: int, prop_mc_old_idle: int, minimum: int) -> Demand:
        # upstream: a configured per-entry min replaces a smaller idle demand
        idle = minimum if 0 < minimum and prop_mc_idle < minimum else prop_mc_idle
        return cls(idle=idle, old_idle=prop_mc_old_idle)


@dataclass(frozen=True)
class IdleDecision:
    req_idle: int
    effective_idle: int
    limits_triggered: dict[str, str]
    curbs_triggered: dict[str, str]


def compute_glidein_min_idle(demand: Demand, here: SlotCounts, group: SlotCounts,
                             frontend: SlotCounts | None, pool: SlotCounts | None, in_downtime: bool,
                             group_limits: Mapping[str, Any], frontend_limits: Mapping[str, Any]) -> IdleDecision:
    """ReqIdleGlideins for one entry.

    0 in downtime or when a hard limit is reached (each recorded as ``"count=N, limit=M"``); otherwise
    the effective idle demand capped by every remaining headroom, divided by ``ramp_up_attenuation``,
    plus a reserve for long-waiting jobs, capped by ``idle_glideins_per_entry.max``, halved once per
    curb reached, and at least 1.  ``frontend``/``pool`` may be None (totals unknown): their limits are
    then not applied, so unknown totals never lower a request.
    """
    effective_idle = max(demand.idle - here.idle, 0)
    effective_old = max(demand.old_idle - here.idle, 0)
    checks = _limit_checks(here, group, frontend, pool, group_limits, frontend_limits)
    limits = {name: f"count={count}, limit={cap}" for name, count, cap, _ in checks if count >= cap}
    curbs = {name: f"count={count}, curb={curb}" for name, count, _, curb in checks
             if curb is not None and count >= curb}
    if in_downtime or limits or effective_idle == 0:
        return IdleDecision(0, effective_idle, limits, curbs)

    wanted = min(effective_idle, *(cap - count for _, count, cap, _ in checks))
    wanted = int(wanted / group_limits["ramp_up_attenuation"])
    wanted += min(effective_old // 3, group_limits["idle_glideins_per_entry"]["reserve"])
    wanted = min(wanted, group_limits["idle_glideins_per_entry"]["max"])
    for _ in curbs:
        wanted //= 2
    wanted = min(max(wanted, 1), group_limits["idle_glideins_per_entry"]["max"])
    return IdleDecision(wanted, effective_idle, limits, curbs)


def _limit_checks(here: SlotCounts, group: SlotCounts, frontend: SlotCounts | None, pool: SlotCounts | None,
                  group_limits: Mapping[str, Any], frontend_limits: Mapping[str, Any]
                  ) -> list[tuple[str, int, int, int | None]]:
    """(name, current count, hard limit, curb or None) for every limit that applies."""
    checks: list[tuple[str, int, int, int | None]] = [
        ("TotalGlideinsPerEntry", here.total, group_limits["running_glideins_per_entry"]["max"], None),
        ("IdleGlideinsPerEntry", here.idle, group_limits["idle_vms_per_entry"]["max"],
         group_limits["idle_vms_per_entry"]["curb"]),
        ("TotalGlideinsPerGroup", group.total, group_limits["running_glideins_total"]["max"],
         group_limits["running_glideins_total"]["curb"]),
        ("IdleGlideinsPerGroup", group.idle, group_limits["idle_vms_total"]["max"],
         group_limits["idle_vms_total"]["curb"]),
    ]
    for suffix, counts, total_key, idle_key in (
        ("PerFrontend", frontend, "running_glideins_total", "idle_vms_total"),
        ("Global", pool, "running_glideins_total_global", "idle_vms_total_global"),
    ):
        if counts is None:
            continue
        checks.append((f"TotalGlideins{suffix}", counts.total, frontend_limits[total_key]["max"],
                       frontend_limits[total_key]["curb"]))
        checks.append((f"IdleGlideins{suffix}", counts.idle, frontend_limits[idle_key]["max"],
                       frontend_limits[idle_key]["curb"]))
    return checks


def compute_glidein_max_run(demand: Demand, idle_slots_here: int, busy_glideins_here: int, in_downtime: bool,
                            group_limits: Mapping[str, Any]) -> int:
    """ReqMaxGlideins: room for the unmet idle demand plus the glideins already running our jobs.

    ``(max(demand − idle slots, 0) + busy glideins) × relative_to_queue + 1`` while there is idle
    demand; just the busy glideins when there is none; 0 in downtime.  Capped by
    ``running_glideins_per_entry.max``.
    """
    per_entry = group_limits["running_glideins_per_entry"]
    if in_downtime:
        return 0
    if demand.idle > 0:
        wanted = int((max(demand.idle - idle_slots_here, 0) + busy_glideins_here)
                     * per_entry["relative_to_queue"] + 1)
    else:
        wanted = busy_glideins_here
    return min(wanted, per_entry["max"])


@dataclass(frozen=True)
class RemovalCounters:
    """Consecutive-cycle counters behind the automatic removal escalation."""

    without_idle_jobs: int = 0
    without_busy_glideins: int = 0
    without_glideins: int = 0

    def advance(self, matched_idle_jobs: int, busy_here: bool, glideins_here: int) -> RemovalCounters:
        return RemovalCounters(
            without_idle_jobs=0 if matched_idle_jobs else self.without_idle_jobs + 1,
            without_busy_glideins=0 if busy_here else self.without_busy_glideins + 1,
            without_glideins=0 if glideins_here else self.without_glideins + 1,
        )


def decide_removal(counters: RemovalCounters, removal: Mapping[str, Any],
                   escalation: Mapping[str, Any]) -> tuple[str, int]:
    """(ReqRemoveExcess, ReqRemoveExcessMargin) from the counters and ``glideins_removal``.

    Automatic: WAIT after ``wait_after`` cycles without matching idle jobs; IDLE when also no glidein
    ran a job for ``idle_after`` cycles; ALL when also no glidein at all for ``all_after`` cycles.
    Configured ``type`` applies after ``wait`` cycles without idle jobs, or every cycle with
    ``requests_tracking`` (which also sends ``margin``).  The larger of the two wins; DISABLE turns
    both off.
    """
    if removal["type"] == "DISABLE":
        return "NO", 0
    automatic = "NO"
    if counters.without_idle_jobs > escalation["wait_after"]:
        automatic = "WAIT"
        if counters.without_busy_glideins > escalation["idle_after"]:
            automatic = "IDLE"
            if counters.without_glideins > escalation["all_after"]:
                automatic = "ALL"
    configured, margin = "NO", 0
    if removal["type"] != "NO" and (removal["requests_tracking"] or counters.without_idle_jobs > removal["wait"]):
        configured = removal["type"]
        margin = removal["margin"] if removal["requests_tracking"] else 0
    return max(automatic, configured, key=REMOVAL_TYPES.index), margin
