// worker-mode agent for the benchmark (Node.js): one task JSON per line in, one reply line out.
const readline = require("readline");
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const task = JSON.parse(line);
  process.stdout.write(JSON.stringify({ id: task.id, status: "done", result: {} }) + "\n");
});
