// Peer harness: ns per "next fire time" call for croner and cron-parser on the same
// expressions as bench_cron_next (same start, same zones). Prints one JSON line per figure.
//
// usage: node cron_next.mjs NODE_MODULES_DIR [repetitions] [calls]
import { createRequire } from "node:module";
import path from "node:path";

const [modules, repsArg, callsArg] = process.argv.slice(2);
const require = createRequire(path.join(modules, "x.js"));
const versions = {
  croner: require("croner/package.json").version,
  "cron-parser": require("cron-parser/package.json").version,
};
const { Cron } = require("croner");
const { CronExpressionParser } = require("cron-parser");
const reps = Number(repsArg || 5);
const calls = Number(callsArg || 20000);
const start = new Date("2025-01-01T00:00:00Z");

// name, expression (seconds field first when present), zone: as bench/cron_next.cpp.
const cases = [
  ["every_5_minutes", "*/5 * * * *", "UTC"],
  ["9_to_17_weekdays", "0 9-17 * * 1-5", "UTC"],
  ["feb_29_yearly", "0 0 29 2 *", "UTC"],
  ["0230_daily_berlin_dst", "30 2 * * *", "Europe/Berlin"],
  ["last_day_of_month", "0 0 L * *", "UTC"],
  ["seconds_field", "*/10 * * * * *", "UTC"],
  ["crontab_line", "15 3 * * 1-5", "Europe/Berlin"],
];

// croner evaluates zones through Intl when given `timezone` (about 8x slower); its fastest
// path is the process's local zone, so each case runs with TZ set to its zone instead: the
// peer gets its best figure.
const peers = {
  croner(expr, tz) {
    process.env.TZ = tz;
    const job = new Cron(expr);
    let prev = start;
    return () => {
      prev = job.nextRun(prev) ?? start;
    };
  },
  "cron-parser"(expr, tz) {
    let it = CronExpressionParser.parse(expr, { currentDate: start, tz });
    return () => {
      try {
        it.next();
      } catch {
        it = CronExpressionParser.parse(expr, { currentDate: start, tz });
      }
    };
  },
};

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1] };
}

for (const [peer, make] of Object.entries(peers)) {
  let logSum = 0;
  for (const [name, expr, tz] of cases) {
    const runs = [];
    for (let r = 0; r < reps; r++) {
      const step = make(expr, tz);
      for (let i = 0; i < 200; i++) step(); // warm up the JIT
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < calls; i++) step();
      runs.push(Number(process.hrtime.bigint() - t0) / calls);
    }
    const m = median(runs);
    logSum += Math.log(m.median);
    console.log(JSON.stringify({ name: `cron_next_${name}`, peer, unit: "ns", ...m, repetitions: reps, version: versions[peer] }));
  }
  console.log(JSON.stringify({ name: "cron_next_geomean", peer, unit: "ns", median: Math.exp(logSum / cases.length), repetitions: reps }));
}
