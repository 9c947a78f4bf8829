"""A function pool process: calls ``package.module:function`` targets for the worker.

The worker starts this file as a script with the configured interpreter
(``python -P -u funcpool.py FD``), so it imports only the standard library and works in
any Python 3.11+ environment the operator points ``worker.python_interpreter`` at; the
functions come from that environment and the working directory.

Protocol over the Unix socket FD, in frames of a 4-byte big-endian length and a UTF-8
JSON object:

- on start the process sends ``{"ready": PID}``;
- the worker sends a call ``{"target", "arguments", "env"}`` and, in the same
  ``sendmsg``, the write end of a fresh pipe for the call's output;
- the process points its fds 1 and 2 at that pipe (so C-level writes and subprocesses
  are captured too), sets the run's variables in ``os.environ``, imports the target
  (once per process), calls it with each argument JSON-decoded, then flushes, points
  1 and 2 back at /dev/null, closes the pipe, restores the environment and working
  directory, and replies with one of ``{"returned": TEXT}``, ``{"raised": "Type: msg"}``
  (the traceback is in the output), ``{"exit": N}`` or ``{"refused": "why"}``; a reply
  carries ``"dirty": true`` when the call left threads or child processes behind, and
  the worker then replaces this process.

End-of-file on the socket ends the process. Timeouts, cancels and crashes are the
worker's business: it kills this process's group and starts another.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20
RESULT_CHARS = 2048


def send_frame(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    frame = HEADER.pack(len(data)) + data
    if fds:
        sent = sock.sendmsg(
            [frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        )
        frame = frame[sent:]
    if frame:
        sock.sendall(frame)


class FrameReader:
    """Collects frames from a stream socket; ``feed`` what ``recv`` gave."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next(self) -> dict[str, Any] | None:
        if len(self.buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self.buffer)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes")
        end = HEADER.size + size
        if len(self.buffer) < end:
            return None
        message: dict[str, Any] = json.loads(bytes(self.buffer[HEADER.size : end]))
        del self.buffer[:end]
        return message


def _receive_call(sock: socket.socket, reader: FrameReader) -> tuple[dict[str, Any], int] | None:
    """The next call and its output fd; None at end-of-file."""
    fd = -1
    while True:
        message = reader.next()
        if message is not None:
            return message, fd
        data, ancillary, _flags, _address = sock.recvmsg(65_536, socket.CMSG_SPACE(4))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for extra in struct.unpack(f"{len(payload) // 4}i", payload):
                    if fd == -1:
                        fd = extra
                    else:
                        os.close(extra)
        if not data:
            if fd != -1:
                os.close(fd)
            return None
        reader.feed(data)


class Caller:
    """Resolves targets (cached) and makes calls in this process."""

    def __init__(self) -> None:
        self.functions: dict[str, Callable[..., Any]] = {}
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.home = os.getcwd()

    def resolve(self, target: str) -> Callable[..., Any]:
        function = self.functions.get(target)
        if function is None:
            module_name, _, path = target.partition(":")
            found: Any = importlib.import_module(module_name)
            for name in path.split("."):
                found = getattr(found, name)
            if not callable(found):
                raise TypeError(f"{target} is not callable")
            function = self.functions[target] = found
        return function

    def call(self, request: dict[str, Any], out_fd: int) -> dict[str, Any]:
        """The call with its output on ``out_fd``, and what it cost (CPU, peak memory)."""
        before = _cpu_seconds()
        reply = self._redirected(request, out_fd)
        reply["cpu_seconds"] = round(_cpu_seconds() - before, 6)
        reply["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 3)
        return reply

    def _redirected(self, request: dict[str, Any], out_fd: int) -> dict[str, Any]:
        _flush()
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        saved = {key: os.environ.get(key) for key in request["env"]}
        os.environ.update(request["env"])
        try:
            if request.get("cwd"):
                try:
                    os.chdir(request["cwd"])
                except OSError as exc:
                    return {"refused": f"cannot enter {request['cwd']}: {exc.strerror}"}
            return self._call(request)
        finally:
            _flush()
            os.dup2(self.devnull, 1)
            os.dup2(self.devnull, 2)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if os.getcwd() != self.home:
                os.chdir(self.home)

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        target = request["target"]
        try:
            function = self.resolve(target)
        except Exception as exc:
            return {"refused": f"cannot import {target}: {_describe(exc)}"}
        arguments = []
        for index, text in enumerate(request["arguments"]):
            try:
                arguments.append(json.loads(text))
            except ValueError as exc:
                return {"refused": f"arguments[{index}] is not JSON: {exc}"}
        threads = _thread_count()
        reply: dict[str, Any]
        try:
            value = function(*arguments)
            if hasattr(value, "__await__"):  # an async def: run it to its end
                import asyncio

                value = asyncio.run(value)
        except SystemExit as exc:
            reply = {"exit": _exit_status(exc)}
        except BaseException as exc:
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # skip this frame
            traceback.print_exception(type(exc), exc, tb)
            reply = {"raised": _describe(exc)}
        else:
            reply = {"returned": _result_text(value)}
        if _thread_count() > threads or _children_running():
            reply["dirty"] = True
        return reply


def _cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children so far."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    name = type(exc).__qualname__
    message = f"{name}: {text[0]}" if text else name
    return message[:500]


def _exit_status(exc: SystemExit) -> int:
    """What ``sys.exit(code)`` would make the process's status, as Python does."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code & 0xFF
    print(code, file=sys.stderr)
    _flush()
    return 1


def _result_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text[:RESULT_CHARS]


def _thread_count() -> int:
    threading = sys.modules.get("threading")
    return threading.active_count() if threading is not None else 1


def _children_running() -> bool:
    """Reap the call's ended child processes; True if one still runs."""
    try:
        while True:
            pid, _status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return True  # a child that is still running
    except ChildProcessError:
        return False


def serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    caller = Caller()
    os.dup2(caller.devnull, 0)
    send_frame(sock, {"ready": os.getpid()})
    reader = FrameReader()
    while True:
        received = _receive_call(sock, reader)
        if received is None:
            return
        request, out_fd = received
        if out_fd == -1:
            reply: dict[str, Any] = {"refused": "the call came without its output pipe"}
        else:
            reply = caller.call(request, out_fd)
        send_frame(sock, reply)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    sys.path.insert(0, os.getcwd())  # like ``python -m``: the working directory first
    serve(int(sys.argv[1]))


if __name__ == "__main__":
    main()
