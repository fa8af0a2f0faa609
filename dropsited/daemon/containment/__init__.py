"""No agent process outlives its agent or the daemon: the daemon adopts orphans
(subreaper.py), a small watcher kills the agents if the daemon dies (death_watch.py), and
process scans find escapees and a previous daemon's agents (process_tree.py)."""
