#!/usr/bin/env bash
# researcher (exec agent): looks the task's topic up in knowledge.txt, then chains a
# "write" task to the writer with the findings. The task JSON arrives on stdin;
# stdout (a JSON object) becomes the task's result; a non-zero exit fails the attempt.
set -euo pipefail

task=$(cat)
# One field of the task's context (lists come out one item per line).
field() {
  printf '%s' "$task" | python3 -c 'import json, sys
value = json.load(sys.stdin)["context"][sys.argv[1]]
print("\n".join(value) if isinstance(value, list) else value)' "$1"
}

topic=$(field topic)
output_dir=$(field output_dir)

findings=()
while IFS= read -r line; do
  key=${line%%:*}
  if [[ "${key,,}" == "${topic,,}" ]]; then
    findings+=("${line#*: }")
  fi
done < knowledge.txt

if [[ ${#findings[@]} -eq 0 ]]; then
  echo "no notes on '$topic' in knowledge.txt" >&2
  exit 1
fi

payload=$(python3 -c 'import json, sys
print(json.dumps({"topic": sys.argv[1], "output_dir": sys.argv[2], "findings": sys.argv[3:]}))' \
  "$topic" "$output_dir" "${findings[@]}")

# Chain: the writer's task names this one as its parent, so `dropsited show` draws the chain.
writer_task=$(dropsited drop "$DROPSITE_WORKSPACE" --from researcher --to writer \
  --title "Write article: $topic" --type writing --parent "$DROPSITE_TASK_ID" \
  --payload "$payload" -q)

python3 -c 'import json, sys
print(json.dumps({"findings": sys.argv[2:], "writer_task": sys.argv[1]}))' \
  "$writer_task" "${findings[@]}"
