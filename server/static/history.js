// Run history for this browser session: every run started from this page, newest first,
// with its input, its output (clipped) and how it ended; kept in sessionStorage, so a reload
// keeps it and closing the tab forgets it. Opening an entry shows what was asked and answered.
"use strict";

const runHistory = (() => {
  const MAX_RUNS = 50;
  const MAX_TEXT = 20000;   // characters of output (and of input JSON) kept per run
  let key = "flowctl-history";
  let runs = [];

  function load(flow) {
    key = "flowctl-history:" + (flow || "");
    try { runs = JSON.parse(sessionStorage.getItem(key) || "[]"); } catch (e) { runs = []; }
    if (!Array.isArray(runs)) runs = [];
    show();
  }

  function save() {
    try { sessionStorage.setItem(key, JSON.stringify(runs)); } catch (e) { /* storage full: keep it in memory */ }
  }

  function clip(text) {
    return text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) + "\n… (clipped)" : text;
  }

  // a run started: returns its entry, to `finish` later
  function start(workflow, input) {
    const entry = { seq: (runs[0] ? runs[0].seq : 0) + 1, workflow, at: new Date().toISOString(), status: "running", input: clip(JSON.stringify(input, null, 2)), output: "" };
    runs.unshift(entry);
    runs.length = Math.min(runs.length, MAX_RUNS);
    save();
    show();
    return entry;
  }

  function finish(entry, fields) {
    Object.assign(entry, fields);
    // text is shown as Markdown, as the reply was; anything else as the JSON it is
    entry.text = typeof entry.output === "string";
    if (!entry.text) entry.output = entry.output == null ? "" : JSON.stringify(entry.output, null, 2);
    entry.output = clip(entry.output);
    save();
    show();
  }

  function clear() { runs = []; save(); show(); }

  function show() {
    const list = $("history");
    list.textContent = "";
    $("history-empty").hidden = runs.length > 0;
    $("history-clear").hidden = runs.length === 0;
    for (const run of runs) {
      const li = document.createElement("li");
      li.dataset.status = run.status;
      if (run.id) li.dataset.run = run.id;
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      const time = new Date(run.at);
      const when = document.createElement("time");
      when.dateTime = run.at;
      when.textContent = time.toLocaleTimeString();
      const what = document.createElement("span");
      what.className = "what";
      what.textContent = run.workflow;
      const how = document.createElement("span");
      how.className = "how";
      how.textContent = run.status + (run.elapsed_ms != null ? " · " + run.elapsed_ms + " ms" : "") + tokens(run.usage);
      summary.append(when, what, how);
      details.appendChild(summary);
      details.appendChild(block("Input", run.input, false));
      if (run.error) details.appendChild(block("Error", run.error, false));
      if (run.output) details.appendChild(block("Output", run.output, run.text));
      if (run.id) {
        const id = document.createElement("p");
        id.className = "run-id";
        id.textContent = "run " + run.id;
        details.appendChild(id);
      }
      li.appendChild(details);
      list.appendChild(li);
    }
  }

  function block(title, text, asMarkdown) {
    const div = document.createElement("div");
    div.className = "entry-" + title.toLowerCase();
    const h = document.createElement("h4");
    h.textContent = title;
    const body = document.createElement("div");
    body.className = asMarkdown ? "markdown" : "plain";
    if (asMarkdown) markdown.render(body, text); else body.textContent = text;
    div.append(h, body);
    return div;
  }

  return { load, start, finish, clear };
})();
