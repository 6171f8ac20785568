"""SSE framing and the pure helpers of `flowctl up`, without starting anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from flowctl.engine.spec import ServerSpec
from flowctl.server.bind import check_bind, is_loopback
from flowctl.server.options import UpOptions, resolve_settings
from flowctl.server.pidfile import PidFile
from flowctl.server.sse import KEEP_ALIVE, done_event, encode_chunk, error_event


def decode(raw: bytes) -> list:
    """Events as a WHATWG client (httpx-sse's decoder) sees them."""
    lines = SSELineDecoder().decode(raw.decode())
    decoder = SSEDecoder()
    events = [decoder.decode(line) for line in lines]
    return [e for e in events if e is not None]


@pytest.mark.parametrize(
    "text",
    ["Hello", " leading space", "a\nb", "a\r\nb", "a\rb", "\n", "trailing\n", "\n\nx", "ünï ✓", "data: x", ": not a comment", "x\r\n\r\ny"],
)
def test_a_chunk_round_trips(text: str) -> None:
    events = decode(encode_chunk(7, text))
    assert len(events) == 1
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert events[0].data == expected
    assert events[0].id == "7"
    assert events[0].event == "message"


def test_newlines_become_several_data_lines() -> None:
    assert encode_chunk(2, "a\nb") == b"id: 2\ndata: a\ndata: b\n\n"
    assert encode_chunk(3, "a\r\nb\rc") == b"id: 3\ndata: a\ndata: b\ndata: c\n\n"
    assert encode_chunk(1, "plain") == b"id: 1\ndata: plain\n\n"


def test_end_events() -> None:
    events = decode(encode_chunk(1, "x") + KEEP_ALIVE + done_event("r1", "succeeded", 1, 12))
    assert [e.event for e in events] == ["message", "done"]
    assert json.loads(events[1].data) == {"run_id": "r1", "status": "succeeded", "chunks": 1, "elapsed_ms": 12}
    error = decode(error_event("node 'chat': boom\nsecond line"))[0]
    assert error.event == "error"
    assert json.loads(error.data) == {"message": "node 'chat': boom\nsecond line"}


def test_loopback_and_the_api_key_rule() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.1.2.3") and not is_loopback("example.com")
    assert check_bind("127.0.0.1", None, False) is None
    assert check_bind("0.0.0.0", "key", False) is None
    assert check_bind("0.0.0.0", None, True) is None
    refused = check_bind("0.0.0.0", None, False)
    assert refused is not None and "FLOWCTL_API_KEY" in refused and "--insecure" in refused and "\n" not in refused


def test_command_line_overrides_the_flow() -> None:
    server = ServerSpec(host="127.0.0.1", port=9000, ui_port=9001, base_path="/x", drain_timeout=3)
    plain = resolve_settings(server, UpOptions(flow="f.yml"))
    assert (plain.host, plain.port, plain.ui_port, plain.base_path, plain.drain_timeout) == ("127.0.0.1", 9000, 9001, "/x", 3)
    over = resolve_settings(server, UpOptions(flow="f.yml", host="0.0.0.0", port=1234, ui_port=0))
    assert (over.host, over.port, over.ui_port) == ("0.0.0.0", 1234, None)
    assert over.url(1234, "/x") == "http://127.0.0.1:1234/x"


def test_a_stale_pid_file_names_no_live_flowctl(tmp_path) -> None:
    flow = tmp_path / "f.yml"
    flow.write_text("version: 1\n")
    pidfile = PidFile(flow)
    pidfile.dir.mkdir(parents=True)
    # a process that is gone
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pidfile.pid_path.write_text(f"{gone.pid}\n")
    record, why = pidfile.live()
    assert record is None and "gone" in why
    # a live stranger (not flowctl)
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        pidfile.pid_path.write_text(f"{stranger.pid}\n")
        record, why = pidfile.live()
        assert record is None and "not flowctl" in why
    finally:
        stranger.kill()
        stranger.wait()
    # our own pid is never "another up"
    pidfile.pid_path.write_text(f"{os.getpid()}\n")
    assert pidfile.live() == (None, None)
