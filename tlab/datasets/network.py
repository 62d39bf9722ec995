"""Is the network there? A real dataset's files are downloaded only when a connection to its
host opens quickly; offline, the loader says at once where to put the files instead."""

from __future__ import annotations

import queue
import socket
import threading
import time
import urllib.request
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0  # longest wait for the network before declaring it unreachable


def network_problem(urls: tuple[str, ...]) -> str | None:
    """None if a TCP connection to one of the hosts (or the configured proxy) opens within
    :data:`PROBE_TIMEOUT_S`, else why not. Each host is tried in a daemon thread, so a hanging
    name lookup cannot make the caller wait longer than the timeout."""
    proxies = urllib.request.getproxies()
    targets = set()
    for url in urls:
        parts = urlparse(proxies.get(urlparse(url).scheme, url))
        targets.add((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
    answers: queue.Queue[str | None] = queue.Queue()

    def attempt(host: str, port: int) -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            answers.put(None)
        except OSError as exc:
            answers.put(f"{host}:{port}: {exc}")

    for target in sorted(targets):
        threading.Thread(target=attempt, args=target, daemon=True).start()
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    errors: list[str] = []
    while len(errors) < len(targets):
        try:
            answer = answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return f"no connection within {PROBE_TIMEOUT_S:g} s"
        if answer is None:
            return None
        errors.append(answer)
    return "; ".join(errors)
