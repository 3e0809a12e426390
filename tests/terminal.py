"""A terminal for tests: `terminal.py OUTPUT COMMAND...` runs COMMAND on a new pseudo-terminal
(its controlling terminal, in a session of its own) and copies what it prints to OUTPUT.

Killing this process closes the terminal's master side: the kernel hangs the terminal up and
sends SIGHUP to the session, as when an SSH connection drops or a terminal window closes.
"""

from __future__ import annotations

import os
import pty
import sys


def main(output: str, command: list[str]) -> None:
    pid, master = pty.fork()
    if pid == 0:
        os.execvp(command[0], command)
    with open(output, "wb") as out:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the command and everything on the terminal closed it
                break
            if not data:
                break
            out.write(data)
            out.flush()
    os.waitpid(pid, 0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
