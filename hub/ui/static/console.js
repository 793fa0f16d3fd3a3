// Findings Hub console: keyboard shortcuts only; every page works without this file.
// "/" focuses the search box; in a list, j and k move the selection and Enter opens the selected row.
(function () {
  "use strict";
  var current = -1;
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("table.list tbody tr")); }
  function typing(el) { return el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA"); }
  function select(i) {
    var all = rows();
    if (!all.length) { return; }
    current = Math.max(0, Math.min(all.length - 1, i));
    all.forEach(function (row, n) { row.classList.toggle("current", n === current); });
    all[current].scrollIntoView({block: "nearest"});
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(document.activeElement)) { return; }
    if (e.key === "/") {
      var q = document.getElementById("q");
      if (q) { e.preventDefault(); q.focus(); }
    } else if (e.key === "j") {
      select(current + 1);
    } else if (e.key === "k") {
      select(current - 1);
    } else if (e.key === "Enter" && current >= 0) {
      var link = rows()[current] && rows()[current].querySelector("a");
      if (link) { link.click(); }
    }
  });
}());
