"""Which flow file a command means, and which `.env` files fill its environment. Every command
that takes a flow asks `choose_flow`; nothing else decides.

The flow, first match wins (docker compose's habits):

1. the one given: `flowctl up FLOW`, or `-f/--file FLOW` (before or after the command);
2. `$FLOWCTL_FLOW`, from the environment or from an env file (`--env-file`, else `.env` in
   the current directory);
3. the one flow file in the current directory: a `.yml`/`.yaml` file whose top level has
   `nodes:` (the native form) or model-compose's keys; several of them is an error that
   lists them;
4. flowctl's default flow, `flows/local_chat.yml` of the checkout flowctl is installed from
   (found beside the package, so it resolves from any directory).

The environment: `--env-file FILE` (repeatable; a later file wins over an earlier one), else
the `.env` beside the flow file. A file's values only fill variables the process does not
have: the shell wins, as in docker compose. python-dotenv reads them (`export`, quotes,
comments, `${VAR}` expansion).

    >>> looks_like_flow("version: 1\\nnodes:\\n  a: {type: value}\\n")
    True
    >>> looks_like_flow("services:\\n  web: {image: nginx}\\n")
    False
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .frontends.model_compose import MODEL_COMPOSE_KEYS

#: the variable that names the flow when none is given
FLOW_VAR = "FLOWCTL_FLOW"
#: the env file read beside the flow (and, for FLOWCTL_FLOW only, in the current directory)
ENV_FILE = ".env"

_FLOW_KEYS = re.compile(r"^(?:nodes|" + "|".join(sorted(MODEL_COMPOSE_KEYS)) + r")[ \t]*:", re.MULTILINE)
#: how much of a YAML file is read to tell whether it is a flow
_SNIFF_BYTES = 256 * 1024


@dataclass(frozen=True)
class FlowChoice:
    path: Path
    #: how it was chosen, for messages: "given", "$FLOWCTL_FLOW", "the flow file here", "the default flow"
    how: str


def default_flow() -> Path:
    """flowctl's default flow: `flows/local_chat.yml` beside the package's source (the
    checkout an editable install points at)."""
    return Path(__file__).resolve().parent.parent / "flows" / "local_chat.yml"


def looks_like_flow(text: str) -> bool:
    """Whether YAML text is a flow: a top-level `nodes:` or a model-compose key."""
    return _FLOW_KEYS.search(text) is not None


def flow_files_in(directory: Path) -> list[Path]:
    """The flow files directly in `directory`, by name."""
    found = []
    try:
        candidates = sorted(p for p in directory.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
    except OSError:
        return []
    for path in candidates:
        try:
            with open(path, "rb") as handle:
                head = handle.read(_SNIFF_BYTES).decode("utf-8", errors="replace")
        except OSError:
            continue
        if looks_like_flow(head):
            found.append(path)
    return found


def choose_flow(given: str | None, *, cwd: Path | None = None, environ: Mapping[str, str] = os.environ, read_dotenv: bool = True) -> FlowChoice:
    """The flow a command means (see the module's docstring). Raises UsageError when the
    current directory holds several flow files and none was named, or when nothing is found.
    `read_dotenv`: look for FLOWCTL_FLOW in `.env` here too (not when env files were given:
    those are in `environ` already)."""
    if given:
        return FlowChoice(Path(given), "given")
    named = environ.get(FLOW_VAR) or (_peek_env_file(Path(cwd or Path.cwd()) / ENV_FILE, FLOW_VAR) if read_dotenv else None)
    if named:
        return FlowChoice(Path(named), f"${FLOW_VAR}")
    here = Path(cwd or Path.cwd())
    found = flow_files_in(here)
    if len(found) == 1:
        return FlowChoice(found[0] if cwd is not None else Path(found[0].name), "the flow file here")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise UsageError(f"several flow files here ({names}); which one?", hint=f"name one: `flowctl up {found[0].name}`, `flowctl -f {found[0].name} logs`, or set {FLOW_VAR}")
    default = default_flow()
    if default.is_file():
        return FlowChoice(default, "the default flow")
    raise UsageError(f"no flow file given, none in {here}, and flowctl's default flow is not installed ({default})", hint=f"name one: `flowctl up FLOW`, or set {FLOW_VAR}")


def env_files_for(flow: Path, given: Sequence[str]) -> list[Path]:
    """The env files to read: the ones given, else `.env` beside the flow when there is one."""
    if given:
        return [Path(name) for name in given]
    beside = flow.resolve().parent / ENV_FILE
    return [beside] if beside.is_file() else []


def read_env_files(paths: Sequence[Path], environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Fill `environ` from `paths`; return what was set. The files read as one, in order: a
    later file's value wins over an earlier one's, and `${VAR}` expands to the process's value,
    else to one set above it. A variable the process has keeps its value. A file that cannot be
    read is a UsageError naming it."""
    from dotenv.main import DotEnv

    texts = []
    for path in paths:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"cannot read {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
    if not texts:
        return {}
    # override=False: in `${VAR}`, the process's value comes before the files', as it does for
    # the variables themselves
    values = DotEnv(None, stream=io.StringIO("\n".join(texts)), interpolate=True, override=False).dict()
    applied = {key: value for key, value in values.items() if value is not None and key not in environ}
    environ.update(applied)
    return applied


def _peek_env_file(path: Path, name: str) -> str | None:
    if not path.is_file():
        return None
    from dotenv import dotenv_values

    try:
        return dotenv_values(path).get(name) or None
    except (OSError, UnicodeDecodeError):
        return None


__all__ = ["ENV_FILE", "FLOW_VAR", "FlowChoice", "choose_flow", "default_flow", "env_files_for", "flow_files_in", "looks_like_flow", "read_env_files"]
