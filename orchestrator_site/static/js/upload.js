// Bundle upload with a real progress bar: bytes sent of the total while the browser sends,
// then "verifying…" until the server's checks come back. The script posts to the REST API's
// `POST /api/v1/bundles` (the session and the CSRF token authenticate it); without JavaScript
// the form posts to the page's own view, which calls the same service. Drag-and-drop puts the
// dropped file into the file input. After an upload the list below is fetched again.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var input = form.querySelector("input[type=file]");
  var zone = document.getElementById("dropzone");
  var status = document.getElementById("upload-status");
  var bar = status.querySelector(".bar");
  var pct = status.querySelector(".pct");
  var meter = status.querySelector("[role=progressbar]");
  var text = status.querySelector(".upload-text");
  var maxBytes = Number(form.dataset.maxBytes || 0);

  function mib(n) { return (n / 1048576).toFixed(1) + " MiB"; }

  function show(percent, message) {
    status.hidden = false;
    bar.style.width = percent + "%";
    pct.textContent = percent + " %";
    meter.setAttribute("aria-valuenow", String(percent));
    text.textContent = message;
  }

  function fieldError(message) {
    var old = form.querySelector(".field-error.js");
    if (old) old.remove();
    if (!message) return;
    var p = document.createElement("p");
    p.className = "field-error js";
    p.setAttribute("role", "alert");
    p.textContent = message;
    input.closest(".field").appendChild(p);
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      form.requestSubmit();
    }
  });

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var file = input.files[0];
    fieldError("");
    if (!file) { fieldError("Choose a file first."); return; }
    if (maxBytes && file.size > maxBytes) { fieldError("The file is larger than the limit of " + mib(maxBytes) + "."); return; }
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.api);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRFToken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    xhr.upload.addEventListener("progress", function (ev) {
      var total = ev.lengthComputable ? ev.total : file.size;
      show(Math.floor((100 * ev.loaded) / total), mib(ev.loaded) + " of " + mib(total) + " sent");
    });
    xhr.upload.addEventListener("load", function () { show(100, "verifying…"); });
    xhr.addEventListener("load", function () {
      button.disabled = false;
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
      if (body.id && body.status) { finished(body, xhr.status === 200); refreshList(); return; }
      show(0, "");
      status.hidden = true;
      var message = body.error ? body.error.message : "";
      fieldError("Not uploaded: " + (message || "HTTP " + xhr.status) + ".");
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      fieldError("The connection broke during the upload; try again.");
    });
    var data = new FormData();
    data.append("file", file);
    xhr.send(data);
  });

  // The list below is the server's: fetch the page again and take its list, so the new bundle
  // (or the one this file already is) shows without a reload that would lose this message.
  function refreshList() {
    var list = document.getElementById("bundle-list");
    if (!list || !window.fetch) return;
    fetch(window.location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.text() : Promise.reject(answer.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("bundle-list");
        if (fresh) list.replaceWith(fresh);
      })
      .catch(function () { /* the link above still leads to the bundle */ });
  }

  function finished(body, existing) {
    text.textContent = "";
    var accepted = body.status === "accepted";
    var strong = document.createElement("strong");
    strong.textContent = existing ? "Already uploaded: nothing added. " : accepted ? "Accepted. " : "Rejected. ";
    text.appendChild(strong);
    var link = document.createElement("a");
    link.href = "/bundles/" + body.id + "/";
    link.id = "uploaded-bundle";
    link.textContent = accepted ? "Open bundle " + body.id + " and its plan" : "See bundle " + body.id;
    if (existing) link.textContent = "This file is bundle " + body.id + ": open it and its plan";
    text.appendChild(link);
    if (!accepted && body.problems && body.problems.length) {
      var list = document.createElement("ul");
      list.className = "problems";
      body.problems.forEach(function (p) { var li = document.createElement("li"); li.textContent = p; list.appendChild(li); });
      text.appendChild(list);
    }
    link.focus();
  }
})();
