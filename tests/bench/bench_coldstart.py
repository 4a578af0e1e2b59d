"""Cold start: import and client construction of ``hook_handler.app`` against boto3 alone.

Each sample is a fresh interpreter that times (``perf_counter``, interpreter start-up excluded)
its imports and the construction of the three clients, with ``AWS_REGION`` set and no network
call. Variants are interleaved so drift in the machine's load hits them alike; medians are taken.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PRELUDE = "import time\nt0 = time.perf_counter()\n"
_REPORT = "print(time.perf_counter() - t0)\n"

VARIANTS: dict[str, str] = {
    # What the issue measures: import the entry module, build its clients.
    "app": "import hook_handler.app\nhook_handler.app.Clients.create()\n",
    # The baseline: boto3 and the same three clients with the same configuration.
    "boto3": (
        "import boto3\nfrom botocore.config import Config\n"
        "config = Config(retries={'total_max_attempts': 1}, connect_timeout=5, read_timeout=15)\n"
        "for service in ('route53', 'autoscaling', 'ec2'):\n"
        "    boto3.client(service, config=config)\n"
    ),
    # For information: Lambda's init phase as deployed (AWS_LAMBDA_FUNCTION_NAME set, so the
    # module validates the settings and builds the Runtime, clients included, at import).
    "app-lambda-init": "import hook_handler.app\nassert hook_handler.app.RUNTIME is not None\n",
    # TLS on (issue 12): the modules a TLS cold start loads (client TLS, member certificates, the etcd client) and
    # the four clients (Secrets Manager too), beside boto3 with the same four. The secret's GetSecretValue is a
    # network call in both worlds and is left out of both; cryptography is imported on the first issue, not here.
    "app-tls": (
        "import hook_handler.app, hook_handler.tls, hook_handler.certs, hook_handler.etcd\n"
        "hook_handler.app.Clients.create(tls=True)\n"
    ),
    "boto3-tls": (
        "import boto3\nfrom botocore.config import Config\n"
        "config = Config(retries={'total_max_attempts': 1}, connect_timeout=5, read_timeout=15)\n"
        "for service in ('route53', 'autoscaling', 'ec2', 'secretsmanager'):\n"
        "    boto3.client(service, config=config)\n"
    ),
}

BASE_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}
LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "etcd-asg-coordinator",
    "domain_name": "example.com",
    "r53_zone_id": "Z0123456789ABCDEFGHIJ",
    "asg_names": "etcd",
}


@dataclass
class ColdStart:
    repeats: int
    samples: dict[str, list[float]]
    medians: dict[str, float]
    ratio: float  # median(app) / median(boto3)
    lambda_init_ratio: float  # median(app-lambda-init) / median(boto3)
    tls_ratio: float = 0.0  # median(app-tls) / median(boto3-tls)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _env(variant: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(BASE_ENV)
    if variant == "app-lambda-init":
        env.update(LAMBDA_ENV)
    return env


def sample(variant: str) -> float:
    """Seconds one fresh interpreter spends on ``variant``."""
    code = _PRELUDE + VARIANTS[variant] + _REPORT
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(variant), capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def measure(repeats: int = 9) -> ColdStart:
    """Interleaved samples (after one unmeasured warm-up of each variant: compiled bytecode, page cache)."""
    for variant in VARIANTS:
        sample(variant)
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:
            samples[variant].append(sample(variant))
    medians = {v: statistics.median(s) for v, s in samples.items()}
    return ColdStart(
        repeats=repeats,
        samples=samples,
        medians=medians,
        ratio=medians["app"] / medians["boto3"],
        lambda_init_ratio=medians["app-lambda-init"] / medians["boto3"],
        tls_ratio=medians["app-tls"] / medians["boto3-tls"],
    )


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 7).to_json(), indent=2))
