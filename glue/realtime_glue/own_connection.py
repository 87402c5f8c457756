"""A Redis connection of its own for one loop's round trips (the claim loop, the finisher).

redis-py spends more CPU per command than the glue does per job at everyday
rates, where each claim or finish carries one or two jobs: a pipeline object,
a connection taken from and given back to the pool (two getpid() system calls),
a retry wrapper, and every argument encoded again although most of them (the
keys, the script's SHA, the worker id) never change. Here one connection is
taken from the client's pool and kept; the caller packs the constant part of a
command once (`command`), and `call` writes several commands in one write and
reads their replies.

Only one greenlet may use an OwnConnection at a time.
"""

from __future__ import annotations

from redis.exceptions import ResponseError


def _bulk(value: bytes | str | int | float) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    elif not isinstance(value, bytes):
        value = repr(value).encode()
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(*args: bytes | str | int | float) -> tuple[int, bytes]:
    """Arguments packed as RESP bulk strings: (how many, the bytes). The start of a command,
    or all of it; `packed` finishes it."""
    return len(args), b"".join(_bulk(arg) for arg in args)


def packed(head: tuple[int, bytes], *args: bytes | str | int | float) -> bytes:
    """The command `head` followed by `args`, as Redis reads it."""
    count, start = head
    return b"*%d\r\n%s%s" % (count + len(args), start, b"".join(_bulk(arg) for arg in args))


class OwnConnection:
    def __init__(self, redis):
        self.pool = redis.connection_pool
        self.connection = None

    def call(self, commands: bytes, replies: int, errors_as_replies: bool = False) -> list:
        """Write packed commands at once; their `replies` replies, in order.

        A reply that is an error (e.g. NoScriptError) is raised, or with
        `errors_as_replies` returned in its place (each command's reply is read
        either way, so the connection stays usable). Whatever else goes wrong
        midway (a timeout, a lost connection, the greenlet killed), the
        connection is closed, so the next call starts on a fresh one and never
        reads a reply meant for an earlier call.
        """
        connection = self._connection()
        try:
            connection.send_packed_command([commands])
            answers: list = []
            for _ in range(replies):
                try:
                    answers.append(connection.read_response())
                except ResponseError as exc:  # read whole: the next reply is where it should be
                    answers.append(exc)
        except BaseException:
            connection.disconnect()
            raise
        if not errors_as_replies:
            for answer in answers:
                if isinstance(answer, ResponseError):
                    connection.disconnect()  # as before: an error reply starts a fresh connection
                    raise answer
        return answers

    def _connection(self):
        if self.connection is None:
            try:
                self.connection = self.pool.get_connection()
            except TypeError:  # redis-py 4 (Debian 12) wants a command name
                self.connection = self.pool.get_connection("_")
        return self.connection

    def close(self) -> None:
        if self.connection is not None:
            self.pool.release(self.connection)
            self.connection = None
