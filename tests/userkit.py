"""Real users for isolation tests, made with useradd and removed afterwards (CI is root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests.services import unavailable


@contextmanager
def system_user(prefix: str = "schedt") -> Iterator[pwd.struct_passwd]:
    """A fresh user with a home directory; needs root and useradd."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        unavailable("useradd", "making users needs root and useradd")
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "--force", "--remove", name], capture_output=True, timeout=30)
