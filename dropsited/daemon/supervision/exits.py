"""What a process exit means, in numbers and in words, for every part that reports one.

The exit codes an agent may use to say something (sysexits.h), and the one text of an
exit ("exit status 3", "killed by SIGKILL") that task histories, agent records and logs
show. Popen's convention throughout: a returncode of -N means killed by signal N.
"""

from __future__ import annotations

import signal

EX_TEMPFAIL = 75  # "temporary failure": an exec agent's "later, without using an attempt"
EX_CONFIG = 78  # "configuration error": restarting cannot help, the agent goes FATAL


def signal_name(number: int) -> str:
    """SIGKILL for 9; 'signal 99' for a number this system does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_text(returncode: int | None, last_line: str = "") -> str:
    """'exit status 3', 'killed by SIGKILL', followed by ': <last line of stderr>' if any."""
    if returncode is None:
        head = "exit status unknown"
    elif returncode < 0:
        head = f"killed by {signal_name(-returncode)}"
    else:
        head = f"exit status {returncode}"
    return f"{head}: {last_line}" if last_line else head


def exit_details(returncode: int | None) -> dict:
    """The history entry's keys for an exit: `signal` (its name) or `exit_code`."""
    if returncode is not None and returncode < 0:
        return {"signal": signal_name(-returncode)}
    return {"exit_code": returncode}
