"""``python3 -m glideinlab.node init|probe|probe-instance|health`` (inside a node)."""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "probe"
    if cmd == "init":
        from .init import main as init_main

        init_main()
        return 0  # not reached: init execs supervisord
    if cmd == "probe-instance":
        from .probe import probe_instance

        print(json.dumps(probe_instance("")))
        return 0
    if cmd == "health":
        from .probe import health

        ok, why = health()
        print(why)
        return 0 if ok else 1
    if cmd == "probe":
        from .probe import probe_node

        report = probe_node()
        print(json.dumps(report))
        return 0 if report["ok"] else 1
    print(f"usage: python3 -m glideinlab.node init|probe|health (got {cmd!r})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
