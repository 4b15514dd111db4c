"""The one place glideinlab talks to HTCondor: a thin adapter over the ``htcondor2``/``classad2`` bindings.

Everything crossing it is plain data: ads in and out are ``dict``s of Python values (an attribute whose
value is an expression comes back evaluated; ``Undefined``/``Error`` become ``None``), job ids are
``"cluster.proc"`` strings.  Daemons, the smoke test and the tests use this and never the CLI tools, so
there is no output parsing anywhere.  Errors become :class:`CondorError` with a one-line message.

Authentication is HTCondor's own: the process's config (``_condor_*`` environment variables set by
supervisord) decides the methods, and tokens come from ``~/.condor/tokens.d``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import classad2

try:  # importing htcondor2 also registers HTCondor's ClassAd functions (stringListMember ...)
    import htcondor2
except ImportError:  # pragma: no cover - hosts without the bindings cannot talk to daemons anyway
    htcondor2 = None  # type: ignore[assignment]

from ..protocol.ads import Expr

# Bindings calls are not guaranteed thread-safe; the daemons are single-threaded, the smoke test polls.
_LOCK = threading.Lock()


class CondorError(RuntimeError):
    """An HTCondor operation failed; ``str(err)`` names the operation and the daemon."""


def to_plain(ad: classad2.ClassAd, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """A ClassAd as a dict of Python values; expressions are evaluated in the ad's own scope."""
    out: dict[str, Any] = {}
    for key in keys if keys is not None else ad.keys():
        if key not in ad:
            continue
        value = ad.get(key)
        if isinstance(value, classad2.ExprTree):
            try:
                value = ad.eval(key)
            except Exception:  # noqa: BLE001 - an unevaluable attribute is simply unknown
                value = None
        if isinstance(value, classad2.Value):  # Undefined / Error
            value = None
        elif isinstance(value, classad2.ClassAd):
            value = to_plain(value)
        out[key] = value
    return out


def to_classad(data: Mapping[str, Any]) -> classad2.ClassAd:
    """A dict as a ClassAd; :class:`~glideinlab.protocol.ads.Expr` values become expressions."""
    ad = classad2.ClassAd()
    for key, value in data.items():
        if value is None:
            continue
        ad[key] = classad2.ExprTree(str(value)) if isinstance(value, Expr) else value
    return ad


class Condor:
    """HTCondor operations used by glideinlab, each one call into the bindings."""

    def __init__(self) -> None:
        if htcondor2 is None:
            raise CondorError("the htcondor2 bindings are not installed")
        self.h = htcondor2

    # -- collectors ---------------------------------------------------------------------------
    def query_ads(self, collector: str | None, constraint: str = "true", projection: list[str] | None = None,
                  ad_type: str = "Any") -> list[dict[str, Any]]:
        try:
            with _LOCK:
                ads = self.h.Collector(collector).query(getattr(self.h.AdTypes, ad_type), constraint,
                                                        projection or [])
        except Exception as exc:  # noqa: BLE001 - the bindings raise several types
            raise CondorError(f"query of {ad_type} ads at {collector or 'the local collector'} failed: "
                              f"{_short(exc)}") from None
        return [to_plain(ad) for ad in ads]

    def advertise(self, collector: str, ads: list[Mapping[str, Any]], command: str) -> None:
        if not ads:
            return
        try:
            with _LOCK:
                self.h.Collector(collector).advertise([to_classad(a) for a in ads], command, True)
        except Exception as exc:  # noqa: BLE001
            raise CondorError(f"{command} of {len(ads)} ad(s) to {collector} failed: {_short(exc)}") from None

    # -- schedds ------------------------------------------------------------------------------
    def schedd(self, name: str | None = None, pool: str | None = None):
        try:
            with _LOCK:
                if name is None and pool is None:
                    return self.h.Schedd()
                location = self.h.Collector(pool).locate(self.h.DaemonTypes.Schedd, name)
                return self.h.Schedd(location)
        except Exception as exc:  # noqa: BLE001
            raise CondorError(f"cannot locate schedd {name or '(local)'} via {pool or 'local collector'}: "
                              f"{_short(exc)}") from None

    def query_jobs(self, schedd, constraint: str = "true", projection: list[str] | None = None,
                   history: bool = False) -> list[dict[str, Any]]:
        try:
            with _LOCK:
                if history:
                    ads = list(schedd.history(constraint, projection or [], match=-1))
                else:
                    ads = schedd.query(constraint, projection or [])
        except Exception as exc:  # noqa: BLE001
            raise CondorError(f"job query failed: {_short(exc)}") from None
        return [to_plain(ad) for ad in ads]

    def submit(self, schedd, description: Mapping[str, str], count: int = 1) -> int:
        """Submit ``count`` procs of one cluster; returns the cluster id."""
        try:
            with _LOCK:
                result = schedd.submit(self.h.Submit(dict(description)), count=count)
        except Exception as exc:  # noqa: BLE001
            raise CondorError(f"submit failed: {_short(exc)}") from None
        return int(result.cluster())

    def act(self, schedd, action: str, job_ids: list[str], reason: str | None = None) -> None:
        """``action`` is a JobAction name: Remove, RemoveX, Release, Hold ..."""
        if not job_ids:
            return
        try:
            with _LOCK:
                schedd.act(getattr(self.h.JobAction, action), job_ids, reason)
        except Exception as exc:  # noqa: BLE001
            raise CondorError(f"{action} of {len(job_ids)} job(s) failed: {_short(exc)}") from None

    def reschedule(self, schedd) -> None:
        with _LOCK:
            schedd.reschedule()


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
