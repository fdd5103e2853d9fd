"""Pinned host buffers for a step's small uploads and for its sampled tokens, used in turn.

With asynchronous scheduling a step's copies are still queued when the next step is prepared. Torch's
caching host allocator cannot hand back a pinned block whose copy is in flight, so per-step pinned
tensors keep allocating fresh pinned memory, which is slow. Here a few buffers rotate instead; one is
refilled only after the device has passed the event recorded at the end of its step.
"""

from __future__ import annotations

import torch

ALIGN = 16  # bytes: every view starts aligned for any dtype it holds


def regions(sizes: list[int], align: int) -> list[tuple[int, int]]:
    """[start, end) of consecutive parts of the given sizes, each start a multiple of `align` elements."""
    out, at = [], 0
    for n in sizes:
        at = -(-at // align) * align
        out.append((at, at + n))
        at += n
    return out


class PinnedStaging:
    def __init__(self, device: torch.device, slots: int = 3, initial_bytes: int = 1 << 20) -> None:
        self.device = device
        self.pinned = device.type == "cuda"
        self._buffers = [self._new(initial_bytes) for _ in range(slots)] if self.pinned else []
        self._events: list = [None] * slots
        self._slot = 0
        self._offset = 0

    def _new(self, nbytes: int) -> torch.Tensor:
        return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)

    def begin(self, nbytes: int) -> None:
        """Start a step in the next buffer (waiting until the device is done with it); nbytes bounds its takes."""
        if not self.pinned:
            return
        self._slot = (self._slot + 1) % len(self._buffers)
        event = self._events[self._slot]
        if event is not None:
            event.synchronize()  # three steps old: long complete in practice
        need = nbytes + 64 * ALIGN
        if self._buffers[self._slot].numel() < need:
            self._buffers[self._slot] = self._new(2 * need)
        self._offset = 0

    def take(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """A host tensor of n elements to fill (pinned on CUDA, inside this step's buffer)."""
        if not self.pinned:
            return torch.empty(n, dtype=dtype)
        start = -(-self._offset // ALIGN) * ALIGN
        end = start + n * dtype.itemsize
        buf = self._buffers[self._slot]
        if end > buf.numel():
            raise RuntimeError(f"staging buffer overflow: {end} > {buf.numel()} bytes (begin() was told too little)")
        self._offset = end
        return buf[start:end].view(dtype)

    def upload(self, values, dtype: torch.dtype) -> torch.Tensor:
        """A small host sequence on the device, copied without a host wait."""
        host = self.take(len(values), dtype)
        host.numpy()[:] = values
        return host.to(self.device, non_blocking=True)

    def end(self):
        """Mark the step's copies (uploads and the sampled tokens' download) queued; returns its event."""
        if not self.pinned:
            return None
        event = torch.cuda.Event()
        event.record()
        self._events[self._slot] = event
        return event
