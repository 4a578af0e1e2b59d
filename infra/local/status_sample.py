"""``python -m infra.local.status_sample``: what ``python -m hook_handler status`` prints, at two moments of a
cluster on simulated time (emulated AWS, the etcd 3.5 model, ``SimFleet``): a scale-out whose joiner is a learner
catching up, then (back at three) a termination the quorum guard holds while another member is down. The README's
sample output comes from this command (the CLI prints ``status.render(status.collect(...))``, as here).
"""

from __future__ import annotations

import argparse
import logging
import sys

from hook_handler.status import collect, render
from hook_handler.telemetry import logger
from infra.local.aws import LocalAWS
from infra.local.clock import SimClock
from infra.local.etcd_model import EtcdModel
from infra.local.sim_fleet import SimFleet
from infra.local.stack import deploy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.status_sample", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="the etcd model's seed")
    args = parser.parse_args(argv)
    logger.setLevel(logging.CRITICAL)  # the emulated world's own passes log too: only the tables here
    with LocalAWS(clock=SimClock(), propagation=(5.0, 15.0)) as aws:
        model = EtcdModel(aws.clock, seed=args.seed, start_seconds=(1.0, 3.0))
        stack = deploy(aws, mode="eventbridge", etcd=model.transport(), settings={"poll_interval_seconds": "2"})
        fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain).start()
        coordinator = stack.runtime.coordinator

        def show(title: str) -> None:
            print(f"$ python -m hook_handler status    # {title}")
            print(render(collect(coordinator, aws.clock.now() + 30)))
            print()

        stack.scale(3)
        aws.clock.advance(300)
        model.catchup_seconds = 120.0  # a learner that takes two minutes to catch up with the leader
        stack.scale(4)
        for _ in range(600):
            aws.clock.advance(1)
            if any(m.learner and m.published for ms in model.clusters().values() for m in ms):
                break
        aws.clock.advance(10)
        show("3 -> 4: the joiner's member has started as a learner")

        aws.clock.advance(300)
        stack.scale(3)
        aws.clock.advance(300)
        serving = sorted(stack.in_service())
        down, leaving = serving[0], serving[1]
        fleet.crash(down, restart_delay=900.0)
        aws.clock.advance(10)
        stack.terminate(leaving, decrement=True)
        aws.clock.advance(60)
        show(f"{down}'s etcd is down; {leaving} is being terminated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
