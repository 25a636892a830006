// mieruka dashboards: draws each tile from the JSON the server computed (uPlot for time series and
// streams, Chart.js for categorical charts, HTML for tables and KPIs) and keeps it live over the
// browser's one event stream (see mieruka.js), falling back to polling the JSON API when streaming
// cannot work.
(function () {
  "use strict";
  var body = document.body.dataset;
  var root = body.root || "";
  var tz = body.timezone || "UTC";
  var PALETTE = ["#0d6efd", "#dc3545", "#198754", "#fd7e14", "#6f42c1", "#20c997", "#d63384", "#6c757d"];

  // Text people read goes through static/i18n.js (the page's language); without it, English.
  var i18n = window.mieruka_i18n || { lang: "en", t: fill,
    tn: function (one, many, n, values) { return fill(n === 1 ? one : many, Object.assign({ num: n }, values)); } };
  function fill(message, values) {
    return message.replace(/%\((\w+)\)[sd]/g, function (all, key) { return values && key in values ? values[key] : all; });
  }
  function t(message, values) { return i18n.t(message, values); }
  function tn(singular, plural, n, values) { return i18n.tn(singular, plural, n, values); }
  // mieruka's own texts (a note beside the English: static/i18n.js) in the page's language.
  function said(text, note) { return i18n.said ? i18n.said(text, note) : text === null || text === undefined ? "" : String(text); }
  var lang = i18n.lang || "en";
  // Dates as the language writes them (ja 2026/12/04, ru 04.12.2026), ISO in English; 24-hour times.
  var dateLang = /^en\b/i.test(lang) ? "en-CA" : lang;
  function dateFormat(options) {
    return new Intl.DateTimeFormat(dateLang, Object.assign({ timeZone: tz }, options));
  }
  var fmtDate = dateFormat({ year: "numeric", month: "2-digit", day: "2-digit" });
  var fmtMonth = dateFormat({ year: "numeric", month: "2-digit" });
  var fmtTime = dateFormat({ hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  function localTime(iso) {
    var d = new Date(iso);
    var today = fmtDate.format(new Date()) === fmtDate.format(d);
    return (today ? "" : fmtDate.format(d) + " ") + fmtTime.format(d);
  }
  // Axes speak as the tables do: the language's dates, 24-hour times, in the configured zone; numbers
  // compact (2.4M, 950K; 240万) so that a narrow axis never cuts them.
  var fmtMinute = dateFormat({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  // The labels of a time axis: months, days, or times with the date under the first and where the
  // day changes (under, as uPlot puts it: on a line of its own it never meets the next time). A
  // date is wider than a time: one too close to the date before is left off (the legend and the
  // pointer's tooltip give every time in full), a day's change rather than the first label's.
  function axisTimes(u, splits, step) {
    var dates = splits.map(function (ts) { return new Date(ts * 1000); });
    if (step >= 86400 * 28) return dates.map(function (d) { return fmtMonth.format(d); });
    if (step >= 86400) return dates.map(function (d) { return fmtDate.format(d); });
    var format = step < 60 ? fmtTime : fmtMinute;
    var days = dates.map(function (d) { return fmtDate.format(d); });
    var apart = splits.length > 1 ? u.valToPos(splits[1], "x") - u.valToPos(splits[0], "x") : Infinity;
    u.ctx.font = u.axes[0].font[0];
    var wide = u.ctx.measureText(days[0] || "").width / window.devicePixelRatio + 12;
    var ticks = Math.max(1, Math.ceil(wide / apart));  // how many ticks apart two dates must be
    var change = days.findIndex(function (day, i) { return i > 0 && day !== days[i - 1]; });
    var last = -Infinity;
    return dates.map(function (d, i) {
      var wanted = i ? days[i] !== days[i - 1] : change < 0 || change >= ticks;
      if (!wanted || i - last < ticks) return format.format(d);
      last = i;
      return format.format(d) + "\n" + days[i];
    });
  }
  function fullTime(ts) { var d = new Date(ts * 1000); return fmtDate.format(d) + " " + fmtTime.format(d); }
  var compactFormats = [];
  function compactFormat(digits) {
    return compactFormats[digits] || (compactFormats[digits] =
      new Intl.NumberFormat(lang, { notation: "compact", maximumFractionDigits: digits }));
  }
  function compact(value, step) {
    if (value === null || value === undefined || !isFinite(value)) return "";
    if (!step) return compactFormat(Math.abs(value) >= 1000 ? 1 : 2).format(value);
    // The fewest decimals that write the tick as it is (the language picks the unit: M, 万): 22.5
    // with no decimal read "23", a label that was not the tick's.
    var exact = compactFormat(6).format(value);
    for (var digits = 0; digits < 6; digits++) {
      var text = compactFormat(digits).format(value);
      if (text === exact) return text;
    }
    return exact;
  }
  function ago(seconds) {
    if (seconds < 60) return t("%(seconds)s s ago", { seconds: Math.max(0, Math.round(seconds)) });
    if (seconds < 3600) return t("%(minutes)s min ago", { minutes: Math.round(seconds / 60) });
    return t("%(hours)s h ago", { hours: Math.round(seconds / 3600) });
  }
  function colour(i, alpha) { var c = PALETTE[i % PALETTE.length]; return alpha ? c + alpha : c; }

  var tiles = {};
  document.querySelectorAll(".tile").forEach(function (el) {
    tiles[el.dataset.chart] = { el: el, kind: el.dataset.kind, payload: null, view: null,
      body: el.querySelector(".tile-body"), height: +el.dataset.height || 260 };
    // The page's CSP allows no style attributes in the markup; the script sizes chart boxes.
    if (el.querySelector(".chart-body")) tiles[el.dataset.chart].body.style.minHeight = tiles[el.dataset.chart].height + "px";
  });

  // -- freshness: last refresh, a stale badge past twice the interval, the last error --------
  function freshness(tile) {
    var p = tile.payload;
    if (!p) return;
    var fresh = tile.el.querySelector(".freshness");
    var stale = tile.el.querySelector(".stale-badge");
    var err = tile.el.querySelector(".tile-error");
    if (p.refreshed_at) {
      var age = (Date.now() - Date.parse(p.refreshed_at)) / 1000;
      fresh.textContent = t("updated %(time)s (%(ago)s)", { time: localTime(p.refreshed_at), ago: ago(age) });
      fresh.title = p.interval ? t("%(time)s · refreshes every %(seconds)s s", { time: p.refreshed_at, seconds: p.interval })
        : p.refreshed_at;
      stale.hidden = !(p.interval && age > 2 * p.interval);
    } else {
      fresh.textContent = p.error ? t("no data yet") : t("waiting for the first refresh…");
      stale.hidden = true;
    }
    var warning = tile.el.querySelector(".tile-warning");
    if (warning) {
      warning.hidden = !p.warning;
      warning.textContent = p.warning ? "⚠ " + p.warning : "";
    }
    var csv = tile.el.querySelector(".csv-link");
    if (csv) csv.hidden = !p.refreshed_at;  // no table to download until a refresh succeeded
    if (p.error) {
      err.hidden = false;
      var values = { error: said(p.error, p.error_note), time: p.error_at && localTime(p.error_at),
        shown: p.refreshed_at && localTime(p.refreshed_at) };
      if (p.refreshed_at) {
        err.textContent = p.error_at ? t("Refresh failed at %(time)s: %(error)s (showing data of %(shown)s)", values)
          : t("Refresh failed: %(error)s (showing data of %(shown)s)", values);
      } else {
        err.textContent = p.error_at ? t("Refresh failed at %(time)s: %(error)s", values) : t("Refresh failed: %(error)s", values);
      }
    } else {
      err.hidden = true;
      err.textContent = "";
    }
  }
  window.setInterval(function () { Object.keys(tiles).forEach(function (k) { freshness(tiles[k]); }); }, 1000);

  function onTile(p) {
    if (p.kind === "state") { onControlState(p); return; }
    var tile = tiles[p.chart];
    // Tiles are numbered afresh when the server restarts (a new boot id): take the new ones.
    if (!tile || (tile.payload && tile.payload.boot === p.boot && tile.payload.seq >= p.seq)) return;
    tile.payload = p;
    tile.el.dataset.version = p.version;
    tile.el.dataset.attempts = p.attempts;
    tile.el.dataset.error = p.error ? "true" : "false";
    freshness(tile);
    if (!p.data) { drawEmpty(tile, p); return; }
    try {
      if (p.kind === "table") drawTable(tile, p.data);
      else if (p.kind === "kpi") drawKpi(tile, p.data);
      else if (p.library === "uplot") drawSeries(tile, p);
      else drawChartjs(tile, p);
    } catch (e) {
      tile.el.querySelector(".tile-error").hidden = false;
      tile.el.querySelector(".tile-error").textContent = t("cannot draw: %(error)s", { error: String(e) });
    }
  }

  // -- no data: say why instead of an empty box -------------------------------------------------
  function drawEmpty(tile, p) {
    dispose(tile);
    var box = document.createElement("div");
    box.className = "tile-empty";
    box.setAttribute("role", "status");
    var title = document.createElement("strong");
    var why = document.createElement("span");
    if (p.refreshed_at) {  // it had data, but this chart cannot be drawn from it (the error says why)
      title.textContent = t("Cannot draw this chart");
      why.textContent = t("the table has no column it needs (see below)");
    } else if (p.error) {
      title.textContent = t("No data yet");
      why.textContent = t("every refresh of this source has failed so far (the error is below)");
    } else {
      title.textContent = t("No data yet");
      why.textContent = t("waiting for the source's first refresh…");
    }
    box.append(title, why);
    tile.body.replaceChildren(box);
  }

  // -- uPlot: line and area over time or numbers; keeps the user's zoom across updates ----------
  // A tile's chart is replaced when its series change: free the old one first.
  function dispose(tile) {
    var view = tile.view;
    if (!view) return;
    if (view.observer) view.observer.disconnect();
    if (view.u) view.u.destroy();
    if (view.chart) view.chart.destroy();
    tile.view = null;
  }

  // The value axis as wide as its longest label (compact numbers are longer in some languages: 2500万).
  function axisSize(u, values, index, cycle) {
    var axis = u.axes[index];
    if (cycle > 1) return axis._size;
    var widest = 0;
    u.ctx.font = axis.font[0];
    (values || []).forEach(function (v) { widest = Math.max(widest, u.ctx.measureText(v).width); });
    return Math.max(50, Math.ceil(widest / window.devicePixelRatio + axis.ticks.size + axis.gap));
  }

  // Ticks of a time axis as far apart as their labels are wide, and a gap: at uPlot's 50 px,
  // "07:09:10" ran into the next label on a narrow chart. The labels' form follows the step uPlot
  // will pick: times with seconds below a minute, without them below a day, else dates.
  function timeSpace(u, axisIdx, min, max, dim) {
    var perSecond = dim / Math.max(max - min, 1e-9), now = new Date();
    u.ctx.font = u.axes[0].font[0];
    function room(format) { return Math.ceil(u.ctx.measureText(format.format(now)).width / window.devicePixelRatio) + 12; }
    // 30 s and 12 h are uPlot's largest steps under a minute and a day: past them, a label without
    // seconds (or a date) must not be given a step of seconds (or hours) it is too wide for.
    var seconds = room(fmtTime);
    if (30 * perSecond >= seconds) return seconds;
    var minutes = Math.max(room(fmtMinute), 30 * perSecond + 1);
    return 43200 * perSecond >= minutes ? minutes : Math.max(room(fmtDate), 43200 * perSecond + 1);
  }

  // Without the pointer on the chart, the legend shows the newest values, not dashes.
  function newest(values) {
    for (var i = (values || []).length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i];
    return null;
  }

  // A wall screen is read from across the room: its axes' type grows with the page's (mieruka.css).
  var kiosk = document.body.classList.contains("kiosk");
  var kioskPx = kiosk ? Math.max(12, Math.round(parseFloat(window.getComputedStyle(document.body).fontSize) * 0.8) || 12) : 12;
  var kioskFont = kioskPx + "px system-ui, -apple-system, \"Segoe UI\", Roboto, \"Helvetica Neue\", Arial, \"Noto Sans\", sans-serif";

  function makeUplot(tile, names, time, area) {
    dispose(tile);
    tile.body.innerHTML = "";
    var view = { kind: "uplot", zoomed: false, names: names.join("\u0000") };
    var opts = {
      width: tile.body.clientWidth || 600, height: tile.height,
      scales: { x: { time: time } },
      axes: [
        { values: function (u, splits, axis, space, step) {
          return time ? axisTimes(u, splits, step) : splits.map(function (v) { return compact(v, step); });
        } },
        { values: function (u, splits, axis, space, step) { return splits.map(function (v) { return compact(v, step); }); },
          size: axisSize },
      ],
      series: [{ label: time ? t("Time") : t("Value"),
        value: function (u, v, si, idx) {
          if (idx === null || idx === undefined) v = newest(u.data[0]);
          return v === null || v === undefined ? "--" : time ? fullTime(v) : String(v);
        } }]
        .concat(names.map(function (n, i) {
          return { label: n, stroke: colour(i), width: 1.5, fill: area ? colour(i, "33") : undefined,
            value: function (u, v, si, idx) {
              if (idx === null || idx === undefined) v = newest(u.data[si]);
              return v === null || v === undefined ? "--" : v.toLocaleString(lang);
            } };
        })),
    };
    if (time) opts.axes[0].space = timeSpace;
    if (kiosk) {
      opts.axes.forEach(function (axis) { axis.font = kioskFont; });
      opts.axes[0].size = Math.ceil(kioskPx * 2.5) + 20;  // room for a date above a time
    }
    if (time) opts.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), tz); };
    view.updating = true;
    view.u = new uPlot(opts, [[]].concat(names.map(function () { return []; })), tile.body);
    view.updating = false;
    tile.el.uplot = view.u;  // for scripts and tests that look at the chart
    tile.el.chartView = view;
    // A drag across the plot is uPlot's zoom: from then on updates keep the user's window, until a
    // double click zooms out again (uPlot's default) and the chart follows the data.
    var downX = null;
    view.u.over.addEventListener("mousedown", function (e) { downX = e.clientX; });
    window.addEventListener("mouseup", function (e) {  // capture: uPlot stops the event later
      if (downX !== null && Math.abs(e.clientX - downX) > 3) view.zoomed = true;
      downX = null;
    }, true);
    view.u.over.addEventListener("dblclick", function () { view.zoomed = false; });
    if (window.ResizeObserver) {
      view.observer = new ResizeObserver(function () {
        if (tile.body.clientWidth) update(view, function (u) { u.setSize({ width: tile.body.clientWidth, height: tile.height }); });
      });
      view.observer.observe(tile.body);
    }
    tile.view = view;
    return view;
  }

  function update(view, change) {
    view.updating = true;
    try { change(view.u); } finally { view.updating = false; }
  }

  function setData(view, data) {
    // Without a zoom the scales follow the data; with one, the user's window stays put.
    update(view, function (u) { u.setData(data, !view.zoomed); });
  }

  function drawSeries(tile, p) {
    var d = p.data;
    var names = d.series.map(function (s) { return s.name; });
    var view = tile.view;
    if (!view || view.kind !== "uplot" || view.names !== names.join("\u0000")) {
      view = makeUplot(tile, names, d.time, p.kind === "area");
    }
    var data = [d.x].concat(d.series.map(function (s) { return s.values; }));
    setData(view, data);
    tile.el.dataset.points = d.x.length;
  }

  // -- Chart.js: bar, pie, doughnut, scatter, and lines over categories ----------------------------
  function drawChartjs(tile, p) {
    var d = p.data;
    var type = p.kind === "area" ? "line" : p.kind;
    var round = type === "pie" || type === "doughnut";
    var datasets = d.series.map(function (s, i) {
      var set = { label: s.name, borderWidth: round ? 1 : 1.5 };
      if (type === "scatter") set.data = s.x.map(function (x, j) { return { x: x, y: s.y[j] }; });
      else set.data = s.values;
      set.backgroundColor = round ? d.labels.map(function (_, j) { return colour(j, "cc"); }) : colour(i, type === "line" ? "33" : "cc");
      set.borderColor = round ? "#fff" : colour(i);
      if (p.kind === "area") set.fill = true;
      return set;
    });
    var view = tile.view;
    if (!view || view.kind !== "chartjs" || view.type !== type) {
      dispose(tile);
      tile.body.innerHTML = "";
      var box = document.createElement("div");
      box.style.position = "relative";
      box.style.height = tile.height + "px";
      var canvas = document.createElement("canvas");
      box.appendChild(canvas);
      tile.body.appendChild(box);
      if (kiosk) Chart.defaults.font.size = kioskPx;
      var options = { animation: false, responsive: true, maintainAspectRatio: false, locale: lang,
        plugins: { legend: { display: round || d.series.length > 1 } } };
      if (!round) {
        options.indexAxis = d.horizontal ? "y" : "x";
        var numbers = { callback: function (v, i, all) {
          return compact(v, all.length > 1 ? Math.abs(all[1].value - all[0].value) : 0);
        } };
        var xNumbers = type === "scatter" || d.horizontal;
        options.scales = { x: { stacked: !!d.stacked, ticks: xNumbers ? numbers : {} },
          y: { stacked: !!d.stacked, beginAtZero: type === "bar", ticks: xNumbers && type !== "scatter" ? {} : numbers } };
      }
      view = tile.view = { kind: "chartjs", type: type,
        chart: new Chart(canvas, { type: type, data: { labels: d.labels || [], datasets: datasets }, options: options }) };
    } else {
      var chart = view.chart;
      chart.data.labels = d.labels || [];
      // Update the existing datasets in place: Chart.js keeps hidden series hidden.
      datasets.forEach(function (set, i) {
        if (chart.data.datasets[i]) Object.assign(chart.data.datasets[i], set);
        else chart.data.datasets.push(set);
      });
      chart.data.datasets.length = datasets.length;
      chart.update("none");
    }
  }

  // -- table: sort by any column, pages, CSV download of the whole table -----------------------------
  function drawTable(tile, d) {
    var view = tile.view;
    if (!view || view.kind !== "table") {
      dispose(tile);
      view = tile.view = { kind: "table", sort: -1, desc: false, page: 0 };
    }
    view.data = d;
    renderTable(tile);
  }

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function renderTable(tile) {
    var view = tile.view, d = view.data;
    var rows = d.rows.slice();
    if (view.sort >= 0) {
      rows.sort(function (r1, r2) { var c = compare(r1[view.sort], r2[view.sort]); return view.desc ? -c : c; });
      if (view.desc) {  // nulls stay last either way
        var filled = rows.filter(function (r) { return r[view.sort] !== null; });
        rows = filled.concat(rows.filter(function (r) { return r[view.sort] === null; }));
      }
    }
    var size = d.page_size || 20;
    var pages = Math.max(1, Math.ceil(rows.length / size));
    view.page = Math.min(view.page, pages - 1);
    var table = document.createElement("table");
    table.className = "striped";
    var head = table.createTHead().insertRow();
    d.columns.forEach(function (name, i) {
      var th = document.createElement("th");
      th.textContent = name;
      th.scope = "col";
      if (i === view.sort) th.setAttribute("aria-sort", view.desc ? "descending" : "ascending");
      th.addEventListener("click", function () {
        if (view.sort === i) view.desc = !view.desc; else { view.sort = i; view.desc = false; }
        renderTable(tile);
      });
      head.appendChild(th);
    });
    var tbody = table.createTBody();
    rows.slice(view.page * size, (view.page + 1) * size).forEach(function (row) {
      var tr = tbody.insertRow();
      row.forEach(function (cell) { tr.insertCell().textContent = cell === null ? "" : cell; });
    });
    var pager = document.createElement("div");
    pager.className = "table-pager";
    function button(label, page, disabled) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "outline secondary";
      b.textContent = label;
      b.disabled = disabled;
      b.addEventListener("click", function () { view.page = page; renderTable(tile); });
      return b;
    }
    pager.appendChild(button(t("‹ Previous"), view.page - 1, view.page === 0));
    var info = document.createElement("span");
    info.className = "page-info";
    var counts = { page: view.page + 1, pages: pages, shown: d.rows.length.toLocaleString(lang) };
    info.textContent = d.total > d.rows.length
      ? tn("page %(page)s of %(pages)s · %(num)d row (first %(shown)s here; CSV has all)",
        "page %(page)s of %(pages)s · %(num)d rows (first %(shown)s here; CSV has all)", d.total, counts)
      : tn("page %(page)s of %(pages)s · %(num)d row", "page %(page)s of %(pages)s · %(num)d rows", d.total, counts);
    pager.appendChild(info);
    pager.appendChild(button(t("Next ›"), view.page + 1, view.page >= pages - 1));
    var wrap = document.createElement("div");
    wrap.className = "tile-table overflow-auto";
    wrap.appendChild(table);
    tile.body.replaceChildren(wrap, pager);
  }

  // -- KPI: the number and its change since the previous refresh ---------------------------------
  var percent = new Intl.NumberFormat(lang, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
  function drawKpi(tile, d) {
    var value = document.createElement("div");
    value.className = "kpi-value";
    value.textContent = d.text;
    var change = document.createElement("div");
    change.className = "kpi-change";
    if (d.change === null || d.change === undefined) {
      change.textContent = t("no previous refresh to compare");
    } else {
      change.className += d.change > 0 ? " up" : d.change < 0 ? " down" : "";
      var values = { change: d.change_text, percent: percent.format(d.change_pct) };
      change.textContent = (d.change > 0 ? "▲ " : d.change < 0 ? "▼ " : "= ") +
        (d.change_pct !== null && d.change_pct !== undefined ? t("%(change)s (%(percent)s) since the previous refresh", values)
          : t("%(change)s since the previous refresh", values));
    }
    tile.body.replaceChildren(value, change);
  }

  // -- streams: points arrive as arrays per series; the chart rolls over its window ---------------
  var streams = {};
  Object.keys(tiles).forEach(function (k) {
    var tile = tiles[k];
    if (tile.kind !== "stream") return;
    var name = tile.el.dataset.source;
    var s = streams[name] || (streams[name] = { t: [], series: {}, names: [], last: 0, tiles: [], window: 0, frame: 0 });
    s.tiles.push(tile);
    s.window = Math.max(s.window, +tile.el.dataset.window || 60);
  });

  function onPoints(f) {
    controlPoints(f);
    var s = streams[f.stream];
    if (!s) return;
    if (s.boot && f.boot && s.boot !== f.boot) {  // the server restarted: its points start again
      s.t = []; s.series = {}; s.names = []; s.last = 0;
    }
    s.boot = f.boot || s.boot;
    if (f.last <= s.last) return;
    var skip = Math.max(0, s.last - f.first + 1);  // points already here (a replay after reconnect)
    Object.keys(f.series).forEach(function (name) {
      if (!s.series[name]) {
        s.series[name] = s.t.map(function () { return null; });
        s.names.push(name);
      }
    });
    for (var i = skip; i < f.t.length; i++) {
      s.t.push(f.t[i]);
      s.names.forEach(function (name) { s.series[name].push(f.series[name] ? f.series[name][i] : null); });
    }
    s.last = f.last;
    var cut = 0, newest = s.t[s.t.length - 1];
    while (cut < s.t.length && s.t[cut] < newest - s.window) cut++;
    if (cut) {
      s.t.splice(0, cut);
      s.names.forEach(function (name) { s.series[name].splice(0, cut); });
    }
    s.error = f.error;
    if (!s.frame) s.frame = window.requestAnimationFrame(function () { s.frame = 0; drawStream(s); });
  }

  function drawStream(s) {
    s.tiles.forEach(function (tile) {
      var view = tile.view;
      if (!view || view.names !== s.names.join("\u0000")) view = makeUplot(tile, s.names, true, false);
      var data = [s.t.slice()].concat(s.names.map(function (n) { return s.series[n].slice(); }));
      setData(view, data);
      tile.el.dataset.last = s.last;
      tile.el.dataset.points = s.t.length;
      var fresh = tile.el.querySelector(".freshness");
      if (s.t.length) fresh.textContent = t("live · last point %(time)s", { time: localTime(new Date(s.t[s.t.length - 1] * 1000).toISOString()) });
      var err = tile.el.querySelector(".tile-error");
      err.hidden = !s.error;
      err.textContent = s.error ? t("The stream's function failed: %(error)s", { error: s.error }) : "";
    });
  }

  // -- controls: press to run the task, show its answer in place; the device's state kept live -----
  var controls = {};
  var confirmDialog = document.getElementById("control-confirm");
  document.querySelectorAll(".control").forEach(function (el) {
    var c = { el: el, name: el.dataset.control, kind: el.dataset.kind, pending: 0, value: null, known: false,
      input: el.querySelector(".control-input"), result: el.querySelector(".control-result"),
      options: el.dataset.options ? JSON.parse(el.dataset.options) : null };
    controls[c.name] = c;
    if (el.dataset.disabled === "true") return;
    wireControl(c);
  });

  function wireControl(c) {
    var el = c.el;
    if (c.kind === "button") {
      el.querySelector(".control-press").addEventListener("click", function () { ask(c, function () { press(c, {}); }); });
    } else if (c.kind === "toggle") {
      c.input.addEventListener("change", function () {
        var wanted = c.input.checked;
        c.input.checked = !wanted;  // shows the device's state until the press is made
        ask(c, function () {
          c.input.checked = wanted;
          c.before = !wanted;  // where to go back to if the press fails and no state says otherwise
          switchText(c);
          press(c, { value: wanted });
        });
      });
    } else if (c.kind === "slider") {
      var output = el.querySelector(".control-output");
      c.input.addEventListener("input", function () { output.textContent = c.input.value; c.dragging = true; });
      // Each arrow key is a change: the keys pressed in a row make one press, of where they ended.
      c.input.addEventListener("keydown", function () { c.keyed = true; });
      c.input.addEventListener("change", function () {
        if (c.settle) window.clearTimeout(c.settle);
        var go = function () {
          c.settle = null;
          c.dragging = false;
          c.keyed = false;
          var wanted = +c.input.value;
          ask(c, function () { press(c, { value: wanted }); }, function () { showState(c); });
        };
        if (c.keyed) c.settle = window.setTimeout(go, 600); else go();
      });
    } else if (c.kind === "number") {
      el.querySelector("form").addEventListener("submit", function (e) {
        e.preventDefault();
        if (c.input.value === "") return;
        var wanted = +c.input.value;
        ask(c, function () { press(c, { value: wanted }); });
      });
      c.input.addEventListener("input", function () { c.editing = true; });
    } else if (c.kind === "select") {
      c.input.addEventListener("change", function () {
        var wanted = c.options[+c.input.value];
        ask(c, function () { press(c, { value: wanted }); }, function () { showState(c); });
      });
    } else if (c.kind === "form") {
      var form = el.querySelector("form");
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        ask(c, function () { press(c, null, new URLSearchParams(new FormData(form))); });
      });
    }
  }

  // A dangerous control asks first, in the page's own dialog.
  function ask(c, go, cancelled) {
    var question = c.el.dataset.confirm;
    if (!question) { go(); return; }
    if (!confirmDialog || !confirmDialog.showModal) { if (window.confirm(question)) go(); else if (cancelled) cancelled(); return; }
    confirmDialog.querySelector(".control-question").textContent = question;
    confirmDialog.querySelector("h3").textContent = t("%(control)s: are you sure?", { control: c.el.querySelector(".tile-title").textContent });
    function answer(e) {
      var button = e.target.closest("[data-answer]");
      if (!button) return;
      finish(button.dataset.answer === "confirm");
    }
    function onCancel(e) { e.preventDefault(); finish(false); }
    function finish(yes) {
      confirmDialog.removeEventListener("click", answer);
      confirmDialog.removeEventListener("cancel", onCancel);
      confirmDialog.close();
      if (yes) go(); else if (cancelled) cancelled();
    }
    confirmDialog.addEventListener("click", answer);
    confirmDialog.addEventListener("cancel", onCancel);
    confirmDialog.showModal();
  }

  function press(c, payload, form) {
    c.pending++;
    c.editing = false;
    c.el.dataset.pressing = "true";
    c.el.querySelector(".control-body").setAttribute("aria-busy", "true");
    // A second click on a button or a form's Run while the first runs would run the task twice.
    c.el.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    say(c, t("running…"), "");
    var headers = { Accept: "application/json" };
    if (window.mieruka && window.mieruka.csrf) headers["X-CSRF-Token"] = window.mieruka.csrf;
    headers["Content-Type"] = form ? "application/x-www-form-urlencoded" : "application/json";
    fetch(root + "/api/dashboards/" + encodeURIComponent(body.dashboard) + "/controls/" + encodeURIComponent(c.name),
      { method: "POST", headers: headers, body: form ? form.toString() : JSON.stringify(payload), credentials: "same-origin" })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) { return { status: r.status, data: data }; });
      })
      .then(function (answer) { done(c, answer.status, answer.data); },
        function (e) { done(c, 0, { error: { message: t("the server could not be reached (%(error)s)", { error: String(e) }) } }); });
  }

  var FINAL = { succeeded: 1, failed: 1, cancelled: 1 };
  // Job states as people read them (as on the jobs pages).
  var STATES = { queued: t("queued"), running: t("running"), succeeded: t("succeeded"), failed: t("failed"),
    cancelled: t("cancelled") };
  function stateName(state) { return STATES[state] || state; }

  // A task still running when the server stopped waiting: follow its job (long polls) to the end.
  function follow(c, data) {
    say(c, t("still %(state)s…", { state: stateName(data.state) }), "", { href: data.url, text: t("job %(id)s", { id: data.job }) });
    fetch(root + "/api/jobs/" + data.job + "?wait=25", { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(t("the server answered %(status)s", { status: r.status })); return r.json(); })
      .then(function (job) {
        var next = { job: job.id, state: job.status, result: job.result, message: job.message, error: job.error,
          message_note: job.message_note, error_note: job.error_note, url: data.url };
        if (!FINAL[job.status]) { follow(c, next); return; }
        refreshState(c);  // the server asked for its read when it stopped waiting: before the task ended
        done(c, 200, next);
      }, function (e) {
        done(c, 0, { error: { message: t("lost track of job %(id)s (%(error)s)", { id: data.job, error: e.message }) } });
      });
  }

  function refreshState(c) {
    var d = c.el.dataset;
    if (!d.stateSource || d.stateStream === "true") return;
    var headers = { Accept: "application/json" };
    if (window.mieruka && window.mieruka.csrf) headers["X-CSRF-Token"] = window.mieruka.csrf;
    fetch(root + "/api/sources/" + encodeURIComponent(d.stateSource) + "/refresh",
      { method: "POST", headers: headers, credentials: "same-origin" }).catch(function () {});
  }

  function done(c, status, data) {
    if (status === 200 && data.state && !FINAL[data.state]) { follow(c, data); return; }
    c.pending--;
    if (!c.pending) {
      delete c.el.dataset.pressing;
      c.el.querySelector(".control-body").removeAttribute("aria-busy");
      c.el.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
    }
    if (status === 401 && window.mieruka && window.mieruka.csrf) {
      window.location.href = root + "/login?next=" + encodeURIComponent(window.location.pathname);
      return;
    }
    c.el.dataset.outcome = status === 200 ? data.state : "refused";
    if (status !== 200) {
      var err = data && data.error ? data.error.message || data.error.code : t("the server answered %(status)s", { status: status });
      say(c, "✗ " + err, "error");
      showState(c);  // the device did not change: show what it is
      return;
    }
    var link = { href: data.url, text: t("job %(id)s", { id: data.job }) };
    if (data.state === "succeeded") {
      var shown = data.result !== null && data.result !== undefined ? brief(data.result)
        : data.message ? said(data.message, data.message_note) : t("done");
      say(c, "✓ " + shown, "ok", link);
    } else if (data.state === "failed" || data.state === "cancelled") {
      say(c, "✗ " + (data.error ? said(data.error, data.error_note).split("\n")[0] : stateName(data.state)), "error", link);
      showState(c);
    }
  }

  function brief(value) {
    var text = typeof value === "string" ? value : JSON.stringify(value);
    return text.length > 160 ? text.slice(0, 157) + "…" : text;
  }

  function say(c, text, tone, link) {
    c.result.className = "control-result" + (tone ? " " + tone : "");
    c.result.textContent = text;
    if (link) {
      var a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      c.result.append(" · ", a);
    }
  }

  function onControlState(p) {
    var c = controls[p.control];
    if (!c || (c.payload && c.payload.boot === p.boot && c.payload.seq >= p.seq)) return;
    c.payload = p;
    var err = c.el.querySelector(".control-state-error");
    if (err) { err.hidden = !p.error; err.textContent = p.error ? t("State: %(error)s", { error: said(p.error, p.error_note) }) : ""; }
    if (p.value === null || p.value === undefined) return;
    setState(c, p.value);
  }

  function controlPoints(f) {
    Object.keys(controls).forEach(function (name) {
      var c = controls[name], d = c.el.dataset;
      if (d.stateStream !== "true" || d.stateSource !== f.stream) return;
      var values = f.series[d.stateColumn];
      if (!values) return;
      for (var i = values.length - 1; i >= 0; i--) {
        if (values[i] !== null && values[i] !== undefined) { setState(c, values[i]); return; }
      }
    });
  }

  function setState(c, value) {
    c.value = value;
    c.known = true;
    c.el.dataset.state = typeof value === "string" ? value : JSON.stringify(value);
    var now = c.el.querySelector(".control-now");
    if (now) {
      var span = document.createElement("span");
      span.className = "control-value";
      span.textContent = c.kind === "toggle" ? (truthy(value) ? t("on") : t("off")) : String(value);
      // The value is an element: the sentence goes around it in the language's order.
      var around = t("now: %(value)s", { value: "\u0000" }).split("\u0000");
      now.replaceChildren(around[0], span, around[1] || "");
    }
    if (!c.pending) showState(c);
  }

  function truthy(value) {
    if (typeof value === "string") return ["", "0", "false", "off", "no"].indexOf(value.trim().toLowerCase()) < 0;
    return !!value;
  }

  // The input shows the device's state, except while the user is choosing.
  function showState(c) {
    if (c.kind === "toggle" && !c.known && c.before !== undefined) { c.input.checked = c.before; switchText(c); }
    if (!c.known || !c.input) return;
    if (c.kind === "toggle") { c.input.checked = truthy(c.value); switchText(c); }
    else if (c.kind === "slider" && !c.dragging) {
      c.input.value = c.value;
      c.el.querySelector(".control-output").textContent = c.value;
    } else if (c.kind === "number" && !c.editing && document.activeElement !== c.input) c.input.value = c.value;
    else if (c.kind === "select" && c.options) {
      var i = c.options.findIndex(function (o) { return o === c.value || String(o) === String(c.value); });
      if (i >= 0) c.input.value = String(i);
    }
  }

  function switchText(c) {
    var text = c.el.querySelector(".control-switch-text");
    if (text) text.textContent = c.input.checked ? t("On") : t("Off");
  }

  // -- polling, where streaming cannot work ------------------------------------------------------------
  function getJSON(url) {
    return fetch(root + url, { headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error(url + ": " + r.status);
      return r.json();
    });
  }

  function poll() {
    if (body.dashboard) {
      getJSON("/api/dashboards/" + encodeURIComponent(body.dashboard)).then(function (d) { d.tiles.forEach(onTile); });
    }
    Object.keys(streams).forEach(function (name) {
      getJSON("/api/streams/" + encodeURIComponent(name) + "/points?after=" + streams[name].last).then(onPoints);
    });
    // Streams that only controls read: their newest point is enough.
    var read = {};
    Object.keys(controls).forEach(function (name) {
      var d = controls[name].el.dataset;
      if (d.stateStream === "true" && !streams[d.stateSource] && !read[d.stateSource]) {
        read[d.stateSource] = 1;
        getJSON("/api/streams/" + encodeURIComponent(d.stateSource) + "/points?limit=1").then(controlPoints);
      }
    });
  }

  var initial = document.getElementById("initial-tiles");
  if (initial) JSON.parse(initial.textContent).forEach(onTile);
  // The browser's one shared event stream (mieruka.js), or polling where streaming cannot work.
  var topic = body.dashboard ? "dashboard:" + body.dashboard : body.stream ? "stream:" + body.stream : null;
  if (topic) window.mieruka.subscribe([topic], { tile: onTile, points: onPoints }, poll);
})();
