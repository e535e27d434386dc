// The copy button of the 转发到微信群 panel: copy the ready text for pasting into a group;
// also the share and print buttons of a newly issued operator link.
// WeChat's browser may refuse the clipboard API; then the text is selected for a long press.
"use strict";
(function () {
  function report(button, text) {
    const status = button.parentNode.querySelector(".copy-status");
    if (status) status.textContent = text;
  }
  function fallback(area, button) {
    area.focus();
    area.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (err) {
      copied = false;
    }
    report(button, copied ? button.dataset.copied : button.dataset.failed);
  }
  // The system share sheet (WeChat, SMS …) where the browser has one; hidden otherwise.
  if (navigator.share) {
    document.querySelectorAll("button[data-share-url]").forEach(function (button) {
      button.hidden = false;
    });
  }
  document.addEventListener("click", function (event) {
    const target = event.target.closest && event.target.closest("button[data-share-url], button[data-print]");
    if (target && target.dataset.shareUrl !== undefined) {
      navigator.share({ title: target.dataset.shareTitle || document.title, url: target.dataset.shareUrl })
        .catch(function () { /* the user closed the share sheet */ });
      return;
    }
    if (target) {
      window.print();
      return;
    }
    const button = event.target.closest && event.target.closest("button[data-copy]");
    if (!button) return;
    const area = document.getElementById(button.dataset.copy);
    if (!area) return;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(area.value).then(
        function () { report(button, button.dataset.copied); },
        function () { fallback(area, button); }
      );
    } else {
      fallback(area, button);
    }
  });
})();
