#!/usr/bin/env bash
# word-counter (exec agent): counts the words of context.text.
# The task JSON arrives on stdin; the JSON printed on stdout is the result.
set -euo pipefail
text=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["context"].get("text", ""))')
words=$(printf '%s' "$text" | wc -w | tr -d ' ')
printf '{"words": %d}\n' "$words"
