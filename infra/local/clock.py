"""Clocks for the emulated AWS: simulated time for tests and benchmarks, wall time for the demo.

Both implement ``hook_handler.clock.Clock`` (``now``/``sleep``) plus ``call_at`` so the
emulator can schedule its own timers (heartbeat timeouts, propagation, deliveries).

``SimClock`` is a deterministic discrete-event scheduler.  Code that runs as a *task*
(``spawn``) is a real thread, but only one task runs at a time: it runs until it calls
``sleep`` (or ends), then the scheduler resumes whatever is due next, in time order and
FIFO among equal times, firing timers on the way.  No real time passes while simulated
time advances, and a given program and seed always interleave the same way.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: simulated runs start here


class TaskKilled(BaseException):
    """Raised inside a task that was killed (a Lambda whose sandbox died or timed out).

    A ``BaseException`` so that the killed code's ``except Exception`` cannot swallow it.
    """


@dataclass(eq=False)
class Task:
    """A cooperative task of a ``SimClock``."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    name: str
    clock: SimClock
    thread: threading.Thread | None = None
    go: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    killed: bool = False
    kill_reason: str = ""
    result: Any = None
    error: BaseException | None = None
    wake_token: int = 0

    def kill(self, reason: str = "killed", at: float | None = None) -> None:
        """Kill the task now (at its next resumption) or at simulated time ``at``."""
        self.clock._kill(self, reason, at)

    def value(self) -> Any:
        """The task's return value; re-raises what the task raised."""
        if not self.done:
            raise RuntimeError(f"task {self.name} has not finished")
        if self.error is not None:
            raise self.error
        return self.result


class SimClock:
    """Simulated time with cooperative tasks.

    Example:
        >>> clock = SimClock()
        >>> log = []
        >>> def worker(name, pause):
        ...     clock.sleep(pause); log.append((name, clock.now() - EPOCH))
        >>> _ = clock.spawn(worker, "slow", 5.0); _ = clock.spawn(worker, "fast", 1.0)
        >>> clock.run()
        >>> log
        [('fast', 1.0), ('slow', 5.0)]
    """

    def __init__(self, start: float = EPOCH) -> None:
        self._now = start
        self._heap: list[tuple[float, int, str, Any, int]] = []
        self._work = 0  # "work" timers in the heap (see call_at)
        self._seq = itertools.count()
        self._lock = threading.RLock()
        self._back = threading.Event()
        self._local = threading.local()
        self._tasks: list[Task] = []
        self._running = False

    # -- Clock protocol ---------------------------------------------------------------
    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        task: Task | None = getattr(self._local, "task", None)
        seconds = max(0.0, float(seconds))
        if task is None:
            # Not a task: the caller drives time itself (single-threaded tests).
            self.advance(seconds)
            return
        if task.killed:
            raise TaskKilled(task.kill_reason)
        with self._lock:
            task.wake_token += 1
            self._push(self._now + seconds, "task", task, task.wake_token)
        self._yield(task)
        if task.killed:
            raise TaskKilled(task.kill_reason)

    # -- timers and tasks -------------------------------------------------------------
    def call_at(self, when: float, fn: Callable[[], Any], *, work: bool = False) -> None:
        """Run ``fn()`` (quick, must not sleep) when simulated time reaches ``when``.

        ``work=True``: the world is still busy until it fires (an instance on its way through a transitional
        state, a health check about to notice a dead instance), so ``run()`` waits for it as for a task.
        """
        with self._lock:
            self._push(max(when, self._now), "work" if work else "timer", fn, 0)
            if work:
                self._work += 1

    def call_later(self, delay: float, fn: Callable[[], Any], *, work: bool = False) -> None:
        self.call_at(self._now + max(0.0, delay), fn, work=work)

    def spawn(self, fn: Callable[..., Any], *args: Any, at: float | None = None, name: str = "") -> Task:
        """Start ``fn(*args)`` as a task at simulated time ``at`` (default: now)."""
        task = Task(fn=fn, args=args, name=name or getattr(fn, "__name__", "task"), clock=self)
        with self._lock:
            self._tasks.append(task)
            task.wake_token += 1
            self._push(self._now if at is None else max(at, self._now), "task", task, task.wake_token)
        return task

    def current_task(self) -> Task | None:
        return getattr(self._local, "task", None)

    @property
    def tasks(self) -> list[Task]:
        return list(self._tasks)

    def live_tasks(self) -> list[Task]:
        return [t for t in self._tasks if not t.done]

    # -- driving time -----------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every timer and task due on the way."""
        self.run(until=self._now + max(0.0, seconds))

    def run(self, until: float | None = None, *, max_steps: int = 10_000_000) -> None:
        """Run due work in time order.

        With ``until=None`` it runs until no task is alive (timers still pending after
        that are left for later); otherwise until simulated time ``until``.
        """
        if self.current_task() is not None:
            raise RuntimeError("SimClock.run/advance called from inside a task; use sleep()")
        if self._running:
            raise RuntimeError("SimClock.run is not re-entrant")
        self._running = True
        try:
            for _ in range(max_steps):
                with self._lock:
                    if until is None and not self.live_tasks() and not self._work:
                        return
                    if not self._heap:
                        if until is not None:
                            self._now = max(self._now, until)
                        return
                    when, _, kind, payload, token = self._heap[0]
                    if until is not None and when > until:
                        self._now = max(self._now, until)
                        return
                    heapq.heappop(self._heap)
                    self._now = max(self._now, when)
                if kind == "work":
                    self._work -= 1
                if kind in ("timer", "work"):
                    payload()
                elif kind == "task" and token == payload.wake_token and not payload.done:
                    self._resume(payload)
            raise RuntimeError("SimClock.run exceeded max_steps: a task loops without sleeping long enough")
        finally:
            self._running = False

    # -- internals --------------------------------------------------------------------
    def _push(self, when: float, kind: str, payload: Any, token: int) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, payload, token))

    def _kill(self, task: Task, reason: str, at: float | None) -> None:
        if at is not None and at > self._now:
            self.call_at(at, lambda: self._kill(task, reason, None))
            return
        with self._lock:
            if task.done or task.killed:
                return
            task.killed = True
            task.kill_reason = reason
            if task.thread is not None and self.current_task() is not task:
                # Wake it now so it dies now, not when its sleep would have ended.
                task.wake_token += 1
                self._push(self._now, "task", task, task.wake_token)

    def _resume(self, task: Task) -> None:
        self._back.clear()
        if task.thread is None:
            if task.killed:
                task.done = True
                task.error = TaskKilled(task.kill_reason)
                return
            task.thread = threading.Thread(target=self._body, args=(task,), name=f"sim-{task.name}", daemon=True)
            task.thread.start()
        else:
            task.go.set()
        self._back.wait()

    def _yield(self, task: Task) -> None:
        task.go.clear()
        self._back.set()
        task.go.wait()

    def _body(self, task: Task) -> None:
        self._local.task = task
        try:
            task.result = task.fn(*task.args)
        except BaseException as exc:  # noqa: BLE001 - a task's failure is its result
            task.error = exc
        finally:
            task.done = True
            self._local.task = None
            self._back.set()


class WallClock:
    """The wall clock with timers, for the emulator server and the demo."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], Any]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="wallclock-timers", daemon=True)
        self._thread.start()

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def call_at(self, when: float, fn: Callable[[], Any], *, work: bool = False) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            self._cond.notify()

    def call_later(self, delay: float, fn: Callable[[], Any], *, work: bool = False) -> None:
        self.call_at(time.time() + max(0.0, delay), fn)

    def advance(self, seconds: float) -> None:
        raise RuntimeError("the wall clock cannot be advanced; start the emulator with a simulated clock")

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.time():
                    timeout = None if not self._heap else max(0.0, self._heap[0][0] - time.time())
                    self._cond.wait(timeout)
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:
                import logging

                logging.getLogger(__name__).exception("emulator timer failed")


def iso(ts: float, *, millis: bool = False) -> str:
    """AWS timestamp text of a clock reading: ``2026-01-01T00:00:00Z`` (EventBridge) or with ``.123`` (hook
    messages)."""
    moment = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
