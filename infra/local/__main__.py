"""``python -m infra.local serve``: run the emulated AWS as a server for boto3 clients (``AWS_ENDPOINT_URL``).

Example:
    python -m infra.local serve --port 4566 --clock sim --propagation 20-60
    AWS_ENDPOINT_URL=http://127.0.0.1:4566 aws route53 list-hosted-zones
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from infra.local.aws import LocalAWS
from infra.local.clock import SimClock, WallClock
from infra.local.server import LocalServer


def parse_propagation(text: str) -> float | tuple[float, float]:
    """``"2"`` -> 2.0 seconds; ``"20-60"`` -> uniform between 20 and 60 seconds."""
    try:
        if "-" in text:
            lo, hi = (float(part) for part in text.split("-", 1))
            if not 0 <= lo <= hi:
                raise ValueError
            return lo, hi
        value = float(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--propagation wants seconds ('2') or a range ('20-60'), not {text!r}"
        ) from None


def parse_rate(text: str) -> float | None:
    """``"5"`` -> 5 requests/second; ``"off"`` -> no Route 53 rate limit."""
    if text.lower() in ("off", "none", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--route53-rate wants requests per second or 'off', not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("--route53-rate must be positive (or 'off')")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the emulator server")
    serve.add_argument("--port", type=int, default=4566, help="port (0: any free port; the URL is printed)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--clock", choices=("wall", "sim"), default="wall", help="sim: advance via /_local/clock/advance"
    )
    serve.add_argument("--propagation", type=parse_propagation, default=(20.0, 60.0), help="seconds to INSYNC")
    serve.add_argument("--route53-rate", type=parse_rate, default=5.0, help="Route 53 requests/second, or 'off'")
    serve.add_argument("--prior-request-window", type=float, default=0.0, help="PriorRequestNotComplete window (s)")
    serve.add_argument("--seed", type=int, default=0)
    return parser


def serve(args: argparse.Namespace) -> int:
    clock = SimClock() if args.clock == "sim" else WallClock()
    aws = LocalAWS(
        clock,
        seed=args.seed,
        propagation=args.propagation,
        route53_rate=args.route53_rate,
        prior_request_window=args.prior_request_window,
    ).start()
    server = LocalServer(aws, host=args.host, port=args.port).start()
    print(f"local AWS serving on {server.url} (clock={args.clock})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.1):
        pass
    server.stop()
    aws.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
