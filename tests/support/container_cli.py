"""A stand-in for the `docker` and Apple `container` CLIs, for tests on machines without a
container daemon: `install(bin_dir, state_dir, "docker")` writes an executable named so.

It appends each call's argv (JSON, one line) to STATE/calls.jsonl and acts as the real CLI
does where flowctl depends on it:

- `image inspect IMAGE` exits 1 until `image pull IMAGE` was called (then 0); a pull of an
  image named `*:slow` hangs (for start_timeout); `*:missing` fails as an unknown image does;
- `run --rm -i --name NAME [-e K=V] [-v ..] [-w DIR] [-u ..] [--gpus ..] IMAGE CMD...` runs
  CMD here, with the `-e` variables, in DIR when it exists. CMD runs in its own session and
  its pid goes to STATE/NAME.pid: like a container, the daemon's child, not the client's,
  so killing the client (SIGTERM is ignored, as by a client whose signal proxy is off)
  leaves CMD running; the client exits with CMD's status;
- `stop -t SECONDS NAME` / `kill NAME` SIGTERM (SIGKILL) CMD by its name, SIGKILL after
  SECONDS, and exit 1 for an unknown name.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

from flowctl.nodes.proc import alive as pid_alive

_SCRIPT = r'''
import json, os, signal, subprocess, sys, time
from pathlib import Path
STATE = Path(STATE_DIR)
args = sys.argv[1:]
with open(STATE / "calls.jsonl", "a") as log:
    log.write(json.dumps({"program": PROGRAM, "argv": args}) + "\n")
def pulled(image):
    return (STATE / ("image-" + image.replace("/", "_"))).exists()
if args[:2] == ["image", "inspect"]:
    sys.exit(0 if pulled(args[2]) else 1)
if args[:2] == ["image", "pull"]:
    image = args[2]
    if image.endswith(":slow"):
        time.sleep(3600)
    if image.endswith(":missing"):
        print(f"Error: pull access denied for {image}", file=sys.stderr)
        sys.exit(1)
    (STATE / ("image-" + image.replace("/", "_"))).touch()
    sys.exit(0)
if args[0] in ("stop", "kill"):
    name = args[-1]
    seconds = float(args[args.index("-t") + 1]) if "-t" in args else 0.0
    try:
        pid = int((STATE / (name + ".pid")).read_text())
    except FileNotFoundError:
        print(f"Error: no such container: {name}", file=sys.stderr)
        sys.exit(1)
    try:
        os.kill(pid, signal.SIGKILL if args[0] == "kill" else signal.SIGTERM)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    sys.exit(0)
if args[0] == "run":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    flags = {"--name": None, "-e": None, "-v": None, "-w": None, "-u": None, "--gpus": None}
    env, workdir, name, index = dict(os.environ), None, None, 1
    while args[index].startswith("-"):
        flag = args[index]
        if flag in flags:
            value = args[index + 1]
            index += 2
            if flag == "--name":
                name = value
            elif flag == "-e":
                key, _, val = value.partition("=")
                env[key] = val
            elif flag == "-w":
                workdir = value
        else:
            index += 1
    image, command = args[index], args[index + 1:]
    if not pulled(image):
        print(f"Error: image {image} not pulled", file=sys.stderr)
        sys.exit(125)
    child = subprocess.Popen(command, env=env, cwd=workdir if workdir and os.path.isdir(workdir) else None, start_new_session=True)
    pid_file = STATE / (name + ".pid")
    pid_file.write_text(str(child.pid))
    code = child.wait()
    pid_file.unlink()
    sys.exit(code if code >= 0 else 128 - code)
print("stand-in: unknown command " + " ".join(args), file=sys.stderr)
sys.exit(2)
'''


def install(bin_dir: Path, state_dir: Path, program: str) -> Path:
    """Write the stand-in as `bin_dir/program`; its calls go to `state_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / program
    path.write_text(f"#!{sys.executable}\nSTATE_DIR = {str(state_dir)!r}\nPROGRAM = {program!r}\n{_SCRIPT}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def calls(state_dir: Path) -> list[dict[str, Any]]:
    log = state_dir / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def running(state_dir: Path) -> dict[str, int]:
    """The 'containers' running now: name -> pid of their command."""
    found = {}
    for pid_file in state_dir.glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
        except (FileNotFoundError, ValueError):
            continue
        if pid_alive(pid):
            found[pid_file.stem] = pid
    return found


def kill_all(state_dir: Path) -> None:
    """Test teardown: whatever 'container' a failing test left behind goes."""
    for pid in running(state_dir).values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_argv(state_dir: Path) -> list[str]:
    """The argv of the last `run` call (after `run`)."""
    runs = [call["argv"] for call in calls(state_dir) if call["argv"][:1] == ["run"]]
    assert runs, calls(state_dir)
    return runs[-1]

