"use strict";

// The process's uptime in words ("3s", "2m"), by the `ms` package.
const ms = require("ms");

exports.uptime = function uptime() {
  return ms(Math.round(process.uptime() * 1000));
};
