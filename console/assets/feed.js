// Polls the console's feed and puts new history rows on top of the table.
(function () {
  "use strict";
  var table = document.getElementById("feed");
  var status = document.getElementById("feed-status");
  if (!table || !window.fetch) { return; }
  var after = table.getAttribute("data-after") || "";
  var body = table.tBodies[0];
  function cell(tr, text) { var td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }
  function poll() {
    fetch("/ops/feed.json?after=" + encodeURIComponent(after), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (data) {
        data.items.forEach(function (e) {
          var tr = document.createElement("tr");
          cell(tr, String(e.id));
          cell(tr, e.at);
          var a = document.createElement("a"); a.href = e.url; a.textContent = e.contract;
          cell(tr, "").appendChild(a);
          cell(tr, e.event + (e.ignored ? " (ignored)" : ""));
          cell(tr, e.from + " → " + e.to);
          cell(tr, e.source);
          body.insertBefore(tr, body.firstChild);
        });
        after = data.next;
        status.textContent = "live, checked " + new Date().toISOString().slice(11, 19) + " UTC";
      })
      .catch(function (err) { status.textContent = "paused (" + err.message + "), retrying"; })
      .then(function () { setTimeout(poll, 2000); });
  }
  poll();
}());
