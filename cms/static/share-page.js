// The share page's play button: one tap plays the clip in the page, the bar and the time in
// words follow it. Without this script the same button is a link that opens the clip in the
// phone's own player, and the native <audio> controls work below it. With it, our player
// drives the <audio> element and the native controls are hidden: one player on the page.
"use strict";
(function () {
  var player = document.querySelector("[data-player]");
  if (!player) return;
  var audio = player.querySelector("audio");
  var button = player.querySelector(".play");
  var bar = player.querySelector("progress");
  var time = player.querySelector(".time");
  var label = button.querySelector(".play-label");
  function words(seconds, template) {
    seconds = Math.max(0, Math.floor(seconds || 0));
    var s = seconds % 60;
    return template.replace("{m}", String(Math.floor(seconds / 60))).replace("{s}", (s < 10 ? "0" : "") + s);
  }
  function show() {
    var total = isFinite(audio.duration) && audio.duration > 0 ? audio.duration : Number(player.dataset.duration || 0);
    if (total > 0) { bar.max = total; bar.value = Math.min(audio.currentTime, total); }
    time.textContent = words(audio.currentTime, player.dataset.played) +
      (total > 0 ? " / " + words(total, player.dataset.total) : "");
  }
  function state() {
    var playing = !audio.paused && !audio.ended;
    button.setAttribute("aria-pressed", playing ? "true" : "false");
    label.textContent = playing ? player.dataset.pause : player.dataset.play;
  }
  audio.controls = false;
  audio.hidden = true;
  button.setAttribute("role", "button");
  button.setAttribute("aria-pressed", "false");
  button.addEventListener("click", function (event) {
    event.preventDefault();
    if (audio.paused || audio.ended) { audio.play(); } else { audio.pause(); }
  });
  ["timeupdate", "durationchange", "seeked"].forEach(function (name) { audio.addEventListener(name, show); });
  ["play", "pause", "ended"].forEach(function (name) { audio.addEventListener(name, state); });
})();
