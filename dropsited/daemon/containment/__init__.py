"""No agent process outlives its agent or the daemon. containment.py is the one object
the loop talks to (start, on_sigchld, tick, shutdown); underneath, the daemon adopts orphans
(subreaper.py), a small watcher kills the agents if the daemon dies (death_watch.py), and
process scans find escapees and a previous daemon's agents (process_tree.py)."""
