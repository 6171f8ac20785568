// The live log pane: one service's log (or flowctl's own, node `flowctl`), its last lines and
// then each new line as it is written, from `GET {base}/services/{node}/logs?tail=N&follow=1` (SSE, one `data:` per
// line; `event: rotated` when the file was rotated meanwhile). One pane, one stream: opening
// another service's log closes the first.
"use strict";

const logPane = (() => {
  const TAIL = 200;         // lines asked for when the pane opens
  const KEEP = 5000;        // lines kept in the page; older ones are dropped
  let current = null;       // {node, controller}

  function close() {
    if (current) current.controller.abort();
    current = null;
    $("logs").hidden = true;
    for (const b of document.querySelectorAll("#services button.logs")) b.setAttribute("aria-expanded", "false");
  }

  function note(text) {
    const el = $("log-note");
    el.textContent = text || "";
    el.hidden = !text;
  }

  async function open(node) {
    if (current && current.node === node) { close(); return; }
    close();
    const controller = new AbortController();
    current = { node, controller };
    const lines = $("log-lines");
    lines.textContent = "";
    $("log-node").textContent = node;
    note("");
    $("logs").hidden = false;
    $("logs").dataset.node = node;
    $("logs").dataset.state = "connecting";
    const button = document.querySelector('#services button.logs[data-node="' + CSS.escape(node) + '"]');
    if (button) button.setAttribute("aria-expanded", "true");
    try {
      const res = await api("/services/" + encodeURIComponent(node) + "/logs?tail=" + TAIL + "&follow=1", {
        headers: { "Accept": "text/event-stream" },
        signal: controller.signal,
      });
      if (!res.ok) { note(await errorText(res)); $("logs").dataset.state = "failed"; return; }
      $("logs").dataset.state = "following";
      const parser = sseParser((ev) => {
        if (ev.event === "message") append(lines, ev.data);
        else if (ev.event === "rotated") append(lines, "— the log was rotated —", "marker");
        else if (ev.event === "error") note(ev.data);
      });
      await readEvents(res, parser);
      if (current && current.controller === controller) { $("logs").dataset.state = "ended"; note("The log stream ended."); }
    } catch (e) {
      if (e.name !== "AbortError") { note("Cannot read the log: " + e.message); $("logs").dataset.state = "failed"; }
    }
  }

  function append(pre, line, className) {
    // keep the view at the bottom only when the reader is there already
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const div = document.createElement("div");
    div.textContent = line;
    if (className) div.className = className;
    pre.appendChild(div);
    while (pre.childElementCount > KEEP) pre.firstElementChild.remove();
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function button(node, label) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "logs link";
    b.dataset.node = node;
    b.textContent = label || "logs";
    b.title = "Follow " + node + "'s log";
    b.setAttribute("aria-expanded", current && current.node === node ? "true" : "false");
    b.setAttribute("aria-controls", "logs");
    b.addEventListener("click", () => open(node));
    return b;
  }

  return { open, close, button };
})();
