// Live deployment timeline: the API's server-sent events say that something changed, and the
// page fetches the timeline fragment again (rendered by the same view) — no reload, and no
// second copy of the drawing code in JavaScript. The stream ends with the deployment.
(function () {
  "use strict";
  var root = document.getElementById("timeline");
  var panel = document.getElementById("step-panel");
  if (!root) return;
  var pending = null;
  var source = null;

  function live() {
    var marker = root.querySelector("[data-live]");
    return marker && marker.getAttribute("data-live") === "1";
  }

  function refresh() {
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      htmx.ajax("GET", root.dataset.fragment, { target: "#timeline", swap: "innerHTML" }).then(function () {
        if (!live() && source) { source.close(); source = null; }
      });
    }, 150);
  }

  function connect() {
    if (!live() || !window.EventSource) return;
    source = new EventSource(root.dataset.events);
    source.onmessage = refresh;
    ["step", "status", "deployment", "end"].forEach(function (name) { source.addEventListener(name, refresh); });
    // EventSource reconnects by itself (sending Last-Event-ID); if the stream is gone for good
    // we still catch up once so the page shows the final state.
    source.onerror = function () { if (source && source.readyState === EventSource.CLOSED) refresh(); };
  }

  if (panel) {
    document.body.addEventListener("htmx:afterSwap", function (e) {
      if (e.detail.target === panel) { panel.hidden = false; panel.setAttribute("tabindex", "-1"); panel.focus(); }
    });
  }
  connect();
})();
