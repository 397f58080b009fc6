"""Install siso-lab, which the SISO nodes run, without silently changing ComfyUI's packages.

    python install.py                  into THIS Python's environment: run it with ComfyUI's python
                                       (ComfyUI-Manager and the Comfy Registry run it so after copying
                                       this folder into custom_nodes/)
    python install.py --venv DIR       a separate environment for SISO in DIR, for when ComfyUI's
                                       packages conflict with SISO's; the node then uses it whenever
                                       its python_executable is empty

Into ComfyUI's environment, pip's plan is computed first (pip install --dry-run --report). If it
would change any package that is already installed (a different version of transformers, say),
nothing is installed: the changes are listed and the command for a separate environment is
printed. --allow-changes lets it go ahead after listing them. torch, torchvision and torchaudio
are never changed.

Options:
  --source SRC          what to install: a siso-lab checkout folder, a wheel, an archive or a URL
                        (default: $SISO_LAB_SOURCE, else the siso-lab checkout this folder sits in,
                        else siso-lab's repository on GitHub)
  --allow-changes       let pip change already-installed packages (they are listed first)
  --dry-run             only list what would be installed or changed
  --venv DIR            make (or reuse) a virtual environment in DIR and install SISO there
  --torch-index-url URL with --venv: where torch comes from (e.g. a CUDA build's index)

Exit codes: 0 done, 1 pip failed, 2 bad arguments, 3 refused (installing would change packages).
Only the standard library and pip are used.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

PACK = Path(__file__).resolve().parent
GITHUB_REPO = "siso-lab/siso-lab"  # keep equal to siso_lib/notebooks/setup.py's GITHUB_REPO (a test checks)
ARCHIVE_URL = f"https://github.com/{GITHUB_REPO}/archive/refs/heads/main.zip"
PROJECT = "siso-lab"
KEEP = ("torch", "torchvision", "torchaudio")  # ComfyUI's own builds: never replaced
ENV_RECORD_NAME = "siso_env.json"  # read by siso/pack.py recorded_python()
REFUSED = 3


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def quote(text: str) -> str:
    if os.name == "nt":
        return f'"{text}"' if (" " in text or not text) else text
    return shlex.quote(text)


def command_line(*parts: str) -> str:
    return " ".join(quote(str(part)) for part in parts)


def record_file() -> Path:
    return Path(os.environ.get("SISO_ENV_FILE") or PACK / ENV_RECORD_NAME)


def checkout() -> Path | None:
    """The siso-lab checkout this pack folder sits in (the symlinked install), if it does."""
    root = PACK.parent
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    if (root / "siso_lib" / "cli" / "generate.py").is_file() and re.search(r'^name\s*=\s*"siso-lab"', text, re.MULTILINE):
        return root
    return None


def requirement(source: str | None) -> tuple[list[str], str]:
    """(pip arguments that name siso-lab, a description of where it comes from)."""
    source = source or os.environ.get("SISO_LAB_SOURCE") or ""
    if not source:
        root = checkout()
        if root is not None:
            return ["-e", str(root)], f"the siso-lab checkout this pack sits in ({root})"
        return [f"{PROJECT} @ {ARCHIVE_URL}"], f"GitHub ({ARCHIVE_URL})"
    if re.match(r"^[a-z][a-z0-9+.-]*://", source) or source.startswith("git+"):
        return [f"{PROJECT} @ {source}"], source
    path = Path(source).expanduser()
    if not path.exists():
        raise SystemExit(f"install.py: --source {source!r} does not exist: give a siso-lab checkout, wheel, archive or URL")
    return [str(path.resolve())], str(path.resolve())


def installed() -> dict[str, tuple[str, str]]:
    """canonical name -> (name, version) of every distribution this Python sees."""
    from importlib import metadata

    found: dict[str, tuple[str, str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and canonical(name) not in found:
            found[canonical(name)] = (name, dist.version)
    return found


def valid_version(version: str) -> bool:
    try:
        from pip._vendor.packaging.version import InvalidVersion, Version
    except ImportError:  # pip not importable in-process: keep a simple shape check
        return re.fullmatch(r"[0-9][0-9A-Za-z.+!_-]*", version or "") is not None
    try:
        Version(version)
        return True
    except InvalidVersion:
        return False


def write_constraints(path: Path, pins: dict[str, tuple[str, str]]) -> None:
    lines = [f"{name}=={version}" for name, version in pins.values() if valid_version(version)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def pip(python: str, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    command = [python, "-m", "pip", *args]
    return subprocess.run(command, text=True, capture_output=capture, check=False)


def plan(python: str, req: list[str], constraints: Path) -> tuple[list[tuple[str, str]] | None, str]:
    """What `pip install req` would install, [(name, version)], or (None, pip's error)."""
    with tempfile.TemporaryDirectory(prefix="siso-install-") as folder:
        report = Path(folder) / "report.json"
        done = pip(python, "install", "--dry-run", "--quiet", "--report", str(report), "-c", str(constraints), *req,
                   capture=True)
        if done.returncode != 0 or not report.is_file():
            return None, (done.stderr or done.stdout or "").strip()
        data = json.loads(report.read_text(encoding="utf-8"))
    items = []
    for item in data.get("install", []):
        meta = item.get("metadata") or {}
        if meta.get("name"):
            items.append((meta["name"], str(meta.get("version", ""))))
    return items, ""


def venv_hint(python: str) -> str:
    return command_line(python, PACK / "install.py", "--venv", str(Path.home() / "siso-venv"))


def into_this_python(args: argparse.Namespace) -> int:
    python = sys.executable
    req, origin = requirement(args.source)
    print(f"SISO: installing siso-lab from {origin}")
    print(f"SISO: into {python}")
    present = installed()
    kept = {key: present[key] for key in KEEP if key in present}
    if "torch" not in kept:
        print("SISO: note: torch is not installed in this Python; pip will install one (is this ComfyUI's python?)")
    else:
        print("SISO: keeping " + ", ".join(f"{name} {version}" for name, version in kept.values()))
    with tempfile.TemporaryDirectory(prefix="siso-install-") as folder:
        keep_file = Path(folder) / "keep.txt"
        write_constraints(keep_file, kept)
        items, error = plan(python, req, keep_file)
        if items is None:
            tail = "\n".join(error.splitlines()[-15:])
            print(f"{tail}\n\nSISO: pip cannot install siso-lab here without replacing {'/'.join(KEEP)} "
                  f"(or it failed: see above). Nothing was changed. Make a separate environment for SISO:\n  {venv_hint(python)}")
            return REFUSED
        changes, additions = [], []
        for name, version in items:
            key = canonical(name)
            if key == PROJECT:
                continue
            if key in present and present[key][1] != version:
                changes.append((present[key][0], present[key][1], version))
            elif key not in present:
                additions.append((name, version))
        if additions:
            print("SISO: would add: " + ", ".join(f"{name} {version}" for name, version in additions))
        if changes:
            print("SISO: installing siso-lab here would CHANGE packages that are already installed "
                  "(ComfyUI or other packs may need them):")
            for name, old, new in changes:
                print(f"  {name} {old} -> {new}")
        if args.dry_run:
            print("SISO: dry run: nothing was changed")
            return 0
        if changes and not args.allow_changes:
            print("SISO: nothing was changed. Either make a separate environment for SISO (recommended; the node "
                  f"uses it by itself):\n  {venv_hint(python)}\nor accept the changes above:\n  "
                  f"{command_line(python, PACK / 'install.py', '--allow-changes', *([] if not args.source else ['--source', args.source]))}")
            return REFUSED
        pins = dict(kept)
        if not args.allow_changes:
            # pip's second resolution must not differ from the plan shown: every installed package stays
            pins = {key: value for key, value in present.items() if key != PROJECT}
        write_constraints(keep_file, pins)
        done = pip(python, "install", "-c", str(keep_file), *req)
    if done.returncode != 0:
        print(f"SISO: pip failed (exit code {done.returncode}); nothing else was done. A separate environment "
              f"avoids conflicts:\n  {venv_hint(python)}")
        return 1
    print("SISO: done. Restart ComfyUI. (The IR weights, ir_features.pth, are downloaded by hand: see README.md.)")
    return 0


def venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def separate_environment(args: argparse.Namespace) -> int:
    folder = Path(args.venv).expanduser().resolve()
    req, origin = requirement(args.source)
    python = venv_python(folder)
    if not python.is_file():
        print(f"SISO: making a virtual environment in {folder}")
        made = subprocess.run([sys.executable, "-m", "venv", str(folder)], check=False)
        if made.returncode != 0 or not python.is_file():
            print(f"SISO: could not make a virtual environment in {folder} (is python's venv module installed?)")
            return 1
    torch = ["torch", "torchvision"] + (["--index-url", args.torch_index_url] if args.torch_index_url else [])
    print(f"SISO: installing torch and siso-lab (from {origin}) into {folder}")
    for step in (torch, req):
        done = pip(str(python), "install", *step)
        if done.returncode != 0:
            print(f"SISO: pip failed (exit code {done.returncode}) installing {' '.join(step)} into {folder}")
            return 1
    record = record_file()
    try:
        record.write_text(json.dumps({"python": str(python), "source": origin,
                                      "made": _dt.datetime.now().isoformat(timespec="seconds")}, indent=2) + "\n",
                          encoding="utf-8")
        remembered = f"The SISO LoRA Generator node uses it whenever its python_executable is empty (recorded in {record})."
    except OSError as error:
        remembered = f"Could not record it in {record} ({error.strerror or error}): set the node's python_executable to it."
    print(f"SISO: environment ready: {python}\n{remembered}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--allow-changes", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--venv", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--torch-index-url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_index_url and not args.venv:
        parser.error("--torch-index-url goes with --venv DIR (ComfyUI's own torch is never replaced)")
    if args.venv:
        return separate_environment(args)
    return into_this_python(args)


if __name__ == "__main__":
    sys.exit(main())
