// Starts Swagger UI (/docs) or ReDoc (/redoc) from the page's data attributes: a file, not an
// inline script, so the pages work under the Content-Security-Policy (script-src 'self').
(function () {
  "use strict";
  var data = document.body.dataset;
  var csrf = document.querySelector('meta[name="csrf-token"]');
  if (data.docs === "swagger") {
    window.SwaggerUIBundle({
      url: data.openapi,
      dom_id: "#swagger-ui",
      layout: "BaseLayout",
      deepLinking: true,
      validatorUrl: null,  // no badge from the public validator: pages never reach outside the server
      presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
      // "Try it out" with the browser's session: state-changing calls carry the CSRF token.
      requestInterceptor: function (request) {
        if (csrf && csrf.content) request.headers["X-CSRF-Token"] = csrf.content;
        return request;
      },
    });
  } else if (data.docs === "redoc") {
    window.Redoc.init(data.openapi, {}, document.getElementById("redoc"));
  }
})();
