"""model-compose's file uploads: an http action whose Content-Type is multipart/form-data
sends its body as a form, media inputs as file parts. model-compose's OpenAI transcription
example (model-providers/openai/openai-audio-transciptions) runs with its endpoint pointed at
the echo stand-in, which parses the multipart body as OpenAI would and answers in its shape."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from support.model_compose import run, spec_of
from support.paths import PYTHON, TESTS_DIR
from support.procs import free_port

ECHO_HTTP = TESTS_DIR / "servers" / "echo_http.py"

#: model-compose's examples/model-providers/openai/openai-audio-transciptions (commit dc87c9d)
TRANSCRIPTIONS = """\
workflow:
  title: Generate Transcriptions with OpenAI STT
  jobs:
    - id: speech-to-text
      component: openai-speech-to-text
      input: ${input}
      output: 
        text: ${output.text}
        seconds: ${output.usage.seconds}

components:
  - id: openai-speech-to-text
    type: http-client
    action:
      endpoint: https://api.openai.com/v1/audio/transcriptions
      method: POST
      headers:
        Authorization: Bearer ${env.OPENAI_API_KEY}
        Content-Type:  multipart/form-data
      body:
        model: ${input.model as select/gpt-4o-transcribe,gpt-4o-mini-transcribe,whisper-1 | whisper-1}
        file: ${input.file as audio}
      output: ${response}
"""

MP3 = b"ID3\x04\x00\x00" + bytes(range(256))


def against_stand_in(port: int) -> str:
    """The example calling the echo stand-in, which the flow starts as a managed component."""
    return TRANSCRIPTIONS.replace("https://api.openai.com", f"http://127.0.0.1:{port}") + f"""\
  - id: stand-in
    type: http-server
    port: {port}
    start: [{json.dumps(PYTHON)}, {json.dumps(str(ECHO_HTTP))}, --port, "{port}"]
    action: {{path: /log, method: GET}}
"""


def test_a_multipart_action_keeps_its_content_type_and_the_node_sends_a_form() -> None:
    node = spec_of(TRANSCRIPTIONS).nodes["speech-to-text"]
    assert node.type == "http-stream" and node.headers["Content-Type"].strip() == "multipart/form-data"
    assert node.body == {"model": "${input.model as select/gpt-4o-transcribe,gpt-4o-mini-transcribe,whisper-1 | \"whisper-1\"}", "file": "${input.file as audio}"}


def test_the_transcription_example_uploads_the_audio_as_a_file_part(tmp_path: Path) -> None:
    flow = against_stand_in(free_port())
    # the stand-in is not called by the workflow, so the job must start it: it reads its port
    flow = flow.replace("    - id: speech-to-text\n", "    - {id: warm, component: stand-in}\n    - id: speech-to-text\n      depends_on: [warm]\n")
    flow = flow.replace("  jobs:\n", "  output: ${jobs.speech-to-text.output}\n  jobs:\n")
    audio = base64.b64encode(MP3).decode()
    out = run(tmp_path, flow, f"file={audio}", "model=gpt-4o-mini-transcribe", env={"OPENAI_API_KEY": "sk-test"})
    assert out == {"text": f"heard {len(MP3)} bytes of audio/mpeg in file.mp3 with gpt-4o-mini-transcribe", "seconds": len(MP3)}
    data_uri = f"data:audio/wav;base64,{audio}"
    out = run(tmp_path, flow, f"file={data_uri}", env={"OPENAI_API_KEY": "sk-test"})
    assert out["text"] == f"heard {len(MP3)} bytes of audio/wav in file.wav with whisper-1"


#: model-compose's examples/openai-image-variations (commit b57f124): the earlier form, its one
#: action's keys written on the component
VARIATIONS = """\
component: 
  type: http-client
  base_url: https://api.openai.com/v1
  path: /images/variations
  method: POST
  headers:
    Authorization: Bearer ${env.OPENAI_API_KEY}
    Content-Type: multipart/form-data
  body:
    image: ${input.image as image/png}
    n: 1
    size: 1024x1024
    response_format: b64_json
  output:
    image_data: ${response.data[0].b64_json}

workflow:
  title: Generate Image Variations with OpenAI DALL·E
  input: ${input}
  output: ${output.image_data as image;base64}
"""


def test_an_action_written_on_the_component_is_its_one_action(tmp_path: Path) -> None:
    node = spec_of(VARIATIONS).nodes["job"]
    assert node.url == "https://api.openai.com/v1/images/variations" and node.headers["Content-Type"] == "multipart/form-data"
    assert node.body["image"] == "${input.image as image/png}"
    port = free_port()
    flow = f"""\
workflow:
  jobs:
    - {{id: warm, component: stand-in}}
    - {{id: vary, component: api, depends_on: [warm], input: "${{input}}", output: "${{output.image}}"}}
  output: ${{jobs.vary.output}}
components:
  - id: api
    type: http-client
    endpoint: http://127.0.0.1:{port}/form
    headers: {{Content-Type: multipart/form-data}}
    body: {{image: "${{input.image as image/png}}", n: 1}}
    output: {{image: "${{response.files.image}}"}}
  - id: stand-in
    type: http-server
    port: {port}
    start: [{json.dumps(PYTHON)}, {json.dumps(str(ECHO_HTTP))}, --port, "{port}"]
    action: {{path: /log, method: GET}}
"""
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    out = run(tmp_path, flow, f"image={base64.b64encode(png).decode()}")
    assert out == {"filename": "image.png", "content_type": "image/png", "size": len(png), "sha256": hashlib.sha256(png).hexdigest()}
