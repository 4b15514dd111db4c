"""Install the host-rendered node directory (/etc/glideinlab) into place, then exec supervisord."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path("/etc/glideinlab")
HOMES = {"frontend": Path("/var/lib/gwms-frontend"), "gfactory": Path("/var/lib/gwms-factory")}
# HTCondor-CE's own directories, separate from the site pool's (RUN, LOG, SPOOL, LOCK)
CE_DIRS = ("/var/run/condor-ce", "/var/log/condor-ce", "/var/lib/condor-ce/spool",
           "/var/lib/condor-ce/execute", "/var/lock/condor-ce", "/var/log/condor-ce/user",
           "/var/lock/condor-ce/user")


def _owned(path: Path, user: str, mode: int) -> None:
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, mode)


def _install(src: Path, dst: Path, user: str = "root", mode: int = 0o644) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    _owned(dst, user, mode)


def _install_dir(src: Path, dst: Path, user: str = "root", mode: int = 0o644, clean: bool = True) -> None:
    if clean and dst.exists():
        for old in dst.iterdir():
            if old.is_file():
                old.unlink()
    dst.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        for f in sorted(src.iterdir()):
            if f.is_file():
                _install(f, dst / f.name, user, mode)


def install(src: Path = SRC) -> dict:
    meta = json.loads((src / "node.json").read_text())
    secrets = src / "secrets"

    # Trust: the workspace CA in the system store (HTCondor, curl and Python all read it), host cert.
    _install(secrets / "ca.crt", Path("/usr/local/share/ca-certificates/glideinlab-ca.crt"))
    subprocess.run(["update-ca-certificates"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _install(secrets / "host.crt", Path("/etc/grid-security/hostcert.pem"))
    _install(secrets / "host.key", Path("/etc/grid-security/hostkey.pem"), mode=0o600)

    # HTCondor: our config only (the image's condor_config points LOCAL_CONFIG_DIR here).
    _install_dir(src / "condor" / "config.d", Path("/etc/condor/config.d"))
    _install_dir(secrets / "condor" / "passwords.d", Path("/etc/condor/passwords.d"), mode=0o600)
    _install_dir(secrets / "condor" / "tokens.d", Path("/etc/condor/tokens.d"), mode=0o600)
    Path("/etc/condor/passwords.d").chmod(0o700)
    Path("/etc/condor/tokens.d").chmod(0o700)
    if "ce" in meta["instances"]:
        _install_dir(src / "condor-ce" / "config.d", Path("/etc/condor-ce/config.d"))
        _install(src / "condor-ce" / "condor_mapfile", Path("/etc/condor-ce/condor_mapfile"))
        for d in CE_DIRS:
            Path(d).mkdir(parents=True, exist_ok=True)
            _owned(Path(d), "condor", 0o755)

    # Per-user credentials: IDTOKENs in ~/.condor/tokens.d, signing and issuer keys in the home.
    users = secrets / "users"
    for user_dir in sorted(users.iterdir()) if users.is_dir() else ():
        user = user_dir.name
        home = HOMES.get(user, Path(pwd.getpwnam(user).pw_dir))
        for sub, dst in (("tokens.d", home / ".condor" / "tokens.d"), ("passwords.d", home / "passwords.d"),
                         ("issuer", home / "issuer")):
            if (user_dir / sub).is_dir():
                _install_dir(user_dir / sub, dst, user, 0o600)
                _owned(dst, user, 0o700)
        if (home / ".condor").is_dir():
            _owned(home / ".condor", user, 0o700)
    if meta["role"] == "frontend":
        # the issuer serves HTTPS with the node's host certificate
        issuer = HOMES["frontend"] / "issuer"
        _install(secrets / "host.crt", issuer / "host.crt", "frontend", 0o644)
        _install(secrets / "host.key", issuer / "host.key", "frontend", 0o600)

    # Component configs where upstream keeps them.
    comp = src / "components"
    targets = {"frontend.yaml": Path("/etc/gwms-frontend/frontend.yaml"),
               "factory.yaml": Path("/etc/gwms-factory/factory.yaml")}
    for name, dst in targets.items():
        if (comp / name).exists():
            _install(comp / name, dst)

    _install_dir(src / "supervisor", Path("/etc/supervisor/conf.d"))
    Path("/var/log/glideinlab").mkdir(parents=True, exist_ok=True)
    return meta


def main(argv: list[str] | None = None) -> None:
    install()
    sys.stdout.flush()
    os.execv("/usr/bin/supervisord", ["supervisord", "-n", "-c", "/etc/supervisor/supervisord.conf"])
