// Markdown for model replies: marked (vendored, marked.umd.js) parses, DOMPurify (vendored,
// purify.min.js) cleans what it made. A reply is untrusted text, so three rules:
// - HTML written in a reply is shown as text, never parsed: a model explaining `<br>` shows
//   `<br>`, and nothing it writes becomes an element;
// - images are not loaded: `![x](https://…/?secret)` is the known way to make a chat page
//   send data to another host, and offline they are broken anyway; they become links;
// - links open in a new tab (the conversation stays), without the opener or the referrer.
// DOMPurify runs after marked all the same (no script, handler, style or javascript: URL can
// get through whatever marked makes of odd input).
"use strict";

const markdown = (() => {
  const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  let parser = null;
  if (window.marked && window.DOMPurify) {
    parser = new window.marked.Marked({ gfm: true, breaks: true });
    parser.use({
      renderer: {
        html(token) { return escapeHtml(token.text); },
        image(token) {
          const href = token.href || "";
          return '<a href="' + escapeHtml(href) + '">' + escapeHtml("image: " + (token.text || href)) + "</a>";
        },
      },
    });
    window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A" && node.hasAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer");
      }
    });
  }
  const PURIFY = { FORBID_TAGS: ["img", "style", "form", "input", "button", "textarea", "select", "iframe", "svg", "math"], FORBID_ATTR: ["style", "class", "id"] };

  // `el`'s content becomes `text` rendered; without the libraries, the text as is
  function render(el, text) {
    if (!parser) { el.textContent = text; return; }
    el.innerHTML = window.DOMPurify.sanitize(parser.parse(text).trim(), PURIFY);
  }

  // for a stream: render at most once per animation frame, the latest text
  function live(el) {
    let text = "", pending = false;
    const flush = () => { pending = false; render(el, text); };
    return {
      set(value) {
        text = value;
        if (!pending) { pending = true; requestAnimationFrame(flush); }
      },
      done(value) { text = value; pending = false; render(el, text); },
    };
  }

  return { render, live, available: () => parser !== null };
})();
