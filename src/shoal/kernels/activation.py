"""SiLU-and-mul of a fused gate/up projection: x [T, 2I] -> silu(x[:, :I]) * x[:, I:]."""

import torch
import triton
import triton.language as tl


@triton.jit
def _silu_and_mul_kernel(X, Out, stride_x, stride_o, inter, BLOCK: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < inter
    gate = tl.load(X + t * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(X + t * stride_x + inter + offs, mask=mask, other=0.0).to(tl.float32)
    y = gate / (1.0 + tl.exp(-gate)) * up
    tl.store(Out + t * stride_o + offs, y.to(Out.dtype.element_ty), mask=mask)


def silu_and_mul(x, *, block=1024, num_warps=4, out=None):
    inter = x.shape[-1] // 2
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    out = torch.empty(x2.shape[0], inter, dtype=x.dtype, device=x.device) if out is None else out.view(-1, inter)
    if x2.shape[0] > 0:
        block = min(block, triton.next_power_of_2(inter))
        _silu_and_mul_kernel[(x2.shape[0], triton.cdiv(inter, block))](
            x2, out, x2.stride(0), out.stride(0), inter, BLOCK=block, num_warps=num_warps)
    return out.view(*x.shape[:-1], inter)


def silu_and_mul_ref(x):
    inter = x.shape[-1] // 2
    return (torch.nn.functional.silu(x[..., :inter].float()) * x[..., inter:].float()).to(x.dtype)
