// The session detail page (templates/sessions_app/dashboard_detail.html): keep the
// delivery matrix live and send Retry without leaving the page. Everything works without this script too: the
// matrix is server-rendered and Retry is a plain form.
//
// Live: the session's event stream (GET /api/v1/sessions/{id}/events?project=…, with the dashboard's cookie:
// docs/api.md "Dashboard access") says when something changed; the page then fetches its matrix fragment
// (…/matrix?since=<stamp>, 204 while nothing changed). While the stream is not connected (not yet, dropped, no
// EventSource), the fragment is polled every few seconds instead, as long as something may still change and the tab
// is visible.
(function () {
  "use strict";
  var POLL_MS = 3000;
  var COALESCE_MS = 150;  // a burst of events (an image and its deliveries) makes one fetch
  var STREAM_EVENTS = ["image:ready", "image:delivering", "image:delivered", "image:failed"];
  var region = document.getElementById("matrix-region");
  var status = document.getElementById("retry-message");
  var pollTimer = null;
  var eventTimer = null;
  var inFlight = false;
  var again = false;
  var stream = null;
  var streaming = false;
  var signedOut = false;  // the matrix answered with the sign-in page: nothing more to follow here

  function matrix() { return document.getElementById("matrix"); }
  function live() { return matrix().dataset.live === "true"; }

  function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    var url = region.dataset.matrixUrl + "?since=" + encodeURIComponent(matrix().dataset.changed);
    fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
      .then(function (response) {
        if (response.redirected || response.status === 403 || response.status === 404) {
          signedOut = true;
          disconnect();
          return;
        }
        if (response.status !== 200) { return; }
        return response.text().then(function (html) {
          var holder = document.createElement("div");
          holder.innerHTML = html.trim();
          var fresh = holder.querySelector("#matrix");
          if (fresh) { matrix().replaceWith(fresh); }
        });
      })
      .catch(function () { /* offline for a moment: the next event or tick tries again */ })
      .then(function () {
        inFlight = false;
        if (again) { again = false; refresh(); return; }
        schedule();
      });
  }

  function refreshSoon() {
    clearTimeout(eventTimer);
    eventTimer = setTimeout(refresh, COALESCE_MS);
  }

  function schedule() {
    clearTimeout(pollTimer);
    if (!signedOut && !streaming && live() && document.visibilityState === "visible") {
      pollTimer = setTimeout(refresh, POLL_MS);
    }
  }

  function connect() {
    if (signedOut || !window.EventSource || stream || !live()) { return; }
    stream = new EventSource(region.dataset.eventsUrl);
    stream.addEventListener("connected", function () {
      streaming = true;
      clearTimeout(pollTimer);
      refresh();  // what changed before the stream was open
    });
    STREAM_EVENTS.forEach(function (name) { stream.addEventListener(name, refreshSoon); });
    stream.addEventListener("session:completed", function () {
      // The server ends the stream here; a Retry opens it again.
      disconnect();
      refresh();
    });
    stream.addEventListener("error", function () {
      if (stream && stream.readyState === EventSource.CLOSED) { disconnect(); }
      streaming = false;  // reconnecting (or refused): poll meanwhile
      schedule();
    });
  }

  function disconnect() {
    if (stream) { stream.close(); }
    stream = null;
    streaming = false;
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { refresh(); } else { clearTimeout(pollTimer); }
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
        return;
      }
      return response.text().then(function (text) { status.textContent = text; button.disabled = false; });
    }, function () {
      status.textContent = "The retry could not be sent. Check the connection and try again.";
      button.disabled = false;
    }).then(function () {
      matrix().dataset.live = "true";
      connect();
      refresh();
    });
  });

  // A photo whose thumbnail cannot be made (bytes purged, unreadable) is shown by its name alone.
  region.addEventListener("error", function (event) {
    if (event.target.matches && event.target.matches("img.thumb")) { event.target.hidden = true; }
  }, true);

  connect();
  schedule();
})();
