"""Build the Lambda zip: hook_handler/ plus the pinned runtime dependencies, byte-for-byte reproducible.

Same inputs, same bytes: the dependencies come from ``lambda-requirements.txt`` (every version
pinned, wheels only, for the python3.12 x86_64 runtime); entries are sorted, every timestamp is
1980-01-01 and every mode 0644/0755, and no ``.pyc``, ``__pycache__`` or console script (whose
shebang names the build machine's Python) goes in. Python's ``zipfile`` writes the archive, so
the result does not depend on the ``zip`` tool's version, the umask or the files' mtimes.

Usage: ``python infra/aws/build_zip.py [--output build/coordinator.zip]`` (``make build``).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).resolve().parent / "lambda-requirements.txt"
PACKAGE = "hook_handler"
# What the zip must not carry: the runtime's own SDK, and build-machine artefacts.
EXCLUDED_TOP = {"bin", "boto3", "botocore", "s3transfer", "__pycache__"}
EPOCH = (1980, 1, 1, 0, 0, 0)
PLATFORM = ["--platform", "manylinux2014_x86_64", "--python-version", "3.12", "--implementation", "cp"]


def install_dependencies(target: Path) -> None:
    """``pip install --target`` the pinned requirements, wheels only, for the Lambda runtime."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    cmd += ["--no-deps", "--only-binary=:all:", *PLATFORM, "--target", str(target), "-r", str(REQUIREMENTS)]
    subprocess.run(cmd, check=True)


def _files(base: Path, top: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(base)
        if path.is_dir() or "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
            continue
        yield rel.as_posix(), path


def entries(deps: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file) for hook_handler/ and the installed dependencies, sorted by name."""
    found = dict(_files(ROOT, ROOT / PACKAGE))
    for top in deps.iterdir():
        if top.name in EXCLUDED_TOP or top.name.endswith(".pth"):
            continue
        found.update(_files(deps, top) if top.is_dir() else {top.name: top})
    return sorted(found.items())


def write_zip(output: Path, files: list[tuple[str, Path]]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.create_system = 3  # unix, so the modes below are honoured
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=9)
    tmp.replace(output)


def build(output: Path) -> str:
    """Build ``output`` and return its SHA-256."""
    with tempfile.TemporaryDirectory(prefix="coordinator-deps-") as tmp:
        deps = Path(tmp) / "deps"
        install_dependencies(deps)
        write_zip(output, entries(deps))
        shutil.rmtree(deps)
    return hashlib.sha256(output.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "build" / "coordinator.zip")
    args = parser.parse_args(argv)
    digest = build(args.output)
    size = args.output.stat().st_size
    print(f"{args.output}: {size} bytes ({size / 1_048_576:.1f} MiB), sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
