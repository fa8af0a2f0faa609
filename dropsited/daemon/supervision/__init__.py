"""Keeping one agent process running: the states it can be in (states.py), what to do
after it exits (restart_policy.py, pure), the process the daemon keeps up (supervised.py)
and the child process with everything it spawns (child.py)."""
