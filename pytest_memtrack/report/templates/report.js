(function () {
  "use strict";
  // Progressive enhancement only: the page shows everything without this script.
  function cellValue(row, index, type) {
    var cell = row.cells[index];
    if (!cell) { return type === "number" ? -Infinity : ""; }
    var raw = cell.getAttribute("data-v");
    if (type === "number") {
      var number = parseFloat(raw === null ? cell.textContent : raw);
      return isNaN(number) ? -Infinity : number;
    }
    return (raw === null ? cell.textContent : raw).trim().toLowerCase();
  }

  function sortBy(table, header, index) {
    var type = header.getAttribute("data-type") || "text";
    var descending = header.getAttribute("aria-sort") !== "descending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, type), y = cellValue(b, index, type);
      var order = x < y ? -1 : (x > y ? 1 : 0);
      return descending ? -order : order;
    });
    var headers = table.tHead.rows[0].cells;
    for (var i = 0; i < headers.length; i++) { headers[i].removeAttribute("aria-sort"); }
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
    var fragment = document.createDocumentFragment();
    rows.forEach(function (row) { fragment.appendChild(row); });
    body.appendChild(fragment);
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      var button = header.querySelector("button");
      if (button) { button.addEventListener("click", function () { sortBy(table, header, index); }); }
    });
  });

  var filter = document.getElementById("test-filter");
  var leakingOnly = document.getElementById("leaking-only");
  var table = document.getElementById("tests-table");
  var count = document.getElementById("test-count");
  function applyFilter() {
    var needle = filter.value.trim().toLowerCase();
    var shown = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var id = (row.getAttribute("data-nodeid") || "").toLowerCase();
      var visible = id.indexOf(needle) !== -1 && (!leakingOnly.checked || row.classList.contains("leaking"));
      row.hidden = !visible;
      if (visible) { shown++; }
    });
    count.textContent = shown + " of " + table.tBodies[0].rows.length + " tests shown";
  }
  if (filter && leakingOnly && table && count) {
    filter.addEventListener("input", applyFilter);
    leakingOnly.addEventListener("change", applyFilter);
    applyFilter();
  }
  Array.prototype.forEach.call(document.querySelectorAll(".js-only"), function (element) {
    element.hidden = false;
  });
  document.documentElement.classList.add("js");
})();
