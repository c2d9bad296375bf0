// Peer harness: croner's jobs per second for N one-off jobs due at the same instant, the
// same figure as bench_dispatch. The jobs are created first (not timed), all due at T; the
// rate is N over the time from T to the last job's run.
//
// usage: node dispatch.mjs NODE_MODULES_DIR [repetitions] [n]
import { createRequire } from "node:module";
import path from "node:path";

const [modules, repsArg, nArg] = process.argv.slice(2);
const require = createRequire(path.join(modules, "x.js"));
const versions = {
  croner: require("croner/package.json").version,
  "cron-parser": require("cron-parser/package.json").version,
};
const { Cron } = require("croner");
const reps = Number(repsArg || 3);
const small = Number(nArg || 10000);

// croner never fires a date that has passed when the job is created: creating the jobs must
// end before they are due. `margin` scales the estimate of the creation time; a run whose
// creation overran is repeated with a larger margin (it would never resolve otherwise).
function once(n, margin = 3) {
  return new Promise((resolve) => {
    let done = 0;
    const createStart = Date.now();
    // The creation cost per job is measured first on jobs far in the future (stopped again).
    const probe = [];
    const p0 = performance.now();
    for (let i = 0; i < 2000; i++) probe.push(new Cron(new Date(createStart + 3600e3), { maxRuns: 1 }, () => {}));
    const perJob = (performance.now() - p0) / 2000;
    for (const j of probe) j.stop();
    const due = new Date(Date.now() + 500 + margin * perJob * n);
    const jobs = [];
    for (let i = 0; i < n; i++)
      jobs.push(new Cron(due, { maxRuns: 1 }, () => {
        if (++done === n) resolve(n / ((performance.timeOrigin + performance.now() - due.getTime()) / 1000));
      }));
    if (Date.now() >= due.getTime()) {
      for (const j of jobs) j.stop();
      resolve(once(n, margin * 2));
    }
  });
}

function stat(v) {
  const s = [...v].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1] };
}

for (const n of [small, small * 10]) {
  const runs = [];
  for (let r = 0; r < reps; r++) runs.push(await once(n));
  const label = n % 1000 ? String(n) : `${n / 1000}k`;
  console.log(JSON.stringify({ name: `dispatch_coroutine_${label}`, peer: "croner", unit: "jobs/s", ...stat(runs), repetitions: reps, version: versions.croner }));
}
