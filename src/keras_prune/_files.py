"""Writing files atomically: all of a file, or nothing changes.

Every file keras-prune writes for the user (compressed models, the CLI's
models and tables, plots) goes through `atomic_output`, so that a write
that fails (disk full, file size limit, interrupt) leaves the previous
file as it was and no temporary file behind.
"""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temporary path next to `path` to write; renames it over
    `path` when the block succeeds, removes it when it fails.

    The temporary name keeps the extension (Keras and matplotlib choose
    the format by it). The file is fsync'ed before the rename and the
    folder after it, so the rename itself is durable. A symbolic link is
    written through (its target is replaced), not replaced.

    Args:
        path: Destination file path (str or os.PathLike).

    Yields:
        The temporary path (str) to write the whole file to.

    Raises:
        OSError: the folder cannot be written, or the block wrote nothing.

    Example:

    ```python
    with atomic_output("plot.png") as tmp:
        fig.savefig(tmp)
    ```
    """
    path = os.fspath(path)
    if os.path.islink(path):
        path = os.path.realpath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=ext)
    os.close(fd)
    try:
        yield tmp
        if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
            raise OSError(f"nothing was written to {path!r}")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates the file with mode 0600; give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
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
