#!/usr/bin/env bash
# An exec agent in bash: the task JSON arrives on stdin, the result is what we print.
# Exit 0 = done, exit 75 = try again later, anything else = a failed attempt.
set -euo pipefail
task=$(cat)
text=$(printf '%s' "$task" | python3 -c 'import json,sys; t=json.load(sys.stdin); print(t["context"].get("text", t["title"]))')
words=$(printf '%s' "$text" | wc -w | tr -d ' ')
printf '{"words": %s, "agent": "%s"}\n' "$words" "$DROPSITE_AGENT"
