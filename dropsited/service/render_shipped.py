"""Write (or check) the example service files shipped in the repository.

The files under systemd/, launchd/ and the root ecosystem.config.js are rendered from
the same templates as `dropsited service install`, with placeholder paths, so they
cannot drift from what the installer writes. After changing a template run:

    python -m dropsited.service.render_shipped          # rewrite them
    python -m dropsited.service.render_shipped --check  # exit 1 if any is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .render import SHIPPED, render_shipped_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def stale_files(root: Path) -> list[str]:
    """Shipped files under `root` whose text differs from what the templates render."""
    stale = []
    for relative in SHIPPED:
        path = root / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != render_shipped_file(relative):
            stale.append(relative)
    return stale


def write_all(root: Path) -> list[str]:
    """Render every shipped file under `root`; returns the paths written."""
    for relative in SHIPPED:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_shipped_file(relative), encoding="utf-8")
    return list(SHIPPED)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: rewrite the files, or with --check report the stale ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument("root", nargs="?", type=Path, default=REPO_ROOT)
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.root)
        for relative in stale:
            print(f"stale: {relative} (run python -m dropsited.service.render_shipped)")
        return 1 if stale else 0
    for relative in write_all(args.root):
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
