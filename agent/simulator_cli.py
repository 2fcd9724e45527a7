"""``maestro agent --simulate``: one simulated agent (:mod:`agent.simulator`) on a broker, until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Sequence

from agent.simulator import SimulatedAgent
from protocol import mqtt_config

DESCRIPTION = "A simulated agent: the agent side of the protocol with no Kubernetes behind it."


def main(argv: Sequence[str] | None = None) -> int:
    """``maestro agent --simulate``: run one simulated agent until interrupted."""
    parser = argparse.ArgumentParser(
        prog="maestro agent --simulate",
        description=DESCRIPTION,
    )
    parser.add_argument("--consumer-name", "--consumer", dest="consumer", required=True)
    parser.add_argument("--mqtt-config", "--message-broker-config-file", dest="mqtt_config", required=True)
    parser.add_argument("--source", default="maestro", help="source id the resync is addressed to")
    parser.add_argument("--client-id", default=None)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to 'apply' each work")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="fraction of applies reported failed")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=16, help="spec events handled at once (per work in order)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gmqtt").setLevel(logging.WARNING)  # NB: it logs every packet at INFO.
    config = mqtt_config.load(args.mqtt_config)
    agent = SimulatedAgent(
        consumer=args.consumer,
        config=config,
        source=args.source,
        client_id=args.client_id,
        delay=args.delay,
        failure_rate=args.failure_rate,
        seed=args.seed,
        concurrency=args.concurrency,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(agent.run())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
