#!/usr/bin/env bash
# writer (exec agent): turns the researcher's findings into article.md in the task's
# output_dir. Same text as pipeline.py's writer, so both pipelines give the same file.
set -euo pipefail

task=$(cat)
field() {
  printf '%s' "$task" | python3 -c 'import json, sys
value = json.load(sys.stdin)["context"][sys.argv[1]]
print("\n".join(value) if isinstance(value, list) else value)' "$1"
}

topic=$(field topic)
output_dir=$(field output_dir)
mapfile -t findings < <(field findings)

mkdir -p "$output_dir"
article="$output_dir/article.md"
{
  printf '# %s\n\n## Findings\n\n' "${topic^}"
  printf -- '- %s\n' "${findings[@]}"
  printf '\n_%d findings, researched by researcher, written by writer._\n' "${#findings[@]}"
} > "$article.tmp"
mv "$article.tmp" "$article"   # readers never see half an article

python3 -c 'import json, sys; print(json.dumps({"article": sys.argv[1]}))' "$article"
