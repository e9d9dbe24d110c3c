// Keyboard shortcuts for the annotation page: A / ← choose the left image, B / → the right one, T / ↓ a tie,
// P previous pair, N next pair. A choice submits the same form the buttons do (no data of its own is sent).
(function () {
  "use strict";
  var form = document.getElementById("vote");
  if (!form) return;
  var sent = false;
  form.addEventListener("submit", function () { sent = true; });
  var keys = {
    a: "choose-A", arrowleft: "choose-A", "1": "choose-A",
    t: "choose-tie", arrowdown: "choose-tie", "2": "choose-tie",
    b: "choose-B", arrowright: "choose-B", "3": "choose-B"
  };
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey || e.repeat || sent) return;
    var k = e.key.toLowerCase();
    if (keys[k]) {
      e.preventDefault();
      var button = document.getElementById(keys[k]);
      sent = true;
      if (form.requestSubmit) { form.requestSubmit(button); } else { button.click(); }
    } else if (k === "p" || k === "n") {
      var link = document.getElementById(k === "p" ? "prev" : "next");
      if (link) { e.preventDefault(); window.location.href = link.href; }
    }
  });
})();
