"""Pure, jittable training: split NNX state, train/eval steps, optimizers."""

from normlab.train.steps import (
    OPTIMIZERS,
    SCHEDULES,
    NetworkSpec,
    NetworkState,
    NormParameter,
    StepOutputs,
    apply_model,
    evaluate_batch,
    gradient,
    kernel_paths,
    loss_and_accuracy,
    loss_fn,
    make_network,
    make_optimizer,
    state_at,
    train_step,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "NetworkSpec",
    "NetworkState",
    "NormParameter",
    "StepOutputs",
    "apply_model",
    "evaluate_batch",
    "gradient",
    "kernel_paths",
    "loss_and_accuracy",
    "loss_fn",
    "make_network",
    "make_optimizer",
    "state_at",
    "train_step",
]
