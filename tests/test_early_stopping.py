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


def test_the_stop_reason_names_the_iteration_the_patience_counts_from():
    """The fresh-user trial: "no 3.0% improvement for 7 steps; best iteration 8 of 8" read as a
    contradiction. Small improvements make a new best without resetting the patience: say so."""
    from siso_lib.config import SISOConfig
    from siso_lib.optimizer import SISOResult, describe_stop

    stopper = EarlyStopping(threshold_percentage=3, patience=7)
    feed(stopper, [-1.000, -1.001, -1.002, -1.003, -1.004, -1.005, -1.006, -1.007])
    assert stopper.should_stop and stopper.reference_step == 0 and stopper.best_step == 7
    config = SISOConfig(num_train_epochs=50)
    result = SISOResult(best_step=8, best_losses={}, best_lora={}, best_image=None, stop_reason="early_stopping", reference_step=1)
    text = describe_stop("early_stopping", config, result)
    assert text == ("stopped early: 7 iterations without a 3 % improvement on the best loss (iteration 1's); "
                    "the best image is iteration 8's, which improved on it by less than 3 %")
    assert describe_stop("early_stopping", config.replace(early_stopping_max_count=1)) == \
        "stopped early: 1 iteration without a 3 % improvement on the best loss"
    assert describe_stop("max_steps", config) == "reached the last iteration (num_train_epochs 50)"
