"""Benchmark: `glideinlab up` to ready, against the floor of the same containers, plus idle memory.

* up: a fresh workspace (trust generated, configs rendered, containers started) until every daemon of
  every node answers an authenticated query — what `glideinlab up` prints;
* floor, in the same run: the same images started as plain personal HTCondor pools
  (`condor_master` with `use ROLE: Personal`), until `condor_who -wait` says every daemon is ready;
* idle memory of the workspace (docker stats per node) and of each daemon (RSS per process name),
  after it has idled for a while.

    python bench/workspace_up.py [--repeat N] [--idle SECONDS] [--workers N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import Floor, bench_workspace, container_memory, process_rss, progress, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds to idle before reading memory")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    ws = bench_workspace("benchup", workers=args.workers)
    images = [ws.images.role(node.role) for node in ws.spec.nodes]
    ws.down(volumes=True, progress=progress)
    ups, floors = [], []
    for i in range(args.repeat):
        floor = Floor(images)
        t0 = time.monotonic()
        floor.start()
        floor.wait_ready()
        floors.append(time.monotonic() - t0)
        floor.stop()
        progress(f"floor {i + 1}: {floors[-1]:.1f} s")

        t0 = time.monotonic()
        ws.up(progress=progress)
        ups.append(time.monotonic() - t0)
        progress(f"up {i + 1}: {ups[-1]:.1f} s")
        if i < args.repeat - 1:
            ws.down(volumes=True, progress=progress)

    progress(f"idling {args.idle:.0f} s before reading memory")
    time.sleep(args.idle)
    ids = [c["ID"] for c in ws.containers()]
    node_mem = container_memory(ids)
    daemons = {node.service: process_rss(ws, node.service) for node in ws.spec.nodes}
    ws.down(volumes=True, progress=progress)

    up, fl = statistics.median(ups), statistics.median(floors)
    figures = {
        "nodes": len(ws.spec.nodes), "up_s": [round(x, 1) for x in ups], "floor_s": [round(x, 1) for x in floors],
        "up_median_s": round(up, 1), "floor_median_s": round(fl, 1), "ratio": round(up / fl, 2),
        "idle_memory_mib_total": round(sum(node_mem.values()), 1),
        "idle_memory_mib_per_container": {k: round(v, 1) for k, v in node_mem.items()},
        "rss_mib_per_process": daemons,
    }
    entry = record("workspace_up", figures, profile=ws.spec.profile, image=images[0])
    print(f"up to ready: {up:.1f} s (median of {len(ups)}), floor (same containers, plain condor_master): "
          f"{fl:.1f} s, ratio {up / fl:.2f}")
    print(f"idle workspace memory: {entry['idle_memory_mib_total']:.0f} MiB in {len(node_mem)} containers")
    for node, procs in daemons.items():
        top = ", ".join(f"{k} {v:.0f}" for k, v in sorted(procs.items(), key=lambda kv: -kv[1])[:8])
        print(f"  {node}: {top} (MiB RSS)")


if __name__ == "__main__":
    main()
