"""The backup file's encryption: a passphrase-encrypted stream in authenticated chunks.

Built from `cryptography`'s primitives the way age and Tink's streaming AEAD are: scrypt derives
64 bytes from the passphrase and a random salt (32 for the cipher, 32 for the header's MAC);
the stream is cut into chunks of 1 MiB, each sealed with AES-256-GCM under the nonce
`prefix(7) ‖ counter(4, big-endian) ‖ last(1)`, the header as associated data. So a chunk
cannot be changed, dropped, reordered or moved to another file, and a file cut short lacks the
chunk marked last and is refused. Nothing is held in memory beyond one chunk.

    header  = b"HUZHUBAK" ‖ version(1) ‖ kdf(1: scrypt) ‖ log2 N(1) ‖ r(1) ‖ p(1)
              ‖ chunk size(4) ‖ salt(16) ‖ nonce prefix(7)
    file    = header ‖ HMAC-SHA256(mac key, header) ‖ chunk* (each: length(4) ‖ sealed bytes)

A wrong passphrase is told apart from a damaged file by the header's MAC.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"HUZHUBAK"
VERSION = 1
KDF_SCRYPT = 1
CHUNK = 1 << 20
TAG = 16
_HEADER = struct.Struct(">8sBBBBBI16s7s")
LOG2_N, R, P = 15, 8, 1  # 32 MiB of memory and about 0.1 s per derivation
MAX_LOG2_N = 20  # a header asking for more is refused rather than obeyed


class ArchiveError(Exception):
    """The file cannot be read as a backup; the message is one line for the operator."""


class WrongPassphrase(ArchiveError):
    pass


def _derive(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> tuple[bytes, bytes]:
    key = Scrypt(salt=salt, length=64, n=1 << log2_n, r=r, p=p).derive(passphrase)
    return key[:32], key[32:]


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


class EncryptingWriter:
    """A write-only file object that seals what is written into `raw`. `close()` writes the
    last chunk; without it the file is incomplete and will be refused."""

    def __init__(self, raw, passphrase: bytes, log2_n: int = LOG2_N):
        salt, self._prefix = os.urandom(16), os.urandom(7)
        self._header = _HEADER.pack(MAGIC, VERSION, KDF_SCRYPT, log2_n, R, P, CHUNK, salt,
                                    self._prefix)
        enc_key, mac_key = _derive(passphrase, salt, log2_n, R, P)
        self._aead = AESGCM(enc_key)
        self._raw = raw
        self._buf = bytearray()
        self._counter = 0
        self.closed = False
        raw.write(self._header + hmac.new(mac_key, self._header, hashlib.sha256).digest())

    def write(self, data) -> int:
        self._buf += data
        while len(self._buf) > CHUNK:  # keep at least one byte back: the last chunk is never empty
            self._seal(bytes(self._buf[:CHUNK]), last=False)
            del self._buf[:CHUNK]
        return len(data)

    def _seal(self, plain: bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, last), plain, self._header)
        self._raw.write(struct.pack(">I", len(sealed)) + sealed)
        self._counter += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buf), last=True)
            self._buf.clear()
            self.closed = True


class DecryptingReader:
    """A read-only file object over a sealed stream; raises ArchiveError (WrongPassphrase for
    a passphrase that does not open the header) as soon as anything does not check."""

    def __init__(self, raw, passphrase: bytes):
        self._raw = raw
        head = raw.read(_HEADER.size + 32)
        if len(head) < _HEADER.size + 32 or not head.startswith(MAGIC):
            raise ArchiveError("not a huzhu backup file (or its first bytes are damaged)")
        header, mac = head[:_HEADER.size], head[_HEADER.size:]
        magic, version, kdf, log2_n, r, p, chunk, salt, prefix = _HEADER.unpack(header)
        if version != VERSION or kdf != KDF_SCRYPT:
            raise ArchiveError(f"backup format version {version} is not known to this huzhu")
        if not (10 <= log2_n <= MAX_LOG2_N and 1 <= r <= 32 and 1 <= p <= 16
                and 1024 <= chunk <= 64 * CHUNK):
            raise ArchiveError("the backup file's header is damaged")
        enc_key, mac_key = _derive(passphrase, salt, log2_n, r, p)
        if not hmac.compare_digest(mac, hmac.new(mac_key, header, hashlib.sha256).digest()):
            raise WrongPassphrase("wrong passphrase for this backup (or its header is damaged)")
        self._header, self._prefix, self._chunk = header, prefix, chunk
        self._aead = AESGCM(enc_key)
        self._counter = 0
        self._offset = len(head)
        self._buf = b""
        self._pos = 0
        self._done = False

    def _next(self) -> None:
        length = self._raw.read(4)
        if len(length) < 4:
            raise ArchiveError("the backup file is incomplete (cut short before its end); "
                               "it was not finished or was damaged in copying")
        (n,) = struct.unpack(">I", length)
        if n < TAG or n > self._chunk + TAG:
            raise ArchiveError(f"the backup file is damaged at byte {self._offset}")
        sealed = self._raw.read(n)
        if len(sealed) < n:
            raise ArchiveError("the backup file is incomplete (cut short before its end); "
                               "it was not finished or was damaged in copying")
        plain = None
        for last in (False, True):
            try:
                plain = self._aead.decrypt(_nonce(self._prefix, self._counter, last), sealed,
                                           self._header)
            except InvalidTag:
                continue
            if last:
                if self._raw.read(1):
                    raise ArchiveError("the backup file has bytes after its end: damaged")
                self._done = True
            break
        if plain is None:
            raise ArchiveError(f"the backup file is damaged at byte {self._offset} "
                               f"(chunk {self._counter} fails its check)")
        self._offset += 4 + n
        self._counter += 1
        self._buf, self._pos = plain, 0

    def read(self, size: int = -1) -> bytes:
        out = []
        want = size if size is not None and size >= 0 else None
        got = 0
        while want is None or got < want:
            if self._pos >= len(self._buf):
                if self._done:
                    break
                self._next()
                continue
            take = len(self._buf) - self._pos if want is None else min(want - got,
                                                                        len(self._buf) - self._pos)
            out.append(self._buf[self._pos:self._pos + take])
            self._pos += take
            got += take
        return b"".join(out)

    def read_to_end(self) -> None:
        """Check the rest of the stream (to its last chunk) without keeping it."""
        while not self._done:
            self._next()
