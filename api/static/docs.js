// Starts Swagger UI on the API's own document. Kept out of docs.html so that the page's
// Content-Security-Policy can forbid inline scripts.
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  if (typeof window.SwaggerUIBundle !== "function") {
    // scripts/setup could not vendor it (no npm): say so rather than show a blank page.
    root.innerHTML =
      "<p>The docs viewer is not installed: run <code>scripts/setup</code>. " +
      'The API document itself is at <a href="openapi.json">openapi.json</a>.</p>';
    return;
  }
  window.ui = window.SwaggerUIBundle({
    url: "openapi.json", // relative, so the page also works behind a path prefix
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // the default sends the document to validator.swagger.io
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
