#pragma once
// Umbrella header: the whole public API of glimpse.
//
// Layers, top to bottom (docs/design.md): compare/ (the comparison tool's
// logic) -> viz/ (figures, PNG) and analysis/ (attention statistics);
// train/ (objective, optimiser, trainer) -> grad/ (backward of the head);
// models/ (Qwen vision towers, preprocessing) -> heatmap/ (the head, its block,
// the integration policy, heatmap preparation) -> nn/ (layers) -> core/
// (tensor, dtype, backend concepts) <- backend/ (reference, cpu; cuda in
// builds linked to glimpse::cuda); io/ reads safetensors checkpoints and images.

#include "glimpse/version.hpp"

#include "glimpse/core/backend.hpp"
#include "glimpse/core/dtype.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/progress.hpp"
#include "glimpse/core/random.hpp"
#include "glimpse/core/shape.hpp"
#include "glimpse/core/stage_clock.hpp"
#include "glimpse/core/tensor.hpp"

#include "glimpse/backend/cpu.hpp"
#include "glimpse/backend/device.hpp"
#include "glimpse/backend/host_memory.hpp"
#include "glimpse/backend/op_checks.hpp"
#include "glimpse/backend/reference.hpp"

#include "glimpse/io/image.hpp"
#include "glimpse/io/safetensors.hpp"

#include "glimpse/nn/attention.hpp"
#include "glimpse/nn/block_kind.hpp"
#include "glimpse/nn/linear.hpp"
#include "glimpse/nn/mlp.hpp"
#include "glimpse/nn/norm.hpp"
#include "glimpse/nn/parameters.hpp"
#include "glimpse/nn/rotary.hpp"

#include "glimpse/grad/combine_grad.hpp"
#include "glimpse/grad/head_grad.hpp"

#include "glimpse/heatmap/attention_head.hpp"
#include "glimpse/heatmap/fast_path.hpp"
#include "glimpse/heatmap/head_block.hpp"
#include "glimpse/heatmap/integration.hpp"
#include "glimpse/heatmap/prepare.hpp"

#include "glimpse/models/qwen2_5_vl.hpp"
#include "glimpse/models/qwen3_vl.hpp"
#include "glimpse/models/qwen_config.hpp"
#include "glimpse/models/qwen_heatmap.hpp"
#include "glimpse/models/qwen_preprocess.hpp"
#include "glimpse/models/qwen_token_order.hpp"
#include "glimpse/models/qwen_vision_block.hpp"

#include "glimpse/train/adamw.hpp"
#include "glimpse/train/box_focus.hpp"
#include "glimpse/train/clip.hpp"
#include "glimpse/train/dataset.hpp"
#include "glimpse/train/feature_cache.hpp"
#include "glimpse/train/head_checkpoint.hpp"
#include "glimpse/train/schedule.hpp"
#include "glimpse/train/trainer.hpp"

#include "glimpse/analysis/attention_stats.hpp"

#include "glimpse/viz/canvas.hpp"
#include "glimpse/viz/colormap.hpp"
#include "glimpse/viz/figure.hpp"
#include "glimpse/viz/font.hpp"
#include "glimpse/viz/png.hpp"

#include "glimpse/compare/attention_comparison.hpp"
#include "glimpse/compare/batch.hpp"
#include "glimpse/compare/comparison_figure.hpp"
#include "glimpse/compare/outputs.hpp"
