"""The SISO loop: generate, score against the subject, step the LoRA; keep the best state.

One iteration ("epoch" upstream), for a fixed prompt and a fixed seed:

    g      <- Generator(device).manual_seed(seed)        # the same starting noise every time
    x      <- Generator_LoRA(prompt, g)                   # [1, 3, H, W] in [0, 1], with grad (generators/)
    L      <- w_d * -cos(DINO(x), DINO(s)) + w_i * -cos(IR(x), IR(s))
    best   <- copy of the LoRA weights that produced x, if L is the lowest so far
    patience bookkeeping (see early_stopping.py)
    L.backward(); clip_grad_norm(1.0); AdamW.step(); lr_scheduler.step()

`SISOOptimizer.run()` repeats this until early stopping, the step budget, a stop request
(`request_stop()`, from another thread or a callback), Ctrl-C, a non-finite loss or an
out-of-memory error, and returns a `SISOResult` holding the best LoRA (a cloned CPU copy), the
best image and the per-step history. Each step emits a `StepEvent` to every callback: a
progress bar, a notebook plot, a log file or the ComfyUI node consume the same events.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from diffusers.optimization import get_scheduler

from . import cuda_graphs, memory
from .config import SISOConfig
from .devices import free_memory_bytes, generator_device, is_out_of_memory, pick_device, synchronize
from .early_stopping import EarlyStopping
from .errors import setting
from .features.dino import DinoFeatures
from .features.ir import IRFeatures
from .generators import get_family
from .generators.base import LoRASnapshotter
from .io.images import SubjectImage, load_subject_image, tensor_to_pil
from .losses import SubjectSimilarityLoss
from .quantization import quantize_frozen_weights
from .runtime import PhaseTimer, RuntimeSettings, set_feature_checkpointing
from .text import count

logger = logging.getLogger(__name__)

STOP_REASONS = {
    "early_stopping": "stopped early: {patience} without a {threshold:g} % improvement on the best loss{on}{best}",
    "max_steps": "reached the last iteration (num_train_epochs {max_steps})",
    "stopped": "stopped on request",
    "interrupted": "interrupted (Ctrl-C / SIGTERM)",
    "non_finite_loss": "the loss became NaN or infinite",
    "out_of_memory": "ran out of memory",
    "cuda_graph_mismatch": "the CUDA graph replay disagreed with the eager step",
}


def describe_stop(reason: str, config: SISOConfig, result: "SISOResult | None" = None) -> str:
    """Why a run ended, in words. With the `result`, early stopping names the iteration the patience
    counted from, and says why a later iteration can still be the best (it improved by less than
    the threshold): "stopped early: 7 iterations without a 3 % improvement on the best loss
    (iteration 1's); the best image is iteration 8's, which improved on it by less than 3 %"."""
    reference = result.reference_step if result is not None else None
    best = result.best_step if result is not None else None
    threshold = config.early_stopping_threshold_percentage
    return STOP_REASONS[reason].format(
        threshold=threshold, patience=count(config.early_stopping_max_count, "iteration"),
        max_steps=config.num_train_epochs, on=f" (iteration {reference}'s)" if reference is not None else "",
        best=(f"; the best image is iteration {best}'s, which improved on it by less than {threshold:g} %"
              if reference is not None and best and best > reference else ""),
    )


@dataclass
class StepEvent:
    """What one iteration produced; handed to every callback."""

    step: int  # the iteration's number, counted from 1 (iteration 1 runs with the zero-initialised LoRA)
    max_steps: int
    losses: dict[str, float]  # "total", and "dino" / "ir" where used
    is_best: bool
    best_step: int
    best_loss: float
    patience_count: int
    lr: float
    step_seconds: float
    elapsed_seconds: float
    image: torch.Tensor  # [1, 3, H, W] float32 in [0, 1], on the CPU
    stop_reason: str | None = None  # set on the last event of a run
    _request_stop: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def request_stop(self) -> None:
        """End the run after this iteration, keeping the best LoRA (stop reason "stopped").

        For callbacks: `def cb(event): if event.losses["total"] < -1.5: event.request_stop()`.
        """
        if self._request_stop is not None:
            self._request_stop()


@dataclass
class SISOResult:
    best_step: int | None  # the best iteration's number, counted from 1; None when none finished
    best_losses: dict[str, float]
    best_lora: dict[str, dict[str, torch.Tensor]]  # part -> peft-named CPU fp32 tensors
    best_image: torch.Tensor | None  # [1, 3, H, W] on the CPU
    history: list[dict] = field(default_factory=list)  # per iteration: step (from 1), losses, lr, seconds
    stop_reason: str = "max_steps"
    error: str | None = None  # message for the non-finite / out-of-memory endings
    elapsed_seconds: float = 0.0
    reference_step: int | None = None  # the last iteration that improved by the early-stopping threshold

    @property
    def steps_run(self) -> int:
        return len(self.history)

    @property
    def best_pil(self):
        return None if self.best_image is None else tensor_to_pil(self.best_image)

    @property
    def completed(self) -> bool:
        return self.stop_reason in ("early_stopping", "max_steps", "stopped")

    def describe_best(self) -> str:
        """'iteration 7 of 12', or 'none' when no iteration finished."""
        return "none" if self.best_step is None else f"iteration {self.best_step} of {self.steps_run}"


Callback = Callable[[StepEvent], None]


class Task(Protocol):
    """What turns the loop from personalising generation into another SISO task (editing.EditTask):
    the renderer of each iteration and extra loss terms. Without a task, the family's own
    generator renders from noise and the loss is the subject similarity alone."""

    name: str  # for messages, e.g. "editing"

    def generator_class(self, family: type) -> type:
        """The renderer for this family (a LoRAGenerator subclass), or ValueError if none."""

    def generator_options(self) -> dict:
        """Keyword arguments the renderer takes besides the family's own."""

    def loss(self, subject_loss: torch.nn.Module) -> torch.nn.Module:
        """The run's loss module, built around the subject-similarity loss."""


class SISOOptimizer:
    """Owns one SISO run: models, LoRA, optimizer, early stopping and the best state."""

    def __init__(
        self,
        config: SISOConfig,
        subject: SubjectImage | torch.Tensor,
        pipe=None,
        dino: DinoFeatures | None = None,
        ir: IRFeatures | None = None,
        device: torch.device | None = None,
        profile_phases: bool = False,
        task: Task | None = None,
    ):
        """`task`: None to personalise generation, or an `editing.EditTask` (the scene photo, its mask):
        the task then supplies the renderer (img2img from the inverted scene) and adds its loss terms."""
        config.validate()
        config = config.with_absolute_paths()  # what the run's files record
        self.profile_phases = profile_phases  # synchronise and time each phase (benchmarks only)
        self.config = config
        self.device = device or pick_device(config.device)
        self.task = task
        self.settings = RuntimeSettings.resolve(config, self.device, "generate" if task is None else "edit")
        if task is not None and self.settings.cuda_graphs:
            self.settings.cuda_graphs, self.settings.cuda_graphs_note = False, f"CUDA graphs are not implemented for {task.name}"
        self.subject = subject if isinstance(subject, SubjectImage) else None
        subject_tensor = subject.tensor if isinstance(subject, SubjectImage) else subject

        dtype = self.settings.dtype
        self.family = family = get_family(config.family)
        if pipe is None:
            pipe = family.load_pipeline(
                config.pretrained_model_name_or_path,
                torch_dtype=dtype,
                vae_name_or_path=config.pretrained_vae_model_name_or_path,
                revision=config.revision,
                variant=config.variant,
                cache_dir=config.cache_dir,
                quantize=self.settings.quantize,
            )
        self.pipe = pipe
        # before the LoRA is attached: its layers stay fp32 (quantization.py)
        quantize_frozen_weights(getattr(pipe, family.denoiser_name), self.settings.quantize)
        self.param_groups = family.add_lora(
            pipe, config.rank, config.effective_lora_alpha, config.seed, config.train_text_encoder, config.lora_targets
        )
        self.params = [p for params in self.param_groups.values() for p in params]
        renderer = family if task is None else task.generator_class(family)
        self.generator = renderer(
            pipe, self.device, config.train_text_encoder, self.settings.cache_prompt_embeddings,
            **renderer.generation_options(config), **(task.generator_options() if task is not None else {}),
        )
        self.generator.place(
            dtype, self.settings.gradient_checkpointing, self.settings.offload_text_encoders, self.settings.compile_denoiser
        )
        self.snapshot_lora = LoRASnapshotter(family.lora_modules(pipe, config.train_text_encoder))

        if dino is None and config.dino_features_weight > 0:
            dino = DinoFeatures.from_pretrained(config.dino_model_name)
        if ir is None and config.ir_features_path and config.ir_features_weight > 0:
            ir = IRFeatures.from_checkpoint(config.ir_features_path)
        if ir is None and config.ir_features_weight > 0:
            logger.warning(
                "NO IR CHECKPOINT: optimising with DINO features only (the paper uses DINO + IR). "
                f"Download ir_features.pth (Kaggle louieshao/guieweights0732) and give it as {setting('ir_features_path')} for full SISO."
            )
        feature_dtype = dtype if self.settings.freeze_feature_networks else torch.float32
        for network in (dino, ir):
            if network is not None:
                network.to(self.device, feature_dtype)
                # set both ways: networks passed in may come from a run in another mode
                # (reference mode trains nothing in them but, as the authors' script, leaves them unfrozen)
                network.requires_grad_(not self.settings.freeze_feature_networks)
                set_feature_checkpointing(network, self.settings.gradient_checkpointing)
        self.loss = SubjectSimilarityLoss(
            subject_tensor, dino, ir, config.dino_features_weight if dino is not None else 0.0,
            config.ir_features_weight if ir is not None else 0.0,
        )
        if task is not None:
            self.loss = task.loss(self.loss)
        self.uses_ir = "ir" in self.loss.terms
        self.optimizer = torch.optim.AdamW(
            self._optimizer_groups(),
            lr=config.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
            weight_decay=config.adam_weight_decay,
            eps=config.adam_epsilon,
            fused=True if self.settings.fused_adamw else None,
            capturable=self.settings.cuda_graphs,  # the step count lives on the device, not the host
        )
        self.lr_scheduler = get_scheduler(
            config.lr_scheduler,
            optimizer=self.optimizer,
            num_warmup_steps=config.lr_warmup_steps,
            num_training_steps=config.num_train_epochs,
            num_cycles=config.lr_num_cycles,
            power=config.lr_power,
        )
        # fp16 activations underflow without loss scaling; bf16 and fp32 need none
        self.grad_scaler = (
            torch.amp.GradScaler(self.device.type, init_scale=2.0**10) if self.settings.dtype == torch.float16 else None
        )
        self.early_stopping = EarlyStopping(config.early_stopping_threshold_percentage, config.early_stopping_max_count)
        self.inputs = self.generator.prepare(
            config.prompt,
            torch.Generator(device=generator_device(self.device)).manual_seed(config.seed),
            config.resolution,
            config.resolution,
            config.num_inference_steps,
        )
        self.graphed = (
            cuda_graphs.GraphedIteration(self._start_iteration, self._iteration, self._eager_loss, self._reset_grads)
            if self.settings.cuda_graphs
            else None
        )
        if self.settings.cuda_graphs_note:
            # on a CUDA device the note explains a missing speed-up; elsewhere CUDA graphs could not
            # have run anyway, so the default setting is no news (run.json keeps the note; a command
            # line repeats it when --cuda_graphs was asked for explicitly)
            (logger.info if self.device.type == "cuda" else logger.debug)("%s: iterations run eagerly", self.settings.cuda_graphs_note)
        # a captured graph cannot re-seed the sampler's noise; with one step that noise is multiplied by 0
        self.seeded_ancestral_noise = not self.settings.cuda_graphs
        self._phases = PhaseTimer(self.device, False)
        self.step_index = 0
        self.history: list[dict] = []
        self.best_lora: dict[str, dict[str, torch.Tensor]] = {}
        self.best_image: torch.Tensor | None = None
        self.best_losses: dict[str, float] = {}
        self._stop = threading.Event()
        self._started: float | None = None

    # ------------------------------------------------------------------ setup
    def _optimizer_groups(self) -> list[dict]:
        """AdamW groups: the denoiser's LoRA with learning_rate / adam_weight_decay, each text
        encoder's with text_encoder_lr / adam_weight_decay_text_encoder (None = the same), as the
        authors' FLUX script groups them."""
        config, denoiser = self.config, self.family.denoiser_name
        groups = []
        for part, params in self.param_groups.items():
            if part == denoiser:
                groups.append({"params": params, "lr": config.learning_rate, "weight_decay": config.adam_weight_decay})
            else:
                lr = config.text_encoder_lr if config.text_encoder_lr is not None else config.learning_rate
                decay = config.adam_weight_decay_text_encoder
                groups.append({"params": params, "lr": lr, "weight_decay": config.adam_weight_decay if decay is None else decay})
        return groups

    # ------------------------------------------------------------------ control
    def request_stop(self) -> None:
        """Ask the run to end cleanly after the current step (thread-safe)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ the loop
    def _start_iteration(self) -> None:
        """Host-side work before an iteration (never part of a CUDA graph)."""
        self.generator.train()
        self.generator.start(self.inputs)

    def _iteration(self) -> dict[str, torch.Tensor]:
        """One iteration's device work: image, losses, the LoRA that made them, the update.

        Returns {"image", loss terms..., "lora/<part>"}. Nothing here reads a device value on
        the host (except the fp16 GradScaler, which is never captured), so it can be recorded
        as a CUDA graph; the host decides afterwards, from the outputs, what was best.
        """
        phases = self._phases
        image = self.generator.forward(self.inputs, ancestral_noise=self.seeded_ancestral_noise)
        phases.mark("generate")
        losses = self.loss(image)
        phases.mark("loss")
        # the weights that PRODUCED this image, taken before the update below
        packed = {f"lora/{part}": flat for part, flat in self.snapshot_lora.pack().items()}
        phases.mark("snapshot")
        if self.grad_scaler is None:
            losses["total"].backward()
            phases.mark("backward")
            torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
            self.optimizer.step()
        else:
            self.grad_scaler.scale(losses["total"]).backward()
            phases.mark("backward")
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        return {"image": image.detach(), **{name: value.detach() for name, value in losses.items()}, **packed}

    def _eager_loss(self) -> torch.Tensor:
        """The total loss of the current weights, without gradients or an update."""
        return self.loss(self.generator.forward(self.inputs, ancestral_noise=False))["total"]

    def _reset_grads(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> StepEvent:
        """Run one SISO iteration and return its event (raises on NaN loss / OOM)."""
        config = self.config
        if self._started is None:
            self._started = time.perf_counter()
        started = time.perf_counter()
        phases = self._phases = PhaseTimer(self.device, self.profile_phases and not self.settings.cuda_graphs)
        lr = float(self.lr_scheduler.get_last_lr()[0])
        if self.graphed is not None:
            outputs = self.graphed()
        else:
            self._start_iteration()
            outputs = self._iteration()
            self._reset_grads()
        values = {name: float(outputs[name].item()) for name in (*self.loss.weights, "total")}
        step = self.step_index + 1  # iterations are numbered from 1 wherever a user reads them
        if not all(math.isfinite(v) for v in values.values()):
            raise NonFiniteLossError(step, values)
        is_best = self.early_stopping.update(step, values["total"])
        image_cpu = outputs["image"].float().cpu()
        if is_best:
            self.best_lora = self.snapshot_lora.unpack({part: outputs[f"lora/{part}"] for part in self.snapshot_lora.parts})
            self.best_image = image_cpu
            self.best_losses = values
        self.lr_scheduler.step()
        synchronize(self.device)
        phases.mark("optimizer")
        seconds = time.perf_counter() - started
        self.step_index += 1
        self.history.append(
            {"step": step, **values, "lr": lr, "seconds": round(seconds, 5), "is_best": is_best}
            | ({"phases": phases.seconds} if phases.enabled else {})
        )
        return StepEvent(
            step=step,
            max_steps=config.num_train_epochs,
            losses=values,
            is_best=is_best,
            best_step=self.early_stopping.best_step,
            best_loss=self.early_stopping.best_loss,
            patience_count=self.early_stopping.count,
            lr=lr,
            step_seconds=seconds,
            elapsed_seconds=time.perf_counter() - self._started,
            image=image_cpu,
            _request_stop=self.request_stop,
        )

    def run(self, callbacks: list[Callback] | tuple[Callback, ...] = ()) -> SISOResult:
        """Iterate until a stop condition; never lose the best state (see module docstring)."""
        reason, error = "max_steps", None
        last_event: StepEvent | None = None
        try:
            while self.step_index < self.config.num_train_epochs:
                if self.stop_requested:
                    reason = "stopped"
                    break
                last_event = self.step()
                if self.step_index >= self.config.num_train_epochs:
                    reason = "max_steps"  # the last iteration ran: early stopping ended nothing early
                elif self.early_stopping.should_stop:
                    reason = "early_stopping"
                elif self.stop_requested:
                    reason = "stopped"
                else:
                    reason = None
                last_event.stop_reason = reason
                for callback in callbacks:
                    callback(last_event)
                if reason is not None:
                    break
        except KeyboardInterrupt:
            reason = "interrupted"
        except NonFiniteLossError as failure:
            reason, error = "non_finite_loss", str(failure)
        except cuda_graphs.GraphReplayError as failure:
            reason, error = "cuda_graph_mismatch", str(failure)
        except (torch.OutOfMemoryError, RuntimeError, MemoryError) as failure:
            if not is_out_of_memory(failure):
                raise
            reason = "out_of_memory"
            error = self._out_of_memory_advice()
            self.optimizer.zero_grad(set_to_none=True)
        finally:
            self._hand_back_pipeline()
        reason = reason or "max_steps"
        return self.result(reason, error)

    def _out_of_memory_advice(self) -> str:
        """One line after an out-of-memory: the slower mode the memory model predicts would fit."""
        free = free_memory_bytes(self.device)
        used = torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else 0
        hint = None if free is None else memory.fitting_mode_hint(  # free + what this run holds: the device without it
            self.config.family, self.config.resolution, bool(self.config.train_text_encoder),
            "generate" if self.task is None else "edit", free + used, (self.settings.mode, self.settings.quantize))
        where = f"out of memory at iteration {self.step_index + 1} in {self.settings.mode} mode"
        if hint is None:
            return (f"{where}: use {setting('mode', 'low-memory')} (gradient checkpointing), "
                    f"{setting('train_text_encoder', False)}, or a smaller {setting('resolution')}")
        mode, _, quantize = hint.partition(" + ")
        flags = setting("mode", mode) + (f" {setting('quantize', quantize.split()[0])}" if quantize else "")
        return f"{where}: the memory model predicts {hint} fits this device: use {flags} (or a smaller {setting('resolution')})"

    def _hand_back_pipeline(self) -> None:
        """Leave the pipeline usable for plain inference after a run: eval mode, text encoders on
        the run's device again (they were moved off it while their embeddings were cached)."""
        self.generator.hand_back(offloaded=self.settings.offload_text_encoders)

    def result(self, reason: str, error: str | None = None) -> SISOResult:
        elapsed = 0.0 if self._started is None else time.perf_counter() - self._started
        return SISOResult(
            best_step=self.early_stopping.best_step,
            best_losses=dict(self.best_losses),
            best_lora=self.best_lora,
            best_image=self.best_image,
            history=list(self.history),
            stop_reason=reason,
            error=error,
            elapsed_seconds=elapsed,
            reference_step=self.early_stopping.reference_step,
        )

    def describe_stop(self, reason: str, result: SISOResult | None = None) -> str:
        return describe_stop(reason, self.config, result)

    def describe_runtime(self) -> dict:
        """The settings, plus whether a CUDA graph was captured and, if not, why (for run.json)."""
        return self.settings.describe() | {
            "cuda_graphs_captured": self.graphed is not None and self.graphed.captured,
            "cuda_graphs_note": self.settings.cuda_graphs_note or (self.graphed.failure if self.graphed else None),
        }


class NonFiniteLossError(RuntimeError):
    def __init__(self, step: int, losses: dict[str, float]):
        terms = ", ".join(f"{k}={v}" for k, v in losses.items())
        super().__init__(
            f"the loss became non-finite at iteration {step} ({terms}): the best LoRA so far is kept; "
            f"try {setting('precision', 'fp32')} or a lower {setting('learning_rate')}"
        )


def build_optimizer(config: SISOConfig, subject_image_path: str, device: torch.device | None = None) -> SISOOptimizer:
    """Load everything a config names (base model, DINO, IR, subject) and return the optimiser."""
    subject = load_subject_image(subject_image_path)
    return SISOOptimizer(config, subject, device=device)
