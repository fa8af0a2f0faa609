// shouter (worker agent): one long-lived Node.js process. The daemon writes one task
// per line (JSON) on stdin; we answer each with one JSON line on stdout.
"use strict";
const readline = require("readline");

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  let task;
  try {
    task = JSON.parse(line);
  } catch (err) {
    console.error(`not JSON: ${line.slice(0, 80)}`);
    return;
  }
  const text = String((task.context || {}).text || "");
  const reply = text
    ? { id: task.id, status: "done", result: { shout: text.toUpperCase() + "!" } }
    : { id: task.id, status: "fail", error: "context.text is empty" };
  process.stdout.write(JSON.stringify(reply) + "\n");
});
lines.on("close", () => process.exit(0));
