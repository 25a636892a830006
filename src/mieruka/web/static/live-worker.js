// mieruka's shared stream: one SharedWorker per browser (and root path) holds the one event
// stream of all its tabs (browsers open about six connections per host; the seventh tab would wait).
// It subscribes to the union of what the tabs show (/api/live/events?topic=...), sends each tab the
// events of its own topics, and opens the stream again, resuming where it was, when tabs come or go.
//
// Tab -> worker: {type: "hello", tab, topics, since, session} | {type: "bye", tab}
// Worker -> tab: {type: "event", kind, data} | {type: "ready", refused, refused_notes} | {type: "error"} | {type: "closed"}
"use strict";

var KINDS = ["ready", "resync", "snapshot", "state", "progress", "log", "artifact", "step", "steps", "deleted",
  "tile", "points"];
var JOB_EVENTS = { state: 1, progress: 1, log: 1, artifact: 1, step: 1, steps: 1, deleted: 1 };
var JOIN_DELAY_MS = 50;    // tabs opened together share one reconnect
var LEAVE_DELAY_MS = 3000; // a closed tab's topics are dropped lazily

var tabs = {};          // tab id -> {port, topics: {topic: 1}, last (bus id seen), refused}
var source = null;
var openTopics = "";    // the topics of the stream now open, joined by "\n"
var session = "";       // the session the stream was opened with (a new login reopens it)
var wantedSession = "";
var root = "";
var bus = 0;            // the newest job event id received
var points = {};        // stream -> its newest point received
var dashboards = {};    // dashboard -> its streams (from the `ready` event)
var timer = null;
var floor = 0;          // the oldest page among the tabs that joined since the stream opened
var fresh = {};         // streams to send again from their recent window (a tab joined showing them)

function union() {
  var all = {};
  Object.keys(tabs).forEach(function (id) { Object.keys(tabs[id].topics).forEach(function (t) { all[t] = 1; }); });
  return Object.keys(all).sort();
}

function schedule(delay) {
  if (timer) clearTimeout(timer);
  timer = setTimeout(function () { timer = null; open(); }, delay);
}

function open() {
  var topics = union();
  if (!topics.length) {
    if (source) source.close();
    source = null;
    openTopics = "";
    return;
  }
  if (source && source.readyState !== 2 && topics.join("\n") === openTopics && session === wantedSession) return;
  if (source) source.close();
  // Tabs that joined may have missed job events since their page was rendered: resume from there.
  var from = floor && (!bus || floor < bus) ? floor : bus;
  var position = new URLSearchParams();
  if (from) position.set("@", from);
  Object.keys(points).forEach(function (name) { if (points[name] && !fresh[name] && !fresh["*"]) position.set(name, points[name]); });
  floor = 0;
  fresh = {};
  var query = topics.map(function (t) { return "topic=" + encodeURIComponent(t); }).join("&");
  if (position.toString()) query += "&last_event_id=" + encodeURIComponent(position.toString());
  openTopics = topics.join("\n");
  session = wantedSession;
  var es = source = new EventSource(root + "/api/live/events?" + query);
  KINDS.forEach(function (kind) {
    es.addEventListener(kind, function (message) {
      if (es !== source) return;
      var data = JSON.parse(message.data);
      // The tabs load the state afresh; the ids from here on may be of a restarted server's run.
      if (kind === "resync") { bus = 0; Object.keys(tabs).forEach(function (id) { tabs[id].last = 0; }); }
      if (message.lastEventId) remember(message.lastEventId);
      route(kind, data);
    });
  });
  es.addEventListener("error", function () {
    if (es !== source) return;
    // CLOSED: the server refused the stream (logged out?): the tabs poll, which says why.
    Object.keys(tabs).forEach(function (id) { tabs[id].port.postMessage({ type: es.readyState === 2 ? "closed" : "error" }); });
  });
}

function remember(id) {
  new URLSearchParams(id).forEach(function (value, key) {
    if (key === "@") bus = Math.max(bus, +value || 0);
    else points[key] = +value || 0;
  });
}

function wants(tab, kind, data) {
  var t = tab.topics;
  if (JOB_EVENTS[kind]) return data.id > tab.last && !!(t.jobs || t["jobs:" + data.task] || t["job:" + data.job_id]);
  if (kind === "snapshot") return !!t["job:" + data.id];
  if (kind === "tile") return !!t["dashboard:" + data.dashboard];
  if (kind === "points") {
    if (t["stream:" + data.stream]) return true;
    return Object.keys(dashboards).some(function (d) { return t["dashboard:" + d] && dashboards[d].indexOf(data.stream) >= 0; });
  }
  if (kind === "resync") return Object.keys(t).some(function (topic) { return topic.indexOf("job") === 0; });
  return false;
}

function route(kind, data) {
  if (kind === "ready") {
    dashboards = data.dashboards || {};
    if (data.last_event_id) bus = Math.max(bus, data.last_event_id);
    Object.keys(tabs).forEach(function (id) {
      var tab = tabs[id];
      var refused = {}, notes = {};
      Object.keys(data.refused || {}).forEach(function (topic) {
        if (!tab.topics[topic]) return;
        refused[topic] = data.refused[topic];
        notes[topic] = (data.refused_notes || {})[topic] || null;
      });
      tab.port.postMessage({ type: "ready", refused: refused, refused_notes: notes });
    });
    return;
  }
  Object.keys(tabs).forEach(function (id) {
    var tab = tabs[id];
    if (!wants(tab, kind, data)) return;
    if (JOB_EVENTS[kind]) tab.last = data.id;
    tab.port.postMessage({ type: "event", kind: kind, data: data });
  });
}

function hello(port, message) {
  root = message.root || "";
  var tab = { port: port, topics: {}, last: message.since || 0 };
  message.topics.forEach(function (t) { tab.topics[t] = 1; });
  tabs[message.tab] = tab;
  if (message.since) floor = floor ? Math.min(floor, message.since) : message.since;
  // Its charts start empty: the streams it shows begin again with their recent window.
  message.topics.forEach(function (t) {
    if (t.indexOf("stream:") === 0) fresh[t.slice(7)] = 1;
    if (t.indexOf("dashboard:") === 0) {
      var streams = dashboards[t.slice(10)];
      if (streams) streams.forEach(function (name) { fresh[name] = 1; });
      else fresh["*"] = 1;  // its streams are not known yet
    }
  });
  if (message.session !== wantedSession) wantedSession = message.session;
  // A tab's lock is free once the tab is gone, even if it could not say goodbye.
  if (self.navigator && navigator.locks && message.lock) {
    navigator.locks.request(message.lock, function () { bye(message.tab); });
  }
  // Every tab that joins gets the snapshots, tiles and windows of a fresh stream.
  openTopics = "";
  schedule(JOIN_DELAY_MS);
}

function bye(id) {
  if (!tabs[id]) return;
  delete tabs[id];
  schedule(LEAVE_DELAY_MS);
}

self.onconnect = function (event) {
  var port = event.ports[0];
  port.onmessage = function (m) {
    if (m.data.type === "hello") hello(port, m.data);
    else if (m.data.type === "bye") bye(m.data.tab);
  };
  port.start();
};
