// window.mieruka_i18n: the page's language (<html lang>) and the translations of our scripts'
// messages, which the page embeds as JSON (no inline script: the Content-Security-Policy allows
// none). English pages embed nothing and get the messages as written. Loaded before our scripts.
(function () {
  "use strict";
  var lang = document.documentElement.lang || "en";
  var messages = null;

  // Read on first use, so the JSON may come anywhere in the page (the scripts are deferred).
  function catalog() {
    if (messages) return messages;
    messages = {};
    var nodes = document.querySelectorAll("script#mieruka-messages, script.mieruka-messages");
    for (var i = 0; i < nodes.length; i++) {
      try { Object.assign(messages, JSON.parse(nodes[i].textContent || "{}")); } catch (e) { /* none */ }
    }
    return messages;
  }

  // Python's named placeholders, as in the catalogs: %(name)s, %(n)d; %% is a percent sign.
  function format(text, values) {
    if (!values) return text;
    return text.replace(/%%|%\(([A-Za-z_][A-Za-z0-9_]*)\)[sdif]/g, function (whole, name) {
      if (whole === "%%") return "%";
      return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
    });
  }

  var rules = null;
  function category(n) {
    try {
      rules = rules || new Intl.PluralRules(lang);
      return rules.select(n);
    } catch (e) {
      return n === 1 ? "one" : "other";
    }
  }

  function t(message, values) {
    var text = catalog()[message];
    return format(typeof text === "string" ? text : message, values);
  }

  function tn(singular, plural, n, values) {
    var forms = catalog()[singular];
    var text = null;
    if (forms && typeof forms === "object") text = forms[category(n)] || forms.other || null;
    if (text === null) text = n === 1 ? singular : plural;
    return format(text, Object.assign({ num: n }, values || {}));
  }

  // A text mieruka wrote itself, as the JSON gives it: `text` in English and `note` beside it
  // ({code, text, values}: mieruka/notes.py), whose English text the catalog translates; the page
  // embeds those of notes.py. Any other text (an author's message) as it is.
  var numbers = null, lists = null;
  function shown(value) {
    if (Array.isArray(value)) {
      var items = value.map(shown);
      try {
        lists = lists || new Intl.ListFormat(lang);
        return lists.format(items);
      } catch (e) {
        return items.join(", ");
      }
    }
    if (value && typeof value === "object") return said("", value);
    if (typeof value === "number" && !Number.isInteger(value)) {
      try {
        numbers = numbers || new Intl.NumberFormat(lang, { maximumFractionDigits: 3 });
        return numbers.format(value);
      } catch (e) {
        return String(value);
      }
    }
    return String(value);
  }

  function said(text, note) {
    var english = text === null || text === undefined ? "" : String(text);
    if (!note || typeof note.text !== "string" || /^en\b/i.test(lang)) return english;
    var values = {};
    Object.keys(note.values || {}).forEach(function (key) { values[key] = shown(note.values[key]); });
    return t(note.text, values);
  }

  window.mieruka_i18n = { lang: lang, t: t, tn: tn, said: said };
})();

// The header's language switcher (base.html): picking a language sends its form.
document.addEventListener("change", function (event) {
  var select = event.target;
  if (select && select.matches && select.matches("form.language-switch select")) select.form.submit();
});
