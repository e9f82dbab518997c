// A small HTTP service: `npm run build` minifies it into dist/ (uglify-js, a dev dependency
// needed only at build time); at run time it needs only `ms`, its one production dependency.
"use strict";

const http = require("node:http");
const { uptime } = require("./uptime");

const port = Number(process.env.PORT || 3000);

const server = http.createServer((request, response) => {
  if (request.url === "/healthz") {
    response.writeHead(200, { "content-type": "text/plain" });
    response.end("ok\n");
    return;
  }
  const body = {
    message: "hello from node-production",
    node: process.version,
    env: process.env.NODE_ENV || "development",
    uptime: uptime(),
  };
  response.writeHead(200, { "content-type": "application/json" });
  response.end(JSON.stringify(body) + "\n");
});

server.listen(port, () => {
  console.log(`node-production listening on :${port}`);
});

// `docker stop` sends SIGTERM; node as PID 1 ignores it unless handled.
process.on("SIGTERM", () => server.close(() => process.exit(0)));
