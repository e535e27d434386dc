// Live character count and spoken-duration estimate for the announcement editor,
// and confirmation for destructive forms. No framework: officers use cheap phones.
"use strict";
(function () {
  // Mandarin announcers read about 4.2 characters a second at normal speed.
  const CHARS_PER_SECOND = 4.2;
  function spokenChars(text) {
    return (text.match(/[\u3400-\u9fff]|[A-Za-z]+|\d/g) || []).length;
  }
  // The Official Account's title: the same rule as cms.publishers.short_title.
  const ABOUT = /^关于(.+?)的(紧急通知|补充通知|通知|公告|通告|倡议书|倡议|通报|决定|意见|函)$/;
  function shortTitle(title, limit) {
    const text = title.trim().split(/\s+/).filter(Boolean).join(" ");
    const chars = Array.from(text);
    if (chars.length <= limit) return text;
    const match = ABOUT.exec(text);
    if (match) {
      const core = match[1], kind = match[2];
      for (const candidate of [core + kind, core]) {
        if (Array.from(candidate).length <= limit) return candidate;
      }
      return Array.from(core).slice(0, limit - kind.length - 1).join("") + "…" + kind;
    }
    return chars.slice(0, limit - 1).join("") + "…";
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
    const oa = document.getElementById("oa-title");
    if (oa) {
      const limit = Number(oa.dataset.limit);
      const short = shortTitle(form.elements.title.value, limit);
      oa.querySelector("[data-oa-title]").textContent = short;
      oa.querySelector("[data-oa-count]").textContent = short.length + " / " + limit;
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
