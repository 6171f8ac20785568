"""How the benchmark starts, addresses, measures and stops each contender.

Every contender serves the same upstream, tests/servers/fake_vllm.py, started with the very
same argv (`upstream_argv`): by the benchmark itself for "direct", by the contender's own
`up` for the others (a process-start node / model-compose's `manage.start`), so that
up-to-ready includes starting the model server the way a user's flow does.

Each contender runs in its own session (process group); `stop` signals it the way a user
would (SIGTERM for flowctl, SIGINT = Ctrl-C for model-compose), then SIGKILLs its group and
every descendant it had (a managed server may sit in a group of its own). `stop_all` runs
at exit, on SIGTERM and on Ctrl-C, so nothing the benchmark started outlives it.

Process metrics come from /proc (no psutil): the contender's *engine* is its process tree
minus the upstream's subtree, so RSS and CPU are what the engine adds, not the fake vLLM.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import loadgen  # noqa: E402
from support.procs import free_port  # noqa: E402

FAKE = ROOT / "tests" / "servers" / "fake_vllm.py"
FLOWS = Path(__file__).resolve().parent / "flows"
MODEL = loadgen.MODEL
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# --------------------------------------------------------------------------- modes


@dataclass(frozen=True)
class Mode:
    """The upstream's pacing: the same flags for every contender's upstream."""

    key: str
    tokens: int
    token_delay_ms: float
    first_token_delay_ms: float = 0.0
    #: the upstream hands each token to the socket on its own (fake_vllm --flush-each-token)
    flush_each_token: bool = False

    @property
    def title(self) -> str:
        if self.token_delay_ms:
            return f"paced {self.token_delay_ms:g} ms/token, {self.tokens} tokens"
        if self.flush_each_token:
            return f"zero delay, {self.tokens} tokens, each token written and flushed on its own"
        return f"zero delay, {self.tokens} tokens"


def upstream_argv(python: str, port: int, mode: Mode) -> list[str]:
    argv = [python, str(FAKE), "--quiet", "--port", str(port), "--tokens", str(mode.tokens),
            "--token-delay-ms", f"{mode.token_delay_ms:g}", "--served-model-name", MODEL]
    if mode.first_token_delay_ms:
        argv += ["--first-token-delay-ms", f"{mode.first_token_delay_ms:g}"]
    if mode.flush_each_token:
        argv.append("--flush-each-token")
    return argv


# --------------------------------------------------------------------------- /proc


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, ()):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of `pids` (all their threads, living or exited), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


# --------------------------------------------------------------------------- processes

_LIVE: list[Proc] = []


class Proc:
    """One process the benchmark started, in its own session, logging to a file."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None, stop_signal: int = signal.SIGTERM) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.argv = argv
        self.log = log
        self.stop_signal = stop_signal
        self._logf = open(log, "ab")
        self.spawned = time.perf_counter()
        self.popen = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
                                      stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.pid = self.popen.pid
        self._known: dict[int, int | None] = {}  # descendant pid -> start ticks
        _LIVE.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def remember_tree(self) -> list[int]:
        kids = descendants(self.pid)
        for k in kids:
            self._known.setdefault(k, start_ticks(k))
        return kids

    def stop(self, timeout: float = 15.0) -> None:
        if self in _LIVE:
            _LIVE.remove(self)
        self.remember_tree()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        for pid, ticks in self._known.items():  # a managed server in a group of its own
            if ticks is not None and start_ticks(pid) == ticks:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGKILL)
        self._logf.close()

    def tail(self, n: int = 15) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def stop_all() -> None:
    for proc in list(reversed(_LIVE)):
        with contextlib.suppress(Exception):
            proc.stop(timeout=10)


atexit.register(stop_all)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _on_sigterm)


# --------------------------------------------------------------------------- readiness


def http_ok(url: str, timeout: float = 5.0, expect: bytes | None = None) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=timeout) as r:
            if not 200 <= r.status < 300:
                return False
            return expect is None or expect in r.read()
    except (urllib.error.URLError, OSError, ValueError):
        return False


class NotReady(Exception):
    pass


def wait_ready(proc: Proc, url: str, timeout: float, expect: bytes | None = None, interval: float = 0.005) -> float:
    """Poll `url` until it answers 2xx (holding `expect`); return seconds since spawn."""
    deadline = time.perf_counter() + timeout
    while True:
        if not proc.alive():
            raise NotReady(f"exited with code {proc.popen.returncode} before ready:\n{proc.tail()}")
        if http_ok(url, timeout=max(0.2, min(5.0, deadline - time.perf_counter())), expect=expect):
            return time.perf_counter() - proc.spawned
        if time.perf_counter() > deadline:
            raise NotReady(f"not ready after {timeout:g}s:\n{proc.tail()}")
        time.sleep(interval)


# --------------------------------------------------------------------------- flows

_yaml = YAML()
_yaml.preserve_quotes = True
_yaml.width = 4096


def render_flow(src: Path, dest: Path, *, argv: list[str], upstream_port: int, api_port: int, seed_form: bool = False) -> Path:
    """Write a copy of a bench flow with this contender's ports and the upstream argv."""
    data = _yaml.load(src.read_text())
    if "nodes" in data:  # native form
        node = data["nodes"]["upstream"]
        node["command"] = list(argv)
        node["port"] = upstream_port
        data["nodes"]["chat"]["url"] = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
        data["server"]["port"] = api_port
    else:  # model-compose form
        comp = data["component"]
        comp["manage"]["start"] = list(argv)
        comp["port"] = upstream_port
        if seed_form:  # the pre-0.4.100 controller form that flowctl's front end reads
            data["controller"] = {"type": "http-server", "port": api_port, "base_path": "/api"}
        else:
            data["controller"]["adapter"]["port"] = api_port
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w") as f:
        _yaml.dump(data, f)
    return dest


# --------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    """One way of serving the flow. `kind`: direct | flowctl | flowctl-mc | flowctl-openai |
    model-compose."""

    key: str
    title: str
    kind: str
    workdir: Path
    python: str = sys.executable
    mc_bin: Path | None = None
    flowctl_bin: Path = ROOT / ".venv" / "bin" / "flowctl"
    #: flowctl-mc: render the model-compose file in the seed's (pre-0.4.100) controller form
    seed_form: bool = False
    #: extra environment for the contender's process (e.g. PYTHONPATH for an experiment)
    env: dict[str, str] = field(default_factory=dict)
    proc: Proc | None = None
    api_port: int = 0
    upstream_port: int = 0
    ready_s: float | None = None
    notes: list[str] = field(default_factory=list)
    _engine: list[int] = field(default_factory=list)
    _upstream: list[int] = field(default_factory=list)

    # -- start/stop

    def start(self, mode: Mode, timeout: float = 120.0) -> float:
        """Start with `mode`'s upstream flags; return seconds from spawn to ready."""
        self.api_port, self.upstream_port = free_port(), free_port()
        argv = upstream_argv(self.python, self.upstream_port, mode)
        log = self.workdir / "logs" / f"{self.key}-{mode.key}.log"
        if self.kind == "direct":
            self.api_port = self.upstream_port
            self.proc = Proc(argv, log)
            url, expect = f"http://127.0.0.1:{self.upstream_port}/v1/models", None
        elif self.kind in ("flowctl", "flowctl-openai", "flowctl-mc"):
            if self.kind == "flowctl-mc":
                src, seed = FLOWS / "model-compose.yml", self.seed_form
            else:
                src, seed = FLOWS / "flowctl.yml", False
            flow = render_flow(src, self.workdir / "flows" / f"{self.key}-{mode.key}.yml", argv=argv,
                               upstream_port=self.upstream_port, api_port=self.api_port, seed_form=seed)
            self.proc = Proc([str(self.flowctl_bin), "up", str(flow), "--port", str(self.api_port), "--ui-port", "0", "--no-reload"],
                             log, env=self.env, stop_signal=signal.SIGTERM)
            url, expect = f"http://127.0.0.1:{self.api_port}/api/ready", None
        elif self.kind == "model-compose":
            assert self.mc_bin is not None
            flow = render_flow(FLOWS / "model-compose.yml", self.workdir / "flows" / f"{self.key}-{mode.key}.yml", argv=argv,
                               upstream_port=self.upstream_port, api_port=self.api_port)
            # cwd is the repo root: model-compose polls `./.stop` there (`model-compose down`)
            self.proc = Proc([str(self.mc_bin), "-f", str(flow), "up"], log, env=self.env, stop_signal=signal.SIGINT)
            url, expect = f"http://127.0.0.1:{self.api_port}/api/health", b'"ok"'
        else:
            raise ValueError(self.kind)
        self.ready_s = wait_ready(self.proc, url, timeout, expect)
        self.classify()
        return self.ready_s

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    # -- addressing

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def target(self) -> loadgen.Target:
        if self.kind == "direct":
            return loadgen.openai_target(self.title, self.base)
        if self.kind == "flowctl-openai":
            return loadgen.openai_target(self.title, self.base, model="chat")
        if self.kind in ("model-compose", "flowctl-mc"):
            # flowctl runs a model-compose file behind model-compose's own route and request
            return loadgen.model_compose_target(self.title, self.base)
        return loadgen.flowctl_target(self.title, self.base, workflow="chat")

    # -- process metrics

    def classify(self) -> None:
        """Split the process tree into the engine and the upstream's subtree."""
        assert self.proc is not None
        tree = [self.proc.pid, *self.proc.remember_tree()]
        up = [p for p in tree if "fake_vllm.py" in cmdline(p)]
        up_all = set(up)
        for p in up:
            up_all.update(descendants(p))
        self._upstream = sorted(up_all)
        self._engine = [] if self.kind == "direct" else [p for p in tree if p not in up_all]

    def engine_cpu(self) -> float:
        return cpu_seconds(self._engine)

    def upstream_cpu(self) -> float:
        return cpu_seconds(self._upstream)

    def engine_rss(self) -> int:
        return rss_bytes(self._engine)
