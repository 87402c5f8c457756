// The live page's service worker: a realtime-glue Web Push message becomes a
// notification, even when no tab of the site is open; a click opens its thread.
//
// A message is what the glue's format stage makes: {id, channel, event, data}.
// The notification's title is data.title, else "New <event> on <channel>";
// its text is data.text (or data.body); a click opens data.url when it is on
// this site, else the live page on the channel. One notification per thread
// (the tag is the channel): a newer one replaces the older, as the glue's
// Topic header does for messages still waiting at the push service.
// Open tabs of the site are also told (postMessage), so the page can list
// what arrived.
"use strict";

self.addEventListener("install", function () {
  self.skipWaiting();
});

self.addEventListener("activate", function (event) {
  event.waitUntil(self.clients.claim());
});

function clip(text, length) {
  text = String(text === undefined || text === null ? "" : text);
  return text.length > length ? text.slice(0, length - 1) + "…" : text;
}

function threadUrl(message) {
  var data = message.data || {};
  var fallback = "/?channel=" + encodeURIComponent(message.channel || "demo");
  if (typeof data.url !== "string") return new URL(fallback, self.location.origin).href;
  var url = new URL(data.url, self.location.origin);
  // Only this site: a message must not be able to send a click anywhere else.
  return url.origin === self.location.origin ? url.href : new URL(fallback, self.location.origin).href;
}

function notificationOf(message) {
  var data = message.data && typeof message.data === "object" ? message.data : { text: message.data };
  var title = data.title || "New " + (message.event || "message") + " on " + (message.channel || "the site");
  return {
    id: message.id || "",
    title: clip(title, 120),
    body: clip(data.text || data.body || "", 300),
    tag: message.channel || "realtime-glue",
    url: threadUrl(message),
  };
}

self.addEventListener("push", function (event) {
  var message;
  try {
    message = event.data ? event.data.json() : {};
  } catch (error) {
    message = { data: { text: event.data.text() } };
  }
  var note = notificationOf(message);
  event.waitUntil(
    self.registration
      .showNotification(note.title, { body: note.body, tag: note.tag, renotify: true, data: { url: note.url } })
      .then(function () {
        return self.clients.matchAll({ type: "window", includeUncontrolled: true });
      })
      .then(function (clients) {
        clients.forEach(function (client) {
          client.postMessage({ type: "push", id: note.id, title: note.title, body: note.body, url: note.url });
        });
      })
  );
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = (event.notification.data && event.notification.data.url) || self.location.origin + "/";
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (clients) {
      for (var i = 0; i < clients.length; i++) {
        if (clients[i].url === url && "focus" in clients[i]) return clients[i].focus();
      }
      return self.clients.openWindow(url);
    })
  );
});
