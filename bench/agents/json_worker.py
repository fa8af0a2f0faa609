"""worker-mode agent for the benchmark: one task JSON per line in, one reply line out."""

import json
import sys


def main() -> None:
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        task = json.loads(line)
        out.write(json.dumps({"id": task.get("id"), "status": "done", "result": {}}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
