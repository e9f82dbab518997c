// Minified into dist/app.js by `npm run build`; this comment is not shipped.
"use strict";

function greet(element, when) {
  const hour = when.getHours();
  const part = hour < 12 ? "morning" : hour < 18 ? "afternoon" : "evening";
  element.textContent = "Good " + part + ", from a multi-stage build.";
}

greet(document.getElementById("greeting"), new Date());
