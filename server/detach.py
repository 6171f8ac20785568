"""`flowctl up -d`: start the same `up` (without `-d`) in its own session, its console going to
`<state dir>/up.out` (its own log, `up.log`, it writes as any `up` does); echo that console
here until it serves (or fails), then return."""

from __future__ import annotations

import subprocess
import sys
import time

from ..engine.errors import ExitCode
from .console import error, say
from .options import UpOptions
from .pidfile import PidFile


def child_argv(options: UpOptions) -> list[str]:
    argv = [sys.executable, "-m", "flowctl", "up", str(options.flow)]
    if options.host:
        argv += ["--host", options.host]
    if options.port is not None:
        argv += ["--port", str(options.port)]
    if options.ui_port is not None:
        argv += ["--ui-port", str(options.ui_port)]
    if options.insecure:
        argv.append("--insecure")
    if not options.reload:
        argv.append("--no-reload")
    if options.build:
        argv.append("--build")
    if options.verbose:
        argv.append("--verbose")
    if options.log_format != "auto":
        argv += ["--log-format", options.log_format]
    argv.append("--in-background")
    return argv


def detach(options: UpOptions, pidfile: PidFile) -> int:
    pidfile.dir.mkdir(parents=True, exist_ok=True)
    log_path = pidfile.dir / "up.out"
    with open(log_path, "ab") as out:
        offset = out.tell()
        child = subprocess.Popen(
            child_argv(options),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    flow = options.flow
    try:
        with open(log_path, "rb") as logf:
            logf.seek(offset)
            while True:
                for line in logf.readlines():
                    sys.stderr.write(line.decode(errors="replace"))
                sys.stderr.flush()
                code = child.poll()
                if code is not None:
                    for line in logf.readlines():
                        sys.stderr.write(line.decode(errors="replace"))
                    error(f"`flowctl up` exited with {code} before serving (log: {log_path})")
                    return code or ExitCode.RUN
                record = pidfile.read()
                if record is not None and record.pid == child.pid and record.api:
                    where = record.api + (f" (UI {record.ui})" if record.ui else "")
                    print(f"flowctl: {flow} is up in the background (pid {child.pid}) on {where}; `flowctl ps {flow}` shows it, `flowctl logs -f {flow}` its logs, `flowctl down {flow}` stops it", flush=True)
                    return ExitCode.OK
                time.sleep(0.05)
    except KeyboardInterrupt:
        say(f"still starting in the background (pid {child.pid}); `flowctl down {flow}` stops it")
        return ExitCode.INTERRUPTED


__all__ = ["child_argv", "detach"]
