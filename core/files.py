"""Who may read what huzhu keeps on disk: the owner only, whatever the umask.

DATA_DIR and the folders in it (media, exports, backups) are 0700; the database file (and
SQLite's -wal and -shm beside it), the secret key, claim photos, exports and backups are 0600.
Modes are set explicitly when a file or folder is made (os.open with a mode, then chmod, since
the umask only takes bits away) and corrected at start for what an older version left.
"""
from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDES = ("", "-wal", "-shm", "-journal")


def private_dir(path: str | Path) -> Path:
    """The folder, made if missing, readable by the owner only."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _chmod(path, DIR_MODE)
    return path


def private_file(path: str | Path) -> None:
    """Owner-only, if the file is there (and ours to change)."""
    _chmod(Path(path), FILE_MODE)


def create_private(path: str | Path) -> None:
    """An empty file created 0600 if missing (SQLite keeps the mode of a file it finds)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def private_sqlite(path: str | Path) -> None:
    """The SQLite database file and its -wal, -shm and -journal files: 0600."""
    for side in SQLITE_SIDES:
        private_file(f"{path}{side}")


def secure_data_dir(data_dir: str | Path) -> Path:
    """DATA_DIR 0700 with its folders, the key 0600: at every start, so that a data folder an
    older version made (0755, files 0644) is closed too. Files inside media and exports are
    not walked (they were written 0600); their folders are."""
    root = private_dir(data_dir)
    private_file(root / "secret.key")
    private_file(root / "scheduler.lock")
    for name in ("media", "exports", "backups"):
        folder = root / name
        if folder.is_dir():
            _chmod(folder, DIR_MODE)
            if name == "media":
                for sub in folder.iterdir():
                    if sub.is_dir():
                        _chmod(sub, DIR_MODE)
    return root


def _chmod(path: Path, mode: int) -> None:
    try:
        if (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except PermissionError:  # not ours (a shared folder given in DATABASE_URL): left alone
        pass
