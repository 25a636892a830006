// mieruka's page script: live updates over one event stream per browser (shared by its tabs), with
// a switch to polling the JSON API when streaming cannot work. Pages work without it.
(function () {
  "use strict";
  var root = document.body.dataset.root || "";
  var FALLBACK_AFTER_MS = 5000;
  var POLL_MS = 2000;
  var MAX_LOG_LINES = 5000;

  // Text people read goes through static/i18n.js (the page's language); without it, English.
  var i18n = window.mieruka_i18n || { lang: "en", t: fill,
    tn: function (one, many, n, values) { return fill(n === 1 ? one : many, Object.assign({ num: n }, values)); } };
  function fill(message, values) {
    return message.replace(/%\((\w+)\)[sd]/g, function (all, key) { return values && key in values ? values[key] : all; });
  }
  function t(message, values) { return i18n.t(message, values); }
  // mieruka's own texts (a note beside the English: static/i18n.js) in the page's language.
  function said(text, note) { return i18n.said ? i18n.said(text, note) : text === null || text === undefined ? "" : String(text); }
  var lang = i18n.lang || "en";
  // Job states as people read them; the raw value stays in classes and data attributes.
  var STATES = { queued: t("queued"), running: t("running"), succeeded: t("succeeded"), failed: t("failed"),
    cancelled: t("cancelled") };
  function stateName(status) { return STATES[status] || status; }

  function note(text) {
    var el = document.getElementById("live-note");
    if (!el) return;
    el.textContent = text;
    el.hidden = !text;
  }

  // -- live updates: one event stream per browser, shared by its tabs ----------------------------
  // Browsers open about six connections per host: with one stream per page, the seventh tab would
  // get nothing. The tabs share one stream, held by a SharedWorker (static/live-worker.js), that
  // carries the union of their topics; a browser without SharedWorker gives each page its own.
  // Where streaming cannot work the page polls the JSON API instead, and says so.
  var WORKER = "live-worker.js";
  var PROTOCOL = "1";  // the worker's name carries it: pages of a newer server never share an older worker
  var tabId = Math.random().toString(36).slice(2) + Date.now().toString(36);

  function subscribe(topics, handlers, poll) {
    var polling = false;
    var heard = false;
    var stop = function () {};
    function startPolling(reason) {
      if (polling) return;
      polling = true;
      stop();
      note(t("live updates by polling (%(reason)s)", { reason: reason }));
      poll();
      window.setInterval(poll, POLL_MS);
    }
    function receive(message) {
      if (polling) return;
      if (message.type === "error") { note(t("reconnecting…")); return; }
      if (message.type === "closed") { startPolling(t("stream closed")); return; }
      heard = true;
      if (message.type === "ready") {
        note("");
        var refused = Object.keys(message.refused || {});
        if (refused.length) startPolling(said(message.refused[refused[0]], (message.refused_notes || {})[refused[0]]));
        return;
      }
      if (message.kind === "resync") { poll(); return; }
      var handler = handlers[message.kind];
      if (handler) handler(message.data);
    }
    if (!window.EventSource) {
      startPolling(t("no EventSource"));
      return;
    }
    var since = parseInt(document.body.dataset.lastEvent || "0", 10) || 0;
    stop = sharedStream(topics, since, receive) || ownStream(topics, since, receive);
    // A proxy that buffers the stream delivers nothing: fall back after a few quiet seconds.
    window.setTimeout(function () { if (!heard) startPolling(t("stream blocked")); }, FALLBACK_AFTER_MS);
  }

  function sharedStream(topics, since, receive) {
    if (!window.SharedWorker) return null;
    var worker;
    try {
      worker = new SharedWorker(root + "/static/" + WORKER, { name: "mieruka-live-" + PROTOCOL + root });
    } catch (e) {
      return null;  // e.g. a policy that forbids workers
    }
    var port = worker.port;
    var lock = "mieruka-tab-" + tabId;
    function hello() {
      port.postMessage({ type: "hello", tab: tabId, topics: topics, since: since, root: root, session: csrf,
        lock: navigator.locks ? lock : null });
    }
    port.onmessage = function (m) { receive(m.data); };
    port.start();
    // A lock held while the page lives: the worker learns that a tab is gone even if it could not
    // say so. The worker asks for it, so the tab says hello once it holds it.
    if (navigator.locks) {
      navigator.locks.request(lock, function () { hello(); return new Promise(function () {}); });
    } else {
      hello();
    }
    window.addEventListener("pagehide", function () { port.postMessage({ type: "bye", tab: tabId }); });
    window.addEventListener("pageshow", function (e) { if (e.persisted) hello(); });  // back from the cache
    return function () { port.postMessage({ type: "bye", tab: tabId }); };
  }

  function ownStream(topics, since, receive) {
    var url = root + "/api/live/events?" + topics.map(function (t) { return "topic=" + encodeURIComponent(t); }).join("&");
    if (since) url += "&last_event_id=" + encodeURIComponent("@=" + since);
    var source = new EventSource(url);
    ["ready", "resync", "snapshot", "state", "progress", "log", "artifact", "step", "steps", "deleted", "tile",
      "points"].forEach(function (kind) {
      source.addEventListener(kind, function (message) {
        var data = JSON.parse(message.data);
        receive(kind === "ready" ? { type: "ready", refused: data.refused, refused_notes: data.refused_notes }
          : { type: "event", kind: kind, data: data });
      });
    });
    source.addEventListener("error", function () { receive({ type: source.readyState === 2 ? "closed" : "error" }); });
    return function () { source.close(); };
  }

  function getJSON(url) {
    return fetch(root + url, { headers: { Accept: "application/json" } }).then(function (r) {
      if (r.status === 401 && csrf) toLogin();
      if (!r.ok) throw new Error(url + ": " + r.status);
      return r.json();
    });
  }

  // -- job page -------------------------------------------------------------------------------
  function jobPage(jobId) {
    var log = document.getElementById("log");
    var nextSeq = parseInt((log && log.dataset.next) || "0", 10);
    var lastStatus = document.getElementById("job-panel").dataset.status;

    function field(name) { return document.querySelector('#job-panel [data-field="' + name + '"]'); }

    function setStatus(status) {
      var badge = field("status");
      if (badge) { badge.textContent = stateName(status); badge.className = "badge status-" + status; }
      document.querySelectorAll("[data-show-when]").forEach(function (form) {
        form.hidden = form.dataset.showWhen.split(" ").indexOf(status) < 0;
      });
    }

    function setProgress(progress, message, note) {
      var bar = field("progress");
      if (bar && progress !== null && progress !== undefined) bar.value = progress;
      var text = field("message");
      if (text && message !== null && message !== undefined) text.textContent = said(message, note);
    }

    function refreshPanel() {
      return fetch(root + "/jobs/" + jobId + "/panel").then(function (r) { return r.text(); }).then(function (html) {
        var panel = document.getElementById("job-panel");
        panel.outerHTML = html;
        lastStatus = document.getElementById("job-panel").dataset.status;
        setStatus(lastStatus);
      });
    }

    var view = log ? logView(log, nextSeq) : null;
    function appendLines(first, lines, step) {
      if (!view) return;
      lines.forEach(function (line, i) { view.add(first + i, line[1], line[2], step); });
      nextSeq = view.next();
    }

    var finished = { succeeded: 1, failed: 1, cancelled: 1 };
    function onState(data) {
      setStatus(data.status);
      if (data.message !== undefined) setProgress(null, data.message, data.message_note);
      if (finished[data.status] || data.status !== lastStatus) {
        lastStatus = data.status;
        refreshPanel();
      }
    }

    function poll() {
      // The log is read after the job: a job's lines are written before it ends, so a state shown
      // as finished comes with its whole log (read side by side, the log could be the older).
      getJSON("/api/jobs/" + jobId).then(function (job) {
        return getJSON("/api/jobs/" + jobId + "/logs?after=" + nextSeq + "&limit=5000").then(function (page) {
          // One line at a time keeps each line's step tag (a page holds lines of several steps), and
          // an open step's log gets its own lines, as from the stream.
          page.lines.forEach(function (l) {
            var line = [l.at, l.stream, l.text];
            appendLines(l.seq, [line], l.step);
            steps.lines({ step: l.step, first_seq: l.seq, lines: [line] });
          });
          setProgress(job.progress, job.message, job.message_note);
          if (job.status !== lastStatus) onState(job);
        });
      });
      if (steps.section()) steps.refresh();
    }

    var steps = stepsView(jobId);

    if (log) log.scrollTop = log.scrollHeight;
    subscribe(["job:" + jobId], {
      snapshot: function (job) {
        setProgress(job.progress, job.message, job.message_note);
        if (job.status !== lastStatus) onState(job);
        if (job.log_lines > nextSeq) poll();  // lines written before the stream opened
        if (steps.section()) steps.refresh();  // and steps that changed before it opened
      },
      state: onState,
      progress: function (data) { setProgress(data.progress, data.message, data.message_note); },
      log: function (data) { appendLines(data.first_seq, data.lines, data.step); steps.lines(data); },
      artifact: function () { refreshPanel(); },
      step: function (data) { steps.update(data); },
      steps: function () { steps.refresh(); },
    }, poll);
  }

  // -- a log box that follows a busy log ----------------------------------------------------------
  // Lines wait for the next animation frame and go in together; they sit in blocks of CHUNK_LINES
  // lines, so that adding lines lays out the last block only (one <pre> of 5,000 inline lines is
  // laid out whole at every change), and blocks out of sight are not laid out at all
  // (content-visibility). The box keeps the newest MAX_LOG_LINES; the whole log is a download away.
  var CHUNK_LINES = 200;

  function logBlock() {
    var block = document.createElement("span");
    block.className = "log-chunk";
    // Styles set from the script: the page's CSP allows no style attributes in the markup.
    block.style.display = "block";
    block.style.contentVisibility = "auto";
    block.style.containIntrinsicSize = "auto " + CHUNK_LINES * 1.1 + "rem";
    return block;
  }

  function logView(pre, next) {
    var pending = [];
    var frame = 0;
    var count = 0;
    var dropped = 0;
    // The lines the server rendered go into blocks too.
    var rendered = Array.prototype.slice.call(pre.childNodes);
    var last = null;
    rendered.forEach(function (node) {
      if (!last || last.childNodes.length >= CHUNK_LINES) { last = logBlock(); pre.appendChild(last); }
      last.appendChild(node);
      if (node.nodeType === 1) count++;
    });

    function line(stream, text, step) {
      var attempt = stream === "system" && /^--- attempt (\d+) of (\d+) ---$/.exec(text);
      if (attempt) text = t("--- attempt %(attempt)s of %(attempts)s ---", { attempt: attempt[1], attempts: attempt[2] });
      var span = document.createElement("span");
      span.className = "line " + stream;
      if (step) {  // a pipeline step's line says which step wrote it
        var tag = document.createElement("span");
        tag.className = "step-tag";
        tag.textContent = "[" + step + "] ";
        span.appendChild(tag);
      }
      span.appendChild(document.createTextNode(text + "\n"));
      return span;
    }

    function flush() {
      frame = 0;
      // Read before writing: the layout is still clean from the last frame.
      var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
      var block = pre.lastElementChild;
      var lines = pending;
      pending = [];
      var fragment = null;
      lines.forEach(function (l) {
        if (!block || block.childNodes.length >= CHUNK_LINES) {
          if (fragment && block) block.appendChild(fragment);
          block = logBlock();
          pre.appendChild(block);
          fragment = null;
        }
        if (!fragment) fragment = document.createDocumentFragment();
        fragment.appendChild(line(l[0], l[1], l[2]));
      });
      if (fragment && block) block.appendChild(fragment);
      count += lines.length;
      while (count > MAX_LOG_LINES && pre.firstElementChild) {
        var first = pre.firstElementChild;
        var excess = count - MAX_LOG_LINES;
        if (first.childNodes.length <= excess) {
          count -= first.childNodes.length;
          dropped += first.childNodes.length;
          pre.removeChild(first);
        } else {
          for (var k = 0; k < excess; k++) first.removeChild(first.firstChild);
          count -= excess;
          dropped += excess;
        }
      }
      if (dropped) {
        var cut = document.getElementById(pre.id === "log" ? "log-cut" : "");
        if (cut) cut.hidden = false;
      }
      // Follow the end, unless the reader scrolled up to read something.
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }

    function add(seq, stream, text, step) {
      if (seq <= next) return;  // already shown (a reconnect or a poll can replay)
      next = seq;
      pending.push([stream, text, step]);
      // A hidden tab draws no frames: what it could not show anyway is not kept.
      if (pending.length > MAX_LOG_LINES) pending.splice(0, pending.length - MAX_LOG_LINES);
      if (!frame) frame = window.requestAnimationFrame(flush);
    }

    return { add: add, next: function () { return next; } };
  }

  // -- a pipeline job's steps: graph and list, each step's log loaded when it is opened ---------
  function stepsView(jobId) {
    var timer = null;
    function section() { return document.getElementById("steps"); }
    function item(name) {
      var found = null;
      document.querySelectorAll("#steps details[data-step]").forEach(function (d) { if (d.dataset.step === name) found = d; });
      return found;
    }

    function addLines(pre, lines) {
      if (!pre.logView) pre.logView = logView(pre, parseInt(pre.dataset.next || "0", 10));
      lines.forEach(function (l) { pre.logView.add(l.seq, l.stream, l.text); });
      pre.dataset.next = String(pre.logView.next());
    }

    function load(details) {
      var pre = details.querySelector("pre[data-step-log]");
      if (!pre || pre.dataset.loaded) return;
      pre.dataset.loaded = "1";
      // Live lines that arrive while the log loads wait for it: shown first, they would hide the
      // earlier lines the load brings (lines are shown in order, each once).
      pre.pendingLines = [];
      function flush() {
        var pending = pre.pendingLines || [];
        pre.pendingLines = null;
        pending.forEach(function (batch) { addLines(pre, batch); });
      }
      var url = "/api/jobs/" + jobId + "/steps/" + encodeURIComponent(details.dataset.step) + "/logs?limit=5000&after=";
      (function more(after) {
        getJSON(url + after).then(function (page) {
          addLines(pre, page.lines);
          if (page.lines.length === 5000) more(page.next_after);
          else flush();
        }, flush);
      })(parseInt(pre.dataset.next || "0", 10));
    }

    function wire(root) {
      root.querySelectorAll("details[data-step]").forEach(function (d) {
        d.addEventListener("toggle", function () { if (d.open) load(d); });
        if (d.open) load(d);  // a step that failed the job opens with its log
      });
    }

    function refresh() {
      if (timer || !section()) return;
      timer = window.setTimeout(function () {
        timer = null;
        fetch(root + "/jobs/" + jobId + "/steps").then(function (r) { return r.ok ? r.text() : ""; }).then(function (html) {
          var old = section();
          if (!html || !old) return;
          var template = document.createElement("template");
          template.innerHTML = html.trim();
          var fresh = template.content.firstElementChild;
          // Open steps stay open, with the log already shown.
          old.querySelectorAll("details[data-step]").forEach(function (d) {
            if (!d.open) return;
            fresh.querySelectorAll("details[data-step]").forEach(function (n) {
              if (n.dataset.step !== d.dataset.step) return;
              n.open = true;
              var pre = d.querySelector("pre[data-step-log]");
              var slot = n.querySelector("pre[data-step-log]");
              if (pre && slot) slot.replaceWith(pre);
            });
          });
          old.replaceWith(fresh);
          wire(fresh);
        });
      }, 200);
    }

    function update(data) {
      var d = item(data.name);
      if (!d || d.dataset.status !== data.status) { refresh(); return; }
      var bar = d.querySelector('[data-field="progress"]');
      if (bar && data.progress !== null && data.progress !== undefined) bar.value = data.progress;
      var text = d.querySelector('[data-field="message"]');
      if (text) text.textContent = said(data.message, data.message_note);
    }

    function lines(data) {
      if (!data.step) return;
      var d = item(data.step);
      var pre = d && d.querySelector("pre[data-step-log]");
      if (!pre || !pre.dataset.loaded) return;  // loaded in full when opened
      var batch = data.lines.map(function (l, i) { return { seq: data.first_seq + i, stream: l[1], text: l[2] }; });
      if (pre.pendingLines) pre.pendingLines.push(batch);
      else addLines(pre, batch);
    }

    // Running steps' durations tick along.
    window.setInterval(function () {
      document.querySelectorAll('#steps [data-field="duration"][data-started]').forEach(function (cell) {
        var d = cell.closest("details");
        var started = Date.parse(cell.dataset.started);
        if (d && d.dataset.status === "running" && started) {
          cell.textContent = duration((Date.now() - started) / 1000);
        }
      });
    }, 1000);

    if (section()) wire(section());
    return { section: section, refresh: refresh, update: update, lines: lines };
  }

  // Durations and sizes as the server writes them (web/ui/formats.py): mieruka's own forms in
  // English, the language's (CLDR, as Babel's on the server) elsewhere.
  var english = /^en\b/i.test(lang);
  var unitFormats = {};
  function unit(amount, name, decimals) {
    var key = name + decimals;
    var format = unitFormats[key] || (unitFormats[key] = new Intl.NumberFormat(lang,
      { style: "unit", unit: name, unitDisplay: "short", minimumFractionDigits: decimals, maximumFractionDigits: decimals }));
    return format.format(amount);
  }

  function duration(seconds) {
    var s = Math.max(0, Math.floor(seconds)), minutes = Math.floor(s / 60), hours = Math.floor(s / 3600);
    if (english) return s < 60 ? s + " s" : s < 3600 ? minutes + " min " + s % 60 + " s" : hours + " h " + minutes % 60 + " min";
    if (s < 60) return unit(s, "second", 0);
    if (s < 3600) return unit(minutes, "minute", 0) + " " + unit(s % 60, "second", 0);
    return unit(hours, "hour", 0) + " " + unit(minutes % 60, "minute", 0);
  }

  // -- forms: show the chosen files with their sizes -----------------------------------------
  function humanSize(bytes) {
    var units = ["byte", "kilobyte", "megabyte", "gigabyte"];
    var i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    if (english) return (i ? bytes.toFixed(1) : bytes) + " " + ["B", "KB", "MB", "GB"][i];
    return unit(bytes, units[i], i ? 1 : 0);
  }

  document.querySelectorAll('input[type="file"]').forEach(function (input) {
    input.addEventListener("change", function () {
      var info = document.querySelector('.file-info[data-for="' + input.name + '"]');
      if (!info) return;
      info.textContent = Array.prototype.map.call(input.files, function (f) {
        return t("%(file)s (%(size)s)", { file: f.name, size: humanSize(f.size) });
      }).join(", ");
    });
  });

  // -- jobs monitor -----------------------------------------------------------------------------
  function monitorPage() {
    var body = document.body.dataset;
    var rows = document.getElementById("job-rows");
    var finished = { succeeded: 1, failed: 1, cancelled: 1 };
    var pending = new Set();
    var timer = null;
    // New jobs appear only on the first page, and only when the filters can be checked here.
    var canInsert = body.firstPage === "true" && !body.filterQ && !body.filterOwner;

    var selectAll = document.getElementById("select-all");
    if (selectAll) selectAll.addEventListener("change", function () {
      rows.querySelectorAll('input[name="ids"]:not([disabled])').forEach(function (box) { box.checked = selectAll.checked; });
    });

    function row(id) { return rows.querySelector('tr[data-job-id="' + id + '"]'); }

    function matches(task, status) {
      return (!body.filterTask || body.filterTask === task) && (!body.filterStatus || body.filterStatus === status);
    }

    function fetchRows() {
      timer = null;
      var ids = Array.from(pending).sort(function (a, b) { return a - b; }).slice(-50);
      pending.clear();
      ids.forEach(function (id) {
        fetch(root + "/jobs/" + id + "/row").then(function (r) { return r.ok ? r.text() : ""; }).then(function (html) {
          if (!html) return;
          var template = document.createElement("template");
          template.innerHTML = html.trim();
          var fresh = template.content.firstElementChild;
          var old = row(id);
          if (old) { old.replaceWith(fresh); return; }
          // Keep newest first: put it before the first row with a smaller id.
          var after = Array.from(rows.children).find(function (tr) { return +tr.dataset.jobId < id; });
          rows.insertBefore(fresh, after || null);
          var empty = document.getElementById("no-jobs");
          if (empty) empty.remove();
        });
      });
    }

    function schedule(id) {
      pending.add(+id);
      if (!timer) timer = window.setTimeout(fetchRows, 250);
    }

    function onState(data) {
      var tr = row(data.job_id);
      if (!tr) {
        if (canInsert && matches(data.task, data.status)) schedule(data.job_id);
        return;
      }
      tr.dataset.status = data.status;
      var badge = tr.querySelector('[data-field="status"]');
      badge.textContent = stateName(data.status);
      badge.className = "badge status-" + data.status;
      if (finished[data.status]) schedule(data.job_id);  // final duration, error, disabled box
    }

    function onProgress(data) {
      var tr = row(data.job_id);
      if (!tr) return;
      var bar = tr.querySelector('[data-field="progress"]');
      if (bar && data.progress !== null && data.progress !== undefined) bar.value = data.progress;
      if (data.message) tr.querySelector('[data-field="message"]').textContent = said(data.message, data.message_note);
    }

    function poll() {
      var query = "?limit=50";
      ["task", "status", "q", "owner"].forEach(function (key) {
        var value = body["filter" + key.charAt(0).toUpperCase() + key.slice(1)];
        if (value) query += "&" + key + "=" + encodeURIComponent(value);
      });
      getJSON("/api/jobs" + query).then(function (page) {
        page.jobs.forEach(function (job) {
          var tr = row(job.id);
          if (tr && tr.dataset.status !== job.status) onState({ job_id: job.id, task: job.task, status: job.status });
          else if (!tr && body.firstPage === "true") schedule(job.id);
          if (tr) onProgress({ job_id: job.id, progress: job.progress, message: job.message, message_note: job.message_note });
        });
      });
    }

    // Running jobs' durations tick along.
    window.setInterval(function () {
      rows.querySelectorAll('tr[data-status="running"] [data-field="duration"]').forEach(function (cell) {
        var started = Date.parse(cell.dataset.started);
        if (started) cell.textContent = duration((Date.now() - started) / 1000);
      });
    }, 1000);

    subscribe([body.filterTask ? "jobs:" + body.filterTask : "jobs"], { state: onState, progress: onProgress }, poll);
  }

  // -- form validation in the page's language -----------------------------------------------------
  // Chromium words its validation bubbles ("Please fill out this field.") in the browser's language,
  // not the page's. A field found invalid gets the page's words for what its ValidityState says
  // (`invalid` does not bubble: caught on its way down); any input in its form takes them off again,
  // so the browser judges afresh at the next submit. A message another script set is left alone.
  var ours = new WeakMap();
  var TIMES = { date: true, "datetime-local": true, time: true, month: true, week: true };

  function places(text) { var part = String(text).split(".")[1]; return part ? part.length : 0; }
  function numberAttr(el, name) { var n = parseFloat(el.getAttribute(name)); return isNaN(n) ? null : n; }

  // The two allowed values around a number off its step; the step's base is min, else the value
  // the page gave, else 0 (as HTML counts it).
  function nearest(el) {
    var step = numberAttr(el, "step"), value = parseFloat(el.value);
    if (step === null || step <= 0 || isNaN(value)) return null;
    var min = numberAttr(el, "min"), initial = numberAttr(el, "value");
    var base = min !== null ? min : initial !== null ? initial : 0;
    var digits = Math.max(places(el.getAttribute("step")), places(base));
    var low = base + Math.floor((value - base) / step) * step;
    return [low, low + step].map(function (n) { return String(Number(n.toFixed(digits))); });
  }

  function validityMessage(el) {
    var v = el.validity, type = (el.getAttribute("type") || "").toLowerCase();
    if (v.valueMissing) {
      if (type === "checkbox") return t("Check this box to go on.");
      if (type === "radio") return t("Choose one of these options.");
      if (type === "file") return t("Choose a file.");
      if (el.tagName === "SELECT") return t("Choose an item in the list.");
      return t("Fill out this field.");
    }
    if (v.badInput) return type === "number" ? t("Enter a number.") : t("Enter a valid value.");
    if (v.typeMismatch) {
      if (type === "email") return t("Enter an email address.");
      return type === "url" ? t("Enter a URL.") : t("Enter a valid value.");
    }
    var now = { now: el.value.length };
    if (v.tooShort) {
      return i18n.tn("Use at least %(num)d character (now %(now)s).", "Use at least %(num)d characters (now %(now)s).", el.minLength, now);
    }
    if (v.tooLong) {
      return i18n.tn("Use at most %(num)d character (now %(now)s).", "Use at most %(num)d characters (now %(now)s).", el.maxLength, now);
    }
    if (v.patternMismatch) {
      return el.title ? t("Match the format asked for: %(format)s", { format: el.title }) : t("Match the format asked for.");
    }
    if (v.rangeUnderflow) {
      return TIMES[type] ? t("The value must be %(min)s or later.", { min: el.min }) : t("The value must be %(min)s or more.", { min: el.min });
    }
    if (v.rangeOverflow) {
      return TIMES[type] ? t("The value must be %(max)s or earlier.", { max: el.max }) : t("The value must be %(max)s or less.", { max: el.max });
    }
    if (v.stepMismatch) {
      var near = nearest(el);
      return near ? t("Enter a valid value; the nearest are %(low)s and %(high)s.", { low: near[0], high: near[1] })
        : t("Enter a valid value.");
    }
    return "";
  }

  document.addEventListener("invalid", function (event) {
    var el = event.target;
    if (!el || !el.validity || !el.setCustomValidity) return;
    if (el.validity.customError) {
      if (ours.get(el) !== el.validationMessage) return;
      el.setCustomValidity("");  // ours from before, which the value may have outgrown
    }
    var message = validityMessage(el);
    if (message) {
      el.setCustomValidity(message);
      ours.set(el, message);
    } else {
      ours.delete(el);
    }
  }, true);

  function revalidate(event) {
    var el = event.target;
    if (!el) return;
    var form = el.form || (el.tagName === "FORM" ? el : null);  // "reset" is the form's own
    var fields = form ? form.elements : [el];
    for (var i = 0; i < fields.length; i++) {
      var field = fields[i];
      if (!ours.has(field)) continue;
      if (field.validationMessage === ours.get(field)) field.setCustomValidity("");
      ours.delete(field);
    }
  }
  ["input", "change", "reset"].forEach(function (name) { document.addEventListener(name, revalidate, true); });

  // -- CSRF: htmx requests carry the session's token (forms also carry it as a field) -------------
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.content : "";
  document.body.addEventListener("htmx:configRequest", function (event) {
    if (csrf) event.detail.headers["X-CSRF-Token"] = csrf;
  });
  // The session ended (logged out elsewhere, expired, password changed): back to the login page.
  function toLogin() {
    window.location.href = root + "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
  }
  document.body.addEventListener("htmx:responseError", function (event) {
    if (event.detail.xhr && event.detail.xhr.status === 401) toLogin();
  });

  window.mieruka = { subscribe: subscribe, getJSON: getJSON, note: note, csrf: csrf };
  if (document.body.dataset.job) jobPage(document.body.dataset.job);
  if (document.body.dataset.monitor) monitorPage();
})();
