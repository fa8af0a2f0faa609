"""`dropsited up`: the daemon that runs agents from a manifest and hands them tasks.

- daemon.py: the loop, which only decides when (events.py: what threads tell it);
- manifest/: the agents.yaml schema, read with line numbers;
- agents/: exec, worker and service agents, the agent contract (outcome.py) and where
  an outcome sends a task (settle.py);
- supervision/: agent states, the restart policy (pure), one supervised process;
- containment/: no agent process outlives its agent or the daemon;
- dispatch/: inbox events, claim rounds, the queue's timed upkeep;
- status.py (what is published), reload.py (what a SIGHUP changes), host_lease.py
  (this host's lease on a shared file system).
"""
