"""Build the Lambda zip: hook_handler/ plus the pinned runtime dependencies, byte-for-byte reproducible.

Same inputs, same bytes: the dependencies come from ``lambda-requirements.txt`` (every version
pinned, wheels only, for the python3.12 x86_64 runtime); entries are sorted, every timestamp is
1980-01-01 and every mode 0644/0755, and no build-machine ``.pyc`` or console script (whose shebang
names the build machine's Python) goes in. Python's ``zipfile`` writes the archive, so the result
does not depend on the ``zip`` tool's version, the umask or the files' mtimes.

Bytecode (issue 12's cold start): Lambda's ``/var/task`` is read-only, so a zip without ``.pyc``
compiles every module it imports at every cold start. The zip therefore carries, beside each ``.py``,
``__pycache__/<name>.cpython-312.pyc`` compiled by a Python 3.12 (the runtime's version: bytecode is
per minor version) in PEP 552's *unchecked-hash* mode — valid without the source's mtime (every
mtime in the zip is 1980) and the same bytes at every build. The 3.12 interpreter is ``--python``,
else ``$LAMBDA_PYTHON``, else ``python3.12`` on PATH, else pyenv's; without one the zip is built
without bytecode and says so (it works, only its cold starts are slower).

Usage: ``python infra/aws/build_zip.py [--output build/coordinator.zip] [--python python3.12]``
(``make build``).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
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
RUNTIME_VERSION = (3, 12)
PYC_TAG = "cpython-312"
# Run by the 3.12 interpreter: compile every .py under the given roots, unchecked-hash, into __pycache__. Each
# argument is "root=name": tracebacks name files as Lambda holds them (/var/task/<name>/...), not the build's
# temporary directory (which would also make every build's bytes differ).
_COMPILE = """
import compileall, py_compile, sys
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
for arg in sys.argv[1:]:
    root, _, name = arg.partition("=")
    compileall.compile_dir(root, ddir="/var/task/" + name if name else "/var/task", quiet=2, invalidation_mode=mode)
"""


def runtime_python(given: str | None = None) -> str | None:
    """A Python 3.12 to compile the zip's bytecode with (see the module docstring), or None."""
    candidates = [given, os.environ.get("LAMBDA_PYTHON"), shutil.which("python3.12")]
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(root, "versions", "3.12*", "bin", "python3.12")), reverse=True)
    candidates += ["/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    for exe in candidates:
        if not exe:
            continue
        try:
            out = subprocess.run(
                [exe, "-c", "import sys; print(sys.implementation.cache_tag)"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == PYC_TAG:
            return exe
        if exe == given:
            raise SystemExit(f"--python {given}: not a Python 3.12 interpreter (the Lambda runtime is python3.12)")
    return None


def compile_bytecode(python: str, roots: list[str]) -> None:
    """Write unchecked-hash ``__pycache__/*.cpython-312.pyc`` beside every ``.py`` under each ``root=name``.
    A file that is not valid 3.12 (a dependency's test fixture) stays uncompiled, as Python would leave it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env["SOURCE_DATE_EPOCH"] = "315532800"
    subprocess.run([python, "-c", _COMPILE, *roots], check=True, env=env)


def install_dependencies(target: Path) -> None:
    """``pip install --target`` the pinned requirements, wheels only, for the Lambda runtime."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    cmd += ["--no-deps", "--only-binary=:all:", *PLATFORM, "--target", str(target), "-r", str(REQUIREMENTS)]
    subprocess.run(cmd, check=True)


def _files(base: Path, top: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(base)
        if path.is_dir():
            continue
        if "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
            # Only the runtime's bytecode, and only beside its source (compile_bytecode wrote it).
            if not (path.name.endswith(f".{PYC_TAG}.pyc") and path.parent.name == "__pycache__"):
                continue
            if not (path.parent.parent / (path.name.split(".")[0] + ".py")).exists():
                continue
        yield rel.as_posix(), path


def entries(deps: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file) for the installed dependencies, sorted by name."""
    found: dict[str, Path] = {}
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


def build(output: Path, python: str | None = None) -> str:
    """Build ``output`` (with bytecode when ``python`` is a 3.12) and return its SHA-256."""
    with tempfile.TemporaryDirectory(prefix="coordinator-deps-") as tmp:
        deps = Path(tmp) / "deps"
        install_dependencies(deps)
        package = Path(tmp) / "src"
        shutil.copytree(ROOT / PACKAGE, package / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
        if python is not None:
            compile_bytecode(python, [f"{package / PACKAGE}={PACKAGE}", f"{deps}="])
        files = dict(_files(package, package / PACKAGE))
        files.update(entries(deps))
        write_zip(output, sorted(files.items()))
        shutil.rmtree(deps)
    return hashlib.sha256(output.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "build" / "coordinator.zip")
    parser.add_argument("--python", help="a Python 3.12 to compile the bytecode with (default: found)")
    args = parser.parse_args(argv)
    python = runtime_python(args.python)
    if python is None:
        print(
            "warning: no Python 3.12 found (--python, $LAMBDA_PYTHON, python3.12, pyenv): the zip carries no "
            "bytecode, so every cold start compiles the modules it imports",
            file=sys.stderr,
        )
    digest = build(args.output, python)
    size = args.output.stat().st_size
    pyc = "with" if python else "without"
    print(f"{args.output}: {size} bytes ({size / 1_048_576:.1f} MiB), {pyc} 3.12 bytecode, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
