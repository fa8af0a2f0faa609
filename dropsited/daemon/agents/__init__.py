"""The three kinds of agents (exec_agent.py, worker_agent.py, service_agent.py) and what
they share: the interface the loop calls (agent_group.py), the daemon's set of groups
(roster.py), their environment and logs, the agent contract (outcome.py, pure) and the
recording of an outcome (settle.py)."""
