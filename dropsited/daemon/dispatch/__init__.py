"""Tasks for agents: inbox events turned into hints (inbox_watch.py), the claim rounds
of a loop turn (dispatcher.py), and the timed upkeep that keeps the queue moving
(upkeep.py: reaping, releasing, temp files)."""
