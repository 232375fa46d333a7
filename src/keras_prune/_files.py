"""Writing files atomically: all of a file, or nothing changes.

Every file keras-prune writes for the user (compressed models, the CLI's
models and tables, plots) goes through `atomic_output`, so that a write
that fails (disk full, file size limit, interrupt) leaves the previous
file as it was and no temporary file behind.
"""

import contextlib
import errno
import os
import stat
import tempfile


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temporary path next to `path` to write; renames it over
    `path` when the block succeeds, removes it when it fails.

    The temporary name keeps the extension (Keras and matplotlib choose
    the format by it). The file is fsync'ed before the rename and the
    folder after it, so the rename itself is durable. A symbolic link is
    written through (its target is replaced), not replaced. A file that
    is replaced keeps its permission bits (a private 0600 file stays
    private); a new file gets the usual mode (0666 less the umask).

    Everything that `open(path, 'wb')` would refuse is refused before the
    block runs, with an `OSError` naming `path` (never the temporary
    file): an empty path, a folder, a missing folder, a read-only file, a
    symbolic link loop. So is a target that exists but is not a regular
    file (a FIFO, a device such as /dev/null, a socket): renaming over it
    would replace it.

    Args:
        path: Destination file path (str, bytes or os.PathLike).

    Yields:
        The temporary path (str) to write the whole file to.

    Raises:
        OSError: the target cannot be written (see above), or the block
            wrote nothing, or writing failed (disk full, file size limit;
            the message names `path`, whose content is unchanged).

    Example:

    ```python
    with atomic_output("plot.png") as tmp:
        fig.savefig(tmp)
    ```
    """
    path, mode = _writable_target(path)
    folder = os.path.dirname(path)
    base, ext = os.path.splitext(os.path.basename(path))
    if len(ext) > 16:  # not a format's extension; keep the name short
        ext = ""
    # A legal 255-byte name must still leave room for the temporary one.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base[:64]}.", suffix=ext)
    os.close(fd)
    try:
        yield tmp
        if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
            raise OSError(f"nothing was written to {path!r}")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp creates the file with mode 0600
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None and e.errno:
            # A failed write (disk full, file size limit) names no file:
            # name the one the user asked for.
            raise type(e)(e.errno, e.strerror, path) from e
        raise
    _sync_folder(folder)


def _fail(code, message, path):
    raise OSError(code, message, path)


def _writable_target(path):
    """`(absolute path to replace, permission bits for it)`; raises an
    `OSError` naming `path` where `open(path, 'wb')` would fail or where
    a rename would replace something that is not a regular file."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(
            f"a file path must be a str, bytes or os.PathLike, got "
            f"{type(path).__name__}: {path!r:.80}"
        )
    path = os.fsdecode(os.fspath(path))
    if not path:
        _fail(errno.ENOENT, "empty file name; give a file name", path)
    if path.endswith((os.sep, os.altsep or os.sep)):
        _fail(errno.EISDIR, "names a folder; give a file name", path)
    target = os.path.abspath(path)
    if os.path.islink(target):
        try:
            target = os.path.realpath(target, strict=True)
        except FileNotFoundError:  # dangling: open() creates its target
            target = os.path.realpath(target)
        except OSError:
            _fail(errno.ELOOP, "symbolic link loop", path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        _fail(errno.ENOENT, f"the folder {folder!r} does not exist", path)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        if not os.access(folder, os.W_OK):
            _fail(errno.EACCES, f"the folder {folder!r} is not writable", path)
        return target, 0o666 & ~umask
    if stat.S_ISDIR(info.st_mode):
        _fail(errno.EISDIR, "is a folder; give a file name inside it", path)
    if not stat.S_ISREG(info.st_mode):
        _fail(
            errno.EINVAL,
            "exists and is not a regular file (a FIFO, device or socket); "
            "keras-prune replaces its outputs by renaming, which would "
            "replace it: give a regular file name (or, in Python, a file "
            "object)",
            path,
        )
    if not os.access(target, os.W_OK):
        _fail(errno.EACCES, "the file is read-only", path)
    if not os.access(folder, os.W_OK):
        _fail(errno.EACCES, f"the folder {folder!r} is not writable", path)
    return target, stat.S_IMODE(info.st_mode)


def _sync_folder(folder):
    """fsync of `folder` (where the platform allows it): makes a rename
    in it durable."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
