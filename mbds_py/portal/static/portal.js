// MBDS portal: live sections over server-sent events, and small conveniences.
// Everything works without this script (forms post and the page reloads).
(function () {
  "use strict";
  var live = document.getElementById("live");

  function announce(text) {
    if (live && text) { live.textContent = text; }
  }

  function refresh(name) {
    var old = document.getElementById(name);
    if (!old) { return Promise.resolve(); }
    return fetch("/section/" + encodeURIComponent(name), { credentials: "same-origin", cache: "no-store" })
      .then(function (resp) { return resp.ok ? resp.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var tpl = document.createElement("template");
        tpl.innerHTML = html.trim();
        var fresh = tpl.content.firstElementChild;
        var current = document.getElementById(name);
        if (fresh && current) { current.replaceWith(fresh); }
      });
  }

  if (window.EventSource && document.body.dataset.live) {
    var updates = 0;
    var source = new EventSource("/events");
    source.addEventListener("ready", function () { document.body.dataset.live = "connected"; });
    source.onerror = function () { document.body.dataset.live = "reconnecting"; };
    source.onmessage = function (e) {
      var msg = JSON.parse(e.data);
      Promise.all((msg.sections || []).map(refresh)).then(function () {
        updates += 1;
        document.body.dataset.updates = String(updates);
        announce(msg.message);
      });
    };
  }

  // Disable a form's button while its action runs (transactions take a moment).
  document.addEventListener("submit", function (e) {
    var button = e.target.querySelector("button[type=submit]");
    if (button) {
      button.setAttribute("aria-busy", "true");
      setTimeout(function () { button.disabled = true; }, 0);
    }
  });

  document.addEventListener("click", function (e) {
    var id = e.target.dataset ? e.target.dataset.copy : null;
    if (!id) { return; }
    var field = document.getElementById(id);
    if (field && navigator.clipboard) {
      navigator.clipboard.writeText(field.value).then(function () { announce("Copied."); });
    } else if (field) {
      field.select();
    }
  });
})();
