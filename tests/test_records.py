"""Request ids stay unique across `serve --workers N`'s forked workers."""

from __future__ import annotations

import os

from meterfox_cli.records import new_request_id


def test_a_forked_process_does_not_repeat_its_parents_request_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then gone
        try:
            os.write(write, " ".join(new_request_id() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_request_id() for _ in range(100)}
    assert len(child) == 100
    # The random part (after 11 hex digits of milliseconds): two workers answering in the same
    # millisecond would otherwise give two records one id.
    assert not {i[11:] for i in parent} & {i[11:] for i in child}
