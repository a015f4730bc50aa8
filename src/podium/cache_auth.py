"""Authenticated cache entries: an HMAC with a per-user key kept outside the cache.

podium's caches (`~/.cache/podium`, or `$PODIUM_CACHE`: reference log-probs, content fingerprints) outlive
runs and may sit on a shared disk. A checksum stored inside an entry proves only that the entry is
consistent, not that podium wrote it: whoever edits the values can recompute it. So each entry carries
an HMAC-SHA256 of its content under a secret key that lives outside the cache, readable by its owner
only (`~/.config/podium/cache.key`, or the file `$PODIUM_CACHE_KEY` names), created on first use.

What this resists: anyone who can write to the cache but not read the key (another user of a shared
or group-writable cache folder, a copied or restored cache, a tool that edits files in it) cannot
make podium use a forged entry; podium recomputes it. What it does not resist: code running as the
key's owner, which can read the key (and could edit podium itself). A key file that others can read or
that belongs to another user is not used: then no cache entry is trusted (each is recomputed), with
one warning saying how to fix the file.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

KEY_ENV = "PODIUM_CACHE_KEY"
KEY_BYTES = 32
log = logging.getLogger("podium")
_warned: set[str] = set()
_keys: dict[str, bytes] = {}  # key file -> its key, read once per process


def cache_root() -> Path:
    """The root of podium's caches: `$PODIUM_CACHE`, else `~/.cache/podium`."""
    return Path(os.environ.get("PODIUM_CACHE") or Path.home() / ".cache" / "podium")


def key_path() -> Path:
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV])
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "podium" / "cache.key"


def _warn_once(path: Path, message: str) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning(f"cache key {path}: {message}; podium trusts no cache entry (each is recomputed) until it is fixed")


def _read_key(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        _warn_once(path, f"cannot be read ({e.strerror}; a symbolic link is not followed)")
        return b""
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            _warn_once(path, f"must be a regular file of yours readable by you alone (chmod 600 {path})")
            return b""
        key = f.read(KEY_BYTES + 1)
    if len(key) != KEY_BYTES:
        _warn_once(path, f"holds {len(key)} bytes, not {KEY_BYTES} (delete it: a new one is made)")
        return b""
    return key


def secret_key() -> bytes | None:
    """This user's cache key, created (0600, written once) when missing; None when it cannot be used."""
    path = key_path()
    if str(path) in _keys:
        return _keys[str(path)]
    key = _read_key(path)
    if key is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:  # another process made it meanwhile
            key = _read_key(path)
        except OSError as e:
            _warn_once(path, f"cannot be created ({e.strerror})")
            return None
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(KEY_BYTES))
            key = _read_key(path)
    if key:
        _keys[str(path)] = key
    return key or None


def sign(*parts: bytes | str) -> str:
    """HMAC-SHA256 (hex) of `parts` under the user's key; "" when there is no usable key (never verifies)."""
    key = secret_key()
    if key is None:
        return ""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        mac.update(len(data).to_bytes(8, "little"))  # length-prefixed: parts cannot be shifted into each other
        mac.update(data)
    return mac.hexdigest()


def verify(signature: object, *parts: bytes | str) -> bool:
    """Whether `signature` is `sign(*parts)` (compared in constant time)."""
    expected = sign(*parts)
    return bool(expected) and isinstance(signature, str) and hmac.compare_digest(signature, expected)
