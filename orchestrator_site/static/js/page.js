// Every page, in <head> without defer: marks the page as scripted before it is painted (the
// .js-only controls show), and wires buttons by their data-action. The Content-Security-Policy
// runs no inline script or on* attribute (docs/security.md §5), so page behaviour lives here.
document.documentElement.classList.add("js");
document.addEventListener("click", function (event) {
  var button = event.target instanceof Element ? event.target.closest("[data-action]") : null;
  if (button && button.getAttribute("data-action") === "print") {
    window.print();
  }
});
