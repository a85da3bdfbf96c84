// Live deployment timeline: the API's server-sent events (`status`, `step`, `end`) say that
// something changed, and the page fetches the timeline fragment again (rendered by the same
// view) — no reload, and no second copy of the drawing code in JavaScript. After `end`, the
// queries that refresh the components may still be running: the page looks once a second until
// the fragment says nothing runs any more.
(function () {
  "use strict";
  var root = document.getElementById("timeline");
  var panel = document.getElementById("step-panel");
  if (!root) return;
  var pending = null;
  var source = null;

  function live() {
    var marker = root.querySelector("[data-live]");
    return marker !== null && marker.getAttribute("data-live") === "1";
  }

  function refresh(delay) {
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      htmx.ajax("GET", root.dataset.fragment, { target: "#timeline", swap: "innerHTML" }).then(function () {
        if (!source && live()) refresh(1000);
      });
    }, delay);
  }

  function connect() {
    if (!live()) return;
    if (!window.EventSource) { refresh(1000); return; }
    source = new EventSource(root.dataset.events);
    source.addEventListener("status", function () { refresh(100); });
    source.addEventListener("step", function () { refresh(100); });
    source.addEventListener("end", function () {
      source.close();
      source = null;
      refresh(100);
    });
    // EventSource reconnects by itself, sending Last-Event-ID; only a stream closed for good
    // (a 4xx answer) leaves it: then look once a second instead.
    source.onerror = function () {
      if (source && source.readyState === EventSource.CLOSED) { source = null; refresh(1000); }
    };
  }

  if (panel) {
    document.body.addEventListener("htmx:afterSwap", function (e) {
      if (e.detail.target === panel) { panel.hidden = false; panel.setAttribute("tabindex", "-1"); panel.focus(); }
    });
  }
  connect();
})();
