// Live character count and spoken-duration estimate for the announcement editor,
// and confirmation for destructive forms. No framework: officers use cheap phones.
"use strict";
(function () {
  // Mandarin announcers read about 4.2 characters a second at normal speed.
  const CHARS_PER_SECOND = 4.2;
  function spokenChars(text) {
    return (text.match(/[\u3400-\u9fff]|[A-Za-z]+|\d/g) || []).length;
  }
  function update() {
    const form = document.getElementById("announcement-form");
    if (!form) return;
    for (const area of form.querySelectorAll("textarea[data-count]")) {
      const out = document.getElementById(area.dataset.count);
      const n = area.value.length;
      const limit = Number(area.dataset.limit);
      out.textContent = n + " / " + limit;
      out.classList.toggle("over", n > limit);
    }
    const spoken = form.elements.spoken_text.value.trim() || form.elements.body.value;
    const rate = 1 + (Number(form.elements.rate.value) || 0) / 100;
    const seconds = Math.round(spokenChars(spoken) / (CHARS_PER_SECOND * rate));
    const target = document.getElementById("duration");
    target.textContent = target.dataset.label.replace("{s}", seconds);
  }
  document.addEventListener("input", update);
  document.addEventListener("DOMContentLoaded", update);
  document.addEventListener("submit", function (event) {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
