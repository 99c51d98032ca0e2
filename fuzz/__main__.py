"""Runs the coverage-guided fuzz targets with atheris: `make fuzz` or `python -m fuzz`.

Every `fuzz/fuzz_*.py` module exposes `target(data: bytes) -> None`, which feeds
the bytes to one decoder and lets only that decoder's documented errors pass.
Each target runs in its own process because atheris.Fuzz() never returns.
"""

from __future__ import annotations

import argparse
import pkgutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Executed in the child: instrument the protocol modules as they are imported,
# then hand the target to libFuzzer.
CHILD = """
import importlib, sys
import atheris
with atheris.instrument_imports(include=["protocols"]):
    module = importlib.import_module("fuzz." + sys.argv[1])
atheris.Setup([sys.argv[0], *sys.argv[2:]], module.target)
atheris.Fuzz()
"""


def target_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("fuzz_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("targets", nargs="*", help=f"targets (default: all of {target_names()})")
    parser.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    parser.add_argument(
        "--corpus",
        type=Path,
        default=HERE / "corpus",
        help="corpus directory root; one subdirectory per target",
    )
    args = parser.parse_args(argv)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print(
            "atheris is not installed: run `make fuzz` (it installs the fuzz extra)",
            file=sys.stderr,
        )
        return 69
    names = args.targets or target_names()
    if not names:
        print("no fuzz targets found under fuzz/", file=sys.stderr)
        return 1
    unknown = sorted(set(names) - set(target_names()))
    if unknown:
        print(
            f"unknown fuzz targets: {', '.join(unknown)}; known: {', '.join(target_names())}",
            file=sys.stderr,
        )
        return 64
    failed = []
    for name in names:
        corpus = args.corpus / name
        corpus.mkdir(parents=True, exist_ok=True)
        print(f"== {name}: {args.seconds} s, corpus {corpus}", flush=True)
        rc = subprocess.call(
            [
                sys.executable,
                "-c",
                CHILD,
                name,
                f"-max_total_time={args.seconds}",
                "-rss_limit_mb=1024",
                "-timeout=5",
                str(corpus),
            ],
            cwd=HERE.parent,
        )
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"fuzz targets that found a crash: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(names)} fuzz targets ran clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
