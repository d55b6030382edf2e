// The session detail page (templates/sessions_app/dashboard_detail.html): copy the link, confirm closing, keep the
// delivery matrix live and send Retry without leaving the page. Everything works without this script too: the
// matrix is server-rendered and Retry is a plain form.
(function () {
  "use strict";
  var POLL_MS = 3000;
  var region = document.getElementById("matrix-region");
  var status = document.getElementById("retry-message");
  var timer = null;
  var inFlight = false;

  function matrix() { return document.getElementById("matrix"); }

  // The live source. The page polls its own fragment endpoint (`…/matrix?since=<stamp>`, 204 while nothing
  // changed). Once the API takes the dashboard's cookie (SPEC §3 "D"), an
  // `EventSource("/api/v1/sessions/<id>/events?project=<projectId>")` can call `refresh()` on each event here,
  // keeping the poll only as the fallback when the stream is closed.
  function refresh() {
    if (inFlight) { return; }
    inFlight = true;
    var url = region.dataset.matrixUrl + "?since=" + encodeURIComponent(matrix().dataset.changed);
    fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
      .then(function (response) {
        if (response.status === 200) {
          return response.text().then(function (html) {
            var holder = document.createElement("div");
            holder.innerHTML = html.trim();
            var fresh = holder.querySelector("#matrix");
            if (fresh) { matrix().replaceWith(fresh); }
          });
        }
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ })
      .then(function () { inFlight = false; schedule(); });
  }

  function schedule() {
    clearTimeout(timer);
    if (matrix().dataset.live === "true" && document.visibilityState === "visible") {
      timer = setTimeout(refresh, POLL_MS);
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { refresh(); } else { clearTimeout(timer); }
  });

  // Retry without a page load; the form posts as usual when the script is not there.
  region.addEventListener("submit", function (event) {
    var form = event.target.closest("form.retry");
    if (!form) { return; }
    event.preventDefault();
    var button = form.querySelector("button");
    button.disabled = true;
    fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: {"X-Requested-With": "fetch"}
    }).then(function (response) {
      if (response.status === 204) {
        status.textContent = "The delivery is being tried again.";
      } else {
        return response.text().then(function (text) { status.textContent = text; button.disabled = false; });
      }
    }, function () {
      status.textContent = "The retry could not be sent. Check the connection and try again.";
      button.disabled = false;
    }).then(function () {
      matrix().dataset.live = "true";
      refresh();
    });
  });

  // A photo whose thumbnail cannot be made (bytes purged, unreadable) is shown by its name alone.
  region.addEventListener("error", function (event) {
    if (event.target.matches && event.target.matches("img.thumb")) { event.target.hidden = true; }
  }, true);

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      function selectIt() {  // no clipboard outside HTTPS: select the text for Ctrl+C
        field.focus();
        field.select();
        button.textContent = "Selected: press Ctrl+C";
      }
      if (!navigator.clipboard) { selectIt(); return; }
      navigator.clipboard.writeText(field.value).then(function () { button.textContent = "Copied"; }, selectIt);
    });
  });

  document.querySelectorAll("[data-confirm]").forEach(function (button) {
    button.form.addEventListener("submit", function (event) {
      if (!window.confirm(button.dataset.confirm)) { event.preventDefault(); }
    });
  });

  schedule();
})();
