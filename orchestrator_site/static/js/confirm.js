// Forms that undo or cancel work ask first: `data-confirm` holds the question. Delegated from
// the document, so forms the timeline swaps in later ask too. Without JavaScript they post at once.
(function () {
  "use strict";
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) e.preventDefault();
  }, true);
})();
