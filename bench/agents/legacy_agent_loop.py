"""DropSite 0.1.0's AgentLoop with a no-op handler and its default poll (1.0 s).

    python legacy_agent_loop.py WORKSPACE
"""

import sys

import dropsite


def main() -> None:
    ds = dropsite.DropSite(sys.argv[1])
    dropsite.AgentLoop(ds, "legacy", lambda task: {}).run()


if __name__ == "__main__":
    main()
