"""Schedules (docs/MANIFEST.md "schedules"): when to drop, what the last run was, and the
daemon's part. `slots` decides (pure, on an injected clock), `state` remembers
(`.dropsited/schedules.json`), `runner` drops from the daemon's loop."""
