// Chat mode: a workflow with a `messages` input (a list) and a text output is a chat. The page
// keeps the conversation and sends all of it as `messages` with every turn, as OpenAI's chat
// API takes it: [{role: "system"?}, {role: "user"}, {role: "assistant"}, ..., {role: "user"}].
// An input named `system` becomes the conversation's first message (as filled in, or its
// default), not an input of its own; the other inputs (temperature, ...) go with each turn.
// The conversation is kept per workflow in sessionStorage (a reload keeps it).
"use strict";

const chat = (() => {
  let key = null;
  let messages = [];     // what was said and answered, in order; never a failed turn

  function applies(wf) {
    const props = (wf.input && wf.input.properties) || {};
    const m = props.messages;
    return !!m && (m.type === "array" || m.type === undefined) && (wf.output_type === "stream/text" || wf.output_type === "value");
  }

  // the inputs the conversation itself fills: not shown as form fields in chat mode (`system`
  // is shown, under Settings, and sent as the first message)
  function ownInputs() { return ["messages", "prompt"]; }

  function open(flow, wf) {
    key = "flowctl-chat:" + flow + ":" + wf.id;
    try { messages = JSON.parse(sessionStorage.getItem(key) || "[]"); } catch (e) { messages = []; }
    if (!Array.isArray(messages)) messages = [];
    const list = $("conversation");
    list.textContent = "";
    for (const m of messages) bubble(m.role, m.content, "done");
    $("chat-empty").hidden = messages.length > 0;
  }

  function save() {
    if (!key) return;
    try { sessionStorage.setItem(key, JSON.stringify(messages)); } catch (e) { /* full: memory only */ }
  }

  function reset() {
    messages = [];
    save();
    $("conversation").textContent = "";
    $("chat-empty").hidden = false;
  }

  function bubble(role, text, status) {
    const li = document.createElement("li");
    li.className = "turn";
    li.dataset.role = role;
    li.dataset.status = status;
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = role === "user" ? "You" : role === "assistant" ? "Assistant" : role;
    const content = document.createElement("div");
    content.className = "content " + (role === "assistant" ? "markdown" : "plain");
    if (role === "assistant") markdown.render(content, text); else content.textContent = text;
    li.append(who, content);
    $("conversation").appendChild(li);
    $("chat-empty").hidden = true;
    li.scrollIntoView({ block: "nearest" });
    return li;
  }

  // a new turn: the user's text shown, the reply's bubble ready; returns what the run needs
  function ask(text, system) {
    const sent = (system ? [{ role: "system", content: system }] : []).concat(messages, [{ role: "user", content: text }]);
    const question = bubble("user", text, "sending");
    const answer = bubble("assistant", "", "streaming");
    const content = answer.querySelector(".content");
    const live = markdown.live(content);
    let reply = "";
    return {
      messages: sent,
      append(chunk) { reply += chunk; live.set(reply); },
      // how the run ended: a whole answer joins the conversation; a cancelled one keeps what
      // came; a failed turn is left out of what is sent next (shown, marked), and its
      // question goes back to the input box
      end(status, error) {
        live.done(reply);
        answer.dataset.status = status;
        if (error) {
          const err = document.createElement("div");
          err.className = "stream-error";
          err.textContent = error;
          answer.appendChild(err);
        }
        const kept = status === "succeeded" || (status === "cancelled" && reply !== "");
        question.dataset.status = kept ? "done" : "not-sent";
        if (kept) {
          messages.push({ role: "user", content: text }, { role: "assistant", content: reply });
          save();
        }
        return { kept, reply };
      },
    };
  }

  return { applies, ownInputs, open, reset, ask, count: () => messages.length };
})();
