"""Start a real ComfyUI on loopback with this pack installed, and talk to it over HTTP.

Used by test_comfyui_real.py (and by hand). Only the standard library: the test process is
siso-lab's Python, ComfyUI runs in its own (SISO_COMFYUI_PYTHON).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PACK = Path(__file__).resolve().parents[2] / "comfyui"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ComfyServer:
    url: str
    process: subprocess.Popen
    base: Path
    log_path: Path

    # ------------------------------------------------------------------ HTTP
    def get(self, path: str, raw: bool = False, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            body = response.read()
        return body if raw else json.loads(body)

    def post(self, path: str, payload: dict | None = None, timeout: float = 30):
        data = json.dumps(payload or {}).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"POST {path} -> {error.code}: {error.read().decode(errors='replace')[:2000]}") from error
        return json.loads(body) if body else {}

    def queue(self, prompt: dict) -> str:
        return self.post("/prompt", {"prompt": prompt, "client_id": "siso-test"})["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        """The /history entry of a finished prompt."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}; log: {self.log_tail()}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s; log: {self.log_tail()}")

    def interrupt(self) -> None:
        self.post("/interrupt")

    # ------------------------------------------------------------------ log
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]

    def wait_for_log(self, text: str, timeout: float = 300, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.log().find(text, start)
            if found >= 0:
                return found
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited; log: {self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{text!r} not in the ComfyUI log after {timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Listener(threading.Thread):
    """ComfyUI's websocket (/ws?clientId=...) as the frontend opens it, read in a thread (standard library only):
    `messages` is a list of (seconds since start, kind, data): ("json", {"type", "data"}) for a text message,
    ("binary", (event type, payload bytes)) for a binary one (1: PREVIEW_IMAGE, 4: PREVIEW_IMAGE_WITH_METADATA)."""

    def __init__(self, url: str, client_id: str = "siso-test"):
        super().__init__(daemon=True, name="comfy-ws-listener")
        host, port = url.split("//", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the websocket closed during the handshake")
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"no websocket: {head[:200]!r}")
        self.sock.settimeout(0.5)
        self.messages: list[tuple[float, str, object]] = []
        self.started = time.monotonic()
        self.stopping = False

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                if self.stopping:
                    raise ConnectionError("stopped") from None
                continue
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def run(self) -> None:
        try:
            while True:
                first, second = self._read(2)
                opcode, length = first & 0x0F, second & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self._read(2))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self._read(8))[0]
                mask = self._read(4) if second & 0x80 else b""
                payload = self._read(length)
                if mask:
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                at = time.monotonic() - self.started
                if opcode == 1:
                    self.messages.append((at, "json", json.loads(payload)))
                elif opcode == 2:
                    self.messages.append((at, "binary", (struct.unpack(">I", payload[:4])[0], payload[4:])))
                elif opcode == 8:
                    return
        except (ConnectionError, OSError, ValueError):
            return

    def send_json(self, message: dict) -> None:
        """One text message to ComfyUI (masked, as a client must), e.g. the frontend's feature flags."""
        payload, mask = json.dumps(message).encode(), os.urandom(4)
        header = bytes([0x81]) + (bytes([0x80 | len(payload)]) if len(payload) < 126 else
                                  bytes([0x80 | 126]) + struct.pack(">H", len(payload)))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close(self) -> None:
        self.stopping = True
        self.join(timeout=5)
        self.sock.close()


def install_pack(base: Path, copy: bool = False) -> Path:
    """This pack in `base`/custom_nodes/siso-lab: a symlink into the checkout, or (`copy`) a copied folder
    with no checkout beside it, as ComfyUI-Manager and the Comfy Registry install it."""
    target = base / "custom_nodes" / "siso-lab"
    if not target.exists():
        if copy:
            shutil.copytree(PACK, target, ignore=shutil.ignore_patterns("__pycache__", "siso_env.json"))
        else:
            target.symlink_to(PACK, target_is_directory=True)
    return target


def start(comfy_dir: str, python: str, base: Path, extra_args: list[str] | None = None, env: dict | None = None,
          ready_timeout: float = 180, copy_pack: bool = False) -> ComfyServer:
    """ComfyUI from `comfy_dir`, run by `python`, with all its folders under `base` and this pack linked (or copied) in."""
    for name in ("custom_nodes", "models/loras", "models/diffusion_models", "models/text_encoders", "input", "output",
                 "temp", "user", "tmp"):
        (base / name).mkdir(parents=True, exist_ok=True)
    install_pack(base, copy=copy_pack)
    port = free_port()
    log_path = base / "comfyui.log"
    command = [
        python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
        "--disable-api-nodes", "--database-url", "sqlite:///:memory:", "--base-directory", str(base),
        *(extra_args or []),
    ]
    environment = dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=str(base / "tmp"), **(env or {}))
    for name in ("SISO_LORAS_DIR", "SISO_RUNS_DIR", "SISO_ENV_FILE"):
        environment.pop(name, None)
    handle = open(log_path, "wb")
    process = subprocess.Popen(command, cwd=comfy_dir, stdout=handle, stderr=subprocess.STDOUT, env=environment,
                               start_new_session=True)
    handle.close()
    server = ComfyServer(f"http://127.0.0.1:{port}", process, base, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {process.returncode}: {server.log_tail()}")
        try:
            server.get("/system_stats", timeout=2)
            return server
        except (urllib.error.URLError, ConnectionError, socket.timeout, json.JSONDecodeError):
            time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"ComfyUI did not answer in {ready_timeout} s: {server.log_tail()}")


def copy_input(server: ComfyServer, source: str, name: str) -> None:
    shutil.copyfile(source, server.base / "input" / name)


def ui_text(entry: dict, node_id: str) -> str:
    """The first 'text' UI output of a node in a /history entry."""
    texts = entry.get("outputs", {}).get(node_id, {}).get("text") or [""]
    return texts[0] if isinstance(texts, list) else str(texts)


def messages(entry: dict) -> list[str]:
    return [message[0] for message in entry.get("status", {}).get("messages", [])]


def processes_with(text: str) -> list[int]:
    """PIDs of live processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in command and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found
