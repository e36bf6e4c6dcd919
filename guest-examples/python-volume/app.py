"""The example volume driver of guest-examples/volume, written in Python against the same WIT.

Each volume is a directory `<root>/<name>`, where `<root>` is the environment variable
`VOLUME_ROOT` (default `/data`, the plugin's `PropagatedMount`). The semantics, error codes and
messages follow the Rust driver (`../volume/src/driver.rs`) so the two answer dockerd alike: the
protocol encoding is plugd's, a guest only returns typed results.

componentize-py turns this module into a component exporting `docker:plugin/volume-driver`; it is
built by `build.sh` from the repository's own `wit/`, never from a copy.
"""

import errno
import os
import shutil
import stat
from typing import List, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.volume_driver import Scope, Volume
from wit_world.imports.types import Error, ErrorCode


def _quote(s: str) -> str:
    """A name quoted as Rust's `{:?}` quotes it (for ASCII), so this driver's messages match the
    Rust driver's byte for byte."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u{%x}" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _fail(code: ErrorCode, message: str) -> Err:
    return Err(Error(code, message))


def _no_such_volume(name: str) -> Err:
    return _fail(ErrorCode.NOT_FOUND, "no such volume %s" % _quote(name))


def _io_error(name: str, err: OSError) -> Err:
    """Maps an OS error onto the driver's codes, keeping host paths out of the message."""
    if err.errno == errno.ENOENT:
        return _no_such_volume(name)
    if err.errno == errno.EEXIST:
        return _fail(
            ErrorCode.CONFLICT, "volume %s exists and is not a directory" % _quote(name)
        )
    return _fail(ErrorCode.INTERNAL, _os_message("volume %s" % _quote(name), err))


def _os_message(what: str, err: OSError) -> str:
    """`<what>: <strerror> (os error N)`, the form of Rust's `io::Error` display."""
    return "%s: %s (os error %d)" % (what, err.strerror, err.errno)


def _root() -> str:
    # Read per call, not at import: componentize-py runs the import at build time (the snapshot it
    # ships), when the plugin's environment does not exist yet.
    return os.environ.get("VOLUME_ROOT") or "/data"


def _dir(name: str) -> str:
    """The directory of volume `name`, after refusing names that are not one path component."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise _fail(ErrorCode.INVALID_ARGUMENT, "invalid volume name %s" % _quote(name))
    return os.path.join(_root(), name)


def _existing(name: str) -> str:
    path = _dir(name)
    try:
        st = os.stat(path)
    except OSError as e:
        raise _io_error(name, e)
    if not stat.S_ISDIR(st.st_mode):
        raise _no_such_volume(name)
    return path


def _describe(name: str, path: str) -> Volume:
    # No CreatedAt: WASI 0.2 reports no birth time; the Rust driver leaves it out too.
    return Volume(name=name, mountpoint=path, created_at=None, status=[])


class VolumeDriver(exports.VolumeDriver):
    def create(self, name: str, opts: List[Tuple[str, str]]) -> None:
        path = _dir(name)
        try:
            os.mkdir(path)
        except FileExistsError:
            # Idempotent: dockerd calls Create whenever Get failed, and a retry must not fail.
            if not os.path.isdir(path):
                raise _fail(
                    ErrorCode.CONFLICT,
                    "volume %s exists and is not a directory" % _quote(name),
                )
        except OSError as e:
            raise _io_error(name, e)

    def remove(self, name: str) -> None:
        path = _existing(name)
        try:
            shutil.rmtree(path)
        except OSError as e:
            raise _io_error(name, e)

    def mount(self, name: str, id: str) -> str:
        return _existing(name)

    def unmount(self, name: str, id: str) -> None:
        _existing(name)

    def path(self, name: str) -> str:
        return _existing(name)

    def get(self, name: str) -> Volume:
        return _describe(name, _existing(name))

    def list(self) -> List[Volume]:
        root = _root()
        try:
            names = os.listdir(root)
        except OSError as e:
            raise _fail(ErrorCode.INTERNAL, _os_message("cannot read volume root %s" % root, e))
        volumes = []
        for name in sorted(names):
            path = os.path.join(root, name)
            if os.path.isdir(path):
                volumes.append(_describe(name, path))
        return volumes

    def capabilities(self) -> Scope:
        return Scope.LOCAL
