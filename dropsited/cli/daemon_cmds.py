"""Verbs around the daemon: up, status, logs."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from ..protocol import DropSite, DropSiteError
from ..protocol.holder import this_host
from .common import emit_json, fail, handle_errors, table, visible

DEFAULT_MANIFEST = "agents.yaml"
EXIT_NOT_RUNNING = 3  # as `systemctl status` and LSB init scripts


def register(group: click.Group) -> None:
    group.add_command(up)
    group.add_command(status)
    group.add_command(logs)


def _load(config: Path, workspace: Path | None):
    from ..daemon.manifest import ManifestError, load_manifest
    try:
        return load_manifest(config, workspace_override=workspace)
    except ManifestError as exc:
        for line in exc.errors:
            click.echo(line, err=True)
        sys.exit(2)


@click.command()
@click.option("-c", "--config", type=click.Path(path_type=Path), default=DEFAULT_MANIFEST,
              show_default=True, help="The agents manifest (YAML).")
@click.option("-w", "--workspace", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Overrides the manifest's workspace; created if missing.")
@click.option("--poll", type=float, default=None, metavar="SECONDS",
              help="Rescan inbox/ every SECONDS instead of using file-system events "
                   "(for network file systems).")
@click.option("--grace", type=float, default=None, metavar="SECONDS",
              help="On SIGTERM, how long running tasks may finish (default 30).")
@click.option("--retry-base", type=float, default=None, metavar="SECONDS",
              help="Backoff base before a failed task runs again (default 1; doubles per attempt).")
@click.option("--corrupt-grace", type=float, default=None, metavar="SECONDS",
              help="How long an unreadable inbox/ file may stay before it is quarantined "
                   "(default 30; a slow writer gets this long to finish).")
@click.option("--lease", type=click.FloatRange(3, 3600), default=None, metavar="SECONDS",
              help="On a shared file system: how long another host waits before it takes "
                   "this host's claims once this daemon stops renewing (default 20).")
@click.option("--metrics", "metrics", default=None, metavar="[HOST:]PORT",
              help="Also serve Prometheus metrics over HTTP (127.0.0.1 unless HOST is "
                   "given; needs the extra: pip install 'dropsited[metrics]'). "
                   ".dropsited/metrics.prom is written in any case.")
@click.option("--fast", is_flag=True, help="Skip fsync (durable=False): faster, less safe at power loss.")
@click.option("--demo", is_flag=True, help="Drop a few demo tasks once the agents are up.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def up(config: Path, workspace: Path | None, poll: float | None, grace: float | None,
       retry_base: float | None, corrupt_grace: float | None, lease: float | None,
       metrics: str | None, fast: bool, demo: bool, log_level: str) -> None:
    """Run the agents of a manifest and dispatch tasks to them, in the foreground.

    SIGTERM/SIGINT drain (a second one stops at once), SIGHUP reloads the manifest.

    \b
    Example:
      dropsited up -c agents.yaml
      dropsited up -c agents.yaml -w /srv/workspace --poll 2
      dropsited up -c agents.yaml --metrics 127.0.0.1:9108
    """
    from ..daemon.daemon import Daemon
    from ..service.defaults import DEFAULT_DRAIN_GRACE

    if metrics is not None:
        _check_metrics(metrics)
    manifest = _load(config, workspace)
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(),
                        format="%(asctime)s dropsited[%(process)d] %(levelname)s %(message)s")
    try:
        daemon = Daemon(manifest, poll=poll,
                        grace=DEFAULT_DRAIN_GRACE if grace is None else grace,
                        durable=not fast, workspace_override=workspace, retry_base=retry_base,
                        corrupt_grace=corrupt_grace, metrics=metrics,
                        **({"lease": lease} if lease else {}))
    except (DropSiteError, OSError) as exc:  # a read-only or unsafe workspace: one line
        text = str(exc) if isinstance(exc, DropSiteError) else \
            f"{exc.filename or manifest.workspace}: {exc.strerror or exc}"
        fail(text, 1)
    if demo:
        from ..demo import schedule_demo
        schedule_demo(daemon)
    sys.exit(daemon.run())


def _check_metrics(address: str) -> None:
    """`--metrics`: a usable address, and the extra that serves it (one line if not)."""
    import importlib.util

    from ..daemon.metrics_export import EXTRA_HINT, parse_address
    try:
        parse_address(address)
    except ValueError as exc:
        fail(str(exc), 2)
    if importlib.util.find_spec("prometheus_client") is None:
        fail(f"--metrics needs the optional extra 'metrics' (prometheus_client): {EXTRA_HINT}", 2)


def _resolve_workspace(workspace: Path | None, config: Path | None) -> Path:
    """WORKSPACE argument, else the manifest's, else $DROPSITE_WORKSPACE, else ./agents.yaml's."""
    if workspace is not None:
        return workspace
    if config is None and os.environ.get("DROPSITE_WORKSPACE"):
        return Path(os.environ["DROPSITE_WORKSPACE"])
    path = config or Path(DEFAULT_MANIFEST)
    if not path.exists():
        fail(f"no workspace given and no manifest at {path}; pass WORKSPACE or -c FILE")
    return _load(path, None).workspace


@click.command()
@click.argument("workspace", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-c", "--config", type=click.Path(path_type=Path), default=None,
              help="Find the workspace through this manifest.")
@click.option("-w", "--workspace", "workspace_opt", default=None,
              type=click.Path(file_okay=False, path_type=Path), help="Same as WORKSPACE.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@handle_errors
def status(workspace: Path | None, config: Path | None, workspace_opt: Path | None,
           as_json: bool) -> None:
    """Show the daemon, its agents and the queue depths. Exit 3 when no daemon runs.

    \b
    Example:
      dropsited status ./workspace
      dropsited status -c agents.yaml --json
    """
    from ..daemon.status import daemon_running, read_daemon_record

    ws = _resolve_workspace(workspace or workspace_opt, config)
    ds = DropSite(ws, create=False)
    hosts = _live_hosts(ds)
    here = daemon_running(ws, ds.store.shared)
    record = {} if ds.store.shared else (read_daemon_record(ws) or {})
    if not record and hosts:
        record = next((h.data for h in hosts if h.host == this_host()), hosts[0].data)
    running = here or bool(hosts)
    wanted = {(h.host, name) for h in hosts for name in h.data.get("agents", [])}
    agents = [a for a in ds.list_agents()
              if a.get("name") in set(record.get("agents", [])) and not hosts
              or (a.get("host"), a.get("name")) in wanted]
    queues = ds.stats()
    queues["quarantine"] = len(ds.quarantined())
    if as_json:
        emit_json({"running": running, "daemon": record if running else None,
                   "hosts": [_host_row(h) for h in hosts], "agents": agents, "queues": queues})
    else:
        _print_status(ws, running, record, agents, queues, hosts)
    if not running:
        sys.exit(EXIT_NOT_RUNNING)


def _live_hosts(ds: DropSite) -> list:
    """Hosts whose lease is fresh, ages in the file server's time (the client's clock
    when this user may not write the probe file)."""
    import time

    try:
        view = ds.hosts.view()
    except (DropSiteError, OSError):
        view = ds.hosts.view(now=time.time())
    return sorted((r for r in view.records.values() if not r.expired), key=lambda r: r.host)


def _host_row(record) -> dict:
    data = record.data
    return {"host": record.host, "pid": record.pid, "state": data.get("state"),
            "lease_age": round(record.age, 1), "lease": record.lease,
            "agents": data.get("agents", []), "started_at": data.get("started_at")}


def _print_status(ws: Path, running: bool, record: dict, agents: list, queues: dict,
                  hosts: list) -> None:
    if hosts:
        click.echo(f"{len(hosts)} host(s) serve {ws}:")
        rows = ([h.host, h.pid, h.data.get("state", "?"), f"{h.age:.1f}s / {h.lease:g}s",
                 ",".join(h.data.get("agents", [])) or "-"] for h in hosts)
        click.echo(table(rows, ("host", "pid", "state", "lease age", "agents")))
    elif running:
        click.echo(visible(f"dropsited pid {record.get('pid')} on {ws}: {record.get('state', '?')}"
                           f" (since {record.get('started_at', '?')})"))
    else:
        click.echo(f"no dropsited is running on {ws}")
    if running and agents:
        rows = ([a.get("name"), a.get("host", "-") if hosts else a.get("mode", "-"),
                 _state_text(a),
                 ",".join(str(p) for p in a.get("pids", [])) or "-", a.get("restarts", 0),
                 a.get("tasks_done", 0), a.get("tasks_failed", 0),
                 ",".join(t[:8] for t in a.get("running", [])) or "-",
                 (a.get("last_error") or "-")[:50]] for a in agents)
        click.echo(table(rows, ("agent", "host" if hosts else "mode", "state", "pids",
                                "restarts", "done", "failed", "running", "last error")))
    click.echo("queues: " + visible("  ".join(f"{k} {v}" for k, v in queues.items())))
    hooks = record.get("hooks") if running else None
    if isinstance(hooks, dict):
        _print_hooks(hooks)


def _print_hooks(hooks: dict) -> None:
    """One line of totals, then one per hook that failed, dropped or was rate-limited."""
    keys = ("ok", "failed", "timed_out", "retries", "dropped", "rate_limited", "queued")
    click.echo("hooks: " + "  ".join(f"{k.replace('_', ' ')} {hooks.get(k, 0)}" for k in keys))
    per_hook = hooks.get("hooks") if isinstance(hooks.get("hooks"), dict) else {}
    for name, stats in per_hook.items():
        if isinstance(stats, dict) and any(stats.get(k) for k in keys[1:6]):
            counts = "  ".join(f"{k.replace('_', ' ')} {stats.get(k, 0)}" for k in keys[1:6])
            error = str(stats.get("last_error") or "")[:80]
            click.echo(visible(f"  {name}: {counts}" + (f"  last error: {error}" if error else "")))


def _state_text(record: dict) -> str:
    """The agent's state, and who stopped it if it was stopped by request."""
    stopped_by = record.get("stopped_by")
    state = str(record.get("state", "-"))
    if isinstance(stopped_by, dict):
        return f"{state} (by {stopped_by.get('user', '?')})"
    return state


@click.command()
@click.argument("agent")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the log grows.")
@click.option("-n", "--lines", type=int, default=50, show_default=True)
@click.option("-c", "--config", type=click.Path(path_type=Path), default=None)
@click.option("-w", "--workspace", type=click.Path(file_okay=False, path_type=Path), default=None)
@handle_errors
def logs(agent: str, follow: bool, lines: int, config: Path | None, workspace: Path | None) -> None:
    """Print an agent's log (its stdout/stderr, rotated by size).

    \b
    Example:
      dropsited logs coder -n 100
      dropsited logs coder -f -c agents.yaml
    """
    from ..daemon.agents import agent_log

    path = _log_path(agent, config, workspace, agent_log.log_path)
    if not path.exists() and not follow:
        fail(f"{path}: no log yet for agent {agent!r}", 1)
    out = sys.stdout.buffer
    for line in agent_log.tail(path, lines):
        out.write(line)
    out.flush()
    if follow:
        try:
            for chunk in agent_log.follow(path, from_end=True):
                out.write(chunk)
                out.flush()
        except KeyboardInterrupt:
            pass


def _log_path(agent: str, config: Path | None, workspace: Path | None, log_path) -> Path:
    """The manifest's choice for this agent if a manifest is at hand, else the default
    (per host on a file system other hosts may share)."""
    from ..protocol.mounts import on_network
    from ..protocol.names import check_agent_name
    check_agent_name(agent)
    if workspace is None and (config is not None or Path(DEFAULT_MANIFEST).exists()):
        manifest = _load(config or Path(DEFAULT_MANIFEST), None)
        spec = manifest.agent(agent)
        if spec is None:
            fail(f"no agent {agent!r} in {manifest.path}")
        return log_path(manifest.workspace, agent, spec.log.file, on_network(manifest.workspace))
    ws = workspace or Path(os.environ.get("DROPSITE_WORKSPACE", "."))
    return log_path(ws, agent, None, on_network(ws))
