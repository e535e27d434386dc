// Where the draft goes, in the announcement editor: the outlets with their slots and first
// play, the chats with their post time and the Official Account follow the targets,
// channels, dates and post time as they change (debounced POST; the server sends an escaped
// HTML fragment). Without scripts the "更新发布范围" button submits the form and the editor
// comes back with the list filled in; submitting a notice that reaches nothing is refused.
"use strict";
(function () {
  const FIELDS = [
    "area_ids", "to_loudspeaker", "to_chats", "start_date", "end_date", "chat_post_time", "end_time", "airtime",
  ];
  let timer = null;
  let seq = 0;

  function refresh() {
    const form = document.getElementById("announcement-form");
    const out = document.getElementById("reach");
    if (!form || !out || !out.dataset.url) return;
    const mine = ++seq;
    fetch(out.dataset.url, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      })
      .then(function (html) {
        if (mine !== seq) return; // a newer answer is on its way
        out.innerHTML = html; // built and escaped by the server's template
      })
      .catch(function () { /* the button still works */ });
  }

  function later(event) {
    if (!event.target || FIELDS.indexOf(event.target.name) < 0) return;
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const button = document.getElementById("reach-button");
    if (button) button.hidden = true; // the list follows the fields by itself
  });
  document.addEventListener("change", later);
  document.addEventListener("input", later);
})();
