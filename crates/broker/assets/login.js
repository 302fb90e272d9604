// The login page: takes the one-time code from the address (`#code=…` or `?code=…`), takes it
// out of the address bar at once, and exchanges it for the session cookie.
"use strict";
(function () {
  const status = document.getElementById("login-status");
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("code");
  const fromQuery = new URLSearchParams(location.search).get("code");
  const code = fromHash || fromQuery;
  history.replaceState(null, "", "/login");
  if (!code) {
    status.textContent = "No login code in this address.";
    return;
  }
  fetch("/v1/dashboard/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ code: code }),
    credentials: "same-origin",
  })
    .then(async (r) => {
      if (r.ok) {
        location.replace("/");
        return;
      }
      let message = "Login failed (" + r.status + ").";
      try {
        message = (await r.json()).error.message;
      } catch (_) {}
      status.textContent = message;
      status.className = "error";
    })
    .catch(() => {
      status.textContent = "The broker does not answer.";
      status.className = "error";
    });
})();
