"""One call from a path to a compiled flow: load → front end → FlowSpec → compile."""

from __future__ import annotations

from pathlib import Path

from .compiler import compile_flow
from .frontends import to_flow_spec
from .graph import CompiledFlow
from .loader import load_file, load_text


def load_flow(path: str | Path) -> CompiledFlow:
    """Parse, validate and compile the flow at `path`; raises `FlowError` with file:line:col."""
    return compile_flow(to_flow_spec(load_file(path)))


def load_flow_text(text: str, file: str = "<string>") -> CompiledFlow:
    return compile_flow(to_flow_spec(load_text(text, file)))
