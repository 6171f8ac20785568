"""http-stream sends form bodies: multipart/form-data (media values become file parts) and
application/x-www-form-urlencoded, chosen by `body_format:` or the Content-Type header. A
real server (tests/servers/echo_http.py) parses what arrives with the standard library's
MIME parser and says what it got."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pytest
from support.dag import run_flow
from support.echo import EchoServer, echo_server

from flowctl.engine.errors import InputError, RunError

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # binary, every byte value, CR LF and all
MP3 = b"ID3\x04\x00" + b"\xff\xfb\x90\x00" * 64


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    with echo_server() as server:
        yield server


def flow(url: str, body: str, extra: str = "") -> str:
    return f"""
nodes:
  send:
    type: http-stream
    url: {url}/form
    stream_format: null
{extra}    body: {body}
workflows:
  w: {{output: send}}
"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_a_multipart_header_sends_media_inputs_as_file_parts(echo: EchoServer) -> None:
    body = '{model: whisper-1, file: "${input.file as audio}", image: "${input.image as image/png}", n: 2, stream: false, meta: {a: 1}, none: null}'
    text = flow(echo.url, body, "    headers: {Content-Type: multipart/form-data, x-key: k}\n")
    chunks, _ = await run_flow(text, {"file": f"data:audio/mpeg;base64,{b64(MP3)}", "image": b64(PNG)})
    got = chunks[0]
    assert got["content_type"] == "multipart/form-data"
    assert got["fields"] == {"model": "whisper-1", "n": "2", "stream": "false", "meta": '{"a": 1}'}
    assert got["files"] == {
        "file": {"filename": "file.mp3", "content_type": "audio/mpeg", "size": len(MP3), "sha256": hashlib.sha256(MP3).hexdigest()},
        "image": {"filename": "image.png", "content_type": "image/png", "size": len(PNG), "sha256": hashlib.sha256(PNG).hexdigest()},
    }


async def test_bare_base64_of_an_unnamed_media_type_is_named_by_its_bytes(echo: EchoServer) -> None:
    text = flow(echo.url, '{file: "${input.file as audio}"}', "    body_format: multipart\n")
    chunks, _ = await run_flow(text, {"file": b64(MP3)})
    assert chunks[0]["files"]["file"]["filename"] == "file.mp3"
    assert chunks[0]["files"]["file"]["content_type"] == "audio/mpeg"


async def test_a_list_of_images_is_several_parts_of_one_name(echo: EchoServer) -> None:
    text = flow(echo.url, '{"image[]": "${input.images as image[]}", prompt: p}', "    body_format: multipart\n")
    chunks, _ = await run_flow(text, {"images": [b64(PNG), f"data:image/png;base64,{b64(PNG[:20])}"]})
    # the receiving parser keeps the last part of a name; both were sent, each a file
    assert chunks[0]["files"]["image[]"] == {"filename": "image.png", "content_type": "image/png", "size": 20, "sha256": hashlib.sha256(PNG[:20]).hexdigest()}
    assert chunks[0]["fields"] == {"prompt": "p"}


async def test_field_names_from_a_request_cannot_break_out_of_their_header(echo: EchoServer) -> None:
    text = flow(echo.url, '"${input.form as object}"', "    body_format: multipart\n")
    hostile = 'a"\r\nContent-Type: text/evil\r\n\r\nx'
    chunks, _ = await run_flow(text, {"form": {hostile: "v", "ok": "w"}})
    assert chunks[0]["fields"] == {"a%22%0D%0AContent-Type: text/evil%0D%0A%0D%0Ax": "v", "ok": "w"}


async def test_an_urlencoded_header_sends_the_fields_urlencoded(echo: EchoServer) -> None:
    text = flow(echo.url, '{grant_type: client_credentials, scope: "${input.scope}", flag: true, ids: [1, 2]}',
                "    headers: {Content-Type: application/x-www-form-urlencoded}\n")
    chunks, _ = await run_flow(text, {"scope": "a b&c=d"})
    assert chunks[0] == {"content_type": "application/x-www-form-urlencoded", "fields": {"grant_type": "client_credentials", "scope": "a b&c=d", "flag": "true", "ids": "2"}, "files": {}}


async def test_body_format_form_needs_no_header(echo: EchoServer) -> None:
    chunks, _ = await run_flow(flow(echo.url, "{a: '1'}", "    body_format: form\n"), {})
    assert chunks[0]["fields"] == {"a": "1"}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("https://example.com/a.mp3", "is a URL; flowctl uploads a file's content"),
        ("not base64!", "is not valid base64"),
        ("data:audio/mpeg,plain", "must be base64"),
    ],
)
async def test_a_media_input_that_is_not_a_file_is_a_422_naming_it(echo: EchoServer, value: str, reason: str) -> None:
    text = flow(echo.url, '{file: "${input.file as audio}"}', "    body_format: multipart\n")
    with pytest.raises(InputError, match=reason) as caught:
        await run_flow(text, {"file": value})
    assert caught.value.field == "file" and caught.value.status_code == 422


async def test_a_form_body_that_is_not_a_mapping_is_the_flows_error(echo: EchoServer) -> None:
    with pytest.raises(RunError, match="a multipart body is a mapping of fields, not list"):
        await run_flow(flow(echo.url, "[1, 2]", "    body_format: multipart\n"), {})


async def test_without_a_form_header_a_mapping_is_still_json(echo: EchoServer) -> None:
    text = f"""
nodes:
  send:
    type: http-stream
    url: {echo.url}/echo
    stream_format: null
    body: {{a: 1}}
    output: ${{response.echo}}
workflows:
  w: {{output: send}}
"""
    assert (await run_flow(text, {}))[0] == [{"a": 1}]
