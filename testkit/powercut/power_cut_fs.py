#!/usr/bin/env python3
"""A FUSE filesystem that loses what was not fsynced when the power is cut.

Usage: power_cut_fs.py MOUNTPOINT

Files live in memory. Each file keeps two copies of its bytes: what was written, and what was
last made durable by fsync (or fdatasync). Cutting the power brings every file back to its
durable copy; writes and truncations since its last fsync are gone, as on a disk whose page
cache was never written out. Namespace changes (creating, renaming, removing files and
folders) are kept, as a journaling filesystem keeps its metadata: the model loses data, not
names. The kernel's page cache is bypassed (direct_io, no attribute or entry caching), so no
byte that was cut can be read back from it.

Writing anything to MOUNTPOINT/.power-cut cuts the power; the write returns once it is done.
Reading that file gives a line `cuts=N lost_bytes=B files=F` (totals since mounting).

The process runs in the foreground until it is unmounted (`fusermount -u` / `umount`) or
killed. It needs fusepy and libfuse 2 (`libfuse.so.2`), and /dev/fuse (as root).
"""

import errno
import os
import stat
import sys
import threading
import time

from fuse import FUSE, FuseOSError, Operations

CONTROL = "/.power-cut"


class Node:
    def __init__(self, mode, is_dir):
        now = time.time()
        self.mode = mode
        self.is_dir = is_dir
        self.data = bytearray()
        self.durable = b""
        self.children = {} if is_dir else None
        self.atime = self.mtime = self.ctime = now


class PowerCutFs(Operations):
    def __init__(self):
        self.lock = threading.Lock()
        self.root = Node(stat.S_IFDIR | 0o755, True)
        self.cuts = 0
        self.lost_bytes = 0
        self.lost_files = 0

    # -- lookup ---------------------------------------------------------------------------

    def _parent(self, path):
        parts = [p for p in path.split("/") if p]
        node = self.root
        for part in parts[:-1]:
            node = node.children.get(part) if node.is_dir else None
            if node is None or not node.is_dir:
                raise FuseOSError(errno.ENOENT)
        return node, (parts[-1] if parts else "")

    def _node(self, path):
        if path == "/":
            return self.root
        parent, name = self._parent(path)
        node = parent.children.get(name)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        return node

    def _status(self):
        return f"cuts={self.cuts} lost_bytes={self.lost_bytes} files={self.lost_files}\n".encode()

    # -- the power cut --------------------------------------------------------------------

    def _cut(self, node):
        if node.is_dir:
            for child in node.children.values():
                self._cut(child)
        elif bytes(node.data) != node.durable:
            lost = len(node.data) - len(node.durable)
            self.lost_bytes += max(lost, 0)
            self.lost_files += 1
            node.data = bytearray(node.durable)

    # -- attributes -----------------------------------------------------------------------

    def getattr(self, path, fh=None):
        with self.lock:
            if path == CONTROL:
                return {
                    "st_mode": stat.S_IFREG | 0o600,
                    "st_nlink": 1,
                    "st_size": len(self._status()),
                }
            node = self._node(path)
            return {
                "st_mode": node.mode,
                "st_nlink": 2 if node.is_dir else 1,
                "st_size": 4096 if node.is_dir else len(node.data),
                "st_atime": node.atime,
                "st_mtime": node.mtime,
                "st_ctime": node.ctime,
                "st_uid": os.getuid(),
                "st_gid": os.getgid(),
                "st_blocks": (len(node.data) + 511) // 512 if not node.is_dir else 8,
            }

    def chmod(self, path, mode):
        with self.lock:
            node = self._node(path)
            node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
            return 0

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        with self.lock:
            node = self._node(path)
            node.atime, node.mtime = times if times else (time.time(), time.time())
            return 0

    def access(self, path, amode):
        with self.lock:
            if path != CONTROL:
                self._node(path)
            return 0

    def statfs(self, path):
        return {
            "f_bsize": 4096,
            "f_frsize": 4096,
            "f_blocks": 1 << 20,
            "f_bfree": 1 << 19,
            "f_bavail": 1 << 19,
            "f_files": 1 << 16,
            "f_ffree": 1 << 15,
            "f_namemax": 255,
        }

    # -- folders --------------------------------------------------------------------------

    def readdir(self, path, fh):
        with self.lock:
            node = self._node(path)
            if not node.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            return [".", ".."] + list(node.children)

    def mkdir(self, path, mode):
        with self.lock:
            parent, name = self._parent(path)
            if name in parent.children:
                raise FuseOSError(errno.EEXIST)
            parent.children[name] = Node(stat.S_IFDIR | (mode & 0o7777), True)
            return 0

    def rmdir(self, path):
        with self.lock:
            parent, name = self._parent(path)
            node = parent.children.get(name)
            if node is None:
                raise FuseOSError(errno.ENOENT)
            if not node.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            if node.children:
                raise FuseOSError(errno.ENOTEMPTY)
            del parent.children[name]
            return 0

    def fsyncdir(self, path, datasync, fh):
        return 0

    # -- files ----------------------------------------------------------------------------

    def create(self, path, mode, fi=None):
        with self.lock:
            parent, name = self._parent(path)
            if name not in parent.children:
                parent.children[name] = Node(stat.S_IFREG | (mode & 0o7777), False)
            return 0

    def open(self, path, flags):
        with self.lock:
            if path != CONTROL:
                node = self._node(path)
                if flags & os.O_TRUNC and not node.is_dir:
                    node.data = bytearray()
            return 0

    def read(self, path, size, offset, fh):
        with self.lock:
            data = self._status() if path == CONTROL else self._node(path).data
            return bytes(data[offset : offset + size])

    def write(self, path, data, offset, fh):
        with self.lock:
            if path == CONTROL:
                self._walk_cut()
                return len(data)
            node = self._node(path)
            end = offset + len(data)
            if offset > len(node.data):
                node.data.extend(b"\0" * (offset - len(node.data)))
            node.data[offset:end] = data
            node.mtime = time.time()
            return len(data)

    def _walk_cut(self):
        self.cuts += 1
        self._cut(self.root)

    def truncate(self, path, length, fh=None):
        with self.lock:
            if path == CONTROL:
                return 0
            node = self._node(path)
            if length < len(node.data):
                del node.data[length:]
            else:
                node.data.extend(b"\0" * (length - len(node.data)))
            node.mtime = time.time()
            return 0

    def fsync(self, path, datasync, fh):
        with self.lock:
            if path != CONTROL:
                node = self._node(path)
                node.durable = bytes(node.data)
            return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return 0

    def unlink(self, path):
        with self.lock:
            parent, name = self._parent(path)
            if name not in parent.children:
                raise FuseOSError(errno.ENOENT)
            del parent.children[name]
            return 0

    def rename(self, old, new):
        with self.lock:
            old_parent, old_name = self._parent(old)
            node = old_parent.children.get(old_name)
            if node is None:
                raise FuseOSError(errno.ENOENT)
            new_parent, new_name = self._parent(new)
            new_parent.children[new_name] = node
            del old_parent.children[old_name]
            return 0


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    FUSE(
        PowerCutFs(),
        sys.argv[1],
        foreground=True,
        nothreads=False,
        direct_io=True,
        attr_timeout=0,
        entry_timeout=0,
        fsname="power-cut-fs",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
