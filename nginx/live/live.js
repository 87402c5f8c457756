// The live page of a realtime-glue push node: one channel's messages as they
// arrive, and a heatmap of activity (messages per second) across channels.
//
// URL parameters:
//   channel=demo          the channel whose messages are listed (default demo)
//   channels=news,sports  more channels for the heatmap
//   transport=ws          WebSocket (/ws/<channel>) instead of EventSource (/ev/<channel>)
//
// The heatmap counts what the page itself receives: one subscription per
// channel. The other sources do not work for a browser on both flavours:
// /channels-stats is on the cluster listener only, and nchan's stub status
// has no per-channel counts; multi-channel paths differ between push-stream
// and nchan. Over HTTP/1.1 a browser keeps at most 6 connections per host and
// every EventSource holds one, so EventSource watches at most 5 channels there
// (one connection stays free for the page itself). When the page came over
// HTTP/2 (push-stream nodes over HTTPS), every EventSource is a stream of one
// connection: 16 channels. WebSockets are not in that pool.
(function () {
  "use strict";

  var navigation = (window.performance && performance.getEntriesByType) ?
    performance.getEntriesByType("navigation")[0] : null;
  var HTTP2 = !!navigation && /^h[23]/.test(navigation.nextHopProtocol || "");
  var MAX_CHANNELS = { ev: HTTP2 ? 16 : 5, ws: 8 };
  var WINDOW_SECONDS = 60;
  var MAX_LISTED = 200;

  var params = new URLSearchParams(window.location.search);
  var transport = params.get("transport") === "ws" ? "ws" : "ev";
  var channel = cleanChannel(params.get("channel")) || "demo";
  var channels = unique(
    [channel].concat((params.get("channels") || "").split(",").map(cleanChannel))
  ).slice(0, MAX_CHANNELS[transport]);

  var $ = function (id) { return document.getElementById(id); };
  var states = {};        // channel -> "connecting" | "open" | "reconnecting"
  var activity = {};      // channel -> { epochSecond: count }
  var received = 0;
  var reconnects = 0;     // times the page as a whole went from connected to reconnecting
  var shownState = "connecting";

  function cleanChannel(name) {
    return (name || "").trim().slice(0, 100);
  }

  function unique(names) {
    var seen = {};
    return names.filter(function (n) { return n && !seen[n] && (seen[n] = true); });
  }

  // --- subscriptions -----------------------------------------------------------

  // EventSource reconnects by itself and sends Last-Event-ID, so the node
  // replays what was missed. Only when it gives up for good (readyState
  // CLOSED, e.g. an HTTP error) is a new one opened, after a pause.
  function subscribeEventSource(name, onMessage, onState) {
    var delay = 1000;
    var wasOpen = false;
    function open() {
      var source = new EventSource("/ev/" + encodeURIComponent(name));
      source.onopen = function () {
        wasOpen = true;
        delay = 1000;
        onState("open");
      };
      source.onmessage = function (event) { onMessage(event.data, event.lastEventId); };
      source.onerror = function () {
        onState(wasOpen ? "reconnecting" : "connecting");
        if (source.readyState === EventSource.CLOSED) {
          window.setTimeout(open, delay);
          delay = Math.min(delay * 2, 10000);
        }
      };
    }
    open();
  }

  // A WebSocket is reopened with a growing pause; what was published while
  // it was away is not replayed (the node has no Last-Event-ID for it).
  function subscribeWebSocket(name, onMessage, onState) {
    var delay = 1000;
    var wasOpen = false;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    function open() {
      var socket = new WebSocket(scheme + window.location.host + "/ws/" + encodeURIComponent(name));
      socket.onopen = function () {
        wasOpen = true;
        delay = 1000;
        onState("open");
      };
      socket.onmessage = function (event) {
        if (typeof event.data === "string" && event.data) onMessage(event.data, "");
      };
      socket.onclose = function () {
        onState(wasOpen ? "reconnecting" : "connecting");
        window.setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
  }

  function subscribe(name) {
    states[name] = "connecting";
    activity[name] = {};
    var onState = function (state) {
      states[name] = state;
      showStatus();
    };
    var onMessage = function (text, eventId) {
      count(name);
      if (name === channel) list(text, eventId);
    };
    if (transport === "ws") subscribeWebSocket(name, onMessage, onState);
    else subscribeEventSource(name, onMessage, onState);
  }

  // --- connection state --------------------------------------------------------

  function showStatus() {
    var values = channels.map(function (n) { return states[n]; });
    var state = "connected";
    if (values.indexOf("reconnecting") >= 0) state = "reconnecting";
    else if (values.indexOf("connecting") >= 0) state = "connecting";
    var open = values.filter(function (s) { return s === "open"; }).length;
    if (shownState === "connected" && state === "reconnecting") reconnects += 1;
    shownState = state;
    var status = $("status");
    status.dataset.state = state;
    status.className = "status " + state;
    $("status-text").textContent =
      state === "connected" ? "connected" : state + " (" + open + "/" + channels.length + " open)";
    $("reconnects").textContent = "reconnects: " + reconnects;
  }

  // --- the message list --------------------------------------------------------

  function summarize(data) {
    if (data === undefined || data === null) return "";
    if (typeof data !== "object") return String(data);
    return Object.keys(data).map(function (key) {
      var value = data[key];
      return key + ": " + (typeof value === "object" ? JSON.stringify(value) : String(value));
    }).join("  ·  ");
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    node.className = className;
    node.textContent = text;
    return node;
  }

  function list(text, eventId) {
    var body;
    try {
      body = JSON.parse(text);
    } catch (error) {
      body = null;
    }
    if (!body || typeof body !== "object") body = { data: text };
    var summary = summarize(body.data);
    if (summary.length > 240) summary = summary.slice(0, 239) + "…";

    var item = document.createElement("li");
    item.className = "message";
    item.appendChild(element("time", "when", new Date().toLocaleTimeString([], { hour12: false })));
    item.appendChild(element("span", "event", body.event || "message"));
    item.appendChild(element("span", "data", summary));
    item.appendChild(element("span", "id", body.id || eventId || ""));
    var messages = $("messages");
    messages.insertBefore(item, messages.firstChild);
    while (messages.children.length > MAX_LISTED) messages.removeChild(messages.lastChild);

    received += 1;
    $("message-count").textContent = received + " received";
    $("empty").hidden = true;
  }

  // --- the heatmap -------------------------------------------------------------

  function nowSecond() {
    return Math.floor(Date.now() / 1000);
  }

  function count(name) {
    var second = nowSecond();
    activity[name][second] = (activity[name][second] || 0) + 1;
  }

  // Dark blue (quiet) through teal to amber (busiest cell in the window).
  function heat(level) {
    if (level <= 0) return "";
    var t = Math.sqrt(level);
    return "hsl(" + Math.round(190 - 150 * t) + ", 80%, " + Math.round(28 + 30 * t) + "%)";
  }

  function buildHeatmap() {
    var map = $("heatmap");
    map.style.setProperty("--columns", WINDOW_SECONDS);
    channels.forEach(function (name) {
      var row = document.createElement("div");
      row.className = "row";
      row.dataset.channel = name;
      var label = element("span", "label" + (name === channel ? " current" : ""), name);
      label.title = name;
      row.appendChild(label);
      var cells = element("span", "cells", "");
      for (var i = 0; i < WINDOW_SECONDS; i++) cells.appendChild(element("span", "cell", ""));
      row.appendChild(cells);
      row.appendChild(element("span", "rate", "0"));
      map.appendChild(row);
    });
  }

  function drawHeatmap() {
    var last = nowSecond();
    var first = last - WINDOW_SECONDS + 1;
    var busiest = 1;
    channels.forEach(function (name) {
      Object.keys(activity[name]).forEach(function (second) {
        if (Number(second) < first) delete activity[name][second];
        else busiest = Math.max(busiest, activity[name][second]);
      });
    });
    channels.forEach(function (name, index) {
      var row = $("heatmap").children[index];
      var cells = row.querySelector(".cells").children;
      var total = 0;
      for (var i = 0; i < WINDOW_SECONDS; i++) {
        var n = activity[name][first + i] || 0;
        total += n;
        cells[i].style.background = heat(n / busiest);
        cells[i].title = name + ": " + n + " msg/s, " + (WINDOW_SECONDS - 1 - i) + " s ago";
      }
      var rate = row.querySelector(".rate");
      rate.textContent = total + " / 60 s";
      rate.title = (total / WINDOW_SECONDS).toFixed(2) + " msg/s on average";
    });
    $("peak").textContent = "max " + busiest + " msg/s";
  }

  // --- start -------------------------------------------------------------------

  function linkTransport(id, value) {
    var next = new URLSearchParams(window.location.search);
    next.set("transport", value);
    var link = $(id);
    link.href = "?" + next.toString();
    if (value === transport) link.className = "active";
  }

  $("channel-name").textContent = channel;
  $("stream-channel").textContent = channel;
  $("empty").textContent = "Waiting for messages on " + channel + "…";
  $("subscriptions").textContent =
    (transport === "ws" ? "WebSocket /ws/" : "EventSource /ev/") + "… on " + channels.join(", ");
  document.title = channel + " · realtime-glue live";
  linkTransport("transport-ev", "ev");
  linkTransport("transport-ws", "ws");
  buildHeatmap();
  channels.forEach(subscribe);
  showStatus();
  drawHeatmap();
  window.setInterval(drawHeatmap, 1000);
})();
