"""RMSNorm, optionally fused with the residual add of a Llama pre-norm block.

With a residual: new_residual = x + residual (rounded to the input dtype, as the unfused model
does), out = rmsnorm(new_residual) * weight. One program per row; everything in float32.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(
    X, Res, W, Out, ResOut,
    stride_x, stride_r, stride_o, stride_ro,
    n_cols, eps,
    HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(X + row * stride_x + offs, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(Res + row * stride_r + offs, mask=mask, other=0.0)
        x = (x.to(tl.float32) + r.to(tl.float32)).to(X.dtype.element_ty)
        tl.store(ResOut + row * stride_ro + offs, x, mask=mask)
    xf = x.to(tl.float32)
    inv_rms = tl.rsqrt(tl.sum(xf * xf, 0) / n_cols + eps)
    w = tl.load(W + offs, mask=mask, other=0.0)
    # Normalised value rounded to the activation dtype before the weight, as HF's Llama/Qwen3 do.
    y = (xf * inv_rms).to(X.dtype.element_ty).to(tl.float32) * w.to(tl.float32)
    tl.store(Out + row * stride_o + offs, y.to(Out.dtype.element_ty), mask=mask)


def _rows(t):
    return t.reshape(-1, t.shape[-1])


def rms_norm(x, weight, eps, residual=None, *, out=None, residual_out=None):
    """x [..., H]; returns out, or (out, new_residual) when residual is given (written into
    contiguous `out` / `residual_out` when given)."""
    hidden = x.shape[-1]
    x2 = _rows(x)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    out = torch.empty(x2.shape, dtype=x.dtype, device=x.device) if out is None else _rows(out)
    block = triton.next_power_of_2(hidden)
    num_warps = max(1, min(16, block // 512))
    if residual is None:
        res2 = res_out = x2
    else:
        res2 = _rows(residual).contiguous()
        res_out = torch.empty_like(x2) if residual_out is None else _rows(residual_out)
    if x2.shape[0] > 0:
        _rms_norm_kernel[(x2.shape[0],)](
            x2, res2, weight, out, res_out,
            x2.stride(0), res2.stride(0), out.stride(0), res_out.stride(0),
            hidden, eps, HAS_RESIDUAL=residual is not None, BLOCK=block, num_warps=num_warps,
        )
    out = out.view(x.shape)
    if residual is None:
        return out
    return out, res_out.view(x.shape)


def rms_norm_ref(x, weight, eps, residual=None):
    if residual is not None:
        x = (x.float() + residual.float()).to(x.dtype)
        new_residual = x
    xf = x.float()
    y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    out = (y.float() * weight.float()).to(x.dtype)
    return out if residual is None else (out, new_residual)
