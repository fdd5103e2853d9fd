"""Pick the next token of each sequence from its logits: greedy, temperature, top-k, top-p, seeds."""

from __future__ import annotations

import torch

from shoal.engine.sampling_params import SamplingParams


def sample(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
) -> list[int]:
    """logits [N, V] float32 -> one token id per row. Rows with a generator draw only from it."""
    return sample_on_device(logits, params, generators).tolist()


def upload(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small host list on `device` without a host wait (pinned staging on CUDA)."""
    host = torch.tensor(values, dtype=dtype, pin_memory=device.type == "cuda")
    return host.to(device, non_blocking=True)


def sample_on_device(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None], put=None
) -> torch.Tensor:
    """As `sample`, but the ids stay on the device [N] int64 and the host never waits for them.

    `put(values, dtype)` moves the per-row parameters to the device (default: `upload`)."""
    device = logits.device
    put = put or (lambda values, dtype: upload(values, dtype, device))
    all_greedy = all(p.greedy for p in params)
    any_greedy = all_greedy or any(p.greedy for p in params)
    greedy = logits.argmax(dim=-1) if any_greedy else None
    if all_greedy:
        return greedy
    temps = put([p.temperature if not p.greedy else 1.0 for p in params], logits.dtype)
    logits = logits / temps[:, None]
    if any(p.top_k != -1 or p.top_p < 1.0 for p in params):
        logits = _top_k_top_p(logits, params, put)
    probs = torch.softmax(logits, dim=-1)
    # Exponential-race sampling: argmax(p / E) with E ~ Exp(1) draws from p, and lets each row use its own RNG.
    noise = torch.empty_like(probs).exponential_()
    for i, gen in enumerate(generators):
        if gen is not None:
            noise[i].exponential_(generator=gen)
    sampled = (probs / noise).argmax(dim=-1)
    if not any_greedy:
        return sampled
    is_greedy = put([p.greedy for p in params], torch.bool)
    return torch.where(is_greedy, greedy, sampled)


def _top_k_top_p(logits: torch.Tensor, params: list[SamplingParams], put) -> torch.Tensor:
    vocab = logits.shape[-1]
    device = logits.device
    top_k = put([p.top_k if p.top_k != -1 else vocab for p in params], torch.int64).clamp(max=vocab)
    top_p = put([p.top_p for p in params], torch.float32)
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    rank = torch.arange(vocab, device=device)[None, :]
    drop = rank >= top_k[:, None]
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(sorted_logits, dim=-1)
    # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
    mass_before = probs.cumsum(dim=-1) - probs
    drop = mass_before >= top_p[:, None]
    drop[:, 0] = False
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def make_generator(seed: int | None, device: torch.device | str) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)
