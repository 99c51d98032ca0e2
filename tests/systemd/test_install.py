"""systemd/install.sh --root and uninstall.sh, run for real into a temporary root.

One module fixture plays a technician's story once and records what each step left: install,
change the config, write state, pin a reader locally, upgrade (through `make install
DESTDIR=`), uninstall, uninstall again, purge. The tests read those records.

What is real: the scripts, the venv (made by `python -m venv`), pip installing posd and every
dependency, systemd-sysusers and systemd-tmpfiles writing into the root, `systemctl --root
enable`, the config example from the installed posd. What is shortened: pip takes the wheels
from a wheelhouse built once for the module (posd from a copy of this tree, dependencies from
pip's cache or PyPI), with install.sh's --wheelhouse, the offline mode a shop without internet
uses; building posd from a source tree inside install.sh and fetching from an index are not run
here. Not possible here: systemd as PID 1 (no service started, no udev reload), real USB.
"""

from __future__ import annotations

import marshal
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.geteuid() != 0, reason="install.sh sets file owners: needs root"),
    pytest.mark.skipif(
        shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
        reason="install.sh --root needs systemd-sysusers and systemd-tmpfiles (Debian: systemd)",
    ),
]


@dataclass(frozen=True)
class Entry:
    kind: str  # d, f, l
    mode: int
    owner: str  # user:group as names in the root's own /etc/passwd and /etc/group
    target: str = ""


@dataclass
class Story:
    """What each step printed, and the root as it was right after it."""

    root: Path
    outputs: dict[str, str] = field(default_factory=dict)
    trees: dict[str, dict[str, Entry]] = field(default_factory=dict)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    probes: dict[str, dict[str, str]] = field(default_factory=dict)

    def step(self, name: str, argv: list[str], **env: str) -> None:
        proc = _run(argv, **env)
        if proc.returncode != 0:
            pytest.fail(f"{name}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        self.outputs[name] = proc.stdout
        self.trees[name] = _tree(self.root)
        self.files[name] = {
            path: (self.root / path[1:]).read_bytes()
            for path, entry in self.trees[name].items()
            if entry.kind == "f"
        }
        if (self.root / "opt/posd/venv").exists():
            self.probes[name] = _probe_venv(self.root)


def _names(root: Path, table: str) -> dict[int, str]:
    names = {0: "root"}
    path = root / "etc" / table
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split(":")
            names[int(parts[2])] = parts[0]
    return names


def _tree(root: Path) -> dict[str, Entry]:
    """Every path under root (the venv as one directory), with type, mode and owner."""
    users, groups = _names(root, "passwd"), _names(root, "group")
    tree: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = "/" + str(path.relative_to(root))
            st = path.lstat()
            kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
            owner = f"{users.get(st.st_uid, st.st_uid)}:{groups.get(st.st_gid, st.st_gid)}"
            target = os.readlink(path) if kind == "l" else ""
            tree[rel] = Entry(kind, stat.S_IMODE(st.st_mode), owner, target)
        if Path(dirpath) == root / "opt/posd":
            dirnames.remove("venv")
    return tree


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPO,
        env={**os.environ, **env},
    )


def _probe_venv(root: Path) -> dict[str, str]:
    """The venv run where it was built, the paths its files name, and (where a private mount
    namespace can be had) the venv run at /opt/posd/venv through the root's /usr/local/bin/posd
    link: root's /opt bound over this machine's, as on the booted box (the interpreter is this
    machine's)."""
    venv = root / "opt/posd/venv"
    site = next((venv / "lib").glob("python3.*/site-packages"))
    probe = {"version": _run([str(venv / "bin/posd"), "--version"]).stdout.strip()}
    named = [
        str(path.relative_to(venv))
        for path in [*venv.glob("bin/*"), venv / "pyvenv.cfg"]
        if path.is_file() and not path.is_symlink() and str(root) in path.read_text("latin-1")
    ]
    probe["files naming the build root"] = " ".join(named)
    pyc = next((site / "posd/cli/__pycache__").glob("commands.*.pyc"))
    probe["bytecode names"] = marshal.loads(pyc.read_bytes()[16:]).co_filename
    probe["site"] = str(site.relative_to(root))
    probe["cli.py"] = (site / "posd/cli/commands.py").read_text()
    unshare = shutil.which("unshare")
    namespace = [unshare or "unshare", "--mount", "--propagation", "private"]
    if unshare is None or _run([*namespace, "true"]).returncode != 0:
        probe["mounted"] = "skip: no private mount namespace here (unshare --mount)"
        return probe
    script = (
        f'mount --bind "{root}/opt" /opt && "{root}/usr/local/bin/posd" --version && '
        '/opt/posd/venv/bin/python -c "import posd.cli.commands as c, sys; '
        'print(sys.prefix, c.__file__)"'
    )
    proc = subprocess.run(
        [*namespace, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    probe["mounted"] = proc.stdout if proc.returncode == 0 else f"failed: {proc.stderr}"
    return probe


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """posd's wheel (built from a copy of this tree, so nothing is written into it) and every
    dependency's, for install.sh --wheelhouse."""
    base = tmp_path_factory.mktemp("wheelhouse")
    tree = base / "src"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    for package in ("posd", "drivers", "protocols"):
        shutil.copytree(
            REPO / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    wheels = base / "wheels"
    proc = _run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), str(tree)])
    assert proc.returncode == 0, proc.stderr
    return wheels


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Story]:
    root = tmp_path_factory.mktemp("box") / "root"
    root.mkdir()
    story = Story(root)
    wheel = str(next(wheelhouse.glob("posd-*.whl")))
    # The interpreter the wheels were built for; with --root install.sh would take /usr/bin/python3.
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    install = ["bash", str(SYSTEMD / "install.sh"), "--root", str(root)]
    install += ["--wheelhouse", str(wheelhouse), wheel]

    story.step("install", install, PYTHON=python)

    # The technician's and the daemon's own changes, and damage an upgrade must repair.
    with (root / "etc/posd/posd.toml").open("ab") as f:
        f.write(CHANGED_CONFIG)
    (root / "var/lib/posd/journal.db").write_bytes(STATE)
    (root / "var/lib/posd/journal.db").chmod(0o600)
    with (root / "etc/udev/rules.d/98-posd-local.rules").open("a") as f:
        f.write(PINNED_READER + "\n")
    with (root / "etc/udev/rules.d/99-posd.rules").open("a") as f:
        f.write('KERNEL=="ttyUSB0", SYMLINK+="stale"\n')
    (root / story.probes["install"]["site"] / "posd/cli/commands.py").write_text(
        "raise SystemExit(1)\n"
    )

    make = ["make", "-s", "install", f"DESTDIR={root}", f"WHEELHOUSE={wheelhouse}"]
    story.step("upgrade", [*make, f"SOURCE={wheel}"], PYTHON=python)

    uninstall = ["bash", str(root / "opt/posd/uninstall.sh"), "--root", str(root)]
    story.step("uninstall", uninstall)
    again = ["bash", str(SYSTEMD / "uninstall.sh"), "--root", str(root)]
    story.step("uninstall again", again)
    story.step("purge", [*again, "--purge"])
    yield story


LOCAL_RULES = "/etc/udev/rules.d/98-posd-local.rules"
CHANGED_CONFIG = b'\n# changed on site\n[logging]\nlevel = "debug"\n'
STATE = b"SQLite format 3\x00 payments"
PINNED_READER = (
    'SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", '
    'ATTRS{serial}=="A10K3XYZ", ENV{POSD_DEVICE}="reader"'
)


USERS_FILES = {
    "/etc/passwd": Entry("f", 0o644, "root:root"),
    "/etc/group": Entry("f", 0o644, "root:root"),
    "/etc/shadow": Entry("f", 0o000, "root:root"),
    "/etc/gshadow": Entry("f", 0o000, "root:root"),
    "/etc/.pwd.lock": Entry("f", 0o600, "root:root"),
}
PARENTS = {
    p: Entry("d", 0o755, "root:root")
    for p in [
        "/etc",
        "/etc/systemd",
        "/etc/systemd/system",
        "/etc/systemd/system/multi-user.target.wants",
        "/etc/udev",
        "/etc/udev/rules.d",
        "/etc/sysusers.d",
        "/etc/tmpfiles.d",
        "/opt",
        "/opt/posd",
        "/opt/posd/venv",
        "/run",
        "/usr",
        "/usr/local",
        "/usr/local/bin",
        "/var",
        "/var/lib",
    ]
}
LAID_DOWN = {
    **USERS_FILES,
    **PARENTS,
    "/etc/posd": Entry("d", 0o750, "root:posd"),
    "/etc/posd/posd.toml": Entry("f", 0o640, "root:posd"),
    "/var/lib/posd": Entry("d", 0o700, "posd:posd"),
    "/run/posd": Entry("d", 0o750, "posd:posd"),
    "/etc/systemd/system/posd.service": Entry("f", 0o644, "root:root"),
    "/etc/systemd/system/multi-user.target.wants/posd.service": Entry(
        "l", 0o777, "root:root", "/etc/systemd/system/posd.service"
    ),
    "/etc/udev/rules.d/99-posd.rules": Entry("f", 0o644, "root:root"),
    "/etc/udev/rules.d/98-posd-local.rules": Entry("f", 0o644, "root:root"),
    "/etc/sysusers.d/posd.conf": Entry("f", 0o644, "root:root"),
    "/etc/tmpfiles.d/posd.conf": Entry("f", 0o644, "root:root"),
    "/opt/posd/README.md": Entry("f", 0o644, "root:root"),
    "/opt/posd/uninstall.sh": Entry("f", 0o755, "root:root"),
    "/opt/posd/layout.sh": Entry("f", 0o644, "root:root"),
    "/usr/local/bin/posd": Entry("l", 0o777, "root:root", "/opt/posd/venv/bin/posd"),
}
SHIPPED_AS = {
    "/etc/systemd/system/posd.service": "posd.service",
    "/etc/udev/rules.d/99-posd.rules": "99-posd.rules",
    "/etc/udev/rules.d/98-posd-local.rules": "98-posd-local.rules",
    "/etc/sysusers.d/posd.conf": "posd.sysusers",
    "/etc/tmpfiles.d/posd.conf": "posd.tmpfiles",
    "/opt/posd/uninstall.sh": "uninstall.sh",
    "/opt/posd/layout.sh": "layout.sh",
}

JOURNAL = Entry("f", 0o600, "root:root")
KEPT = {
    **USERS_FILES,
    "/etc/posd": LAID_DOWN["/etc/posd"],
    "/etc/posd/posd.toml": LAID_DOWN["/etc/posd/posd.toml"],
    "/var/lib/posd": LAID_DOWN["/var/lib/posd"],
    "/var/lib/posd/journal.db": JOURNAL,
    "/run/posd": LAID_DOWN["/run/posd"],
    LOCAL_RULES: LAID_DOWN[LOCAL_RULES],
}


def test_the_first_run_lays_down_exactly_the_layout(story: Story) -> None:
    assert "installed posd 0.1.0 into" in story.outputs["install"]
    assert story.trees["install"] == LAID_DOWN
    files = story.files["install"]
    for path, name in SHIPPED_AS.items():
        assert files[path] == (SYSTEMD / name).read_bytes(), path
    config = files["/etc/posd/posd.toml"].decode()
    assert "[terminal]" in config and "[ledger]" in config


def test_the_user_is_in_the_device_groups_of_the_root(story: Story) -> None:
    files = story.files["install"]
    passwd = files["/etc/passwd"].decode().splitlines()
    [posd] = [line.split(":") for line in passwd if line.startswith("posd:")]
    assert posd[2] == posd[3] and int(posd[2]) < 1000  # a system user with its own group
    assert posd[4:] == ["posd POS terminal daemon", "/var/lib/posd", "/usr/sbin/nologin"]
    groups = {ln.split(":")[0]: ln.split(":")[3] for ln in files["/etc/group"].decode().split()}
    for name in ("dialout", "plugdev", "audio"):
        assert "posd" in groups[name].split(","), name


@pytest.mark.parametrize("step", ["install", "upgrade"])
def test_the_venv_runs_here_and_names_only_its_final_paths(story: Story, step: str) -> None:
    probe = story.probes[step]
    assert probe["version"] == "posd 0.1.0"
    assert probe["files naming the build root"] == ""
    assert probe["bytecode names"] == f"/{probe['site']}/posd/cli/commands.py"
    assert probe["bytecode names"].startswith("/opt/posd/venv/lib/python3.")


@pytest.mark.parametrize("step", ["install", "upgrade"])
def test_the_venv_runs_once_the_root_is_mounted_where_it_belongs(story: Story, step: str) -> None:
    mounted = story.probes[step]["mounted"]
    if mounted.startswith("skip: "):
        pytest.skip(mounted.removeprefix("skip: "))
    lines = mounted.splitlines()
    assert lines[0] == "posd 0.1.0", mounted
    prefix, module = lines[1].split()
    assert prefix == "/opt/posd/venv"
    assert module == f"/{story.probes[step]['site']}/posd/cli/commands.py"


def test_the_second_run_is_an_upgrade_that_keeps_config_state_and_local_rules(
    story: Story,
) -> None:
    out = story.outputs["upgrade"]
    assert "upgrading posd 0.1.0 in" in out
    assert "upgraded posd 0.1.0 → 0.1.0 in" in out
    assert "keeping" in out and "posd.toml" in out
    # Same files, modes and owners: nothing added, nothing re-owned, the user not made again.
    assert story.trees["upgrade"] == {**LAID_DOWN, "/var/lib/posd/journal.db": JOURNAL}
    files = story.files["upgrade"]
    assert files["/etc/posd/posd.toml"].endswith(CHANGED_CONFIG)
    assert files["/var/lib/posd/journal.db"] == STATE
    assert files[LOCAL_RULES].endswith(PINNED_READER.encode() + b"\n")
    # What install.sh owns is put back, the damaged package too (at the same version).
    assert files["/etc/udev/rules.d/99-posd.rules"] == (SYSTEMD / "99-posd.rules").read_bytes()
    assert story.probes["upgrade"]["cli.py"] == (REPO / "posd/cli/commands.py").read_text()
    passwd = files["/etc/passwd"].decode().splitlines()
    assert [line.split(":")[0] for line in passwd].count("posd") == 1


def test_uninstall_keeps_config_state_and_local_rules(story: Story) -> None:
    out = story.outputs["uninstall"]
    tree = story.trees["uninstall"]
    gone = LAID_DOWN.keys() - KEPT.keys() - PARENTS.keys()
    assert not gone & tree.keys()
    assert "/opt/posd" not in tree
    assert {path: tree.get(path) for path in KEPT} == KEPT
    assert "--purge removes it" in out
    assert story.files["uninstall"]["/etc/posd/posd.toml"].endswith(CHANGED_CONFIG)
    assert story.files["uninstall"]["/var/lib/posd/journal.db"] == STATE
    assert "nothing of posd to remove" in story.outputs["uninstall again"]
    assert story.trees["uninstall again"] == tree


def test_purge_removes_config_state_and_local_rules_but_not_the_user(story: Story) -> None:
    tree = story.trees["purge"]
    for path in ("/etc/posd", "/var/lib/posd", "/run/posd", LOCAL_RULES):
        assert path not in tree, path
    assert "kept the system user posd" in story.outputs["purge"]
    assert b"\nposd:" in b"\n" + story.files["purge"]["/etc/passwd"]


@pytest.mark.parametrize(
    ("script", "args"),
    [("install.sh", []), ("install.sh", ["--root", "/tmp"]), ("uninstall.sh", [])],
)
def test_the_scripts_refuse_without_root(tmp_path: Path, script: str, args: list[str]) -> None:
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root without runuser to drop privileges")
    proc = subprocess.run(
        [runuser, "-u", "nobody", "--", "bash", str(SYSTEMD / script), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 77, proc.stderr
    assert "must run as root" in proc.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--root", "/nonexistent/posd-root"], 66, "no such directory"),
        (["--frobnicate"], 64, "unknown option"),
        (["--root", "{tmp}", "/nonexistent/posd.whl"], 66, "no such source tree or wheel"),
        (["--root", "{tmp}", "--wheelhouse", "/nonexistent"], 66, "no such directory"),
    ],
)
def test_install_says_what_is_wrong_with_its_arguments(
    tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = _run(["bash", str(SYSTEMD / "install.sh"), *argv])
    assert proc.returncode == status, proc.stderr
    assert message in proc.stderr
    assert list(tmp_path.iterdir()) == []
