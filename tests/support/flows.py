"""Native-form test flows whose managed process is the fake vLLM server."""

from __future__ import annotations

import json
from typing import Any

from support.fake import fake_vllm_argv


def native_chat_flow(port: int, *, fake: dict[str, Any] | None = None, restart: str = "never", extra_node_yaml: str = "") -> str:
    """The seed's chat flow in native form, with the fake server as its process-start node."""
    argv = json.dumps(fake_vllm_argv(port, **(fake or {})))
    return f"""\
version: 1
name: test-chat
nodes:
  model-server:
    type: process-start
    command: {argv}
    port: {port}
    readiness: {{http: /v1/models, timeout: 20}}
    restart: {{policy: {restart}, backoff: 0.2}}
    stop_timeout: 3
  chat:
    type: http-stream
    needs: [model-server]
    url: http://127.0.0.1:{port}/v1/chat/completions
    headers: {{Content-Type: application/json}}
    body:
      model: qwen2-7b-instruct
      messages:
        - role: user
          content: ${{input.prompt}}
      max_tokens: ${{input.max_tokens as integer | 512}}
      temperature: ${{input.temperature as number | 0.7}}
      stream: true
    stream_format: json
    output: ${{response[].choices[0].delta.content}}
    timeout: {{connect: 5, first_byte: 20, idle: 20}}
  reply:
    type: sse-sink
    source: ${{nodes.chat.output as stream/text}}
{extra_node_yaml}
workflows:
  chat:
    title: Chat
    output: reply
    default: true
"""
