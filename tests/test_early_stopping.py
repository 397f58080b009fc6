import math

import pytest

from siso_lib.early_stopping import EarlyStopping


def feed(stopper, losses):
    flags = [stopper.update(step, loss) for step, loss in enumerate(losses)]
    return flags


def test_negative_losses_need_a_threshold_improvement_like_upstream():
    stopper = EarlyStopping(threshold_percentage=3, patience=2)
    # -1.00 -> -1.02 is a 2% improvement: a new best, but not significant
    flags = feed(stopper, [-1.00, -1.02])
    assert flags == [True, True]
    assert stopper.count == 1 and stopper.reference == -1.00
    assert stopper.update(2, -1.04)  # beats -1.00 by 4% of its magnitude: patience resets
    assert stopper.count == 0 and stopper.reference == -1.04
    assert [stopper.update(3, -1.05), stopper.update(4, -1.06)] == [True, True]
    assert stopper.count == 2 and stopper.should_stop
    assert stopper.best_step == 4


def test_positive_losses_keep_their_meaning():
    # upstream's `loss < best * (1 + p/100)` would accept a 2% WORSE positive loss as progress
    stopper = EarlyStopping(threshold_percentage=3, patience=1)
    feed(stopper, [1.00, 1.02])
    assert stopper.best_step == 0
    assert stopper.count == 1 and stopper.should_stop


def test_positive_losses_improving_by_threshold_reset_patience():
    stopper = EarlyStopping(threshold_percentage=3, patience=2)
    feed(stopper, [1.00, 0.99, 0.96])
    assert stopper.count == 0 and stopper.best_step == 2


def test_best_is_the_lowest_loss_even_without_significant_improvement():
    # upstream would keep step 0 (the zero LoRA) as "best" here
    stopper = EarlyStopping(threshold_percentage=3, patience=10)
    feed(stopper, [-1.000, -1.010, -1.020, -1.015])
    assert stopper.best_step == 2
    assert stopper.reference == -1.000 and stopper.count == 3


def test_sign_change_is_handled():
    stopper = EarlyStopping(threshold_percentage=3, patience=3)
    feed(stopper, [0.5, -0.5])
    assert stopper.count == 0 and stopper.best_step == 1


def test_ties_keep_the_earlier_step_and_nan_never_becomes_best():
    stopper = EarlyStopping(threshold_percentage=0, patience=5)
    feed(stopper, [-1.0, -1.0, math.nan])
    assert stopper.best_step == 0
    assert stopper.count == 2
