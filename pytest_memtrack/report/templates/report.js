(function () {
  "use strict";
  // Progressive enhancement: without this script the page still shows every card, every package and the first
  // page of tests. With it: sortable tables, a package search, and the tests table paged from its JSON block with
  // filters whose state lives in the URL (#tests?q=...&outcome=failed&page=2), so a view can be shared.
  var doc = document;
  function byId(id) { return doc.getElementById(id); }
  function each(list, fn) { Array.prototype.forEach.call(list, fn); }
  function debounce(fn, ms) {
    var timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }
  function number(n) { return Number(n).toLocaleString("en-US"); }
  // Text sorts A to Z on the first click, numbers largest first; a second click reverses.
  function nextDirection(header) {
    var now = header.getAttribute("aria-sort");
    if (now) { return now === "ascending" ? "descending" : "ascending"; }
    return (header.getAttribute("data-type") || "text") === "text" ? "ascending" : "descending";
  }
  function markSorted(table, header, direction) {
    each(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    if (header) { header.setAttribute("aria-sort", direction); }
  }
  function compare(x, y) { return x < y ? -1 : (x > y ? 1 : 0); }

  // -- static tables (packages, comparison): rows sorted in place --------------------------------------------
  function cellValue(row, index, type) {
    var cell = row.cells[index];
    if (!cell) { return type === "number" ? -Infinity : ""; }
    var raw = cell.getAttribute("data-v");
    if (type === "number") {
      var value = parseFloat(raw === null ? cell.textContent : raw);
      return isNaN(value) ? -Infinity : value;
    }
    return (raw === null ? cell.textContent : raw).trim().toLowerCase();
  }
  function sortStatic(table, header, index) {
    var type = header.getAttribute("data-type") || "text", direction = nextDirection(header);
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var order = compare(cellValue(a, index, type), cellValue(b, index, type));
      return direction === "descending" ? -order : order;
    });
    markSorted(table, header, direction);
    var fragment = doc.createDocumentFragment();
    rows.forEach(function (row) { fragment.appendChild(row); });
    body.appendChild(fragment);
  }
  // Binds the sortable tables and package searches under root (the dashboard calls it again on what it swaps in).
  function enhance(root) {
    each(root.querySelectorAll("table.sortable:not([data-paged])"), function (table) {
      each(table.tHead.rows[0].cells, function (header, index) {
        var button = header.querySelector("button");
        if (button) { button.addEventListener("click", function () { sortStatic(table, header, index); }); }
      });
    });
    each(root.querySelectorAll("input[data-filters]"), function (input) {
      var table = root.querySelector("#" + input.getAttribute("data-filters")), count = root.querySelector("#" + table.id + "-count");
      var apply = function () {
        var needle = input.value.trim().toLowerCase(), shown = 0, rows = table.tBodies[0].rows;
        each(rows, function (row) {
          var visible = (row.getAttribute("data-package") || "").toLowerCase().indexOf(needle) !== -1;
          row.hidden = !visible;
          if (visible) { shown++; }
        });
        count.textContent = needle ? shown + " of " + rows.length + " packages shown" : "";
      };
      input.addEventListener("input", debounce(apply, 150));
    });
    each(root.querySelectorAll(".js-only"), function (element) { element.hidden = false; });
  }
  enhance(doc);
  window.memtrackEnhance = enhance;

  // -- the tests table: pages of rows from the JSON block ----------------------------------------------------
  var block = byId("tests-data"), table = byId("tests-table");
  if (block && table) {
    var data = JSON.parse(block.textContent), at = {};
    data.columns.forEach(function (name, i) { at[name] = i; });
    var rows = data.rows, pageSize = 200, view = rows;
    var form = byId("test-controls"), search = byId("test-filter"), count = byId("test-count");
    var label = byId("page-label"), prev = byId("page-prev"), next = byId("page-next");
    var fresh = function () { return { q: "", outcome: [], kind: [], leaking: false, hunted: false, sort: "", dir: "", page: 1 }; };
    var state = fresh();

    var readHash = function () {
      state = fresh();
      if (location.hash.indexOf("#tests?") !== 0) { return false; }
      var params = new URLSearchParams(location.hash.slice(7));
      state.q = params.get("q") || "";
      state.outcome = (params.get("outcome") || "").split(",").filter(Boolean);
      state.kind = (params.get("kind") || "").split(",").filter(Boolean);
      state.leaking = params.get("leaking") === "1";
      state.hunted = params.get("hunted") === "1";
      state.sort = at.hasOwnProperty(params.get("sort")) ? params.get("sort") : "";
      state.dir = params.get("dir") === "asc" ? "ascending" : (params.get("dir") === "desc" ? "descending" : "");
      state.page = Math.max(1, parseInt(params.get("page"), 10) || 1);
      return true;
    };
    var writeHash = function () {
      var params = new URLSearchParams();
      if (state.q) { params.set("q", state.q); }
      if (state.outcome.length) { params.set("outcome", state.outcome.join(",")); }
      if (state.kind.length) { params.set("kind", state.kind.join(",")); }
      if (state.leaking) { params.set("leaking", "1"); }
      if (state.hunted) { params.set("hunted", "1"); }
      if (state.sort) { params.set("sort", state.sort); params.set("dir", state.dir === "ascending" ? "asc" : "desc"); }
      if (state.page > 1) { params.set("page", String(state.page)); }
      var text = params.toString(), target = text ? "#tests?" + text : location.pathname + location.search;
      if (text || location.hash.indexOf("#tests?") === 0) { history.replaceState(null, "", target); }
    };
    var showState = function () {
      search.value = state.q;
      each(form.querySelectorAll("input[name=outcome]"), function (box) { box.checked = state.outcome.indexOf(box.value) !== -1; });
      each(form.querySelectorAll("input[name=kind]"), function (box) { box.checked = state.kind.indexOf(box.value) !== -1; });
      byId("leaking-only").checked = state.leaking;
      byId("hunted-only").checked = state.hunted;
      var header = state.sort ? table.querySelector("th[data-key='" + state.sort + "']") : null;
      markSorted(table, header, state.dir);
    };
    var readForm = function () {
      state.q = search.value.trim();
      state.outcome = []; state.kind = [];
      each(form.querySelectorAll("input[name=outcome]:checked"), function (box) { state.outcome.push(box.value); });
      each(form.querySelectorAll("input[name=kind]:checked"), function (box) { state.kind.push(box.value); });
      state.leaking = byId("leaking-only").checked;
      state.hunted = byId("hunted-only").checked;
      state.page = 1;
    };
    var select = function () {
      var needle = state.q.toLowerCase();
      view = rows.filter(function (row) {
        return (!needle || row[at.nodeid].toLowerCase().indexOf(needle) !== -1)
          && (!state.outcome.length || state.outcome.indexOf(row[at.outcome]) !== -1)
          && (!state.kind.length || state.kind.indexOf(row[at.kind]) !== -1)
          && (!state.leaking || row[at.leaking]) && (!state.hunted || row[at.hunted]);
      });
      if (state.sort) {
        var i = at[state.sort], sign = state.dir === "descending" ? -1 : 1, text = state.sort === "nodeid" || state.sort === "outcome";
        view.sort(function (a, b) {
          var x = a[i], y = b[i];
          if (text) { return sign * compare(String(x).toLowerCase(), String(y).toLowerCase()); }
          x = x === null ? -Infinity : x; y = y === null ? -Infinity : y;
          return sign * compare(x, y) || compare(a[at.nodeid], b[at.nodeid]);
        });
      }
    };
    var cell = function (tr, text, cls, labelText) {
      var td = doc.createElement("td");
      if (cls) { td.className = cls; }
      if (labelText) { td.setAttribute("data-label", labelText); }
      if (text !== null) { td.textContent = text; }
      tr.appendChild(td);
      return td;
    };
    var render = function () {
      var pages = Math.max(1, Math.ceil(view.length / pageSize));
      state.page = Math.min(state.page, pages);
      var start = (state.page - 1) * pageSize, fragment = doc.createDocumentFragment();
      view.slice(start, start + pageSize).forEach(function (row) {
        var tr = doc.createElement("tr"), name = cell(tr, null, "name");
        tr.setAttribute("data-nodeid", row[at.nodeid]);
        var code = doc.createElement("code");
        code.textContent = row[at.nodeid];
        if (row[at.leaking]) {
          tr.className = "leaking";
          var link = doc.createElement("a");
          link.href = "#" + (row[at.anchor] || "leaks");
          link.appendChild(code);
          name.appendChild(link);
          var badge = doc.createElement("span");
          badge.className = "badge bad"; badge.textContent = "leaks";
          name.appendChild(doc.createTextNode(" ")); name.appendChild(badge);
        } else {
          name.appendChild(code);
        }
        var outcome = doc.createElement("span");
        outcome.className = "badge " + row[at.outcome]; outcome.textContent = row[at.outcome];
        cell(tr, null, "", "outcome").appendChild(outcome);
        cell(tr, row[at.duration], "num", "duration");
        cell(tr, row[at.rss_delta], "num", "RSS delta");
        cell(tr, row[at.score], "num", "score");
        cell(tr, row[at.per_run], "num", "per run");
        fragment.appendChild(tr);
      });
      table.tBodies[0].replaceChildren(fragment);
      var shown = view.length ? number(start + 1) + "–" + number(Math.min(start + pageSize, view.length)) : "none";
      count.textContent = "Showing " + shown + " of " + number(view.length) + " matching tests (" + number(rows.length) + " in all)";
      label.textContent = "Page " + state.page + " of " + pages;
      prev.disabled = state.page <= 1;
      next.disabled = state.page >= pages;
    };
    var update = function () { select(); render(); writeHash(); };
    var restore = function () { var had = readHash(); showState(); select(); render(); return had; };

    form.addEventListener("submit", function (event) { event.preventDefault(); });
    search.addEventListener("input", debounce(function () { readForm(); update(); }, 150));
    form.addEventListener("change", function (event) { if (event.target !== search) { readForm(); update(); } });
    prev.addEventListener("click", function () { state.page -= 1; render(); writeHash(); });
    next.addEventListener("click", function () { state.page += 1; render(); writeHash(); });
    each(table.tHead.rows[0].cells, function (header) {
      var button = header.querySelector("button"), key = header.getAttribute("data-key");
      if (!button || !key) { return; }
      button.addEventListener("click", function () {
        state.dir = nextDirection(header); state.sort = key; state.page = 1;
        markSorted(table, header, state.dir);
        update();
      });
    });
    window.addEventListener("hashchange", function () { if (location.hash.indexOf("#tests?") === 0) { restore(); } });
    if (restore()) { byId("tests").scrollIntoView(); }
  }
  doc.documentElement.classList.add("js");
})();
