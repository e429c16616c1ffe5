"""The PyTorch side of ``benchmarks/counting_step.py``: the counting component in PyTorch.

The equations of Zhang et al. (ICLR 2018) as the official ``Cyanogenoid/vqa-counting/vqa-v2/counting.py``
computes them (same shapes: boxes [n, 4, m], attention [n, m]; 17 weights per piecewise-linear
function with w_0 = 0 and a zero gradient), written against current PyTorch (no ``Variable``) and
holding only the 8 functions the forward pass uses. ``tests/vqa/test_counting.py`` checks that our
JAX counter gives the same outputs and gradients, so the benchmark times the same function.
"""
from __future__ import annotations

import torch
from torch import nn


class PiecewiseLin(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.weight = nn.Parameter(torch.ones(n + 1))
        self.weight.data[0] = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.abs()
        w = w / w.sum()
        w = w.view([self.n + 1] + [1] * x.dim())
        csum = w.cumsum(dim=0).expand((self.n + 1,) + tuple(x.size()))
        w = w.expand_as(csum)
        y = self.n * x.unsqueeze(0)
        idx = y.long().detach()
        f = y.frac()
        out = csum.gather(0, idx.clamp(max=self.n))
        out = out + f * w.gather(0, (idx + 1).clamp(max=self.n))
        return out.squeeze(0)


class Counter(nn.Module):
    def __init__(self, objects: int = 10, already_sigmoided: bool = False, pieces: int = 16):
        super().__init__()
        self.objects = objects
        self.already_sigmoided = already_sigmoided
        self.f = nn.ModuleList([PiecewiseLin(pieces) for _ in range(8)])

    def forward(self, boxes: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        boxes, attention = self.filter_most_important(self.objects, boxes, attention)
        if not self.already_sigmoided:
            attention = torch.sigmoid(attention)
        relevancy = self.outer_product(attention)
        distance = 1 - self.iou(boxes, boxes)
        score = self.f[0](relevancy) * self.f[1](distance)
        dedup_score = self.f[3](relevancy) * self.f[4](distance)
        dedup_per_entry, dedup_per_row = self.deduplicate(dedup_score, attention)
        score = score / dedup_per_entry
        correction = self.f[0](attention * attention) / dedup_per_row
        score = score.sum(dim=2).sum(dim=1, keepdim=True) + correction.sum(dim=1, keepdim=True)
        score = (score + 1e-20).sqrt()
        one_hot = self.to_one_hot(score)
        att_conf = (self.f[5](attention) - 0.5).abs()
        dist_conf = (self.f[6](distance) - 0.5).abs()
        conf = self.f[7](att_conf.mean(dim=1, keepdim=True) + dist_conf.mean(dim=2).mean(dim=1, keepdim=True))
        return one_hot * conf

    def deduplicate(self, dedup_score, att):
        att_diff = self.outer_diff(att)
        score_diff = self.outer_diff(dedup_score)
        sim = self.f[2](1 - score_diff).prod(dim=1) * self.f[2](1 - att_diff)
        row_sims = sim.sum(dim=2)
        return self.outer_product(row_sims), row_sims

    def to_one_hot(self, scores):
        scores = scores.clamp(min=0, max=self.objects)
        i = scores.long().detach()
        f = scores.frac()
        target_l = scores.new_zeros(i.size(0), self.objects + 1).scatter_(1, i.clamp(max=self.objects), 1)
        target_r = scores.new_zeros(i.size(0), self.objects + 1).scatter_(1, (i + 1).clamp(max=self.objects), 1)
        return (1 - f) * target_l + f * target_r

    def filter_most_important(self, n, boxes, attention):
        attention, idx = attention.topk(n, dim=1, sorted=False)
        idx = idx.unsqueeze(dim=1).expand(boxes.size(0), boxes.size(1), idx.size(1))
        return boxes.gather(2, idx), attention

    @staticmethod
    def outer(x):
        size = tuple(x.size()) + (x.size()[-1],)
        return x.unsqueeze(dim=-1).expand(*size), x.unsqueeze(dim=-2).expand(*size)

    def outer_product(self, x):
        a, b = self.outer(x)
        return a * b

    def outer_diff(self, x):
        a, b = self.outer(x)
        return (a - b).abs()

    def iou(self, a, b):
        inter = self.intersection(a, b)
        area_a = self.area(a).unsqueeze(2).expand_as(inter)
        area_b = self.area(b).unsqueeze(1).expand_as(inter)
        return inter / (area_a + area_b - inter + 1e-12)

    @staticmethod
    def area(box):
        x = (box[:, 2, :] - box[:, 0, :]).clamp(min=0)
        y = (box[:, 3, :] - box[:, 1, :]).clamp(min=0)
        return x * y

    @staticmethod
    def intersection(a, b):
        size = (a.size(0), 2, a.size(2), b.size(2))
        min_point = torch.max(a[:, :2, :].unsqueeze(dim=3).expand(*size), b[:, :2, :].unsqueeze(dim=2).expand(*size))
        max_point = torch.min(a[:, 2:, :].unsqueeze(dim=3).expand(*size), b[:, 2:, :].unsqueeze(dim=2).expand(*size))
        inter = (max_point - min_point).clamp(min=0)
        return inter[:, 0, :, :] * inter[:, 1, :, :]


def load_jax_params(counter: Counter, params) -> Counter:
    """Copies our ``Counter`` params (``f_i.weight`` = w_1..w_d) into the torch counter (w_0 = 0)."""
    import numpy as np

    with torch.no_grad():
        for i in range(8):
            weight = np.asarray(params[f"f_{i}"]["weight"], np.float32)
            counter.f[i].weight.copy_(torch.from_numpy(np.concatenate([[0.0], weight]).astype(np.float32)))
    return counter
