"""The deployment's data secret: 32 random bytes that key every hidden split.

Hidden splits must not follow from anything a trainee or a submission can read, and the public
seed, sizes and generator code are all public. So ``medai up`` makes one secret per state folder,
``<state>/secrets/data.key``, the first time it runs and reuses it afterwards; the hidden streams
of every generator are keyed by it (:meth:`medai.synthetic.core.GenContext.hidden_rng`). The
``secrets/`` folder is bound into no sandbox (trainee server, formgrader, grading job).

The file holds the key as 64 hexadecimal digits and a newline, is created with mode 0600 in a
folder of mode 0700, and is refused when other users may read it. Losing it only means the next
``medai up`` makes a new one and generates new hidden splits; grades already given stay valid.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from medai.synthetic.core import SECRET_BYTES, DataError

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def load_secret(path: Path | str) -> bytes:
    """Read the secret in ``path``; :class:`DataError` says what is wrong and how to fix it."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(
            f"no data secret at {path}; create one with `medai data key {path}` "
            "(`medai up` makes <state>/secrets/data.key by itself)"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read the data secret {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"the data secret {path} is not a regular file")
    if st.st_mode & 0o077:
        raise DataError(
            f"the data secret {path} may be read by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); restrict it with `chmod 600 {path}`"
        )
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not text"
        raise DataError(f"cannot read the data secret {path}: {why}") from None
    want = 2 * SECRET_BYTES
    if len(text) != want or not set(text) <= _HEX_DIGITS:
        raise DataError(
            f"the data secret {path} must hold {want} hexadecimal digits (found "
            f"{len(text)} characters{'' if set(text) <= _HEX_DIGITS else ', not all hex'}). "
            "Restore it from a backup, or delete it to make a new one (the hidden splits are "
            "then generated anew)"
        )
    return bytes.fromhex(text)


def ensure_secret(path: Path | str) -> tuple[bytes, bool]:
    """The secret in ``path``, created first (mode 0600) if there is none; ``(secret, created)``.

    Safe when two processes race: the file appears complete or not at all (written under a
    temporary name, then hard-linked into place, which fails if it already exists).
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        return load_secret(path), False
    folder = path.parent
    try:
        if not folder.is_dir():
            folder.mkdir(mode=0o700, parents=True)
        tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (secrets.token_bytes(SECRET_BYTES).hex() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False  # another process made it first: use theirs
        finally:
            tmp.unlink()
    except OSError as exc:
        raise DataError(
            f"cannot create the data secret {path}: {exc.strerror}. "
            "Make its folder writable, or choose another state folder"
        ) from None
    return load_secret(path), created
