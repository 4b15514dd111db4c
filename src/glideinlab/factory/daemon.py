"""The Factory daemon: each cycle, read requests, decide per entry, act on the queue, advertise.

The cycle (upstream's ``glideFactory`` + ``glideFactoryEntry``, in one process):

1. query the WMS collector once for every ``glideclient`` addressed to our entries and encrypted with
   our current or previous key; validate and decrypt each (identity, names, numbers) and authorize the
   frontend (configured, same identity, allowed on the entry) — every rejection is one log line;
2. per entry: read its glideins from the factory schedd (the queue *is* the state, so a restart never
   duplicates glideins), run the pure decision (:func:`glideinlab.factory.policy.decide_entry`), write
   the requests' tokens to the client's credential directory, submit/remove/release accordingly;
3. advertise ``glidefactoryglobal``, one ``glidefactory`` per entry and one ``glidefactoryclient`` per
   (entry, client), with upstream's monitoring attributes; deadvertise them on exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..condor.adapter import Condor, CondorError
from ..errors import ConfigError, UserError
from ..glidein import stage as stage_writer
from ..protocol import ads
from ..protocol.crypto import CryptoError, load_keyring
from ..service import run_loop, setup_logging
from . import policy
from .config import EntryConfig, FactoryConfig, ad_name, load_factory_config
from .submit import EXECUTABLE_NAME, StageRef, client_paths, submit_description

log = setup_logging("glideinlab.factory")
# what the queue query returns for each glidein: what the policy and monitoring read
JOB_ATTRS = ["ClusterId", "ProcId", "JobStatus", "GridJobStatus", "GridJobId", "EnteredCurrentStatus",
             "QDate", "HoldReasonCode", "HoldReasonSubCode", "HoldReason", "NumSystemHolds", "GlideinClient",
             "GlideinFrontendName", "GlideinCredentialIdentifier", "GlideinEntryName", "GlideinFactory",
             "GlideinName", "JobUniverse"]


@dataclass
class EntryState:
    """What the factory remembers about an entry between cycles: only monitoring, never decisions."""

    decision: policy.EntryDecision | None = None
    requests: dict[str, ads.ClientRequest] = field(default_factory=dict)
    #: client -> why its newest held glidein is held (a CE refusing pilots shows up here)
    held_reasons: dict[str, str] = field(default_factory=dict)


class Factory:
    def __init__(self, config: FactoryConfig, condor: Condor):
        self.config = config
        self.condor = condor
        self.start_time = int(time.time())
        self.work_dir = Path(config.submit.base_dir)
        self.keyring = None
        self.main_stage: StageRef | None = None
        self.entry_stages: dict[str, StageRef] = {}
        self.executable = self.work_dir / EXECUTABLE_NAME
        self.states: dict[str, EntryState] = {e.name: EntryState() for e in config.entries}
        self.sequence = ads.UpdateSequence()
        self.cycles = 0

    # -- start-up -----------------------------------------------------------------------------
    def setup(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        sec = self.config.security
        try:
            self.keyring = load_keyring(self.work_dir / "rsa.key", key_length=sec.key_length,
                                        reuse_grace=sec.reuse_oldkey_onstartup_gracetime)
        except CryptoError as err:
            raise UserError(f"{self.work_dir / 'rsa.key'}: {err}") from None
        shutil.copyfile(stage_writer.STARTUP_SCRIPT, self.executable)
        self.executable.chmod(0o755)
        self.write_stages()
        log.info("factory %s@%s ready: %d entries, key %s", self.config.glidein_name, self.config.factory_name,
                 len(self.config.entries), self.keyring.current.pub_key_id)

    def write_stages(self) -> None:
        """The signed staging areas glideins download: main (factory-wide) and one per entry."""
        base = Path(self.config.stage.base_dir)
        url = self.config.stage.web_base_url.rstrip("/")
        scripts = stage_writer.standard_validation_scripts()
        consts = {k: str(a.value) for k, a in self.config.attrs.items() if a.const}
        ref = stage_writer.write_stage(base, scripts, executable=set(scripts), constants=consts)
        self.main_stage = StageRef(url, ref.descript, ref.sign)
        for entry in self.config.entries:
            consts = {k: str(a.value) for k, a in entry.attrs.items() if a.const}
            ref = stage_writer.write_stage(base / f"entry_{entry.name}", {}, constants=consts)
            self.entry_stages[entry.name] = StageRef(f"{url}/entry_{entry.name}", ref.descript, ref.sign)

    # -- one cycle ----------------------------------------------------------------------------
    def cycle(self) -> None:
        self.cycles += 1
        now = time.time()
        requests = self.find_work(now)
        for entry in self.config.entries:
            self.work_on_entry(entry, requests.get(entry.name, []), now)
        if self.cycles == 1 or self.cycles % max(1, self.config.advertise_delay) == 0 or any(
                s.decision and (s.decision.submissions or s.decision.removals) for s in self.states.values()):
            self.advertise()

    def find_work(self, now: float) -> dict[str, list[tuple[ads.ClientRequest, str]]]:
        """Valid, authorized requests per entry, with the local username each maps to."""
        names = [ad_name(e) for e in self.config.entries]
        constraint = ads.glideclient_constraint(names, self.keyring.pub_key_ids(now))
        try:
            raw = self.condor.query_ads(self.config.collector, constraint)
        except CondorError as err:
            log.warning("cannot read requests: %s", err)
            return {}
        work: dict[str, list[tuple[ads.ClientRequest, str]]] = {}
        for ad in raw:
            parsed = ads.parse_glideclient(ad, self.keyring, now)
            if isinstance(parsed, ads.Rejected):
                log.warning("request %s ignored: %s", parsed.name, parsed.reason)
                continue
            try:
                entry = self.config.entry(parsed.entry_name)
            except KeyError:
                log.warning("request %s ignored: unknown entry %r", parsed.name, parsed.entry_name)
                continue
            verdict = policy.authorize_request(self.config, entry, parsed.security_name, parsed.security_class,
                                               parsed.authenticated_identity)
            if isinstance(verdict, policy.Rejected):
                log.warning("request %s ignored: %s", parsed.name, verdict.reason)
                continue
            work.setdefault(entry.name, []).append((parsed, verdict.username))
        return work

    def work_on_entry(self, entry: EntryConfig, work: list[tuple[ads.ClientRequest, str]], now: float) -> None:
        schedd_name = entry.schedd_name
        try:
            schedd = self.condor.schedd(schedd_name, self.config.collector)
            jobs = self.condor.query_jobs(schedd, _entry_constraint(self.config, entry), JOB_ATTRS)
        except CondorError as err:
            log.warning("entry %s: cannot read its glideins, doing nothing this cycle: %s", entry.name, err)
            return
        requests = [self._policy_request(req) for req, _ in work]
        decision = policy.decide_entry(entry, policy.FactoryLimits.from_config(self.config), requests, jobs, now)
        state = self.states[entry.name]
        state.decision = decision
        state.requests = {req.client_name: req for req, _ in work}
        state.held_reasons = held_reasons(jobs)
        for line in decision.warnings:
            log.warning("entry %s: %s", entry.name, line)
        by_client = {req.client_name: (req, user) for req, user in work}
        for sub in decision.submissions:
            req, user = by_client[sub.client_name]
            self._submit(entry, schedd, schedd_name, req, user, sub, now)
        self._act(schedd, "Remove", [r for r in decision.removals], entry)
        self._act(schedd, "RemoveX", [r for r in decision.removals if r.force], entry)
        self._act(schedd, "Release", list(decision.releases), entry)
        c = decision.counts.entry
        log.info("entry %s: requests %s | glideins idle %d running %d held %d | submitted %d removed %d "
                 "released %d%s", entry.name,
                 ", ".join(f"{r.client_name} idle={r.req_idle_glideins} max={r.req_max_glideins}"
                           f" remove={r.req_remove_excess}" for r in requests) or "none",
                 c.get("Idle", 0), c.get("Running", 0), c.get("Held", 0), decision.submitted,
                 len(decision.removals), len(decision.releases),
                 f" | blocked: {'; '.join(decision.blocked_reasons)}" if decision.blocked_reasons else "")

    @staticmethod
    def _policy_request(req: ads.ClientRequest) -> policy.GlideinRequest:
        return policy.GlideinRequest(
            client_name=req.client_name, security_name=req.security_name, security_class=req.security_class,
            credential_id=_credential_id(req), req_idle_glideins=req.idle_glideins,
            req_max_glideins=req.max_glideins, req_remove_excess=req.remove_excess,
            req_remove_excess_margin=req.remove_excess_margin, req_idle_lifetime=req.idle_lifetime)

    def _submit(self, entry, schedd, schedd_name, req, username, sub, now) -> None:
        paths = client_paths(self.config, username, entry)
        paths.credentials.mkdir(parents=True, exist_ok=True, mode=0o700)
        paths.logs.mkdir(parents=True, exist_ok=True)
        scitoken = _write_secret(paths.scitoken(req.client_name, entry.name), req.scitoken)
        idtoken = _write_secret(paths.idtoken(req.client_name, entry.name), req.idtoken)
        if entry.auth_method == "scitoken" and scitoken is None:
            log.warning("entry %s: request %s carries no SciToken; not submitting", entry.name, req.name)
            return
        desc = submit_description(
            config=self.config, entry=entry, request=req, submission=sub, main_stage=self.main_stage,
            entry_stage=self.entry_stages[entry.name], executable=self.executable, paths=paths,
            schedd_name=schedd_name, scitoken_file=scitoken, idtoken_file=idtoken, now=now)
        try:
            cluster = self.condor.submit(schedd, desc, count=sub.count)
        except CondorError as err:
            log.error("entry %s: submitting %d glidein(s) for %s failed: %s", entry.name, sub.count,
                      sub.client_name, err)
            return
        log.info("entry %s: submitted %d glidein(s) for %s as cluster %d", entry.name, sub.count,
                 sub.client_name, cluster)
        if entry.submit.sleep:
            time.sleep(entry.submit.sleep)

    def _act(self, schedd, action: str, items: list, entry: EntryConfig) -> None:
        if not items:
            return
        for item in items:
            log.info("entry %s: %s %s: %s", entry.name, action.lower(), item.job_id, item.reason)
        try:
            self.condor.act(schedd, action, [i.job_id for i in items], reason=f"glideinlab factory: {items[0].reason}")
        except CondorError as err:
            log.error("entry %s: %s failed: %s", entry.name, action, err)

    # -- advertising --------------------------------------------------------------------------
    def advertise(self) -> None:
        cfg = self.config
        public = self.keyring.current.public
        generic = [ads.build_glidefactoryglobal(factory_name=cfg.factory_name, glidein_name=cfg.glidein_name,
                                                public_key=public, daemon_start_time=self.start_time)]
        clients = []
        for entry in cfg.entries:
            state = self.states[entry.name]
            decision = state.decision
            generic.append(ads.build_glidefactory(
                factory_name=cfg.factory_name, glidein_name=cfg.glidein_name, entry_name=entry.name,
                public_key=public, daemon_start_time=self.start_time, trust_domain=entry.trust_domain,
                auth_method=entry.auth_method,
                web=ads.FactoryWeb(self.main_stage.url, self.main_stage.descript, self.main_stage.sign,
                                   self.entry_stages[entry.name].descript, self.entry_stages[entry.name].sign),
                attrs=_plain_attrs(entry.published_attrs()), params=entry.params(),
                config_limits=entry.limits.configured_limits(),
                monitor={**(_strip_monitor(decision.monitor_attrs()) if decision else {}),
                         **_held_reason(state.held_reasons.values())},
                in_downtime=not entry.enabled))
            for client, cd in (decision.clients.items() if decision else ()):
                req = state.requests.get(client)
                params = {**entry.params(), **(req.params if req else {})}
                monitor = {**{f"Status{k}": v for k, v in cd.status.items()},
                           **{f"Requested{k}": v for k, v in cd.requested.items()},
                           **_held_reason([state.held_reasons.get(client, "")])}
                clients.append(ads.build_glidefactoryclient(
                    factory_name=cfg.factory_name, glidein_name=cfg.glidein_name, entry_name=entry.name,
                    client=client, attrs=_plain_attrs(entry.published_attrs()), params=params,
                    monitor=monitor, limits_triggered=cd.limits_triggered))
        try:
            self.condor.advertise(cfg.collector, [self.sequence.stamp(a) for a in generic],
                                  ads.AD_KINDS[ads.GLIDEFACTORY].update_command)
            self.condor.advertise(cfg.collector, [self.sequence.stamp(a) for a in clients],
                                  ads.AD_KINDS[ads.GLIDEFACTORYCLIENT].update_command)
        except CondorError as err:
            log.warning("advertising failed: %s", err)

    def shutdown(self) -> None:
        """Deadvertise our ads so frontends stop seeing a factory that is gone (upstream does too)."""
        cfg = self.config
        for my_type in (ads.GLIDEFACTORY, ads.GLIDEFACTORYGLOBAL, ads.GLIDEFACTORYCLIENT):
            inv = ads.invalidation(my_type, FactoryName=cfg.factory_name) if my_type != ads.GLIDEFACTORYCLIENT \
                else ads.invalidation(my_type, ReqFactoryName=cfg.factory_name)
            try:
                self.condor.advertise(cfg.collector, [inv.ad], inv.command)
            except CondorError as err:
                log.warning("deadvertising %s failed: %s", my_type, err)
        log.info("factory stopped")


def held_reasons(jobs: list[dict[str, Any]]) -> dict[str, str]:
    """Per client, the HoldReason of its most recently held glidein."""
    newest: dict[str, tuple[float, str]] = {}
    for job in jobs:
        if job.get("JobStatus") == 5 and job.get("HoldReason"):
            client = str(job.get("GlideinClient", ""))
            when = float(job.get("EnteredCurrentStatus") or 0)
            if when >= newest.get(client, (-1.0, ""))[0]:
                newest[client] = (when, str(job["HoldReason"]))
    return {client: reason for client, (_, reason) in newest.items()}


def _held_reason(reasons) -> dict[str, str]:
    """``GlideinMonitorHeldReason`` (not upstream's: it makes a CE refusing pilots visible in the ads)."""
    reasons = [r for r in reasons if r]
    return {"HeldReason": reasons[0][:500]} if reasons else {}


def _entry_constraint(config: FactoryConfig, entry: EntryConfig) -> str:
    return (f'(GlideinFactory =?= "{config.factory_name}") && (GlideinName =?= "{config.glidein_name}")'
            f' && (GlideinEntryName =?= "{entry.name}")')


def _credential_id(req: ads.ClientRequest) -> str:
    """The request's credential id: its ScitokenId, else the ``<credid>_`` prefix of its Name."""
    return str(req.params_decrypted.get("ScitokenId") or req.name.split("_", 1)[0])


def _write_secret(path: Path, content: str | None) -> Path | None:
    """Write a token where the glidein job can pick it up; only when it changed (0600)."""
    if not content:
        return None
    data = content.strip().encode() + b"\n"
    if not path.exists() or path.read_bytes() != data:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    return path


def _plain_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Entry attrs for an ad: ClassAd expressions (``expr`` attrs) marked as such."""
    out = {}
    for key, value in attrs.items():
        out[key] = value if isinstance(value, (str, int, float, bool)) else ads.Expr(str(value))
    return out


def _strip_monitor(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix(ads.MONITOR_PREFIX): v for k, v in attrs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glideinlab.factory", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="factory.yaml")
    parser.add_argument("--cycles", type=int, help="stop after this many cycles (tests)")
    args = parser.parse_args(argv)
    try:
        config = load_factory_config(args.config)
        factory = Factory(config, Condor())
        factory.setup()
    except (ConfigError, UserError) as err:
        print(f"glideinlab.factory: {err}", file=sys.stderr)
        return 2
    run_loop(factory.cycle, config.loop_delay, factory.shutdown, log, max_cycles=args.cycles)
    return 0
