// loosely console: the little the pages need beyond HTML. Elements with data-poll="URL" get their content
// replaced by a fresh fetch of URL every data-every-ms milliseconds, until the fragment says it is done
// (an element with data-done="1"); forms with data-confirm ask before submitting.
"use strict";

function poll(el) {
  const url = el.dataset.poll;
  const every = parseInt(el.dataset.everyMs || "2000", 10);
  const tick = async () => {
    try {
      const r = await fetch(url, { headers: { "Accept": "text/html" } });
      if (r.ok) {
        el.innerHTML = await r.text();
        if (el.querySelector('[data-done="1"]')) return;  // finished: stop asking
      }
    } catch (e) {
      // the console is away for a moment: try again at the next tick
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(poll);
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  });
});
