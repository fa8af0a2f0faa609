"""Tasks for agents: file-system events on inbox/ turned into hints (inbox_watch.py)."""
