"""What a launch heuristic needs to know about the device, with CPU-interpreter fallbacks."""

import functools

import torch

# An H100 has 132 multiprocessors; the interpreter has none, so heuristics pretend to be one.
_FALLBACK_SMS = 132


@functools.lru_cache(maxsize=8)
def _sms_of(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return _FALLBACK_SMS
    return _sms_of(device.index if device.index is not None else torch.cuda.current_device())


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())
