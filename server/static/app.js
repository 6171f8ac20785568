// flowctl web UI: list workflows, a form per workflow from its input JSON Schema, Run /
// Cancel, the streamed output as it arrives (fetch + ReadableStream, since EventSource
// cannot POST) rendered as Markdown, the mermaid graph with each node coloured live from
// the run's node events (`?events=nodes`), the services' state (with a live log pane per
// service) and a failed reload (from /ready), and the runs of this session.
// A workflow with a `messages` input is a chat (chat.js). The other scripts (markdown.js,
// chat.js, history.js, logs.js) load first and use the helpers defined here.
// The API lives on this same origin under `base_path` (see server/ui.py).
"use strict";

const state = { base: "/api", flow: "", workflows: [], current: null, mode: "form", run: null, graphSeq: 0, graphIds: {}, nodeStates: {} };
const $ = (id) => document.getElementById(id);

// -- API access -------------------------------------------------------------------------

function apiKey() { return sessionStorage.getItem("flowctl-api-key") || ""; }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) headers["Authorization"] = "Bearer " + apiKey();
  const res = await fetch(state.base + path, Object.assign({}, options, { headers }));
  if (res.status === 401) askForKey();
  return res;
}

function askForKey() {
  const form = $("key-form");
  if (!form.hidden) return;
  form.hidden = false;
  showMessage("This server needs an API key (FLOWCTL_API_KEY).");
  $("api-key").focus();
}

function showMessage(text) {
  const el = $("message");
  el.textContent = text || "";
  el.hidden = !text;
}

async function errorText(res) {
  try {
    const body = await res.json();
    return body.error || JSON.stringify(body);
  } catch (e) {
    return res.status + " " + res.statusText;
  }
}

// -- SSE parsing (WHATWG): feed text, get {event, data, id} objects --------------------

function sseParser(onEvent) {
  let buffer = "", data = [], event = "", id = null;
  function line(text) {
    if (text === "") {
      if (data.length) onEvent({ event: event || "message", data: data.join("\n"), id });
      data = []; event = "";
      return;
    }
    if (text[0] === ":") return; // comment (keep-alive)
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
    else if (field === "id") id = value;
  }
  return {
    feed(chunk) {
      buffer += chunk;
      let start = 0;
      for (let i = 0; i < buffer.length; i++) {
        const c = buffer[i];
        if (c === "\n" || c === "\r") {
          if (c === "\r" && i + 1 === buffer.length) break; // may be \r\n split across reads
          line(buffer.slice(start, i));
          if (c === "\r" && buffer[i + 1] === "\n") i++;
          start = i + 1;
        }
      }
      buffer = buffer.slice(start);
    },
  };
}

// a response's body through `parser`, to its end
async function readEvents(res, parser) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.feed(value);
  }
  parser.feed("\n\n");
}

// -- workflows ----------------------------------------------------------------------------

async function loadWorkflows() {
  const res = await api("/workflows");
  if (!res.ok) { showMessage("Cannot list workflows: " + (await errorText(res))); return; }
  state.workflows = await res.json();
  const list = $("workflows");
  list.textContent = "";
  for (const wf of state.workflows) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "#/workflows/" + encodeURIComponent(wf.id);
    a.dataset.workflow = wf.id;
    a.textContent = wf.title || wf.id;
    a.title = wf.id + (wf.default ? " (default)" : "");
    li.appendChild(a);
    list.appendChild(li);
  }
  route();
}

function route() {
  const match = location.hash.match(/^#\/workflows\/(.+)$/);
  let id = match ? decodeURIComponent(match[1]) : null;
  if (!id || !state.workflows.some((w) => w.id === id)) {
    const def = state.workflows.find((w) => w.default) || state.workflows[0];
    id = def ? def.id : null;
  }
  if (id) showWorkflow(id);
}

async function showWorkflow(id) {
  for (const a of document.querySelectorAll("#workflows a")) {
    if (a.dataset.workflow === id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const res = await api("/workflows/" + encodeURIComponent(id));
  if (!res.ok) { showMessage(await errorText(res)); return; }
  const wf = await res.json();
  state.current = wf;
  state.mode = chat.applies(wf) ? "chat" : "form";
  const chatting = state.mode === "chat";
  $("workflow").hidden = false;
  $("workflow").dataset.mode = state.mode;
  $("wf-title").textContent = wf.title || wf.id;
  $("wf-description").textContent = wf.description || "";
  $("chat").hidden = !chatting;
  $("composer").hidden = !chatting;
  $("new-chat").hidden = !chatting;
  $("output-box").hidden = chatting;
  $("run").textContent = chatting ? "Send" : "Run";
  if (chatting) chat.open(state.flow, wf);
  buildForm(wf.input || {}, chatting ? chat.ownInputs() : []);
  $("settings").hidden = chatting && $("fields").childElementCount === 0;
  $("settings").open = !chatting;
  $("output").textContent = "";
  $("output").classList.remove("error");
  setStatus("");
  renderGraph(wf.id);
}

// -- the input form, from JSON Schema -----------------------------------------------------

function buildForm(schema, skip) {
  const fields = $("fields");
  fields.textContent = "";
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(props)) {
    if (skip.includes(name)) continue;
    const div = document.createElement("div");
    div.className = "field";
    div.dataset.field = name;
    const label = document.createElement("label");
    const inputId = "input-" + name;
    label.htmlFor = inputId;
    label.textContent = (prop.title || name) + (required.has(name) ? " *" : "");
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = " " + (prop.type || "any") + (prop.description ? " · " + prop.description : "");
    label.appendChild(hint);
    div.appendChild(label);
    let input;
    const type = prop.type;
    if (Array.isArray(prop.enum)) {
      // a select input (`as select/a,b,c`): its options, the default chosen
      input = document.createElement("select");
      if (!required.has(name) && prop.default === undefined) input.appendChild(new Option("", ""));
      for (const option of prop.enum) {
        input.appendChild(new Option(String(option), String(option), false, option === prop.default));
      }
    } else if (prop["x-flowctl-media"]) {
      // a media input: a URL, a data URI or base64 text; a chosen file becomes a data URI
      input = document.createElement("input");
      input.type = "text";
      input.placeholder = "URL or base64 (" + (prop.contentMediaType || prop["x-flowctl-media"]) + ")";
      const file = document.createElement("input");
      file.type = "file";
      file.className = "media-file";
      if (prop.contentMediaType) file.accept = prop.contentMediaType;
      const target = input;
      file.addEventListener("change", () => {
        const chosen = file.files && file.files[0];
        if (!chosen) return;
        const reader = new FileReader();
        reader.onload = () => { target.value = String(reader.result); };
        reader.readAsDataURL(chosen);
      });
      div.appendChild(file);
    } else if (type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = prop.default === true;
    } else if (type === "number" || type === "integer") {
      input = document.createElement("input");
      input.type = "text";
      input.inputMode = "decimal";
      if (prop.default !== undefined && prop.default !== null) input.placeholder = String(prop.default);
    } else if (type === "object" || type === "array" || type === undefined) {
      input = document.createElement("textarea");
      input.placeholder = prop.default !== undefined ? JSON.stringify(prop.default) : "JSON";
      input.dataset.json = "1";
    } else {
      const long = /prompt|text|message|content|query|question/i.test(name);
      input = document.createElement(long ? "textarea" : "input");
      if (!long) input.type = "text";
      if (prop.default !== undefined && prop.default !== null) input.placeholder = String(prop.default);
    }
    input.id = inputId;
    input.name = name;
    input.dataset.type = type || "json";
    if (required.has(name)) input.required = true;
    div.appendChild(input);
    const err = document.createElement("div");
    err.className = "error";
    div.appendChild(err);
    fields.appendChild(div);
  }
}

function readForm() {
  const values = {};
  for (const input of $("fields").querySelectorAll("input:not(.media-file), textarea, select")) {
    const name = input.name;
    if (!name) continue;
    const type = input.dataset.type;
    if (type === "boolean") { values[name] = input.checked; continue; }
    const raw = input.value;
    if (raw.trim() === "") continue; // the server fills defaults and names missing fields
    if (input.dataset.json) {
      try { values[name] = JSON.parse(raw); } catch (e) { values[name] = raw; }
    } else if (type === "number" || type === "integer") {
      const n = Number(raw.trim());
      values[name] = Number.isFinite(n) ? n : raw; // let the server name a bad value
    } else {
      values[name] = raw;
    }
  }
  return values;
}

function markField(name, message) {
  for (const div of $("fields").querySelectorAll(".field")) {
    const hit = div.dataset.field === name;
    div.classList.toggle("invalid", hit);
    div.querySelector(".error").textContent = hit ? message : "";
  }
}

// -- running ------------------------------------------------------------------------------

function setStatus(text, status) {
  const el = $("run-status");
  el.textContent = text;
  if (status) el.dataset.status = status; else delete el.dataset.status;
}

function setRunning(running) {
  $("run").disabled = running;
  $("cancel").disabled = !running;
  $("new-chat").disabled = running;
}

// Where a run's output goes: the Output box (a form), or the reply's bubble (a chat).
// chunk(text) while it streams, value(output) for a collected answer, end(status, error).
function outputSink() {
  const out = $("output");
  out.textContent = "";
  out.classList.remove("error");
  const body = document.createElement("div");
  body.className = "markdown";
  out.appendChild(body);
  const live = markdown.live(body);
  let text = "";
  return {
    chunk(t) { text += t; live.set(text); },
    value(output) {
      if (typeof output === "string") { text = output; live.done(text); return; }
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(output, null, 2);
      body.replaceWith(pre);
    },
    refused(message) { out.classList.add("error"); out.textContent = message; },
    end(status, error) {
      live.done(text);
      if (error) {
        const err = document.createElement("div");
        err.className = "stream-error";
        err.textContent = "\n[error] " + error;
        out.appendChild(err);
      }
      return text;
    },
  };
}

function chatSink(turn) {
  let text = "";
  const end = (status, error) => {
    const { kept } = turn.end(status, error);
    if (!kept && !$("chat-input").value) $("chat-input").value = turn.question;
    return text;
  };
  return {
    chunk(t) { text += t; turn.append(t); },
    value(output) { text = typeof output === "string" ? output : JSON.stringify(output); turn.append(text); },
    refused(message) { end("failed", message); },
    end,
  };
}

async function startRun(event) {
  event.preventDefault();
  const wf = state.current;
  if (!wf || state.run) return;
  markField(null, "");
  const input = readForm();
  let sink;
  if (state.mode === "chat") {
    const question = $("chat-input").value;
    if (!question.trim()) { $("chat-input").focus(); return; }
    // the `system` input, as filled in or as its default, is the conversation's first message
    const declared = ((wf.input || {}).properties || {}).system;
    const system = typeof input.system === "string" ? input.system : (declared && typeof declared.default === "string" ? declared.default : "");
    delete input.system;
    const turn = chat.ask(question, system);
    turn.question = question;
    input.messages = turn.messages;
    $("chat-input").value = "";
    sink = chatSink(turn);
  } else {
    sink = outputSink();
  }
  const controller = new AbortController();
  const run = { id: null, controller, chunks: 0, workflow: wf.id, status: null, error: null };
  const entry = runHistory.start(wf.id, input);
  state.run = run;
  setRunning(true);
  setStatus("starting…");
  let output = null;
  try {
    resetNodeStates();
    const res = await api("/workflows/" + encodeURIComponent(wf.id) + "/runs?events=nodes", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": wf.streams ? "text/event-stream" : "application/json" },
      body: JSON.stringify({ input }),
      signal: controller.signal,
    });
    run.id = res.headers.get("X-Run-Id");
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      if (body.field) markField(body.field, body.error);
      run.status = "failed";
      run.error = body.error || (res.status + " " + res.statusText);
      sink.refused(run.error);
      setStatus("HTTP " + res.status, "failed");
      return;
    }
    const type = res.headers.get("Content-Type") || "";
    if (!type.startsWith("text/event-stream")) {
      const body = await res.json();
      for (const ev of body.events || []) showNodeEvent(ev);
      sink.value(body.output);
      output = body.output;
      run.status = body.status;
      run.error = body.error || null;
      run.elapsed_ms = body.elapsed_ms;
      run.usage = body.usage || null;
      setStatus(body.status + " · " + body.elapsed_ms + " ms" + tokens(body.usage), body.status);
      sink.end(body.status, null);
      return;
    }
    setStatus("running · run " + (run.id || ""));
    await readStream(res, run, sink);
    output = sink.end(run.status, run.error);
  } catch (e) {
    if (e.name === "AbortError") { run.status = "cancelled"; setStatus("cancelled", "cancelled"); }
    else { run.status = "failed"; run.error = e.message; setStatus("error: " + e.message, "failed"); }
    output = sink.end(run.status, run.status === "failed" ? run.error : null);
  } finally {
    state.run = null;
    setRunning(false);
    runHistory.finish(entry, { id: run.id, status: run.status || "failed", elapsed_ms: run.elapsed_ms, usage: run.usage, output, error: run.error });
  }
}

// the token counts the model server reported, when it did (`usage`)
function tokens(usage) {
  return usage ? " · " + usage.prompt_tokens + " → " + usage.completion_tokens + " tokens" : "";
}

async function readStream(res, run, sink) {
  const parser = sseParser((ev) => {
    if (ev.event === "message") {
      run.chunks++;
      sink.chunk(ev.data);
    } else if (ev.event === "node") {
      showNodeEvent(JSON.parse(ev.data));
    } else if (ev.event === "done") {
      const info = JSON.parse(ev.data);
      run.status = info.status;
      run.elapsed_ms = info.elapsed_ms;
      run.usage = info.usage || null;
      if (info.error) run.error = info.error;
      setStatus(info.status + " · " + info.chunks + " chunks · " + info.elapsed_ms + " ms" + tokens(info.usage), info.status);
    } else if (ev.event === "error") {
      const info = JSON.parse(ev.data);
      run.status = "failed";
      run.error = info.message;
      setStatus("failed", "failed");
    }
  });
  await readEvents(res, parser);
  if (!run.status) {
    run.status = "failed";
    run.error = "the stream ended early";
    setStatus("the stream ended early", "failed");
  }
}

async function cancelRun() {
  const run = state.run;
  if (!run) return;
  if (run.id) {
    setStatus("cancelling…");
    const res = await api("/runs/" + encodeURIComponent(run.id) + "/cancel", { method: "POST" });
    if (res.ok) return; // the stream ends with `event: done` (status cancelled)
  }
  run.controller.abort();
}

// -- graph --------------------------------------------------------------------------------

async function renderGraph(id) {
  const box = $("graph");
  const seq = ++state.graphSeq;
  box.textContent = "";
  const res = await api("/workflows/" + encodeURIComponent(id) + "/graph");
  if (!res.ok) { box.textContent = await errorText(res); return; }
  const text = await res.text();
  if (seq !== state.graphSeq) return;
  const ids = /%% flowctl-ids (\{.*\})/.exec(text);
  state.graphIds = ids ? JSON.parse(ids[1]) : {};
  if (!window.mermaid) { box.textContent = text; return; }
  try {
    const { svg } = await window.mermaid.render("flowctl-graph-" + seq, text);
    if (seq === state.graphSeq) {
      box.innerHTML = svg;
      for (const [node, st] of Object.entries(state.nodeStates)) paintNode(node, st);
    }
  } catch (e) {
    const pre = document.createElement("pre");
    pre.textContent = text;
    box.appendChild(pre);
  }
}

// -- node states: the graph coloured from the run's node events --------------------------------

function graphNode(node) {
  // the drawing's id for a node comes from the graph's `%% flowctl-ids` line; mermaid names
  // the node's group "...flowchart-<id>-<n>"
  const mid = state.graphIds[node];
  if (!mid) return null;
  for (const g of $("graph").querySelectorAll("g.node")) {
    const m = /flowchart-([A-Za-z0-9_]+)-\d+$/.exec(g.id || "");
    if (m && m[1] === mid) return g;
  }
  return null;
}

function paintNode(node, st) {
  const g = graphNode(node);
  if (!g) return;
  g.dataset.state = st.state;
  const title = g.querySelector("title") || g.appendChild(document.createElementNS("http://www.w3.org/2000/svg", "title"));
  title.textContent = node + ": " + st.state + (st.detail ? " (" + st.detail + ")" : "");
}

function showNodeEvent(ev) {
  // retrying / progress keep a node "started"; they only say more about it
  const shown = ["retrying", "progress"].includes(ev.state) ? "started" : ev.state;
  let detail = ev.reason || ev.error || "";
  if (ev.elapsed_ms != null) detail = ev.elapsed_ms + " ms" + (detail ? ", " + detail : "");
  if (ev.state === "progress") detail = ev.done + "/" + ev.total;
  if (ev.state === "retrying") detail = "attempt " + ev.attempt;
  if (ev.state === "paused") detail = ev.message || "waiting for an answer";
  state.nodeStates[ev.node] = { state: shown, detail };
  paintNode(ev.node, state.nodeStates[ev.node]);
}

function resetNodeStates() {
  state.nodeStates = {};
  for (const g of $("graph").querySelectorAll("g.node[data-state]")) delete g.dataset.state;
}

// -- readiness: services and the last failed reload -----------------------------------------

async function pollReady() {
  try {
    const res = await api("/ready");
    if (res.status === 401) return;
    const body = await res.json();
    const badge = $("readiness");
    badge.dataset.ready = String(!!body.ready);
    badge.textContent = body.ready ? "ready" : "not ready";
    badge.title = body.not_ready ? Object.entries(body.not_ready).map(([k, v]) => k + ": " + v).join("\n") : "GET /ready";
    const list = $("services");
    list.textContent = "";
    for (const [node, svc] of Object.entries(body.services || {})) {
      const li = document.createElement("li");
      li.dataset.node = node;
      li.dataset.state = svc.state;
      const name = document.createElement("span");
      name.textContent = node;
      const st = document.createElement("span");
      st.className = "state";
      st.textContent = svc.state + (svc.restarts ? " (" + svc.restarts + (svc.restarts === 1 ? " restart)" : " restarts)") : "");
      li.append(name, st, logPane.button(node));
      if (svc.restarts && svc.last_exit) {
        // what the restarts were for: "ready (2 restarts)" alone hides a server that keeps crashing
        const died = document.createElement("span");
        died.className = "last-exit";
        died.textContent = "last one " + svc.last_exit;
        li.appendChild(died);
      }
      if (svc.reason) {
        const why = document.createElement("span");
        why.className = "reason";
        why.textContent = svc.reason;
        li.appendChild(why);
      }
      list.appendChild(li);
      // a service with replicas: a row each (llm.0, llm.1), with its own state and log
      for (const replica of svc.replicas || []) {
        const row = document.createElement("li");
        row.className = "replica";
        row.dataset.node = replica.name;
        row.dataset.state = replica.state;
        const label = document.createElement("span");
        label.textContent = replica.name;
        const state = document.createElement("span");
        state.className = "state";
        state.textContent = replica.state + (replica.in_flight ? " · " + replica.in_flight + " in flight" : "");
        row.append(label, state, logPane.button(replica.name));
        if (replica.reason && replica.state !== "ready") {
          const why = document.createElement("span");
          why.className = "reason";
          why.textContent = replica.reason;
          row.appendChild(why);
        }
        list.appendChild(row);
      }
    }
    const banner = $("reload-error");
    banner.hidden = !body.reload_error;
    banner.textContent = body.reload_error ? "Reload failed; still serving the previous version:\n" + body.reload_error : "";
    const restart = $("restart-needed");
    const needed = body.restart_needed || [];
    restart.hidden = needed.length === 0;
    restart.textContent = needed.length ? "Restart flowctl to apply: " + needed.join(", ") : "";
  } catch (e) {
    const badge = $("readiness");
    badge.dataset.ready = "false";
    badge.textContent = "unreachable";
  }
}

// -- start ---------------------------------------------------------------------------------

async function main() {
  try {
    const cfg = await (await fetch("/ui-config.json")).json();
    state.base = cfg.base_path;
    state.flow = cfg.flow || "";
    $("flow-name").textContent = cfg.flow || "";
    document.title = "flowctl · " + (cfg.flow || "");
  } catch (e) { /* keep the defaults */ }
  if (window.mermaid) window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
  runHistory.load(state.flow);
  $("run-form").addEventListener("submit", startRun);
  $("cancel").addEventListener("click", cancelRun);
  $("new-chat").addEventListener("click", () => { chat.reset(); $("chat-input").focus(); });
  $("chat-input").addEventListener("keydown", (e) => {
    // Enter sends, Shift+Enter is a new line (as in every chat window)
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("run-form").requestSubmit(); }
  });
  $("log-close").addEventListener("click", logPane.close);
  $("own-log").appendChild(logPane.button("flowctl", "flowctl's own log"));
  $("history-clear").addEventListener("click", runHistory.clear);
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("flowctl-api-key", $("api-key").value);
    $("key-form").hidden = true;
    showMessage("");
    loadWorkflows();
    pollReady();
  });
  window.addEventListener("hashchange", route);
  await loadWorkflows();
  await pollReady();
  // `?poll=MS` polls /ready more often (tests); 2 s otherwise
  const poll = Number(new URLSearchParams(location.search).get("poll")) || 2000;
  setInterval(pollReady, Math.max(100, poll));
}

main();
