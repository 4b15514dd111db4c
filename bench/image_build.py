"""Benchmark: a cold image build (debootstrap, HTCondor install, every layer) and a code-change rebuild.

Builds under a separate image prefix so the images you use are not touched, then removes them:

* cold: debootstrap + `docker import` + every Dockerfile with `--no-cache`;
* warm: nothing changed (every layer cached);
* code change: one file of the package touched, so only the code layer of each role rebuilds.

    python bench/image_build.py [--htcondor 23|25] [--keep]
"""

from __future__ import annotations

import argparse
import time

from common import ROOT, progress, record

from glideinlab.defaults import workspace as D
from glideinlab.workspace import images
from glideinlab.workspace.engine import detect

PREFIX = "glideinlab-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--htcondor", choices=tuple(D.HTCONDOR_LINES), default="23")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's images")
    args = parser.parse_args()
    engine = detect()
    imgs = images.ImageSet(PREFIX, D.HTCONDOR_LINES[args.htcondor])
    _remove(engine, imgs)
    try:
        t0 = time.monotonic()
        cold_steps = images.build(engine, imgs, progress=progress, no_cache=True)
        cold = time.monotonic() - t0

        t0 = time.monotonic()
        images.build(engine, imgs, progress=progress)
        warm = time.monotonic() - t0

        marker = ROOT / "src" / "glideinlab" / "_bench_marker.py"
        marker.write_text(f"# touched by bench/image_build.py at {time.time()}\n")
        try:
            t0 = time.monotonic()
            code_steps = images.build(engine, imgs, progress=progress)
            code = time.monotonic() - t0
        finally:
            marker.unlink()
    finally:
        if not args.keep:
            _remove(engine, imgs)
    figures = {"cold_s": round(cold, 1), "cold_steps_s": {k: round(v, 1) for k, v in cold_steps.items()},
               "warm_s": round(warm, 1), "code_change_s": round(code, 1),
               "code_change_steps_s": {k: round(v, 1) for k, v in code_steps.items() if v > 1}}
    record("image_build", figures, image=f"glideinlab/worker:{imgs.suite}")
    print(f"cold build: {cold:.1f} s ({', '.join(f'{k} {v:.0f}s' for k, v in cold_steps.items())})")
    print(f"warm rebuild (nothing changed): {warm:.1f} s; after a code change: {code:.1f} s")


def _remove(engine, imgs: images.ImageSet) -> None:
    names = ["rootfs", "base"] + [f"{r}-base" for r in images.ROLES] + list(images.ROLES)
    refs = [imgs.ref(n) for n in names if engine.image_exists(imgs.ref(n))]
    if refs:
        engine.run("rmi", "-f", *refs, check=False)


if __name__ == "__main__":
    main()
