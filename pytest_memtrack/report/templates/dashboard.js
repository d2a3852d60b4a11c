(function () {
  "use strict";
  // While a live session runs: fetch this page again every few seconds and swap in its #live part (rendered by the
  // server from the same model as the report), keeping what the reader opened, typed and focused. Stop when the
  // session has finished, or at the first failed request (the session ended and its server went away): one
  // sentence in the status line, no retry loop.
  var live = document.getElementById("live"), status = document.getElementById("status");
  var every = Number(live.getAttribute("data-every")) || 2000;
  function say(text, tone) { status.textContent = text; status.className = "badge " + tone; }
  function keyOf(element) {
    var owner = element.closest("[id]");
    var peers = owner ? owner.querySelectorAll(element.tagName) : [];
    return (owner ? owner.id : "") + "/" + Array.prototype.indexOf.call(peers, element);
  }
  function carryOver(from, to) {
    var open = {};
    from.querySelectorAll("details[open]").forEach(function (d) { open[keyOf(d)] = true; });
    to.querySelectorAll("details").forEach(function (d) { if (open[keyOf(d)]) { d.open = true; } });
    from.querySelectorAll("input[data-filters]").forEach(function (input) {
      var twin = to.querySelector("#" + input.id);
      if (twin && input.value) { twin.value = input.value; twin.dispatchEvent(new Event("input")); }
    });
  }
  function swap(fresh) {
    var focused = document.activeElement && live.contains(document.activeElement) ? document.activeElement.id : "";
    var node = document.adoptNode(fresh);
    if (window.memtrackEnhance) { window.memtrackEnhance(node); }
    carryOver(live, node);
    live.replaceWith(node);
    live = node;
    if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
  }
  var params = new URLSearchParams(location.search);
  params.set("part", "live");  // only the changing part; the page's token, if any, goes along
  function poll() {
    fetch(location.pathname + "?" + params.toString(), { cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        if (!fresh) { throw new Error("the answer holds no dashboard"); }
        swap(fresh);
        if (fresh.getAttribute("data-state") === "finished") {
          say("finished · " + new Date().toLocaleTimeString(), "");
          document.title = "pytest-memtrack · finished · memory dashboard";
          return;
        }
        say("live · updated " + new Date().toLocaleTimeString(), "up");
        setTimeout(poll, every);
      })
      .catch(function (error) {
        say("disconnected: the session ended or its server stopped (" + error.message + "); the last figures stay shown", "down");
      });
  }
  // The page's token (?token=...) goes along with the links to the JSON it offers.
  document.querySelectorAll("a.keep-query").forEach(function (link) { link.href = link.getAttribute("href") + location.search; });
  if (live.getAttribute("data-poll") === "on") { setTimeout(poll, every); }
})();
