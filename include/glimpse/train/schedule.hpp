#pragma once
// Learning rate: linear warm-up, then cosine decay to min_lr_ratio * lr.
//
//   step i (0-based, the i-th optimiser step), W = warmup, T = total:
//   i <  W:  lr * (i + 1) / W
//   i >= W:  lr_min + (lr - lr_min) * (1 + cos(pi * (i - W) / (T - W))) / 2,   lr_min = min_lr_ratio * lr
//
// The same as PyTorch's SequentialLR(LinearLR(start_factor=1/W, total_iters=W-1),
// CosineAnnealingLR(T_max=T-W, eta_min=lr_min), milestones=[W]) stepped once per
// optimiser step (tests/train compares the two). The first step already moves
// (lr / W, not 0), and the last one (i = T - 1) stops one cosine step short of lr_min.

#include <cmath>
#include <cstdint>
#include <numbers>

#include "glimpse/core/error.hpp"

namespace glimpse::train {

struct lr_schedule {
    double lr = 1e-3;
    std::int64_t warmup = 0;  // steps; 0 = start at lr
    std::int64_t total = 1;   // optimiser steps of the whole run
    double min_lr_ratio = 0.0;

    void validate() const {
        detail::check(std::isfinite(lr) && lr > 0, "learning rate must be positive, got ", lr);
        detail::check(total >= 1, "the run must have at least one step, got ", total);
        detail::check(warmup >= 0 && warmup <= total, "warm-up of ", warmup, " steps for a run of ", total, " steps");
        detail::check(min_lr_ratio >= 0 && min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1], got ", min_lr_ratio);
    }

    double at(std::int64_t i) const {
        if (i < warmup) return lr * static_cast<double>(i + 1) / static_cast<double>(warmup);
        const double lo = min_lr_ratio * lr;
        const auto span = total - warmup;
        if (span <= 0) return lr;
        const double t = static_cast<double>(i - warmup) / static_cast<double>(span);
        return lo + (lr - lo) * 0.5 * (1.0 + std::cos(std::numbers::pi * t));
    }
};

}  // namespace glimpse::train
