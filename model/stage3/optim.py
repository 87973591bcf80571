"""The reference trainer's optimiser, schedule and clipping, written out.

transformers 4.31's default optimiser (``adamw_hf``) is not ``torch.optim.AdamW``: it adds eps to
sqrt(v) (not to the bias-corrected sqrt(v_hat)) and moves the bias correction into the step size,
``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``; weight decay (0 in stage 3) is applied
after the step as ``p -= lr * wd * p``. With small clipped gradients the two differ by up to half of the
whole parameter change, so replaying the reference needs this one.

Schedule: linear warm-up over ``ceil(total * warmup_ratio)`` steps, then half a cosine to 0; the first
step of a run with warm-up therefore has lr 0 (it still moves Adam's moments). Clipping: the global L2
norm of all gradients, scaled by min(1, max_norm / (norm + 1e-6)).
"""

from __future__ import annotations

import math

import torch


class ReferenceAdamW:
    """AdamW as transformers 4.31 computes it (``correct_bias=True`` by default)."""

    def __init__(self, params, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 correct_bias: bool = True):
        self.params = [p for p in params if p.requires_grad]
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.correct_bias = correct_bias
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """One update at learning rate ``lr``; parameters without a gradient are left alone."""
        self.steps += 1
        step_size = lr
        if self.correct_bias:
            step_size = step_size * math.sqrt(1.0 - self.beta2 ** self.steps) / (1.0 - self.beta1 ** self.steps)
        for param, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if param.grad is None:
                continue
            grad = param.grad
            exp_avg.mul_(self.beta1).add_(grad, alpha=1.0 - self.beta1)
            exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
            denom = exp_avg_sq.sqrt().add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
            if self.weight_decay > 0.0:
                param.add_(param, alpha=-lr * self.weight_decay)

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None


class CosineWithWarmup:
    """lr(step) = base x factor(step), step counted from 0 (the lr the step-th update uses)."""

    def __init__(self, total_steps: int, warmup_ratio: float = 0.0, warmup_steps: int | None = None):
        if total_steps < 1:
            raise ValueError(f"total steps must be >= 1, got {total_steps}")
        self.total_steps = total_steps
        self.warmup_steps = math.ceil(total_steps * warmup_ratio) if warmup_steps is None else warmup_steps

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return float(step) / float(max(1, self.warmup_steps))
        progress = float(step - self.warmup_steps) / float(max(1, self.total_steps - self.warmup_steps))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))

    def lr(self, step: int, base_lr: float) -> float:
        return base_lr * self.factor(step)


def clip_gradients(params, max_norm: float) -> tuple[float, float]:
    """Scale all gradients by min(1, max_norm / (global L2 norm + 1e-6)); returns (norm before, coefficient)."""
    params = [p for p in params if p.grad is not None]
    norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return norm, min(1.0, max_norm / (norm + 1e-6))
