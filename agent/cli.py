"""``maestro agent``: the agent's command, found by ``maestro`` through the ``maestro.commands`` entry point
(so the hub's CLI never imports the agent package)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if "--simulate" in args:
        args.remove("--simulate")
        from agent import simulator

        return simulator.main(args)
    print(
        "maestro agent: the Kubernetes work agent is not in this build yet; "
        "run a protocol-level simulated agent with: maestro agent --simulate --consumer-name NAME --mqtt-config FILE",
        file=sys.stderr,
    )
    return 2
