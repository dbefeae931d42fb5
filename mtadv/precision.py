"""Mixed precision: which autocast dtype a --precision flag means on a device.

The trainer and predict.py share this, so a checkpoint is evaluated in the precision it trained in.
"""

from __future__ import annotations

import torch


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` (fp32, bf16, fp16 or auto) on `device`; None: no autocast.

    auto means fp32 off CUDA (CPU autocast is slower than fp32 for these encoders), and on CUDA
    bf16 where the GPU supports it, else fp16 (with a gradient scaler, see the trainer)."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16
