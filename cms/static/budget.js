// The spoken-duration budget in the announcement editor: asks the server whether this
// text, with its repeats, makes any targeted outlet's program run past its slot.
// Include with <script src=".../budget.js" defer> and put
// <p id="budget" data-url="{{ url_for('schedule.budget') }}" data-announcement="ID"></p>
// inside #announcement-form. The form's CSRF token travels with the POST.
"use strict";
(function () {
  let timer = null;
  let seq = 0;
  function check() {
    const form = document.getElementById("announcement-form");
    const out = document.getElementById("budget");
    if (!form || !out || !out.dataset.url) return;
    const data = new FormData(form);
    if (out.dataset.announcement) data.set("announcement_id", out.dataset.announcement);
    const mine = ++seq;
    fetch(out.dataset.url, { method: "POST", body: data, credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (mine !== seq) return; // a newer check is under way
        if (body.errors) { out.textContent = ""; return; }
        out.textContent = body.message;
        out.classList.toggle("over", Boolean(body.over));
      })
      .catch(function () { /* the editor works without the budget */ });
  }
  function later() {
    clearTimeout(timer);
    timer = setTimeout(check, 600);
  }
  document.addEventListener("input", later);
  document.addEventListener("change", later);
  document.addEventListener("DOMContentLoaded", check);
})();
