// Runs nginx/live/sw.js in a fake service worker scope (node's vm) and prints, as JSON,
// what it did for each step of a scenario read from argv[3] (JSON):
//   {"origin": "https://push.example", "clients": ["https://push.example/..."],
//    "steps": [{"push": {...message...}}, {"click": 0}]}
// "push" delivers a message; "click" clicks the notification shown by that push step.
// Used by tests/unit/test_service_worker.py; nothing here is a browser.
"use strict";
const fs = require("fs");
const vm = require("vm");

const [, , swPath, scenarioJson] = process.argv;
const scenario = JSON.parse(scenarioJson);
const calls = [];
const handlers = {};
const shown = [];

const windows = scenario.clients.map((url) => ({
  url,
  focus() {
    calls.push({ focus: url });
    return Promise.resolve(this);
  },
  postMessage(message) {
    calls.push({ postMessage: url, message });
  },
}));

const self = {
  location: { origin: scenario.origin },
  addEventListener(type, handler) {
    handlers[type] = handler;
  },
  skipWaiting() {},
  registration: {
    showNotification(title, options) {
      shown.push({ title, options });
      calls.push({ showNotification: title, options });
      return Promise.resolve();
    },
  },
  clients: {
    claim: () => Promise.resolve(),
    matchAll: () => Promise.resolve(windows),
    openWindow(url) {
      calls.push({ openWindow: url });
      return Promise.resolve(null);
    },
  },
};

async function dispatch(type, fields) {
  const waits = [];
  const event = Object.assign({ waitUntil: (promise) => waits.push(promise) }, fields);
  handlers[type](event);
  await Promise.all(waits);
}

async function main() {
  vm.runInNewContext(fs.readFileSync(swPath, "utf8"), { self, URL, String, encodeURIComponent });
  for (const step of scenario.steps) {
    if (step.push !== undefined) {
      const body = JSON.stringify(step.push);
      await dispatch("push", { data: { json: () => JSON.parse(body), text: () => body } });
    } else {
      const note = shown[step.click];
      const notification = {
        title: note.title,
        data: note.options.data,
        close() {
          calls.push({ close: note.title });
        },
      };
      await dispatch("notificationclick", { notification });
    }
  }
  process.stdout.write(JSON.stringify(calls));
}

main().catch((error) => {
  process.stderr.write(String((error && error.stack) || error));
  process.exit(1);
});
