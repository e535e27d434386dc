// 立即插播: the big button plays the banner's audio with one tap (CSP: no inline scripts).
document.addEventListener("click", (event) => {
  const button = event.target.closest(".breakin-play");
  if (!button) return;
  const audio = button.closest(".breakin-banner").querySelector("audio");
  audio.play().catch(() => audio.focus());
});
