"""bench/peers.py: its statistics, tables and Redis protocol helpers as pure functions,
and one small real run of the rows that need no peers (no timing is asserted anywhere:
the machine is shared and the figures are noise at this size)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import peers  # noqa: E402


def test_summarize_gives_median_min_max() -> None:
    assert peers.summarize([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)
    assert peers.summarize([5.0]) == (5.0, 5.0, 5.0)
    with pytest.raises(ValueError):
        peers.summarize([])


def test_rate_cells_show_min_max_only_for_several_rounds() -> None:
    assert peers.fmt_rate([1234.4]) == "1,234"
    assert peers.fmt_rate([1000.0, 1300.0, 1100.0]) == "1,100 (1,000-1,300)"
    assert peers.fmt_ratio(50.0, 100.0) == "0.50x"
    assert peers.fmt_ratio(50.0, None) == "-"


def test_drain_rates() -> None:
    drain = peers.Drain(n=101, start=10.0, first=11.0, last=12.0)
    assert drain.rate == pytest.approx(101 / 2.0)
    assert drain.startup == pytest.approx(1.0)
    assert drain.steady == pytest.approx(100 / 1.0)


def test_throughput_table_ratios_are_against_dropsited_of_the_same_mode() -> None:
    rates = {
        (100, 2, "dropsited-exec", "fast"): [100.0, 200.0, 300.0],
        (100, 2, "dropsited-exec", "durable"): [50.0],
        (100, 2, "rq-worker", "fast"): [100.0],
        (100, 2, "rq-worker", "durable"): [100.0],
        (100, 2, "xargs", "-"): [400.0],
    }
    table = peers.throughput_table(rates, "exec", 100, [2, 4])
    lines = table.splitlines()
    assert lines[0].startswith("| system | mode | C=2")
    assert "| dropsited exec (bash agent) | fast | 200 (100-300) | 1.00x | - | - |" in lines
    assert "| RQ Worker (fork per job) | fast | 100 | 0.50x | - | - |" in lines
    assert "| RQ Worker (fork per job) | durable | 100 | 2.00x | - | - |" in lines
    assert "| xargs -P C (bash agent) | - | 400 | 2.00x | - | - |" in lines
    # rows never measured are left out rather than printed empty
    assert "Celery" not in peers.throughput_table(rates, "worker", 100, [2])


def test_latency_table_uses_nearest_rank_percentiles() -> None:
    table = peers.latency_table([("x", "fast", [0.001 * i for i in range(1, 101)])])
    assert "| x | fast | 100 | 51.0 | 99.0 |" in table


def test_resp_encoding_and_replies() -> None:
    assert peers.encode_command(["SET", "k", 1]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"
    stream = io.BytesIO(b"+PONG\r\n:42\r\n$3\r\nfoo\r\n$-1\r\n*2\r\n$1\r\na\r\n:1\r\n")
    assert peers.read_reply(stream) == "PONG"
    assert peers.read_reply(stream) == 42
    assert peers.read_reply(stream) == b"foo"
    assert peers.read_reply(stream) is None
    assert peers.read_reply(stream) == [b"a", 1]
    with pytest.raises(peers.RedisError, match="ERR wrong"):
        peers.read_reply(io.BytesIO(b"-ERR wrong\r\n"))
    with pytest.raises(peers.RedisError, match="closed"):
        peers.read_reply(io.BytesIO(b""))


def test_quick_plan_and_unknown_systems() -> None:
    _, plan = peers.parse_args(["--quick"])
    assert (plan.ns, plan.repeat, plan.latency_n, plan.levels) == ([500], 1, 30, [2, 4])
    _, plan = peers.parse_args([])
    assert (plan.ns, plan.repeat, plan.latency_n) == ([2000, 10000], 3, 200)
    with pytest.raises(SystemExit):
        peers.parse_args(["--systems", "dropsited-exec,beanstalk"])


def test_smoke_run_without_peers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The rows that need neither the peers' venv nor Redis, end to end on 20 tasks."""
    code = peers.main(["--systems", "dropsited-worker,xargs", "--n", "20", "--levels", "2",
                       "--repeat", "1", "--latency-n", "3", "--latency-budget", "1",
                       "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "| dropsited worker (Python) | fast |" in out
    assert "| dropsited worker (Python) | durable |" in out
    assert "| xargs -P C (bash agent) | - |" in out
    assert "### Latency" in out and "### What each system guarantees" in out


@pytest.mark.skipif(not peers.DEFAULT_PEERS_PYTHON.exists(),
                    reason="no .venv-peers: `make bench-peers` builds it (RQ, Huey, Celery)")
@pytest.mark.skipif(not peers.shutil.which("redis-server"),
                    reason="no redis-server: `make bench-peers` installs it (Debian, as root)")
def test_smoke_run_with_a_peer(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """One peer through real Redis servers (fast and durable), where the peers are installed."""
    code = peers.main(["--systems", "huey-redis", "--n", "20", "--levels", "2", "--repeat", "1",
                       "--latency-n", "3", "--latency-budget", "1", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "| Huey RedisHuey, -k process | fast |" in out
    assert "redis durable: appendonly='yes' appendfsync='always'" in out
