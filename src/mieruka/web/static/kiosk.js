// The kiosk layout (wall screens): a clock, when the tiles last changed, and going dark when the
// display link stops working. On the display link's landing page (/display#<secret>): trade the
// secret, read from the URL's fragment (never sent to any server), for the display's cookie.
(function () {
  "use strict";
  var root = document.body.dataset.root || "";
  var zone = document.body.dataset.timezone || undefined;
  // Text people read goes through static/i18n.js (the page's language); without it, English.
  var i18n = window.mieruka_i18n || { lang: "en", t: function (message, values) {
    return message.replace(/%\((\w+)\)[sd]/g, function (all, key) { return values && key in values ? values[key] : all; });
  } };
  function t(message, values) { return i18n.t(message, values); }
  var lang = i18n.lang || "en";

  function time(date, seconds) {
    var options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (seconds) options.second = "2-digit";
    try {
      return date.toLocaleTimeString(lang, Object.assign({ timeZone: zone }, options));
    } catch (e) {
      return date.toLocaleTimeString(lang, options);  // a zone this browser does not know
    }
  }

  var landing = document.getElementById("display-landing");
  if (landing) {
    var secret = decodeURIComponent(window.location.hash.slice(1));
    if (secret) history.replaceState(null, "", window.location.pathname);  // out of the address bar
    fetch(root + "/display", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ secret: secret }),
    }).then(function (r) {
      return r.json().then(function (body) {
        if (r.ok) { window.location.replace(body.url); return; }
        var message = document.getElementById("display-message");
        message.textContent = (body.error && body.error.message) || t("This display link does not work.");
      });
    }).catch(function () {
      document.getElementById("display-message").textContent = t("The server did not answer; retrying…");
      window.setTimeout(function () { window.location.reload(); }, 10000);
    });
    return;
  }

  var clock = document.getElementById("kiosk-clock");
  function tick() { if (clock) clock.textContent = time(new Date(), false); }
  tick();
  window.setInterval(tick, 1000);

  var updated = document.getElementById("kiosk-updated");
  var tiles = document.querySelector(".tiles");
  if (tiles && updated && window.MutationObserver) {
    var last = 0;
    new MutationObserver(function () {
      var now = Date.now();
      if (now - last < 1000) return;
      last = now;
      updated.textContent = t("updated %(time)s", { time: time(new Date(now), true) });
    }).observe(tiles, { childList: true, subtree: true, characterData: true, attributes: true });
  }

  // A wall screen stays awake (where the browser allows it), hides the pointer when it rests, and
  // goes full screen on a double click (or run the browser in kiosk mode: chromium --kiosk URL).
  function stayAwake() {
    if (navigator.wakeLock && document.visibilityState === "visible") {
      navigator.wakeLock.request("screen").catch(function () {});
    }
  }
  stayAwake();
  document.addEventListener("visibilitychange", stayAwake);
  var resting;
  function moved() {
    document.body.classList.remove("pointer-resting");
    window.clearTimeout(resting);
    resting = window.setTimeout(function () { document.body.classList.add("pointer-resting"); }, 3000);
  }
  moved();
  document.addEventListener("mousemove", moved);
  document.addEventListener("dblclick", function () {
    if (!document.fullscreenElement && document.documentElement.requestFullscreen) {
      document.documentElement.requestFullscreen().catch(function () {});
    } else if (document.exitFullscreen) {
      document.exitFullscreen().catch(function () {});
    }
  });

  // The stream ends when the display link is revoked: then see whether the page may still be read,
  // and if not, show why on the landing page.
  var note = document.getElementById("live-note");
  if (note && window.MutationObserver) {
    var checking = false;
    new MutationObserver(function () {
      if (checking || note.hidden) return;
      checking = true;
      fetch(window.location.href, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 401) window.location.replace(document.body.dataset.display ? root + "/display" : window.location.href);
        })
        .catch(function () {})
        .then(function () { window.setTimeout(function () { checking = false; }, 5000); });
    }).observe(note, { childList: true, characterData: true, subtree: true, attributes: true });
  }
})();
