// A worker agent in Node.js: one task per line on stdin, one reply per line on stdout.
const readline = require("readline");
const rl = readline.createInterface({ input: process.stdin });

rl.on("line", (line) => {
  const task = JSON.parse(line);
  const text = (task.context && task.context.text) || task.title;
  const reply = { id: task.id, status: "done", result: { shouted: text.toUpperCase() } };
  process.stdout.write(JSON.stringify(reply) + "\n");
});
