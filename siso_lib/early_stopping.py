"""Best-state and patience bookkeeping, kept apart so that each rule is simple and testable.

Two separate questions, which the reference script mixes up:

* Which step is BEST? Simply the lowest loss seen so far (ties keep the earlier step).
* When to STOP? Count the steps in a row that fail to improve on the last *significant*
  improvement by `threshold` percent; stop when the count reaches `patience`. A step is a
  significant improvement when

      loss < reference - threshold/100 * |reference|

  which asks for a threshold-percent improvement whatever the sign of the loss (upstream's
  `loss < best * (1 + p/100)` flips meaning for positive losses). For negative losses it is
  exactly upstream's rule, so the stopping step matches the authors' script.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EarlyStopping:
    threshold_percentage: float = 3.0
    patience: int = 7
    reference: float | None = None  # loss at the last significant improvement
    reference_step: int | None = None  # the step of that improvement (the patience counts from it)
    count: int = 0  # steps since then
    best_loss: float = math.inf
    best_step: int | None = None

    def is_significant(self, loss: float) -> bool:
        if self.reference is None:
            return True
        return loss < self.reference - self.threshold_percentage / 100.0 * abs(self.reference)

    def update(self, step: int, loss: float) -> bool:
        """Record `loss` at `step`; return True when `step` is the new best."""
        if self.is_significant(loss):
            self.reference, self.reference_step = loss, step
            self.count = 0
        else:
            self.count += 1
        is_best = loss < self.best_loss
        if is_best:
            self.best_loss = loss
            self.best_step = step
        return is_best

    @property
    def should_stop(self) -> bool:
        return self.count >= self.patience
