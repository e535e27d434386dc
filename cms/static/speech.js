// Hear it before submitting, in the announcement editor:
// - the spoken-text preview follows the 正文/播音稿 fields (debounced POST; the server sends
//   an escaped HTML fragment), so the "预览播音稿" button is only needed without scripts;
// - 试听 fetches a short sample and plays it in place instead of reloading the page.
// Without scripts both buttons submit the form and the editor comes back filled in.
"use strict";
(function () {
  const TEXT_FIELDS = ["body", "spoken_text"];
  let timer = null;
  let seq = 0;

  function form() { return document.getElementById("announcement-form"); }

  function post(url, data) {
    return fetch(url, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    });
  }

  function refresh() {
    const f = form();
    const out = document.getElementById("spoken-preview");
    if (!f || !out || !out.dataset.url) return;
    const mine = ++seq;
    post(out.dataset.url, new FormData(f))
      .then(function (response) { return response.text(); })
      .then(function (html) {
        if (mine !== seq) return; // a newer preview is under way
        out.innerHTML = html; // built and escaped by the server's template
      })
      .catch(function () { /* the button still works */ });
  }

  function later(event) {
    if (!event.target || TEXT_FIELDS.indexOf(event.target.name) < 0) return;
    clearTimeout(timer);
    timer = setTimeout(refresh, 700);
  }

  function line(className, text, testid) {
    const p = document.createElement("p");
    p.className = className;
    p.textContent = text;
    if (testid) p.dataset.testid = testid;
    return p;
  }

  function listen(event) {
    const button = event.currentTarget;
    const f = form();
    const out = document.getElementById("listen-result");
    if (!f || !out) return;
    event.preventDefault();
    button.disabled = true;
    out.replaceChildren(line("hint", button.dataset.busy, "listen-busy"));
    post(button.formAction, new FormData(f))
      .then(function (response) {
        return response.json().catch(function () { return { error: button.dataset.failed }; });
      })
      .then(function (body) {
        if (body.error) {
          const p = line("flash error", body.error, "listen-error");
          p.setAttribute("role", "alert");
          out.replaceChildren(p);
          return;
        }
        const audio = document.createElement("audio");
        audio.controls = true;
        audio.src = body.url;
        audio.dataset.testid = "listen-audio";
        const parts = [audio, line("hint", body.summary, "listen-engine")];
        if (body.reason) parts.push(line("warn-text", body.reason, "listen-reason"));
        out.replaceChildren.apply(out, parts);
      })
      .catch(function () { out.replaceChildren(line("flash error", button.dataset.failed)); })
      .finally(function () { button.disabled = false; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!form()) return;
    const previewButton = document.getElementById("preview-button");
    if (previewButton) previewButton.hidden = true;
    const listenButton = document.getElementById("listen-button");
    if (listenButton) listenButton.addEventListener("click", listen);
    document.addEventListener("input", later);
    refresh();
  });
})();
