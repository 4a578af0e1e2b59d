"""Cold start: import and client construction of ``hook_handler.app`` against boto3 alone.

Each sample is a fresh interpreter that times (``perf_counter``, interpreter start-up excluded)
its imports and the construction of the three clients, with ``AWS_REGION`` set and no network
call. Variants are interleaved so drift in the machine's load hits them alike; medians are taken.

The app is measured as the zip ships it (``infra/aws/build_zip.py``): its modules with bytecode
compiled ahead in unchecked-hash mode, nothing written at import (Lambda's ``/var/task`` is
read-only). The bench compiles a copy of ``hook_handler`` with its own interpreter (the zip's is
compiled by a 3.12 for the runtime); the dependencies come from the venv, compiled by pip as boto3
is. ``app-tls-source`` is the same import from source alone, for information: what a zip without
bytecode costs at every cold start.
"""

from __future__ import annotations

import compileall
import json
import os
import py_compile
import shutil
import statistics
import subprocess
import sys
import tempfile
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
VARIANTS["app-tls-source"] = VARIANTS["app-tls"]  # from source, no bytecode (information)
SHIPPED = ("app", "app-lambda-init", "app-tls")  # imported from the bytecode-compiled copy

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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "PYTHONPYCACHEPREFIX"))}
    env.update(BASE_ENV)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # as on Lambda: nothing is written at import
    if variant == "app-lambda-init":
        env.update(LAMBDA_ENV)
    return env


def shipped_copy(where: Path) -> Path:
    """A copy of ``hook_handler`` with unchecked-hash bytecode beside its sources, as the zip carries it."""
    shutil.copytree(ROOT / "hook_handler", where / "hook_handler", ignore=shutil.ignore_patterns("__pycache__"))
    ok = compileall.compile_dir(
        where / "hook_handler", quiet=2, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    assert ok, "hook_handler did not compile"
    return where


def sample(variant: str, shipped: Path | None = None) -> float:
    """Seconds one fresh interpreter spends on ``variant`` (shipped variants from ``shipped``'s copy)."""
    code = _PRELUDE + VARIANTS[variant] + _REPORT
    cwd = shipped if shipped is not None and variant in SHIPPED else ROOT  # `python -c` imports from cwd first
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=_env(variant), capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def measure(repeats: int = 9) -> ColdStart:
    """Interleaved samples (after one unmeasured warm-up of each variant: page cache)."""
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        shipped = shipped_copy(Path(tmp))
        for variant in VARIANTS:
            sample(variant, shipped)
        samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(repeats):
            for variant in VARIANTS:
                samples[variant].append(sample(variant, shipped))
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
