"""Measure a SISO run's GPU memory at full size on a machine without a GPU.

The GPU is simulated by PyTorch's meta device: tensors there have shapes, dtypes and storages
of the right size but no data, so building FLUX.1-schnell's 12 B transformer costs no memory and
an iteration costs no arithmetic. `SimulatedDevice` counts the bytes of the live meta storages
(rounded up to the CUDA caching allocator's 512-byte blocks) and their peak, as
`torch.cuda.max_memory_allocated` does. The run itself is the library's: `SISOOptimizer` with
the real generator, losses, LoRA, checkpointing, caching and offloading of its mode, so what
the probe measures is what that code keeps alive, not a hand count of it.

What the simulation changes, and why:

* the host (CPU) is meta too, but uncounted. Models are built "on the host" (as `from_pretrained`
  loads them on the CPU), moved by the optimiser as in a real run; a copy to the CPU (offloaded
  text encoders) gives an uncounted tensor, and what is computed from one stays on the host;
* `F.scaled_dot_product_attention` calls the memory-efficient kernel's op, which keeps q, k, v,
  the output and the log-sum-exp for backward, as the GPU's flash / memory-efficient kernels
  do (on meta, PyTorch would pick the math path and keep the whole attention matrix);
* schedulers keep their timesteps on the host (they index them by value), and random numbers
  come from a CPU generator (a meta generator does not exist);
* a value read back from the device (`.item()`, `if tensor:`) reads 0 (False): the editing
  inversion's range checks are the only reads before the loss, which the probe never reads;
* fused AdamW is not available on meta: the foreach one runs (same state, 2 x the LoRA).

Not simulated: the CUDA context, cuBLAS/cuDNN workspaces and allocator fragmentation (a few
hundred MiB together on an H200; `siso_lib.memory` adds them as its margin).

    python -m siso_lib.offline.memory_probe                      # every family, mode, text-encoder case
    python -m siso_lib.offline.memory_probe --families sdxl --resolutions 512 --no-write
    python -m siso_lib.offline.memory_probe --bench-flow        # the measured SDXL cases, as measured

Each case runs in its own process (a meta run leaves nothing behind, but import-time patches
and peaks must not leak) and `siso_lib/memory_table.json` is rewritten after each case.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import subprocess
import sys
import time
import weakref
from pathlib import Path

TABLE_PATH = Path(__file__).resolve().parent.parent / "memory_table.json"
REPO = Path(__file__).resolve().parents[2]  # the checkout (the docs and the benchmark results live there)
BLOCK = 512  # the caching allocator rounds every block up to a multiple of 512 bytes
META = "meta"


class SimulatedDevice:
    """A dispatch mode that counts the bytes of live device (meta) storages and their peak.

    `host()` marks what is made inside it as host memory (uncounted); `reset_peak()` starts a new
    peak from the current count.
    """

    def __init__(self):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.weak import WeakIdKeyDictionary

        self.torch = torch
        self.device_storages = WeakIdKeyDictionary()  # storage -> counted bytes
        self.host_storages = WeakIdKeyDictionary()
        self.current = 0
        self.peak = 0
        self._building_on_host = False
        self._uploading = False
        simulator = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                return simulator._dispatch(func, args, kwargs or {})

        self._mode = _Mode()
        self._patches = contextlib.ExitStack()

    # -------------------------------------------------------------- accounting
    def _release(self, nbytes: int) -> None:
        self.current -= nbytes

    def is_host(self, tensor) -> bool:
        return tensor.device.type == META and tensor.untyped_storage() in self.host_storages

    def _record(self, tensor, on_host: bool) -> None:
        if not isinstance(tensor, self.torch.Tensor) or tensor.device.type != META:
            return
        storage = tensor.untyped_storage()
        if storage in self.device_storages or storage in self.host_storages:
            return
        if on_host:
            self.host_storages[storage] = True
            return
        nbytes = -(-storage.nbytes() // BLOCK) * BLOCK
        self.device_storages[storage] = nbytes
        weakref.finalize(storage, self._release, nbytes)
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def device_bytes(self, tensors) -> int:
        """Counted bytes of the distinct device storages behind `tensors` (a module's weights)."""
        seen = {}
        for tensor in tensors:
            if tensor.device.type == META:
                storage = tensor.untyped_storage()
                if storage in self.device_storages:
                    seen[id(storage)] = self.device_storages[storage]
        return sum(seen.values())

    def reset_peak(self) -> None:
        self.peak = self.current

    @contextlib.contextmanager
    def host(self):
        """Everything made inside is host memory (models as `from_pretrained` returns them)."""
        previous, self._building_on_host = self._building_on_host, True
        try:
            yield
        finally:
            self._building_on_host = previous

    # -------------------------------------------------------------- dispatch
    def _dispatch(self, func, args, kwargs):
        torch = self.torch
        tree = torch.utils._pytree
        tensors = [t for t in tree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type == META:
            return False if args[0].dtype == torch.bool else 0  # a value read back from the device: it has none
        if func is torch.ops.aten._to_copy.default:
            source, target = args[0], kwargs.get("device")
            if target is not None and target.type != META and source.device.type == META:
                # device -> host: an uncounted stand-in (a real CPU tensor would need real memory and data)
                out = torch.empty(source.shape, dtype=kwargs.get("dtype") or source.dtype, device=META)
                self._record(out, on_host=True)
                return out
            if target is not None and target.type == META:  # host -> device
                out = func(source if source.device.type == META else source.to(META), **kwargs)
                self._record(out, on_host=self._building_on_host)
                return out
        if any(t.device.type == META for t in tensors):
            # real CPU inputs of a device op (a photo, token ids) are lifted; 0-d ones are scalars
            lift = lambda t: t.to(META) if isinstance(t, torch.Tensor) and t.device.type != META and t.dim() > 0 else t  # noqa: E731
            args, kwargs = tree.tree_map(lift, (args, kwargs))
        on_host = self._building_on_host or (not self._uploading and any(self.is_host(t) for t in tensors))
        out = func(*args, **kwargs)
        for tensor in tree.tree_leaves(out):
            self._record(tensor, on_host)
        return out

    # -------------------------------------------------------------- patches
    def _patch(self, owner, name, value) -> None:
        if isinstance(owner, type) and name not in owner.__dict__:  # inherited (Tensor.to): delete to restore
            self._patches.callback(delattr, owner, name)
        else:
            self._patches.callback(setattr, owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name))
        setattr(owner, name, value)

    def _install_patches(self) -> None:
        torch = self.torch
        functional = torch.nn.functional
        self._patch(functional, "scaled_dot_product_attention", fused_attention)

        original_to = torch.Tensor.to
        simulator = self

        def to(tensor, *args, **kwargs):
            # on meta, host.to(device) is a no-op that never dispatches: make it an upload
            out = original_to(tensor, *args, **kwargs)
            device = torch._C._nn._parse_to(*args, **kwargs)[0]
            if out is tensor and device is not None and device.type == META and simulator.is_host(tensor):
                simulator._uploading = True
                try:
                    out = tensor.clone()
                finally:
                    simulator._uploading = False
            return out

        self._patch(torch.Tensor, "to", to)
        for scheduler in _scheduler_classes():
            self._patch(scheduler, "set_timesteps", _timesteps_on_host(scheduler.__dict__["set_timesteps"]))

    def __enter__(self):
        self._install_patches()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        self._patches.close()
        return False


def fused_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """`F.scaled_dot_product_attention` as the GPU's fused kernels keep memory: q, k, v, output
    and log-sum-exp for backward, never the [L, S] attention matrix."""
    import torch

    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:  # an additive bias of the same size replaces a boolean mask
            attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device)
        attn_mask = attn_mask.expand(*query.shape[:-1], key.shape[-2])
    return torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, attn_mask, True, dropout_p, is_causal, scale=scale
    )[0]


def _scheduler_classes() -> list[type]:
    import diffusers.schedulers as schedulers
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    found = []
    for name in dir(schedulers):
        cls = getattr(schedulers, name, None)
        if isinstance(cls, type) and issubclass(cls, SchedulerMixin) and "set_timesteps" in cls.__dict__:
            found.append(cls)
    return found


def _timesteps_on_host(set_timesteps):
    @functools.wraps(set_timesteps)
    def wrapper(*args, **kwargs):
        kwargs["device"] = "cpu"  # schedulers look timesteps up by value; meta has no values
        return set_timesteps(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------- one case
def probe(family: str, mode: str, text_encoder_lora: bool, resolution: int, task: str = "generate",
          size: str = "full", iterations: int = 2, flow: str = "cli") -> dict:
    """One run's device memory, in bytes: after setup, the setup peak, the iterations' peak, and
    per component the weights it keeps on the device. `mode` is default, low-memory or reference.

    flow "cli": the models are loaded on the host and moved by the optimiser, as every command
    does. flow "bench": as benchmarks/bench_step.py measured them on a GPU, the pipeline built
    straight on the device and the feature networks built there in fp32, then cast (a setup
    spike a real run does not have); kept to check the model against those measurements."""
    import torch

    from ..config import SISOConfig, SISOEditConfig
    from ..features.dino import DinoFeatures, preprocess_spec_for
    from ..features.ir import IRFeatures, IRNetwork
    from ..generators import get_family
    from ..io.locations import example_photo
    from ..optimizer import SISOOptimizer
    from . import tiny_models
    from .tiny_klein import build_flux2_klein_pipeline

    builders = {"sdxl": tiny_models.build_sdxl_pipeline, "flux": tiny_models.build_flux_pipeline,
                "sana": tiny_models.build_sana_pipeline, "flux2_klein": build_flux2_klein_pipeline}
    settings = dict(prompt="a photo of a cat", resolution=resolution, num_train_epochs=iterations, device="cpu",  # the device is passed below
                    mode=mode, cuda_graphs=False)
    if task == "edit":
        config = SISOEditConfig(**settings, input_class="cup", input_image_path=str(example_photo("coffee.png")))
    else:
        # the authors' FLUX command passes --mixed_precision bf16, so FLUX runs bf16 in every mode
        precision = "bf16" if family in ("flux", "flux2_klein") else "auto"
        config = SISOConfig(**settings, model_family=family, train_text_encoder=text_encoder_lora, precision=precision)
    from ..runtime import RuntimeSettings

    runtime = RuntimeSettings.resolve(config, torch.device(META))
    started = time.perf_counter()
    simulator = SimulatedDevice()
    photo = torch.rand(1, 3, 512, 512)
    with simulator:
        with simulator.host() if flow == "cli" else contextlib.nullcontext():
            pipe = builders[config.family](size, device=META, dtype=runtime.dtype)
            dino_model, _ = tiny_models.build_dino(size, device=META)
            dino = DinoFeatures(dino_model, preprocess_spec_for(dino_model))
            with torch.device(META):
                ir = IRFeatures(IRNetwork(**tiny_models.IRS[size]))
        family_class = get_family(config.family)
        denoiser = getattr(pipe, family_class.denoiser_name)
        linear = [m for m in denoiser.modules() if isinstance(m, torch.nn.Linear)]
        edit_task = _edit_task(config, resolution) if task == "edit" else None
        optimizer = SISOOptimizer(config, photo, pipe=pipe, dino=dino, ir=ir, device=torch.device(META), task=edit_task)
        resident, setup_peak = simulator.current, simulator.peak
        components = {name: simulator.device_bytes(_weights(module))
                      for name, module in {**pipe.components, "dino": dino, "ir": ir}.items()
                      if isinstance(module, torch.nn.Module)}
        simulator.reset_peak()
        for _ in range(iterations):  # the second iteration also holds AdamW's state
            optimizer._start_iteration()
            optimizer._iteration()
            optimizer._reset_grads()
        peak = simulator.peak
    return {
        "family": config.family, "task": task, "mode": mode, "text_encoder_lora": bool(text_encoder_lora),
        "resolution": resolution, "size": size, "flow": flow, "dtype": str(runtime.dtype).removeprefix("torch."),
        "num_inference_steps": config.num_inference_steps, "num_grad_steps": config.num_grad_steps,
        "rank": config.rank, "lora_parameters": sum(p.numel() for p in optimizer.params),
        "resident_bytes": resident, "setup_peak_bytes": setup_peak, "iteration_peak_bytes": peak,
        "component_bytes": components,
        "denoiser_linear": {"weights": sum(m.weight.numel() for m in linear), "out_features": sum(m.out_features for m in linear),
                            "weight_bytes": sum(m.weight.numel() * m.weight.element_size() for m in linear)},
        "probe_seconds": round(time.perf_counter() - started, 1),
    }


def _weights(module):
    return [*module.parameters(), *module.buffers()]


def _edit_task(config, resolution: int):
    import torch

    from ..editing.renoise import ReNoiseConfig
    from ..editing.task import EditTask

    mask = torch.zeros(1, 1, resolution, resolution)
    mask[..., resolution // 4: 3 * resolution // 4, resolution // 4: 3 * resolution // 4] = 1
    return EditTask(scene=torch.rand(1, 3, resolution, resolution), mask=mask, scene_prompt=config.scene_prompt,
                    renoise=ReNoiseConfig(strength=config.inversion_max_step), background_weight=config.bg_mse_loss_weight)


# ---------------------------------------------------------------------------------------- the table
def cases(families: list[str], resolutions: list[int], modes: list[str]) -> list[dict]:
    """Every case the table holds: each family's text-encoder choices, and SDXL editing in the default mode."""
    from ..config import NO_TEXT_ENCODER_LORA

    found, edits = [], []
    for family in families:
        lora_choices = (False,) if family in NO_TEXT_ENCODER_LORA else (True, False)
        for resolution in resolutions:
            for mode in modes:
                for text_encoder_lora in lora_choices:
                    found.append({"family": family, "task": "generate", "mode": mode,
                                  "text_encoder_lora": text_encoder_lora, "resolution": resolution})
                if family == "sdxl" and mode == "default":  # editing: SDXL only; its inversion makes a case ~10x slower
                    edits.append({"family": family, "task": "edit", "mode": mode, "text_encoder_lora": False, "resolution": resolution})
    return found + edits  # the slow ones last


def bench_flow_cases() -> list[dict]:
    """The six SDXL cases measured on an H200 (benchmarks/results/gpu-NVIDIA_H200.json), built as the benchmark built them."""
    return [{"family": "sdxl", "task": "generate", "mode": mode, "text_encoder_lora": lora, "resolution": 512, "flow": "bench"}
            for mode in ("default", "low-memory", "reference") for lora in (True, False)]


def case_key(case: dict) -> str:
    key = f"{case['family']}/{case['task']}/{case['mode']}/te-{'on' if case['text_encoder_lora'] else 'off'}/{case['resolution']}"
    return key + ("/bench-flow" if case.get("flow", "cli") == "bench" else "")


def read_table(path: Path = TABLE_PATH) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"cases": {}}


def run_case_in_subprocess(case: dict, size: str, timeout: float) -> dict:
    command = [sys.executable, "-m", __spec__.name, "--worker", json.dumps({**case, "size": size})]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    if proc.returncode or not lines:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"{case_key(case)}: {tail[-600:]}")
    return json.loads(lines[-1][len("PROBE "):])


def check_table_markdown() -> str:
    """The measured SDXL peaks beside the model's prediction for them (docs/memory.md)."""
    from .. import memory
    measured = json.loads((REPO / "benchmarks" / "results" / "gpu-NVIDIA_H200.json").read_text())["cases"]
    lines = ["| SDXL-Turbo, 512 px | text-encoder LoRA | measured GiB (H200) | predicted GiB | error |",
             "| --- | --- | --- | --- | --- |"]
    for case in measured:
        predicted = memory.predict("sdxl", case["mode"], 512, case["text_encoder_lora"], flow="bench").peak_bytes / memory.GIB
        lines.append(f"| {case['mode']} | {'on' if case['text_encoder_lora'] else 'off'} | {case['peak_gpu_gib']:.2f} | "
                     f"{predicted:.2f} | {predicted / case['peak_gpu_gib'] - 1:+.1%} |")
    return "\n".join(lines)


def doc_blocks() -> dict[str, str]:
    """Marker name -> the generated markdown between `<!-- NAME -->` and `<!-- /NAME -->`."""
    from .. import memory

    memory.read_table.cache_clear()
    return {"memory-table:512": memory.markdown_table(512), "memory-table:1024": memory.markdown_table(1024),
            "memory-check": check_table_markdown()}


def fill_blocks(text: str, blocks: dict[str, str]) -> str:
    import re

    for name, body in blocks.items():
        text = re.sub(rf"(<!-- {re.escape(name)} -->\n).*?(<!-- /{re.escape(name)} -->)",
                      lambda m: m.group(1) + body + "\n" + m.group(2), text, flags=re.S)
    return text


DOCS_WITH_TABLES = ("README.md", "docs/memory.md")


def main(argv: list[str] | None = None) -> int:
    from ..config import MODEL_FAMILIES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(MODEL_FAMILIES))
    parser.add_argument("--modes", default="default,low-memory,reference")
    parser.add_argument("--resolutions", default="512,1024")
    parser.add_argument("--size", default="full", choices=("full", "tiny"))
    parser.add_argument("--table", default=str(TABLE_PATH))
    parser.add_argument("--no-write", action="store_true", help="print the cases, leave the table as it is")
    parser.add_argument("--missing", action="store_true", help="only the cases the table does not have yet")
    parser.add_argument("--bench-flow", action="store_true",
                        help="the six SDXL cases measured on a GPU, built as benchmarks/bench_step.py builds them")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--write-docs", action="store_true", help="rewrite the predicted tables in README.md and docs/memory.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_docs:
        from ..io.atomic import write_text
        blocks = doc_blocks()
        for name in DOCS_WITH_TABLES:
            path = REPO / name
            write_text(path, fill_blocks(path.read_text(), blocks))
        return 0
    from ..cli.common import quiet_libraries

    quiet_libraries()
    if args.worker:
        spec = json.loads(args.worker)
        print("PROBE " + json.dumps(probe(spec["family"], spec["mode"], spec["text_encoder_lora"], spec["resolution"],
                                          spec["task"], spec["size"], flow=spec.get("flow", "cli"))), flush=True)
        return 0
    from ..io.atomic import write_json

    table_path = Path(args.table)
    table = read_table(table_path)
    todo = cases(args.families.split(","), [int(r) for r in args.resolutions.split(",")], args.modes.split(","))
    if args.bench_flow:
        todo = bench_flow_cases()
    if args.missing:
        todo = [case for case in todo if case_key(case) not in table["cases"]]
    for index, case in enumerate(todo, 1):
        row = run_case_in_subprocess(case, args.size, args.timeout)
        gib = 2**30
        print(f"[{index}/{len(todo)}] {case_key(case)}: resident {row['resident_bytes'] / gib:.2f} GiB, "
              f"iteration peak {row['iteration_peak_bytes'] / gib:.2f} GiB ({row['probe_seconds']} s)", flush=True)
        if not args.no_write and args.size == "full":
            table = read_table(table_path)  # another probe may have added cases meanwhile
            table["cases"][case_key(case)] = row
            table["cases"] = dict(sorted(table["cases"].items()))
            write_json(table_path, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
