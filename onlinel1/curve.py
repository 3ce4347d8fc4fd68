"""CURVE key files: writing them (``onlinel1 keygen``), reading them (the
clients, the daemon), and a client socket's CURVE options.

A key pair is two files in ZeroMQ's certificate format (the format of
czmq's ``zcert`` and pyzmq's ``zmq.auth``, which ``zmq.auth.
load_certificate`` reads)::

    PATH.key   the secret certificate: public-key and secret-key; mode 0600
    PATH.pub   the public certificate: public-key only; give it away

Each holds Z85 text lines under a ``curve`` section::

    curve
        public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
        secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"

A secret key file that group or others may read (or write) is refused, as
ssh refuses a private key it is not alone to see.  This module is light
(no daemon code): the clients import it.
"""
from __future__ import annotations

import datetime
import os
import stat
from typing import Any

import zmq
from zmq.utils import z85

__all__ = ["KeyFileError", "SECRET_SUFFIX", "PUBLIC_SUFFIX", "generate", "read_secret_key",
           "read_public_key", "client_options", "apply_client_options", "check_private"]

SECRET_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"
#: Length of a CURVE key in Z85 text (32 bytes).
Z85_LENGTH = 40

_SECRET_BANNER = """#   ****  Generated on {now} by onlinel1 keygen  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

"""
_PUBLIC_BANNER = """#   ****  Generated on {now} by onlinel1 keygen  ****
#   ZeroMQ CURVE Public Certificate
#   Give this file to the other side: the daemon's --curve-allow folder
#   takes clients' .pub files, clients take the daemon's as
#   --curve-server-key.

"""


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names it and says why."""


def _certificate(banner: str, public: bytes, secret: bytes | None) -> bytes:
    now = datetime.datetime.now().replace(microsecond=0).isoformat(sep=" ")
    lines = [banner.format(now=now), "metadata\n", "curve\n",
             f'    public-key = "{public.decode("ascii")}"\n']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"\n')
    return "".join(lines).encode("ascii")


def _write_new(path: str, data: bytes, mode: int) -> None:
    """Write ``data`` to a file that must not exist yet (O_EXCL: an existing
    file, or a symbolic link, is never followed nor overwritten)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        os.fchmod(fd, mode)           # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def generate(path: str | os.PathLike[str]) -> tuple[str, str, bytes]:
    """A new key pair: ``PATH.key`` (secret, mode 0600) and ``PATH.pub``
    (public, mode 0644). Neither may exist: ``FileExistsError`` naming it
    (nothing is written then). Returns (secret file, public file, public
    key in Z85)."""
    base = os.fspath(path)
    secret_path, public_path = base + SECRET_SUFFIX, base + PUBLIC_SUFFIX
    for existing in (secret_path, public_path):
        if os.path.lexists(existing):
            raise FileExistsError(f"{existing} exists: keygen never overwrites a key (remove it "
                                  f"first, or choose another PATH)")
    public, secret = zmq.curve_keypair()
    _write_new(secret_path, _certificate(_SECRET_BANNER, public, secret), 0o600)
    try:
        _write_new(public_path, _certificate(_PUBLIC_BANNER, public, None), 0o644)
    except BaseException:
        os.unlink(secret_path)        # no secret key without its public one
        raise
    return secret_path, public_path, public


# ----------------------------------------------------------------- reading

def check_private(path: str) -> None:
    """Refuse a secret key file that anyone but its owner may read or write."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the secret key file: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise KeyFileError(f"{path}: the secret key is not a regular file")
    if mode & 0o077:
        raise KeyFileError(f"{path}: the secret key file is accessible by group or others "
                           f"(mode {stat.S_IMODE(mode):04o}); make it private: chmod 600 {path}")


def _z85(value: bytes | None, what: str, path: str) -> bytes | None:
    if value is None:
        return None
    if len(value) != Z85_LENGTH:
        raise KeyFileError(f"{path}: the {what} is not a {Z85_LENGTH}-character Z85 CURVE key")
    try:
        decoded = z85.decode(value)
    except (ValueError, KeyError, TypeError):
        decoded = b""
    if len(decoded) != 32:
        raise KeyFileError(f"{path}: the {what} is not valid Z85 text")
    return value


def _load(path: str | os.PathLike[str]) -> tuple[str, bytes, bytes | None]:
    import zmq.auth
    path = os.fspath(path)
    if not os.path.exists(path):
        raise KeyFileError(f"{path}: no such key file")
    if os.path.isdir(path):
        raise KeyFileError(f"{path}: is a folder, not a key file")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or "no public-key line"
        raise KeyFileError(f"{path}: not a ZeroMQ certificate ({reason}; "
                           f"'onlinel1 keygen' writes them)") from None
    return path, _z85(public, "public key", path), _z85(secret, "secret key", path)


def read_secret_key(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys of a secret key file (``PATH.key``),
    checked: private to its owner, both keys present and valid, and the
    public key the secret key's own."""
    path = os.fspath(path)
    check_private(path)
    path, public, secret = _load(path)
    if secret is None:
        raise KeyFileError(f"{path}: has no secret-key line: give the secret key file "
                           f"(PATH{SECRET_SUFFIX}), not the public one")
    if zmq.curve_public(secret) != public:
        raise KeyFileError(f"{path}: its public key is not the one of its secret key")
    return public, secret


def read_public_key(path: str | os.PathLike[str]) -> bytes:
    """The Z85 public key of a certificate file (``PATH.pub``; a secret key
    file's public key is read too, but its secret is not wanted here)."""
    return _load(path)[1]


# ------------------------------------------------------------------ clients

def client_options(secret_key_file: str | os.PathLike[str] | None,
                   server_key_file: str | os.PathLike[str] | None) -> dict[int, bytes] | None:
    """The socket options of a CURVE client (``zmq.CURVE_SERVERKEY``,
    ``CURVE_PUBLICKEY``, ``CURVE_SECRETKEY``), or None when neither file is
    given; ``KeyFileError`` when only one is, or a file is unusable."""
    if secret_key_file is None and server_key_file is None:
        return None
    if secret_key_file is None or server_key_file is None:
        raise KeyFileError("CURVE needs both keys: the client's secret key file "
                           "(curve_secret_key, --curve-secret-key) and the daemon's public key "
                           "file (curve_server_key, --curve-server-key)")
    if not zmq.has("curve"):
        raise KeyFileError("this libzmq was built without CURVE support")
    public, secret = read_secret_key(secret_key_file)
    server = read_public_key(server_key_file)
    return {zmq.CURVE_SERVERKEY: server, zmq.CURVE_PUBLICKEY: public,
            zmq.CURVE_SECRETKEY: secret}


def apply_client_options(socket: Any, options: dict[int, bytes] | None) -> None:
    """Make ``socket`` a CURVE client (before it connects); no-op for None."""
    for option, value in (options or {}).items():
        socket.setsockopt(option, value)
