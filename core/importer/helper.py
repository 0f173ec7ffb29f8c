"""A second process: on a machine with two or more cores, a large file's sheet is read (unzipped
and parsed) in a helper process while this one checks the rows, and the helper encrypts the
new members' ID numbers while this one inserts the previous chunk. Every check, the
encryption and every write are the same as without it; only who does the work differs.

The helper is a fresh interpreter (`python -c`, running `_helper_main` of this module: nothing
of the importing process, its database connections included, is inherited); the two talk in
pickled messages over the helper's stdin and stdout: ("rows", batch) … ("end", None) or
("error", exception) from the helper, then ("encrypt", numbers) → ("encrypted", tokens) until
("stop", None)."""
from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from core.crypto import PersonalDataVault
from core.importer.common import GC_THRESHOLD
from core.importer.reader import _sheet_rows

log = logging.getLogger("huzhu.importer")


PARALLEL_MIN_BYTES = 1 << 20  # smaller files are read here (starting the helper takes ~0.5 s)
_BATCH = 2000  # rows a message


def _use_helper(path: Path) -> bool:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return cores > 1 and path.stat().st_size >= PARALLEL_MIN_BYTES


def _helper_main() -> None:
    """The helper process (`python -c`, see _Helper): read the path and the vault from stdin,
    send the sheet's rows in batches, then encrypt what is asked, until told to stop."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the importing process
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the messages
    inp = os.fdopen(0, "rb")
    gc.set_threshold(*GC_THRESHOLD)
    try:
        _helper_work(inp, out)
    except (OSError, EOFError):  # the importing process is gone (EINVAL on Windows pipes)
        pass


def _helper_work(inp, out) -> None:
    def send(message) -> None:
        pickle.dump(message, out, pickle.HIGHEST_PROTOCOL)
        out.flush()

    path, vault = pickle.load(inp)
    try:
        batch: list = []
        for item in _sheet_rows(Path(path)):
            batch.append(item)
            if len(batch) == _BATCH:
                send(("rows", batch))
                batch = []
        send(("rows", batch))
        send(("end", None))
    except Exception as exc:  # raised again in the importing process
        try:
            send(("error", exc))
        except Exception:
            send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        return
    encrypt = vault.encrypt
    while True:
        kind, payload = pickle.load(inp)
        if kind != "encrypt":
            return
        send(("encrypted", [encrypt(n) for n in payload]))


class _HelperGone(RuntimeError):
    pass


class _Helper:
    """The importing process's end of the helper: a fresh interpreter running _helper_main of
    this very file (nothing of this process, its database connections included, is
    inherited), pickled messages over its stdin and stdout."""

    def __init__(self, path: Path, vault: PersonalDataVault):
        import subprocess

        root = str(Path(__file__).resolve().parents[2])  # the folder holding core/
        code = (f"import sys; sys.path.insert(0, {root!r}); "
                "from core.importer.helper import _helper_main; _helper_main()")
        self.path = path
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        with contextlib.suppress(ImportError, AttributeError, OSError):  # Linux: more room
            import fcntl

            fcntl.fcntl(self.process.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        self.reading, self.asked, self.gone = True, 0, False
        try:
            self._send((str(path), vault))
        except OSError:
            self.close()
            raise

    def _send(self, message) -> None:
        pickle.dump(message, self.process.stdin, pickle.HIGHEST_PROTOCOL)
        self.process.stdin.flush()

    def _recv(self, expected: str):
        try:
            kind, payload = pickle.load(self.process.stdout)
        except (EOFError, pickle.UnpicklingError, OSError):
            # gone, possibly half-way through a message (a truncated pickle): the caller takes
            # over from the last whole message
            self.process.kill()
            try:
                code = self.process.wait(5)
            except subprocess.TimeoutExpired:
                code = None
            raise _HelperGone(f"the import's helper process stopped (exit code {code})") from None
        if kind == "error":
            raise payload
        assert kind == expected or (expected == "rows" and kind == "end"), kind
        return kind, payload

    def rows(self) -> Iterator[tuple[int, tuple]]:
        """The sheet's rows. Should the helper end on the way (it could not start, was killed
        for memory…), the rest is read here: the same reader gives the same rows, so those
        already received are skipped."""
        received = 0
        while True:
            try:
                kind, batch = self._recv("rows")
            except _HelperGone as exc:
                log.warning("%s after %d rows; the rest of the file is read without it",
                            exc, received)
                self.reading, self.gone = False, True
                yield from itertools.islice(_sheet_rows(self.path), received, None)
                return
            if kind == "end":
                self.reading = False
                return
            received += len(batch)
            yield from batch

    def encrypt(self, numbers: list[str]) -> None:
        """Ask for these numbers encrypted, once the answer to the last ask is taken (each
        side writes only while the other reads: no pipe fills up on both ends)."""
        assert not self.reading and not self.asked
        self.asked = 1
        try:
            self._send(("encrypt", numbers))
        except OSError:  # gone: encrypted() says so
            pass

    def encrypted(self) -> list[str] | None:
        """The numbers last asked for, encrypted; None if the helper is gone (`gone` then
        says so): encrypt them here."""
        try:
            tokens = self._recv("encrypted")[1]
        except _HelperGone as exc:
            log.warning("%s; the ID numbers are encrypted without it", exc)
            tokens, self.gone = None, True
        self.asked = 0
        return tokens

    def close(self) -> None:
        import subprocess

        if self.reading or self.asked:  # busy with what this import no longer needs
            self.process.kill()
        elif not self.gone:
            with contextlib.suppress(OSError):
                self._send(("stop", None))
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


@contextlib.contextmanager
def _helper_for(path: Path, vault: PersonalDataVault) -> Iterator[_Helper | None]:
    helper = None
    if _use_helper(path):
        try:
            helper = _Helper(path, vault)
        except (OSError, ValueError) as exc:  # no processes to be had: do it all here
            log.warning("no helper process for the import (%s); it runs in this one alone", exc)
            helper = None
    try:
        yield helper
    finally:
        if helper is not None:
            helper.close()
