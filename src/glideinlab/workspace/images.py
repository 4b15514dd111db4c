"""Build the node images offline: debootstrap → ``docker import`` → Dockerfiles.

Layers, each cached by the engine, so a change to our Python code rebuilds only the last ones:

1. ``<prefix>/rootfs:<suite>``: ``debootstrap --variant=minbase`` imported with ``docker import``
   (skipped if the image exists, or replaced by ``base_image`` where a registry is reachable);
2. ``<prefix>/base:<suite>``: HTCondor from Debian's ``condor`` package, supervisord, Python libs;
3. ``<prefix>/<role>-base:<suite>`` for ce, factory, frontend, worker: role specifics;
4. ``<prefix>/<role>:<suite>``: the role image plus our package, one COPY layer (``images/node``),
   so a change to our code rebuilds four small layers in seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import glideinlab

from ..defaults import workspace as D
from ..errors import UserError
from .engine import Engine

IMAGES_DIR = Path(__file__).resolve().parents[3] / "images"  # source checkout layout
ROLES = ("ce", "factory", "frontend", "worker")
Progress = Callable[[str], None]


class BuildError(UserError):
    exit_code = 4


@dataclass(frozen=True)
class ImageSet:
    prefix: str
    suite: str

    def ref(self, name: str) -> str:
        return f"{self.prefix}/{name}:{self.suite}"

    def role(self, role: str) -> str:
        return self.ref(role)


def image_prefix() -> str:
    """The image name prefix: ``$GLIDEINLAB_IMAGE_PREFIX`` if set (a branch that changes a Dockerfile
    builds its own set beside the main one), else the ``images.prefix`` default."""
    return os.environ.get("GLIDEINLAB_IMAGE_PREFIX") or D.IMAGES["prefix"].default


def all_present(engine: Engine, images: ImageSet) -> bool:
    return all(engine.image_exists(images.role(role)) for role in ROLES)


def package_dir() -> Path:
    """Our package on the host: what the code layer copies and what nodes mount in dev mode."""
    return Path(glideinlab.__file__).parent


def images_dir() -> Path:
    """The Dockerfiles: in the source tree (editable install) or shipped next to the package."""
    for candidate in (IMAGES_DIR, Path(glideinlab.__file__).parent / "images"):
        if (candidate / "base" / "Dockerfile").exists():
            return candidate
    raise UserError("cannot find the images/ directory with the Dockerfiles (run from a glideinlab checkout)")


def build(engine: Engine, images: ImageSet, *, mirror: str = D.IMAGES["mirror"].default,
          base_image: str = "", progress: Progress = print, no_cache: bool = False) -> dict[str, float]:
    """Build every layer; return seconds spent per step (a cached step takes well under a second)."""
    timings: dict[str, float] = {}
    root = base_image or images.ref("rootfs")
    if not base_image and not engine.image_exists(root):
        t0 = time.monotonic()
        debootstrap_import(engine, root, images.suite, mirror, progress)
        timings["rootfs"] = time.monotonic() - t0
    ctx_root = images_dir()
    # (Dockerfile dir, tag, build args); every step is cached by the engine, so this is cheap to repeat
    steps = [("base", images.ref("base"), {"BASE_IMAGE": root, "MIRROR": mirror})]
    steps += [(role, images.ref(f"{role}-base"), {"BASE": images.ref("base")}) for role in ROLES]
    steps += [("node", images.role(role), {"ROLE_IMAGE": images.ref(f"{role}-base")}) for role in ROLES]
    for dockerfile_dir, tag, args in steps:
        role = tag.split("/")[-1].split(":")[0].removesuffix("-base")
        t0 = time.monotonic()
        progress(f"building {tag}")
        with tempfile.TemporaryDirectory(prefix="glideinlab-ctx-") as tmp:
            ctx = Path(tmp)
            shutil.copytree(ctx_root / dockerfile_dir, ctx, dirs_exist_ok=True)
            if dockerfile_dir == "node":
                shutil.copytree(package_dir(), ctx / "glideinlab",
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                _normalise_mtimes(ctx)
            labels = {"org.glideinlab.role": role} if role in ROLES else {}
            docker_build(engine, ctx, tag, args, labels=labels, no_cache=no_cache)
        timings[tag.split("/")[-1]] = time.monotonic() - t0
    return timings


def _normalise_mtimes(ctx: Path) -> None:
    # The context is a fresh copy each time; fixed mtimes keep the layer cache keyed on content only.
    for dirpath, dirnames, filenames in os.walk(ctx):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (0, 0))


def docker_build(engine: Engine, ctx: Path, tag: str, args: dict[str, str], *,
                 labels: dict[str, str] | None = None, no_cache: bool = False) -> None:
    # labels as options, not LABEL steps: each Dockerfile step is a layer commit, and a commit takes
    # ~10 s on storage drivers with naive diff (fuse-overlayfs on this project's machines)
    # --force-rm: the classic builder otherwise keeps the container of a failed step
    cmd = [engine.cli, "build", "--force-rm", "-t", tag]
    for key, value in args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    for key, value in (labels or {}).items():
        cmd += ["--label", f"{key}={value}"]
    if no_cache:
        cmd.append("--no-cache")
    env = dict(os.environ)
    if engine.cli == "docker":
        env.setdefault("DOCKER_BUILDKIT", "0")  # the classic builder needs no buildx plugin and no registry
    proc = subprocess.run(cmd + [str(ctx)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise BuildError(_build_failure(tag, proc.stdout + proc.stderr))


def _build_failure(tag: str, log: str) -> str:
    lines = [line for line in log.splitlines() if line.strip()]
    steps = [line for line in lines if re.match(r"^(Step \d+/\d+ :|#\d+ \[|STEP \d+/\d+:)", line)]
    step = steps[-1] if steps else "(before the first step)"
    tail = "\n    ".join(lines[-15:])
    return f"building {tag} failed at {step}\n  last lines of the build log:\n    {tail}"


def debootstrap_import(engine: Engine, ref: str, suite: str, mirror: str, progress: Progress) -> None:
    """debootstrap a minimal Debian root and import it as an image (needs root and debootstrap)."""
    if not shutil.which("debootstrap"):
        raise BuildError("debootstrap is not installed; it builds the base image with no registry",
                         hint="apt-get install debootstrap")
    if os.geteuid() != 0:
        raise BuildError("building the base image needs root (debootstrap)",
                         hint="run `glideinlab build` as root once; later builds reuse the image")
    progress(f"debootstrap --variant=minbase {suite} (about 40 s, once)")
    with tempfile.TemporaryDirectory(prefix="glideinlab-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        proc = subprocess.run(["debootstrap", "--variant=minbase", suite, str(rootfs), mirror],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(_build_failure(ref, proc.stdout + proc.stderr).replace(
                "(before the first step)", "debootstrap"))
        # apt inside the image must use the same mirror
        (rootfs / "etc/apt/sources.list").write_text(f"deb {mirror} {suite} main\n")
        progress(f"importing {ref}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run([engine.cli, "import", "-", ref], stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise BuildError(f"importing the root file system as {ref} failed: "
                             f"{(imp.stderr or 'tar failed').strip().splitlines()[-1]}")
