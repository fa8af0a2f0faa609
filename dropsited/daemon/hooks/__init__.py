"""Event hooks (`on:` in the manifest, docs/HOOKS.md): what happened to a task or an
agent, run as a command or POSTed to a URL, never holding up dispatch.

- payload.py: the event JSON, its summary line, the DROPSITED_* variables, matching;
- rate.py: the per-hook token bucket (pure, fake-clock tested);
- runner.py: per-hook bounded queues, the small pool, retries, the counters;
- command.py / webhook.py: one run of a command hook / one POST of a URL hook;
- sink.py: `Hooks`, what the daemon and its agent groups call.
"""

from .sink import Hooks

__all__ = ["Hooks"]
