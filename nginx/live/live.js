// The live page of a realtime-glue push node: one channel's messages as they
// arrive, how many people read it now, and two heatmaps across channels:
// messages per second, and readers.
//
// URL parameters:
//   channel=demo          the channel whose messages are listed (default demo)
//   channels=news,sports  more channels for the heatmaps
//   transport=ws          WebSocket (/ws/<channel>) instead of EventSource (/ev/<channel>)
//   readers=readers       the channel the glue's readers unit publishes the reader
//                         counts on (default readers; empty: no reader counts)
//
// The message heatmap counts what the page itself receives: one subscription
// per channel. Reader counts come from the glue (`realtime-glue readers`), which
// sums every push node's subscribers per channel and publishes them on the
// readers channel: the changes each second, a full snapshot now and then. A
// browser cannot ask a node itself: /channels-stats is on the cluster listener
// only. Over HTTP/1.1 a browser keeps at most 6 connections per host and every
// EventSource holds one, so EventSource watches at most 5 channels there, the
// readers channel included (one connection stays free for the page itself).
// When the page came over HTTP/2 (push-stream nodes over HTTPS), every
// EventSource is a stream of one connection: 16. WebSockets are not in that pool.
//
// Every subscription survives its node going away: on any error the page
// reconnects by itself, after a jittered pause that grows with each failure in
// a row, and asks for what it missed with the id of the last message it got
// (`?last_event_id=`, which push-stream nodes read like EventSource's
// Last-Event-ID header, for WebSocket too). Every node stores the same
// messages under the same ids, so nothing is missed when a proxy or DNS sends
// the page to another node; a message seen before (the same id again) is
// dropped, so nothing is shown twice. The page has no inline script or style,
// so it runs under the nodes' Content-Security-Policy (same origin only).
(function () {
  "use strict";

  var navigation = (window.performance && performance.getEntriesByType) ?
    performance.getEntriesByType("navigation")[0] : null;
  var HTTP2 = !!navigation && /^h[23]/.test(navigation.nextHopProtocol || "");
  var MAX_CONNECTIONS = { ev: HTTP2 ? 16 : 5, ws: 8 };
  var WINDOW_SECONDS = 60;
  var MAX_LISTED = 200;
  var REMEMBERED_IDS = 1000;

  var params = new URLSearchParams(window.location.search);
  var transport = params.get("transport") === "ws" ? "ws" : "ev";
  var channel = cleanChannel(params.get("channel")) || "demo";
  var readersChannel = params.has("readers") ? cleanChannel(params.get("readers")) : "readers";
  var channels = unique(
    [channel].concat((params.get("channels") || "").split(",").map(cleanChannel))
  ).filter(function (name) { return name !== readersChannel; })
    .slice(0, MAX_CONNECTIONS[transport] - (readersChannel ? 1 : 0));

  var $ = function (id) { return document.getElementById(id); };
  var states = {};        // subscription -> "connecting" | "open" | "reconnecting"
  var activity = {};      // channel -> { epochSecond: messages }
  var readersNow = {};    // channel -> readers now, over every push node
  var readersSeen = {};   // channel -> { epochSecond: readers }
  var readersKnown = false;
  var snapshot = null;    // the full snapshot being received part by part
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

  // --- subscriptions -------------------------------------------------------------

  // Equal jitter: half the pause fixed, half random, so the pages of a node
  // that went away do not all come back in the same instant; it doubles with
  // each failure in a row, up to 10 s.
  function backoff(failures) {
    var ceiling = Math.min(10000, 500 * Math.pow(2, Math.min(failures, 5)));
    return ceiling / 2 + Math.random() * ceiling / 2;
  }

  // The ids of the latest messages, to drop one that arrives again.
  function recentIds() {
    var order = [];
    var known = {};
    return {
      seen: function (id) { return Object.prototype.hasOwnProperty.call(known, id); },
      add: function (id) {
        known[id] = true;
        order.push(id);
        if (order.length > REMEMBERED_IDS) delete known[order.shift()];
      }
    };
  }

  // The glue's messages carry their id in the body; EventSource also gives the
  // Event-ID (the same), WebSocket only the body.
  function idOf(text, eventId) {
    try {
      var body = JSON.parse(text);
      if (body && typeof body === "object" && typeof body.id === "string" && body.id) return body.id;
    } catch (error) { /* not JSON: fall back to the event id */ }
    return eventId || "";
  }

  function subscribe(name, onMessage, onState) {
    var failures = 0;
    var wasOpen = false;
    var lastId = "";
    var ids = recentIds();

    function url(path) {
      var resume = lastId ? "?last_event_id=" + encodeURIComponent(lastId) : "";
      return path + encodeURIComponent(name) + resume;
    }

    function deliver(text, eventId) {
      var id = idOf(text, eventId);
      if (id) {
        if (ids.seen(id)) return;
        ids.add(id);
        lastId = id;
      }
      onMessage(text, id);
    }

    function opened() {
      wasOpen = true;
      failures = 0;
      onState("open");
    }

    function retry() {
      onState(wasOpen ? "reconnecting" : "connecting");
      window.setTimeout(open, backoff(failures));
      failures += 1;
    }

    function openEventSource() {
      var source = new EventSource(url("/ev/"));
      source.onopen = opened;
      source.onmessage = function (event) { deliver(event.data, event.lastEventId); };
      source.onerror = function () {
        // Not the browser's own retry: it has no backoff of ours, and a node
        // that answers an error status makes it give up for good.
        source.close();
        retry();
      };
    }

    function openWebSocket() {
      var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      var socket = new WebSocket(scheme + window.location.host + url("/ws/"));
      socket.onopen = opened;
      socket.onmessage = function (event) {
        if (typeof event.data === "string" && event.data) deliver(event.data, "");
      };
      socket.onclose = retry;
    }

    function open() {
      if (transport === "ws") openWebSocket();
      else openEventSource();
    }
    open();
  }

  function onStateOf(name) {
    states[name] = "connecting";
    return function (state) {
      states[name] = state;
      showStatus();
    };
  }

  function subscribeChannel(name) {
    subscribe(name, function (text) {
      count(name);
      if (name === channel) list(text);
    }, onStateOf(name));
  }

  // --- connection state --------------------------------------------------------

  function showStatus() {
    var names = Object.keys(states);
    var values = names.map(function (n) { return states[n]; });
    var state = names.length ? "connected" : "connecting";
    if (values.indexOf("reconnecting") >= 0) state = "reconnecting";
    else if (values.indexOf("connecting") >= 0) state = "connecting";
    var open = values.filter(function (s) { return s === "open"; }).length;
    if (shownState === "connected" && state === "reconnecting") reconnects += 1;
    shownState = state;
    var status = $("status");
    status.dataset.state = state;
    status.className = "status " + state;
    $("status-text").textContent =
      state === "connected" ? "connected" : state + " (" + open + "/" + names.length + " open)";
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

  function list(text) {
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
    item.appendChild(element("span", "id", idOf(text, "")));
    var messages = $("messages");
    messages.insertBefore(item, messages.firstChild);
    while (messages.children.length > MAX_LISTED) messages.removeChild(messages.lastChild);

    received += 1;
    $("message-count").textContent = received + " received";
    $("empty").hidden = true;
  }

  // --- reader counts -------------------------------------------------------------

  // data.readers: {channel: readers now} (0: none left); a full snapshot
  // (data.full, in data.parts parts) names every channel with readers.
  function applyReaders(text) {
    var data;
    try {
      data = JSON.parse(text).data;
    } catch (error) {
      return;
    }
    if (!data || typeof data.readers !== "object") return;
    if (data.full) {
      if (data.part === 1 || !snapshot || snapshot.id !== data.snapshot) {
        snapshot = { id: data.snapshot, named: {} };
      }
    }
    Object.keys(data.readers).forEach(function (name) {
      var n = Number(data.readers[name]) || 0;
      if (n > 0) readersNow[name] = n;
      else delete readersNow[name];
      if (data.full) snapshot.named[name] = true;
    });
    if (data.full && data.part === data.parts) {
      Object.keys(readersNow).forEach(function (name) {
        if (!snapshot.named[name]) delete readersNow[name];
      });
      snapshot = null;
    }
    readersKnown = true;
    showReaders();
    drawHeatmaps();  // the heatmap's "now" column says what the badge says
  }

  function showReaders() {
    var now = $("readers-now");
    if (!readersKnown) {
      now.textContent = "counting readers…";
      return;
    }
    var n = readersNow[channel] || 0;
    now.textContent = n + " reading now";
    now.dataset.readers = String(n);
  }

  // --- the heatmaps --------------------------------------------------------------

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

  function buildHeatmap(map) {
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

  // One row per channel, one cell per second: values[channel][second].
  function drawHeatmap(map, values, unit, total) {
    var last = nowSecond();
    var first = last - WINDOW_SECONDS + 1;
    var busiest = 1;
    channels.forEach(function (name) {
      Object.keys(values[name]).forEach(function (second) {
        if (Number(second) < first) delete values[name][second];
        else busiest = Math.max(busiest, values[name][second]);
      });
    });
    channels.forEach(function (name, index) {
      var row = map.children[index];
      var cells = row.querySelector(".cells").children;
      for (var i = 0; i < WINDOW_SECONDS; i++) {
        var n = values[name][first + i] || 0;
        cells[i].style.background = heat(n / busiest);
        cells[i].title = name + ": " + n + " " + unit + ", " + (WINDOW_SECONDS - 1 - i) + " s ago";
      }
      var rate = row.querySelector(".rate");
      rate.textContent = total(name);
      rate.dataset.value = rate.textContent.split(" ")[0];
    });
    return busiest;
  }

  function drawHeatmaps() {
    var busiest = drawHeatmap($("heatmap"), activity, "msg/s", function (name) {
      var sum = 0;
      Object.keys(activity[name]).forEach(function (second) { sum += activity[name][second]; });
      return sum + " / 60 s";
    });
    $("peak").textContent = "max " + busiest + " msg/s";
    if (!readersChannel) return;
    var second = nowSecond();
    channels.forEach(function (name) {
      if (readersKnown) readersSeen[name][second] = readersNow[name] || 0;
    });
    var most = drawHeatmap($("readers-heatmap"), readersSeen, "reading", function (name) {
      return readersKnown ? String(readersNow[name] || 0) + " now" : "–";
    });
    $("readers-peak").textContent = "max " + most + " reading";
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
    (transport === "ws" ? "WebSocket /ws/" : "EventSource /ev/") + "… on " + channels.join(", ") +
    (readersChannel ? " and " + readersChannel : "");
  document.title = channel + " · realtime-glue live";
  linkTransport("transport-ev", "ev");
  linkTransport("transport-ws", "ws");
  channels.forEach(function (name) { activity[name] = {}; });
  buildHeatmap($("heatmap"));
  if (readersChannel) {
    channels.forEach(function (name) { readersSeen[name] = {}; });
    buildHeatmap($("readers-heatmap"));
    showReaders();
  } else {
    $("readers-panel").hidden = true;
    $("readers-now").hidden = true;
  }
  showStatus();
  drawHeatmaps();
  window.setInterval(drawHeatmaps, 1000);
  channels.forEach(subscribeChannel);
  if (readersChannel) subscribe(readersChannel, applyReaders, onStateOf(readersChannel));
  showStatus();
})();
