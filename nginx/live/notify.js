// "Notify me about this thread": Web Push on the live page.
//
// URL parameters (an application renders these into its own page):
//   channel=article-42      the thread (the parameter live.js reads)
//   push_token=...          a token the application signed for its signed-in
//                           user (see the README, Web Push); without one the
//                           button stays hidden
//
// The button asks for permission, registers sw.js, subscribes with the glue's
// VAPID public key (GET /webpush/key), posts the PushSubscription to
// /webpush/subscriptions and follows the thread (PUT /webpush/threads/<channel>);
// pressed again, it unfollows. The push node's nginx proxies /webpush/ to the
// webpush pipeline's glue process. Browsers allow service workers and push
// only in a secure context: https, or http://127.0.0.1 / localhost.
// Notifications that arrive while the page is open are also listed on it.
(function () {
  "use strict";

  var params = new URLSearchParams(window.location.search);
  var channel = (params.get("channel") || "demo").trim().slice(0, 100) || "demo";
  var token = params.get("push_token") || "";
  var button = document.getElementById("notify");
  var inbox = document.getElementById("notify-inbox");
  if (!button || !token || !("serviceWorker" in navigator) || !("PushManager" in window)) return;

  function request(method, path, body) {
    var init = { method: method, headers: { Authorization: "Bearer " + token } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      var parsed = (response.headers.get("Content-Type") || "").indexOf("json") >= 0 ? response.json() : {};
      return Promise.resolve(parsed).then(function (answer) {
        if (!response.ok) throw new Error((answer && answer.error) || "HTTP " + response.status);
        return answer;
      });
    });
  }

  function keyBytes(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    var raw = window.atob(base64 + "===".slice((base64.length + 3) % 4));
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function show(state, detail) {
    button.dataset.state = state;
    button.textContent = {
      off: "notify me about this thread",
      busy: "subscribing…",
      on: "notifications on · stop",
      error: "notifications unavailable",
    }[state];
    button.title = detail || "";
  }

  var ready = navigator.serviceWorker.register("sw.js").then(function () {
    return navigator.serviceWorker.ready;
  });

  function register(subscription) {
    return request("POST", "/webpush/subscriptions", subscription.toJSON ? subscription.toJSON() : subscription);
  }

  function follow() {
    return request("PUT", "/webpush/threads/" + encodeURIComponent(channel)).then(function () {
      show("on");
    });
  }

  function unfollow() {
    return request("DELETE", "/webpush/threads/" + encodeURIComponent(channel)).then(function () {
      show("off");
    });
  }

  function subscribe(registration) {
    return registration.pushManager.getSubscription().then(function (existing) {
      if (existing) return existing;
      return request("GET", "/webpush/key").then(function (key) {
        return registration.pushManager.subscribe({
          userVisibleOnly: true,
          applicationServerKey: keyBytes(key.publicKey),
        });
      });
    });
  }

  function enable() {
    show("busy");
    return Notification.requestPermission()
      .then(function (permission) {
        if (permission !== "granted") throw new Error("notifications are blocked for this site");
        return ready;
      })
      .then(subscribe)
      .then(register)
      .then(follow)
      .catch(function (error) {
        show("error", String(error.message || error));
      });
  }

  function list(note) {
    var item = document.createElement("li");
    var title = document.createElement("strong");
    title.textContent = note.title;
    var body = document.createElement("span");
    body.textContent = note.body;
    item.appendChild(title);
    item.appendChild(body);
    item.dataset.id = note.id || "";
    inbox.insertBefore(item, inbox.firstChild);
    while (inbox.children.length > 20) inbox.removeChild(inbox.lastChild);
    inbox.hidden = false;
  }

  navigator.serviceWorker.addEventListener("message", function (event) {
    if (event.data && event.data.type === "push" && inbox) list(event.data);
  });

  button.addEventListener("click", function () {
    if (button.dataset.state === "on") unfollow().catch(function (e) { show("error", e.message); });
    else if (button.dataset.state !== "busy") enable();
  });

  button.hidden = false;
  show("off");
  ready.then(function () {
    button.dataset.worker = "ready";
  });
  request("GET", "/webpush/threads").then(
    function (answer) {
      if (answer.threads.indexOf(channel) >= 0) show("on");
    },
    function (error) {
      show("error", String(error.message || error));
    }
  );

  // For tests and for applications that make the subscription themselves.
  window.realtimeGlueNotify = { ready: ready, register: register, follow: follow, unfollow: unfollow };
})();
