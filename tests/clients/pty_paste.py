"""Runs `cmdrctl paste` on a pseudo-terminal, as a person pasting into a shell would.

usage: pty_paste.py CMDRCTL paste|interrupt
Prints one JSON object: whether the terminal echoed during the read, whether the secret
appeared on the terminal, the exit status, and whether echo is on again afterwards.
"""
import json
import os
import pty
import select
import sys
import termios
import time

cmdrctl, mode = sys.argv[1], sys.argv[2]
SECRET = b"wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEYpty"
pid, fd = pty.fork()
if pid == 0:
    os.execv(cmdrctl, [cmdrctl, "paste"])


def read_until(needle, limit=20.0):
    out = b""
    end = time.time() + limit
    while time.time() < end and needle not in out:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out


def drain():
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            return out
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return out
        if not chunk:
            return out
        out += chunk


shown = read_until(b"Ctrl-D")
echo_during = bool(termios.tcgetattr(fd)[3] & termios.ECHO)
if mode == "interrupt":
    os.write(fd, b"[acme]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n")
    shown += drain()
    os.write(fd, b"\x03")
else:
    os.write(
        fd,
        b"[acme]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = "
        + SECRET
        + b"\n",
    )
    shown += drain()
    os.write(fd, b"\x04")
shown += drain()
_, status = os.waitpid(pid, 0)
echo_after = bool(termios.tcgetattr(fd)[3] & termios.ECHO)
print(
    json.dumps(
        {
            "echo_during": echo_during,
            "secret_shown": SECRET in shown,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "echo_after": echo_after,
            "shown": shown.decode("utf-8", "replace"),
        }
    )
)
