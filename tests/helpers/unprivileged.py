"""Python in a child process on which file permissions bite, even when the tests run as root.

CI runs the suite as root, and root reads and opens any file whatever its mode, so the rule
"a file posd may not read is a clear error" cannot be seen in-process there. As root the child
keeps uid 0 but loses the two capabilities that override file permissions
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): a mode-0 file is then as closed to it as to the posd
user. Dropping them, rather than switching to nobody, keeps the interpreter runnable where it
lives under /root (pyenv), which nobody cannot enter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
_DROP = "-dac_override,-dac_read_search"


def run_python(*args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """`python ARGS` from the repository root (so `tests.*` imports), without root's override
    of file permissions; its output as text."""
    argv = [sys.executable, *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux) to drop the override")
        argv = [setpriv, f"--bounding-set={_DROP}", f"--inh-caps={_DROP}", "--", *argv]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=REPO_ROOT
    )
    if proc.stderr.startswith("setpriv: "):
        # No CAP_SETPCAP (a locked-down container): this root cannot give the override up.
        pytest.skip(f"cannot drop root's file-permission override here: {proc.stderr.strip()}")
    return proc
