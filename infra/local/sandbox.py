"""Run the local cluster inside private namespaces, so it uses only loopback and asks our DNS server on port 53.

A sandbox is ``unshare`` with a new network namespace (only ``lo``, brought up: every 127.0.0.0/8 address
works and nothing reaches or clashes with the host), a private mount namespace in which a resolv.conf saying
``nameserver 127.0.0.53`` is bind-mounted over ``/etc/resolv.conf`` (the host's file is never touched), and,
where the kernel allows, a PID namespace whose end kills every process started inside. As root that is
``unshare -n -m -p -f --kill-child --mount-proc --propagation private``; as an ordinary user ``-r`` is added
(a user namespace mapping the user to root, which may bind port 53 and mount inside it).

Example:
    >>> ok, reason = available()
    >>> run_inside(["getent", "hosts", "db.example.com"], timeout=10)   # resolved by whatever serves 127.0.0.53
    2
    >>> call_inside("tests.e2e.test_sandbox:resolve_inside", {"name": "db.example.com"}, timeout=30)
    {'getaddrinfo': ['127.0.0.9'], ...}

Command line:
    python -m infra.local.sandbox check              # can sandboxes run here, and how
    python -m infra.local.sandbox run -- bash -l     # a shell inside one
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# Every process started in a sandbox carries this variable, so stragglers can be found after it ends.
MARKER = "INFRA_SANDBOX_ID"
DEFAULT_NAMESERVER = "127.0.0.53"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Runs inside the new namespaces before the program: loopback up, private resolver configuration, then exec.
_PRELUDE = r"""
set -e
ip link set lo up
mount --bind "$1" /etc/resolv.conf
if [ -n "$2" ]; then mount --bind "$2" /etc/nsswitch.conf; fi
shift 2
exec "$@"
"""

_BASE = ["-n", "-m", "--propagation", "private"]
# A PID namespace is what makes clean-up certain: when its first process dies the kernel kills the rest, and
# --kill-child kills that first process when unshare itself is killed.
_PID = ["-p", "-f", "--kill-child", "--mount-proc"]


class SandboxError(RuntimeError):
    """A sandbox could not be started, or the code run inside failed."""


class SandboxUnavailable(SandboxError):
    """This machine cannot create the namespaces (no unshare/ip, or namespaces disabled)."""


class SandboxTimeout(SandboxError, TimeoutError):
    """The program inside ran past its timeout; everything in the sandbox was killed."""


_probed: tuple[list[str] | None, str] | None = None


def _candidates() -> list[tuple[list[str], str]]:
    """unshare flag sets to try, strongest first. Root may still lack CAP_SYS_ADMIN (a container): then -r."""
    user = ["-r"]
    if os.geteuid() == 0:
        return [
            (_BASE + _PID, "root: network, mount and PID namespaces"),
            (_BASE, "root: network and mount namespaces (no PID namespace: clean-up by process group and marker)"),
            (user + _BASE + _PID, "user namespace as root: network, mount and PID namespaces"),
        ]
    return [
        (user + _BASE + _PID, "unprivileged: user, network, mount and PID namespaces"),
        (user + _BASE, "unprivileged: user, network and mount namespaces (no PID namespace)"),
    ]


def _missing_tools() -> list[str]:
    return [tool for tool in ("unshare", "ip", "mount", "sh") if shutil.which(tool) is None]


def available() -> tuple[bool, str]:
    """Whether sandboxes can run here, and how (or why not). Probes once per process (about 30 ms).

    Example:
        >>> available()
        (True, 'root: network, mount and PID namespaces')
    """
    flags, reason = _probe()
    return flags is not None, reason


def _probe() -> tuple[list[str] | None, str]:
    global _probed
    if _probed is not None:
        return _probed
    if not sys.platform.startswith("linux"):
        _probed = (None, f"namespaces need Linux, this is {sys.platform}")
        return _probed
    missing = _missing_tools()
    if missing:
        _probed = (None, f"missing {', '.join(missing)} (Debian: apt-get install util-linux iproute2 mount)")
        return _probed
    if not Path("/etc/resolv.conf").exists():
        _probed = (None, "/etc/resolv.conf does not exist, so there is nothing to bind-mount a private one over")
        return _probed
    errors = []
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as tmp:
        resolv = Path(tmp, "resolv.conf")
        resolv.write_text(f"nameserver {DEFAULT_NAMESERVER}\n")
        for flags, description in _candidates():
            argv = ["unshare", *flags, "sh", "-c", _PRELUDE, "sandbox", str(resolv), "", "true"]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired) as exc:
                errors.append(f"{' '.join(flags)}: {exc}")
                continue
            if done.returncode == 0:
                _probed = (flags, description)
                return _probed
            errors.append(f"unshare {' '.join(flags)}: {done.stderr.strip() or done.returncode}")
    hint = "" if os.geteuid() == 0 else " (unprivileged user namespaces disabled? kernel.unprivileged_userns_clone)"
    _probed = (None, "cannot create namespaces" + hint + ": " + "; ".join(errors))
    return _probed


def _nsswitch(directory: Path) -> str:
    """A private nsswitch.conf whose hosts line is 'files dns', so glibc tools ask our server and nothing else."""
    host = Path("/etc/nsswitch.conf")
    if not host.exists():
        return ""
    lines = [
        "hosts: files dns" if line.split(":", 1)[0].strip() == "hosts" else line
        for line in host.read_text().splitlines()
    ]
    path = directory / "nsswitch.conf"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def leftover_processes(sandbox_id: str) -> list[int]:
    """PIDs of live processes carrying ``INFRA_SANDBOX_ID=<sandbox_id>`` (only those this user may read)."""
    needle = f"{MARKER}={sandbox_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone, or not ours to read
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _kill_all(proc: subprocess.Popen[Any], sandbox_id: str) -> None:
    """SIGKILL the sandbox's process group, then any marked straggler that left it, and reap unshare."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # unshare is reaped at once, but the namespace's other processes die asynchronously after their init:
    # return only once none is left (a few milliseconds), so the caller may rely on it.
    deadline = time.monotonic() + 10
    while (pids := leftover_processes(sandbox_id)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    if pids:
        raise SandboxError(f"processes {pids} of sandbox {sandbox_id} survived SIGKILL for 10 s")


def run_inside(
    argv: list[str],
    env: dict[str, str] | None = None,
    *,
    nameserver: str = DEFAULT_NAMESERVER,
    timeout: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    sandbox_id: str | None = None,
) -> int:
    """Run ``argv`` inside a new sandbox and return its exit status; nothing it started survives the return.

    ``env`` defaults to this process's environment. On timeout (or any exception, Ctrl-C included) every
    process of the sandbox is killed with SIGKILL and its temporary directory removed.

    Example:
        >>> run_inside(["sh", "-c", "cat /etc/resolv.conf; ip -br addr"], timeout=5)
        nameserver 127.0.0.53
        lo    UNKNOWN    127.0.0.1/8 ::1/128
        0
    """
    flags, reason = _probe()
    if flags is None:
        raise SandboxUnavailable(reason)
    sandbox_id = sandbox_id or uuid.uuid4().hex
    env = dict(os.environ if env is None else env)
    env[MARKER] = sandbox_id
    tmp = Path(tempfile.mkdtemp(prefix="sandbox-"))
    try:
        resolv = tmp / "resolv.conf"
        resolv.write_text(f"# private to sandbox {sandbox_id}\nnameserver {nameserver}\n")
        full = ["unshare", *flags, "sh", "-c", _PRELUDE, "sandbox", str(resolv), _nsswitch(tmp), *argv]
        # A new session makes the sandbox one process group we can kill without touching our own.
        proc = subprocess.Popen(
            full, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise SandboxTimeout(f"{argv[0]} ran past {timeout} s inside the sandbox; killed") from exc
        finally:
            _kill_all(proc, sandbox_id)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def target_name(function: Callable[..., Any]) -> str:
    """``module:function`` for a module-level function in this project, named by its file (pytest imports test
    modules under bare names, which a fresh Python could not import).

    Example:
        >>> target_name(describe)
        'infra.local.sandbox:describe'
    """
    path = Path(inspect.getfile(function)).resolve().relative_to(PROJECT_ROOT).with_suffix("")
    return f"{'.'.join(path.parts)}:{function.__qualname__}"


def call_inside(
    target: str | Callable[..., Any],
    kwargs: dict[str, Any] | None = None,
    *,
    timeout: float | None = 120,
    env: dict[str, str] | None = None,
    nameserver: str = DEFAULT_NAMESERVER,
    python: str | None = None,
) -> Any:
    """Call ``target(**kwargs)`` in a fresh Python inside a new sandbox and return its JSON result.

    ``target`` is a module-level function of this project, or its name as ``module:function``.
    The function runs with this project importable; its return value must be JSON-serialisable. An exception
    inside is raised here as ``SandboxError`` carrying the inside traceback.

    Example:
        >>> call_inside("infra.local.sandbox:describe", timeout=10)
        {'resolv.conf': 'nameserver 127.0.0.53', 'pid': 1, ...}
    """
    if not isinstance(target, str):
        target = target_name(target)
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="sandbox-call-") as tmp:
        args_path, result_path = Path(tmp, "kwargs.json"), Path(tmp, "result.json")
        args_path.write_text(json.dumps(kwargs or {}))
        argv = [python or sys.executable, "-m", "infra.local.sandbox", "call", target, str(args_path), str(result_path)]
        code = run_inside(argv, env, nameserver=nameserver, timeout=timeout, cwd=PROJECT_ROOT)
        if not result_path.exists():
            raise SandboxError(f"{target} exited with status {code} inside the sandbox and left no result")
        payload = json.loads(result_path.read_text())
    if not payload["ok"]:
        raise SandboxError(f"{target} failed inside the sandbox:\n{payload['error']}")
    return payload["value"]


def describe() -> dict[str, Any]:
    """What a program inside sees (for ``check`` and tests): resolver file, PID, addresses, whether port 53 binds."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((DEFAULT_NAMESERVER, 53))
            port53 = True
        except OSError:
            port53 = False
    return {
        "resolv.conf": Path("/etc/resolv.conf").read_text().strip().splitlines()[-1],
        "pid": os.getpid(),
        "uid": os.getuid(),
        "interfaces": subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout.split("\n")[0],
        "port53": port53,
    }


def _call_main(target: str, args_path: str, result_path: str) -> int:
    """Inside the sandbox: run the target and write {"ok", "value"|"error"} for ``call_inside``."""
    try:
        module_name, function_name = target.split(":", 1)
        function = getattr(importlib.import_module(module_name), function_name)
        value = function(**json.loads(Path(args_path).read_text()))
        payload: dict[str, Any] = {"ok": True, "value": value}
    except BaseException:  # noqa: BLE001 - reported to the caller outside, whatever it was (SystemExit included)
        payload = {"ok": False, "error": traceback.format_exc()}
    Path(result_path).write_text(json.dumps(payload, default=str))
    return 0 if payload["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.local.sandbox check | run -- CMD... | call MODULE:FUNC ARGS.json RESULT.json``."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="say whether and how sandboxes run here; show what the inside looks like")
    run = sub.add_parser("run", help="run a command inside a new sandbox")
    run.add_argument("--nameserver", default=DEFAULT_NAMESERVER)
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    call = sub.add_parser("call", help=argparse.SUPPRESS)  # used by call_inside
    call.add_argument("target")
    call.add_argument("args_path")
    call.add_argument("result_path")
    args = parser.parse_args(argv)
    if args.command == "call":
        return _call_main(args.target, args.args_path, args.result_path)
    if args.command == "check":
        ok, reason = available()
        print(("available: " if ok else "unavailable: ") + reason)
        if ok:
            print(json.dumps(call_inside("infra.local.sandbox:describe", timeout=30), indent=2))
        return 0 if ok else 1
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return run_inside(cmd or ["sh"], nameserver=args.nameserver, stdin=None)


if __name__ == "__main__":
    raise SystemExit(main())
