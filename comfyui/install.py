"""Install siso-lab, which the SISO nodes run, without silently changing ComfyUI's packages.

    python install.py                  into THIS Python's environment: run it with ComfyUI's python
                                       (ComfyUI-Manager and the Comfy Registry run it so after copying
                                       this folder into custom_nodes/)
    python install.py --venv DIR       a separate environment for SISO in DIR, for when ComfyUI's
                                       packages conflict with SISO's; the node then uses it whenever
                                       its python_executable is empty (recorded in ComfyUI's user
                                       directory: user/siso-lab/siso_env.json, which survives updates
                                       of this pack)

Into ComfyUI's environment, pip's plan is computed first (pip install --dry-run --report). If it
would change any package that is already installed (a different version of transformers, say),
nothing is installed: the changes are listed and the command for a separate environment is
printed. --allow-changes lets it go ahead after listing them. torch, torchvision and torchaudio
are never changed.

Options:
  --source SRC          what to install: a siso-lab checkout folder, a wheel, an archive or a URL
                        (default: $SISO_LAB_SOURCE, else the siso-lab checkout this folder sits in,
                        else a siso_lab-*.whl in this folder). siso-lab is not on the package index:
                        a copied pack with neither needs --source.
  --allow-changes       let pip change already-installed packages (they are listed first)
  --dry-run             only list what would be installed or changed
  --venv DIR            make (or reuse) a virtual environment in DIR and install SISO there
  --torch-index-url URL with --venv: where torch comes from (e.g. a CUDA build's index)
  --user-dir DIR        with --venv: ComfyUI's user directory, where the environment is recorded
                        (default: the `user` folder beside the custom_nodes folder this pack is in)

Exit codes: 0 done, 1 pip failed (the reason is named: no network, a missing source, a conflict),
2 bad arguments or no source, 3 refused (installing would change packages).
Only the standard library and pip are used.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

PACK = Path(__file__).resolve().parent
PROJECT = "siso-lab"
KEEP = ("torch", "torchvision", "torchaudio")  # ComfyUI's own builds: never replaced
REFUSED = 3
NO_SOURCE = 2


def _load_paths():
    """siso/pack.py (standard library only), read by path: where siso-lab comes from, where the record goes."""
    spec = importlib.util.spec_from_file_location("siso_pack_paths", PACK / "siso" / "pack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


paths = _load_paths()
ENV_RECORD_NAME = paths.ENV_RECORD_NAME


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def quote(text: str) -> str:
    if os.name == "nt":
        return f'"{text}"' if (" " in text or not text) else text
    return shlex.quote(text)


def command_line(*parts: str) -> str:
    return " ".join(quote(str(part)) for part in parts)


def comfy_root() -> Path | None:
    """The ComfyUI (or --base-directory) folder whose custom_nodes holds this pack, as it was reached
    (a symlinked pack resolves into its checkout, so the unresolved path is tried first)."""
    for here in (Path(os.path.abspath(__file__)).parent, PACK):
        if here.parent.name == "custom_nodes":
            return here.parent.parent
    return None


def record_file(user_dir: str | None = None) -> Path | None:
    """Where --venv records its environment: $SISO_ENV_FILE, else ComfyUI's user directory (--user-dir,
    else `user` beside custom_nodes); None when no ComfyUI is around this pack."""
    if os.environ.get("SISO_ENV_FILE"):
        return Path(os.environ["SISO_ENV_FILE"])
    if user_dir:
        return paths.record_in(Path(user_dir).expanduser())
    root = comfy_root()
    return paths.record_in(root / "user") if root is not None else None


class NoSource(Exception):
    """Nothing says where siso-lab comes from, or the source given does not exist (one line)."""


def requirement(source: str | None) -> tuple[list[str], str]:
    """(pip arguments that name siso-lab, a description of where it comes from); NoSource if there is none."""
    source = source or os.environ.get(paths.SOURCE_ENV) or ""
    if not source:
        found = paths.default_source(PACK)
        if found is None:
            raise NoSource(
                "install.py: no siso-lab to install: this pack folder is not inside a siso-lab checkout and holds no "
                f"siso_lab-*.whl (it was copied, e.g. by ComfyUI-Manager). Run it again with --source: {paths.SOURCE_WORDS}"
            )
        return found
    if re.match(r"^[a-z][a-z0-9+.-]*://", source) or source.startswith("git+"):
        return [f"{PROJECT} @ {source}"], source
    path = Path(source).expanduser()
    if not path.exists():
        raise NoSource(f"install.py: --source {source!r} does not exist: give {paths.SOURCE_WORDS}")
    return [str(path.resolve())], str(path.resolve())


NETWORK = re.compile(r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
                     r"Name or service not known|Network is unreachable|Max retries exceeded|ConnectTimeout|"
                     r"Read timed out|Could not fetch URL|getaddrinfo failed|No route to host|SSLError|"
                     r"Could not resolve host|Couldn't resolve host|unable to access|Connection refused|Connection timed out",
                     re.IGNORECASE)
MISSING = re.compile(r"\b404\b|Not Found|does not appear to be a Python project|neither 'setup.py' nor 'pyproject.toml'|"
                     r"No such file or directory|is not a valid wheel filename|BadZipFile|not a zip file|"
                     r"Invalid wheel filename|Repository not found|repository '[^']*' not found", re.IGNORECASE)
NOT_ON_INDEX = re.compile(r"No matching distribution found for ([^\s]+)")
CONFLICT = re.compile(r"ResolutionImpossible|conflicting dependencies|Cannot install", re.IGNORECASE)


def pip_failure(output: str, origin: str) -> tuple[str, bool]:
    """What a failed pip run means, in one line, and whether a separate environment would help (a conflict)."""
    if NETWORK.search(output):
        return (f"pip could not reach the network (for {origin} or its requirements): connect and run it again, or "
                "give a local --source (a checkout or a wheel); nothing was changed"), False
    if MISSING.search(output):
        return f"the source {origin} was not found or is not siso-lab: give {paths.SOURCE_WORDS}; nothing was changed", False
    if CONFLICT.search(output):
        return f"pip cannot install siso-lab here without replacing {'/'.join(KEEP)} or another pinned package; nothing was changed", True
    missing = NOT_ON_INDEX.search(output)
    if missing:
        return (f"pip found no {missing.group(1)} on the package index (offline, or an index without it): connect, or "
                "point pip at an index or a folder of wheels that has it; nothing was changed"), False
    return "pip failed (see its message above); nothing was changed", True


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


def venv_hint(python: str, source: str | None = None) -> str:
    return command_line(python, PACK / "install.py", "--venv", str(Path.home() / "siso-venv"),
                        *(["--source", source] if source else []))


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
            reason, separate_helps = pip_failure(error, origin)
            print(f"{tail}\n\nSISO: {reason}." + (f" Make a separate environment for SISO:\n  {venv_hint(python, args.source)}"
                                                  if separate_helps else ""))
            return REFUSED if separate_helps else 1
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
                  f"uses it by itself):\n  {venv_hint(python, args.source)}\nor accept the changes above:\n  "
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
              f"avoids conflicts:\n  {venv_hint(python, args.source)}")
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
    for step, what in ((torch, "torch"), (req, origin)):
        done = pip(str(python), "install", *step, capture=True)
        print(done.stdout, end="")
        if done.returncode != 0:
            print(done.stderr, end="")
            reason, _ = pip_failure(done.stdout + done.stderr, what)
            print(f"SISO: installing {' '.join(step)} into {folder} failed: {reason}")
            return 1
    print(f"SISO: environment ready: {python}")
    print(remember(str(python), origin, args.user_dir))
    return 0


def remember(python: str, origin: str, user_dir: str | None) -> str:
    """Record the environment where the node looks for it (ComfyUI's user directory); what was done, in words."""
    record = record_file(user_dir)
    if record is None:
        return (f"This pack is not in a ComfyUI custom_nodes folder, so the environment was not recorded: set the node's "
                f"python_executable to {python}, or run this again with --user-dir /path/to/ComfyUI/user.")
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"python": python, "source": origin,
                                      "made": _dt.datetime.now().isoformat(timespec="seconds")}, indent=2) + "\n",
                          encoding="utf-8")
    except OSError as error:
        return f"Could not record it in {record} ({error.strerror or error}): set the node's python_executable to {python}."
    return f"The SISO nodes use it whenever their python_executable is empty (recorded in {record})."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--allow-changes", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--venv", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--torch-index-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--user-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_index_url and not args.venv:
        parser.error("--torch-index-url goes with --venv DIR (ComfyUI's own torch is never replaced)")
    try:
        if args.venv:
            return separate_environment(args)
        return into_this_python(args)
    except NoSource as problem:
        print(problem)
        return NO_SOURCE


if __name__ == "__main__":
    sys.exit(main())
