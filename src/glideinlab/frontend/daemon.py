"""The Frontend daemon: each cycle, look at the pools, decide per group, advertise the requests.

One cycle (upstream's ``glideinFrontend`` + ``glideinFrontendElement.iterate_one``):

1. read every factory collector: ``glidefactoryglobal`` (the key to encrypt with), ``glidefactory`` (the
   entries), ``glidefactoryclient`` (what each factory did for us); ads whose ``AuthenticatedIdentity`` is
   not the configured ``factory_identity`` are dropped with a log line;
2. read the user schedds (owner-agnostic) and the user collector's startds; remember which queries
   failed, because a blind view must never cause removals (upstream #282, see the policy);
3. per group, run the pure decision (:func:`glideinlab.frontend.policy.compute_group`), log its table,
   and advertise one ``glideclient`` per entry (with the pilot SciToken for the CE and the glideins'
   IDTOKEN, encrypted to the factory's key) plus ``glideclientglobal`` to each factory collector and
   ``glideresource`` ads to the user collector; ads no longer wanted are invalidated.

State across cycles is only the per-group removal history (a JSON file), so a restart mid-cycle loses
nothing: requests are levels, not increments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..condor.adapter import Condor, CondorError
from ..defaults import frontend as D
from ..errors import ConfigError, UserError
from ..glidein import stage as stage_writer
from ..protocol import ads, idtoken, scitoken
from ..protocol.crypto import RequestKey
from ..service import run_loop, setup_logging
from .config import FrontendConfig, GroupConfig, load_frontend_config
from .matching import COLLECTOR_KEY, SCHEDD_KEY, MatchCache
from .policy import QueryStatus, Snapshot, compute_group, format_table, history_from_data, history_to_data
from .slots import count_slots

log = setup_logging("glideinlab.frontend")
FILES_DIR = Path(__file__).resolve().parent / "files"
JOB_ATTRS = ["ClusterId", "ProcId", "JobStatus", "EnteredCurrentStatus", "ServerTime", "RemoteHost",
             "RequestCpus", "RequestMemory", "GlobalJobId", "Owner", "JobUniverse"]
GLIDEIN_SCOPES = ["READ", "ADVERTISE_STARTD", "ADVERTISE_MASTER"]


@dataclass
class Factories:
    """What the factory collectors showed this cycle."""

    entries: list[dict[str, Any]]  # glidefactory ads, each with FactoryCollector
    parsed: dict[tuple[str, str], ads.FactoryEntry]  # glideid -> parsed entry
    keys: dict[tuple[str, str, str], Any]  # (collector, glidein, factory) -> FactoryPublicKey
    client_status: dict[tuple[str, str], ads.FactoryClientStatus]  # (collector, entry ad name)


class Frontend:
    def __init__(self, config: FrontendConfig, condor: Condor, work_dir: Path):
        self.config = config
        self.condor = condor
        self.work_dir = work_dir
        self.client_stage: stage_writer.StageRef | None = None
        self.group_stages: dict[str, stage_writer.StageRef] = {}
        self.sequence = ads.UpdateSequence()
        self.advertised: dict[str, set[str]] = {}  # collector -> Names of glideclient ads sent last cycle
        self._tokens: dict[tuple, tuple[str, float]] = {}  # cache key -> (token, refresh at)
        self.match_caches: dict[str, MatchCache] = {}  # group -> matching outcomes kept between cycles

    # -- start-up -----------------------------------------------------------------------------
    def setup(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        base = Path(self.config.stage.base_dir)
        scripts = {p.name: p.read_bytes() for p in sorted(FILES_DIR.iterdir()) if p.is_file()} \
            if FILES_DIR.is_dir() else {}
        consts = {"GLIDECLIENT_Start": self.config.match.start_expr or "True"}
        self.client_stage = stage_writer.write_stage(base, scripts, executable=set(scripts), constants=consts)
        for group in self.config.groups:
            consts = {"GLIDECLIENT_Group_Start": group.match.start_expr or "True"}
            self.group_stages[group.name] = stage_writer.write_stage(base / f"group_{group.name}", {},
                                                                     constants=consts)
        for cred in (self.config.credentials.scitoken, self.config.credentials.idtoken):
            path = getattr(cred, "key_file", None) or getattr(cred, "signing_key_file", None)
            if path and not Path(path).is_file():
                raise UserError(f"credential key {path} does not exist or is not readable")
        log.info("frontend %s ready: groups %s, factories %s", self.config.frontend_name,
                 ", ".join(g.name for g in self.config.groups if g.enabled),
                 ", ".join(f.collector for f in self.config.factories))

    # -- one cycle ----------------------------------------------------------------------------
    def cycle(self) -> None:
        now = time.time()
        factories = self.read_factories()
        slots, collector_ok = self.read_slots()
        frontend_slots = [s for s in slots if str(s.get("GLIDECLIENT_Name", "")).startswith(
            self.config.frontend_name + ".")]
        wanted: dict[str, list[dict]] = {f.collector: [] for f in self.config.factories}
        resources: list[dict] = []
        for group in self.config.groups:
            if not group.enabled:
                continue
            jobs, schedd_ads, failed = self.read_jobs(group)
            min_memory = group.limits["partitionable_glidein"]["min_memory"]
            snapshot = Snapshot(
                now=now, jobs=jobs, entries=factories.entries, slots=slots, schedd_ads=schedd_ads,
                frontend_slots=count_slots(frontend_slots, min_memory) if collector_ok else None,
                pool_slots=count_slots(slots, min_memory) if collector_ok else None,
                queries=QueryStatus(failed_schedds=tuple(failed), user_collector_ok=collector_ok))
            history_file = self.work_dir / f"group_{group.name}" / "history.json"
            history = history_from_data(_read_json(history_file))
            cache = self.match_caches.setdefault(group.name, MatchCache())
            result = compute_group(snapshot, self.config, group, history, cache)
            _write_json(history_file, history_to_data(result.history))
            for line in result.warnings:
                log.warning("group %s: %s", group.name, line)
            log.info("\n%s", format_table(result))
            for glideid, request in result.requests.items():
                entry = factories.parsed.get(glideid)
                if entry is None:
                    continue
                ad = self.glideclient(group, glideid[0], entry, request, factories, now)
                if ad is not None:
                    wanted[glideid[0]].append(ad)
                resources.append(ads.build_glideresource(
                    frontend_name=self.config.frontend_name, group_name=group.name, entry=entry,
                    match=ads.MatchExprs(group.effective_match_expr, group.effective_job_query_expr,
                                         group.effective_factory_query_expr, group.match.start_expr),
                    client_monitor={**request.glideresource_monitor(), **result.unmatched_monitor()},
                    factory_monitor=getattr(factories.client_status.get(glideid), "monitor", None),
                    limits_triggered=request.limits_triggered, curbs_triggered=request.curbs_triggered))
            for collector in wanted:
                wanted[collector].extend(self.glideclientglobal(group, collector, factories))
        self.advertise(wanted, resources)

    def read_factories(self) -> Factories:
        out = Factories([], {}, {}, {})
        for fac in self.config.factories:
            try:
                globals_ = self.condor.query_ads(fac.collector, ads.glidefactoryglobal_constraint())
                entries = self.condor.query_ads(fac.collector, ads.glidefactory_constraint(
                    self._factory_query_expr()))
                statuses = self.condor.query_ads(fac.collector, " || ".join(
                    f"({ads.glidefactoryclient_constraint(self.config.client_name(g))})"
                    for g in self.config.groups) or "false")
            except CondorError as err:
                log.warning("factory collector %s unreachable, no requests to it this cycle: %s",
                            fac.collector, err)
                continue
            for ad in globals_:
                parsed = ads.parse_glidefactoryglobal(ad, fac.factory_identity)
                if isinstance(parsed, ads.Rejected):
                    log.warning("factory ad %s at %s ignored: %s", parsed.name, fac.collector, parsed.reason)
                    continue
                out.keys[(fac.collector, parsed.glidein_name, parsed.factory_name)] = parsed.public_key
            for ad in entries:
                parsed = ads.parse_glidefactory(ad, fac.factory_identity)
                if isinstance(parsed, ads.Rejected):
                    log.warning("entry ad %s at %s ignored: %s", parsed.name, fac.collector, parsed.reason)
                    continue
                out.parsed[(fac.collector, parsed.name)] = parsed
                out.entries.append({**ad, COLLECTOR_KEY: fac.collector})
            for ad in statuses:
                parsed = ads.parse_glidefactoryclient(ad, fac.factory_identity)
                if not isinstance(parsed, ads.Rejected):
                    out.client_status[(fac.collector, parsed.req_glidein)] = parsed
        return out

    def _factory_query_expr(self) -> str | None:
        exprs = {g.effective_factory_query_expr for g in self.config.groups if g.enabled}
        return exprs.pop() if len(exprs) == 1 else None  # per-group filtering happens in the policy

    def read_jobs(self, group: GroupConfig) -> tuple[list[dict], list[dict], list[str]]:
        constraint = f"((JobStatus == 1) || (JobStatus == 2)) && ({group.effective_job_query_expr})"
        projection = sorted(set(JOB_ATTRS) | set(group.effective_job_match_attrs))
        jobs: list[dict] = []
        failed: list[str] = []
        for name in self.config.schedds:
            try:
                schedd = self.condor.schedd(name, self.config.user_collector)
                found = self.condor.query_jobs(schedd, constraint, projection)
            except CondorError as err:
                log.warning("schedd %s: %s", name, err)
                failed.append(name)
                continue
            jobs.extend({**job, SCHEDD_KEY: name} for job in found)
        try:
            schedd_ads = self.condor.query_ads(self.config.user_collector, "true", ad_type="Schedd")
        except CondorError:
            schedd_ads = []
        return jobs, schedd_ads, failed

    def read_slots(self) -> tuple[list[dict], bool]:
        try:
            return self.condor.query_ads(self.config.user_collector, "true", ad_type="Startd"), True
        except CondorError as err:
            log.warning("user collector: %s", err)
            return [], False

    # -- ads ----------------------------------------------------------------------------------
    def glideclient(self, group: GroupConfig, collector: str, entry: ads.FactoryEntry, request,
                    factories: Factories, now: float) -> dict | None:
        key = factories.keys.get((collector, entry.glidein_name, entry.factory_name))
        if key is None:
            log.warning("no key from factory %s@%s at %s: not requesting at %s", entry.glidein_name,
                        entry.factory_name, collector, entry.entry_name)
            return None
        fac = next(f for f in self.config.factories if f.collector == collector)
        creds = self.config.credentials
        group_stage = self.group_stages[group.name]
        url = self.config.stage.web_base_url.rstrip("/")
        params = {k: v for k, v in self.config.glidein_params(group).items() if k != "GLIDEIN_Collector"}
        cred_id = ads.credential_id(self.config.frontend_name, group.name, "scitoken")
        return ads.build_glideclient(
            frontend_name=self.config.frontend_name, group_name=group.name, entry_name=entry.entry_name,
            glidein_name=entry.glidein_name, factory_name=entry.factory_name, credential_id=cred_id,
            request=ads.GlideinRequest(request.req_idle, request.req_max_run, request.remove_excess,
                                       request.remove_excess_margin, request.idle_lifetime),
            web=ads.FrontendWeb(url, self.client_stage.descript, self.client_stage.sign,
                                f"{url}/group_{group.name}", group_stage.descript, group_stage.sign),
            request_key=RequestKey.new(key), my_identity=fac.my_identity,
            security_name=self.config.security_name, security_class="frontend",
            glidein_collector=self.config.user_collector, params=params, scitoken_id=cred_id,
            scitoken=self.pilot_scitoken(entry, now) if creds.scitoken else None,
            idtoken=self.glidein_idtoken(group, entry, now) if creds.idtoken else None,
            monitor=request.glideclient_monitor())

    def glideclientglobal(self, group: GroupConfig, collector: str, factories: Factories) -> list[dict]:
        fac = next(f for f in self.config.factories if f.collector == collector)
        out = []
        for (coll, glidein, factory), key in factories.keys.items():
            if coll != collector:
                continue
            out.append(ads.build_glideclientglobal(
                frontend_name=self.config.frontend_name, group_name=group.name, glidein_name=glidein,
                factory_name=factory, request_key=RequestKey.new(key), my_identity=fac.my_identity,
                security_name=self.config.security_name, credentials={}))
        return out

    def pilot_scitoken(self, entry: ads.FactoryEntry, now: float) -> str:
        """The SciToken the factory's HTCondor-G presents to the CE; audience = the CE's host:port."""
        cfg = self.config.credentials.scitoken
        gatekeeper = str(entry.attrs.get("GLIDEIN_Gatekeeper", "")).split()
        audience = gatekeeper[-1] if gatekeeper else "ANY"
        return self._cached(("scitoken", audience), cfg.lifetime, now, lambda: scitoken.mint_scitoken(
            Path(cfg.key_file).read_bytes(), kid=cfg.key_id, issuer=cfg.issuer, subject=cfg.subject,
            audience=audience, scope=cfg.scope, lifetime=cfg.lifetime, now=now))

    def glidein_idtoken(self, group: GroupConfig, entry: ads.FactoryEntry, now: float) -> str:
        """The IDTOKEN a glidein joins the user pool with: ``<site>@<subdomain>.<trust domain>``, per
        group and site as upstream (so one site can be revoked by rotating its key)."""
        cfg = self.config.credentials.idtoken
        site = str(entry.attrs.get("GLIDEIN_Site", entry.entry_name))
        subject = f"{site}@{cfg.identity_subdomain}.{cfg.trust_domain}"
        return self._cached(("idtoken", group.name, site), cfg.lifetime, now, lambda: idtoken.mint_idtoken(
            Path(cfg.signing_key_file).read_bytes(), key_id=cfg.key_id, issuer=cfg.trust_domain,
            subject=subject, scopes=GLIDEIN_SCOPES, lifetime=cfg.lifetime, now=int(now)))

    def _cached(self, key: tuple, lifetime: int, now: float, mint) -> str:
        token, refresh_at = self._tokens.get(key, ("", 0.0))
        if now >= refresh_at:
            token = mint()
            self._tokens[key] = (token, now + lifetime * D.DAEMON["token_refresh"].default)
        return token

    def advertise(self, wanted: dict[str, list[dict]], resources: list[dict]) -> None:
        kind = ads.AD_KINDS[ads.GLIDECLIENT]
        for collector, client_ads in wanted.items():
            names = {a["Name"] for a in client_ads}
            try:
                self.condor.advertise(collector, [self.sequence.stamp(a) for a in client_ads],
                                      kind.update_command)
                for gone in self.advertised.get(collector, set()) - names:
                    inv = ads.invalidation(ads.GLIDECLIENT, Name=gone)
                    self.condor.advertise(collector, [inv.ad], inv.command)
                self.advertised[collector] = names
            except CondorError as err:
                log.warning("advertising requests to %s failed: %s", collector, err)
        try:
            self.condor.advertise(self.config.user_collector, [self.sequence.stamp(a) for a in resources],
                                  ads.AD_KINDS[ads.GLIDERESOURCE].update_command)
        except CondorError as err:
            log.warning("advertising glideresource ads failed: %s", err)

    def shutdown(self) -> None:
        """Withdraw our requests: a frontend that is gone must not keep glideins coming."""
        for fac in self.config.factories:
            for my_type in (ads.GLIDECLIENT, ads.GLIDECLIENTGLOBAL):
                inv = ads.invalidation(my_type, FrontendName=self.config.frontend_name)
                try:
                    self.condor.advertise(fac.collector, [inv.ad], inv.command)
                except CondorError as err:
                    log.warning("withdrawing %s at %s failed: %s", my_type, fac.collector, err)
        inv = ads.invalidation(ads.GLIDERESOURCE, GlideFrontendName=self.config.frontend_name)
        try:
            self.condor.advertise(self.config.user_collector, [inv.ad], inv.command)
        except CondorError as err:
            log.warning("withdrawing glideresource ads failed: %s", err)
        log.info("frontend stopped")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glideinlab.frontend", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="frontend.yaml")
    parser.add_argument("--work-dir", default=D.DAEMON["work_dir"].default, help=D.DAEMON["work_dir"].help)
    parser.add_argument("--cycles", type=int, help="stop after this many cycles (tests)")
    args = parser.parse_args(argv)
    try:
        config = load_frontend_config(args.config)
        frontend = Frontend(config, Condor(), Path(args.work_dir))
        frontend.setup()
    except (ConfigError, UserError) as err:
        print(f"glideinlab.frontend: {err}", file=sys.stderr)
        return 2
    run_loop(frontend.cycle, config.loop_delay, frontend.shutdown, log, max_cycles=args.cycles)
    return 0
