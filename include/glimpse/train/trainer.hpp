#pragma once
// The training loop for one heatmap head on cached, frozen encoder features:
// minibatches of examples, the box-focus objective (box_focus.hpp), gradients
// averaged over the minibatch, global-norm clipping, AdamW, warm-up + cosine
// schedule, held-out evaluation after every epoch, checkpoints
// (head_checkpoint.hpp), and exact resumption.
//
// Encoder-agnostic: it sees images as features x [S, D] with their RoPE tables
// and examples as focus targets already in the features' token order
// (feature_cache.hpp builds both from a Qwen encoder).
//
// Determinism: the only randomness is the example order, a Fisher-Yates shuffle
// per epoch e with rng(mix(seed, e)) — a pure function of (seed, e), so a
// resumed run needs no generator state beyond the seed and the step count, and
// redraws exactly the order the interrupted run used. Everything else is a
// deterministic function of the parameters, the moments and the step, all of
// which a checkpoint stores in f32 exactly: resuming at step k gives the same
// bits as never stopping (tests/train/test_trainer.cpp), on the same machine
// and thread count.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <numeric>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/core/backend.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/random.hpp"
#include "glimpse/core/tensor.hpp"
#include "glimpse/heatmap/head_block.hpp"
#include "glimpse/train/adamw.hpp"
#include "glimpse/train/box_focus.hpp"
#include "glimpse/train/clip.hpp"
#include "glimpse/train/head_checkpoint.hpp"
#include "glimpse/train/schedule.hpp"

namespace glimpse::train {

struct train_options {
    std::int64_t epochs = 30;
    std::int64_t batch = 4;  // examples per optimiser step (the last step of an epoch may have fewer)
    double lr = 2e-3;
    std::int64_t warmup = -1;  // steps; -1: 5% of the run (at least 1)
    double min_lr_ratio = 0.0;
    double clip = 1.0;  // global gradient norm; 0 = off
    adamw_options adam{};
    box_focus_options objective{};
    std::uint64_t seed = 0;       // example order
    std::int64_t save_every = 0;  // steps between checkpoints (0: only at epoch ends and at the end)

    void validate() const {
        detail::check(epochs >= 1, "epochs must be >= 1, got ", epochs);
        detail::check(batch >= 1, "batch must be >= 1, got ", batch);
        detail::check(std::isfinite(clip) && clip >= 0, "clip must be >= 0 (0 = off), got ", clip);
        detail::check(save_every >= 0, "save-every must be >= 0, got ", save_every);
        detail::check(warmup >= -1, "warm-up must be >= 0 steps (or -1: automatic), got ", warmup);
        adam.validate();
        objective.validate();
    }
};

// One image's features at the head's site.
template <Backend B>
struct image_features {
    typename B::tensor x;         // [S, D] f32
    typename B::tensor cos, sin;  // [S, D / H] (empty without RoPE)
    double x_sum_sq = 0;          // sum(x^2), the feature term's denominator
};

// One example: an image (index into the features) and its boxes as targets.
struct train_sample {
    std::size_t image = 0;
    std::vector<focus_target> targets;  // the objective's box kinds, in order (training)
    std::vector<focus_target> eval;     // person, object, union (held-out evaluation)
    std::string where;                  // "file:line", for messages
};

struct step_report {
    std::int64_t step = 0;   // steps done, this one included
    std::int64_t epoch = 0;  // 0-based epoch of this step
    double loss = 0;         // minibatch mean
    double grad_norm = 0;    // before clipping
    double lr = 0;
};

// Held-out mean attention mass on the box's patches (the objective's m, each patch the box
// touches counted whole: analysis::mass_on_patches), per box kind, and what a head that
// attends uniformly would get (the fraction of patches in the box).
struct eval_report {
    std::int64_t examples = 0;
    std::array<double, 3> mass{};  // person, object, union
    std::array<double, 3> uniform{};
    double feature = 0;  // mean sum(delta^2) / sum(x^2): how much the head changes the features
    nlohmann::json to_json() const {
        nlohmann::json j = nlohmann::json::object();
        j["examples"] = examples;
        j["feature_change"] = feature;
        for (std::size_t i = 0; i < 3; ++i) {
            j["mass_on_box_patches"][std::string(name(all_box_kinds[i]))] = mass[i];
            j["uniform"][std::string(name(all_box_kinds[i]))] = uniform[i];
        }
        return j;
    }
};

struct run_hooks {
    std::function<void(const step_report&)> on_step;
    std::function<void(const nlohmann::json& epoch_record)> on_epoch;
    std::function<void(std::int64_t step)> on_checkpoint;
    std::function<bool()> stop_requested;  // polled before each step; true: checkpoint and return
    checkpoint_hook on_save_stage;         // forwarded to save_checkpoint (tests)
};

// The paths (a/b/c) where two JSON values differ: what --resume refuses to change.
inline void json_diff(const nlohmann::json& a, const nlohmann::json& b, const std::string& path,
                      std::vector<std::string>& out) {
    if (a.is_object() && b.is_object()) {
        for (const auto& [k, v] : a.items()) {
            if (b.contains(k))
                json_diff(v, b.at(k), path.empty() ? k : path + "." + k, out);
            else
                out.push_back((path.empty() ? k : path + "." + k) + " (" + v.dump() + " vs absent)");
        }
        for (const auto& [k, v] : b.items())
            if (!a.contains(k)) out.push_back((path.empty() ? k : path + "." + k) + " (absent vs " + v.dump() + ")");
        return;
    }
    if (a != b) out.push_back(path + " (" + a.dump() + " vs " + b.dump() + ")");
}

// An f32 copy of a head (any storage dtype) that can be trained.
template <Backend B, heatmap::block_kind Kind>
heatmap::heatmap_head<B, Kind> trainable_copy(B& be, const heatmap::heatmap_head<B, Kind>& src) {
    rng unused(0);
    auto h = heatmap::heatmap_head<B, Kind>::init(be, src.config, unused, dtype::f32);
    std::vector<const typename B::tensor*> from;
    src.visit("", [&](const std::string&, const typename B::tensor& p) { from.push_back(&p); });
    std::size_t i = 0;
    h.visit("", [&](const std::string& n, typename B::tensor& p) {
        detail::check(i < from.size() && from[i]->shape() == p.shape(), "trainable_copy: parameter '", n,
                      "' does not match the source head");
        be.copy(from[i++]->cv(), p.v());
    });
    return h;
}

template <TrainingBackend B, heatmap::block_kind Kind>
class trainer {
public:
    using head_t = heatmap::heatmap_head<B, Kind>;
    using tensor_t = typename B::tensor;

    // `head` must be f32 (trainable_copy) and outlive the trainer, as must `images`.
    trainer(B& be, head_t& head, std::span<const image_features<B>> images, std::vector<train_sample> train,
            std::vector<train_sample> heldout, const train_options& opt, std::string prefix = "heatmap_head")
        : be_(&be),
          head_(&head),
          images_(images),
          train_(std::move(train)),
          heldout_(std::move(heldout)),
          opt_(opt),
          prefix_(std::move(prefix)) {
        opt_.validate();
        detail::check(!train_.empty(), "trainer: no training example");
        for (const auto* set : {&train_, &heldout_})
            for (const auto& s : *set)
                detail::check(s.image < images_.size(), "trainer: example ", s.where, " refers to image ", s.image,
                              " of ", images_.size());
        std::vector<std::string> names;
        std::vector<shape> shapes;
        head_->visit(prefix_, [&](const std::string& n, const tensor_t& p) {
            detail::check(p.type() == dtype::f32, "trainer: parameter '", n, "' is ", glimpse::name(p.type()),
                          "; train an f32 copy (trainable_copy)");
            names.push_back(n);
            shapes.push_back(p.shape());
        });
        optim_ = adamw(opt_.adam, std::move(names), shapes);
        steps_per_epoch_ = (static_cast<std::int64_t>(train_.size()) + opt_.batch - 1) / opt_.batch;
        sched_.lr = opt_.lr;
        sched_.total = steps_per_epoch_ * opt_.epochs;
        sched_.warmup = opt_.warmup >= 0
                            ? opt_.warmup
                            : std::max<std::int64_t>(1, std::llround(0.05 * static_cast<double>(sched_.total)));
        sched_.warmup = std::min(sched_.warmup, sched_.total);
        sched_.min_lr_ratio = opt_.min_lr_ratio;
        sched_.validate();
    }

    std::int64_t steps_per_epoch() const noexcept { return steps_per_epoch_; }
    std::int64_t total_steps() const noexcept { return sched_.total; }
    std::int64_t step() const noexcept { return optim_.steps(); }
    const lr_schedule& schedule() const noexcept { return sched_; }
    const train_options& options() const noexcept { return opt_; }
    const std::vector<float>& losses() const noexcept { return losses_; }
    const nlohmann::json& history() const noexcept { return history_; }
    std::size_t train_size() const noexcept { return train_.size(); }
    std::size_t heldout_size() const noexcept { return heldout_.size(); }

    // The example order of epoch e (see the top of this file).
    std::vector<std::size_t> epoch_order(std::int64_t e) const {
        std::vector<std::size_t> p(train_.size());
        std::iota(p.begin(), p.end(), std::size_t{0});
        rng g(opt_.seed * 0x9e3779b97f4a7c15ull + static_cast<std::uint64_t>(e) + 1);
        for (std::size_t i = p.size() - 1; i > 0; --i)
            std::swap(p[i], p[static_cast<std::size_t>(g.next_u64() % (i + 1))]);
        return p;
    }

    // One optimiser step on the next minibatch.
    step_report run_step() {
        detail::check(step() < total_steps(), "trainer: the run is complete (", total_steps(), " steps)");
        const std::int64_t s = step();
        const std::int64_t epoch = s / steps_per_epoch_, k = s % steps_per_epoch_;
        if (epoch != order_epoch_) {
            order_ = epoch_order(epoch);
            order_epoch_ = epoch;
        }
        const auto first = static_cast<std::size_t>(k * opt_.batch);
        const std::size_t last = std::min(train_.size(), first + static_cast<std::size_t>(opt_.batch));
        const double n_ex = static_cast<double>(last - first);

        auto acc = zero_grads(*be_, *head_);
        double loss = 0;
        for (std::size_t i = first; i < last; ++i) {
            const train_sample& ex = train_[order_[i]];
            const image_features<B>& f = images_[ex.image];
            const double scale = 1.0 / (n_ex * static_cast<double>(ex.targets.size()));
            for (const auto& t : ex.targets) {
                const auto v = focus_loss_and_grad(*be_, *head_, f.x.cv(), f.cos.cv(), f.sin.cv(), f.x_sum_sq, t,
                                                   opt_.objective.feature_weight, scale, std::span(acc));
                loss += v.loss * scale;
            }
        }
        detail::check(std::isfinite(loss), "step ", s + 1, ": the loss is not finite (", loss,
                      "); a lower --lr or a tighter --clip may help");

        std::vector<tensor> grads;
        for (auto& g : acc) grads.push_back(be_->download(g.cv()));
        step_report r;
        r.grad_norm = clip_grad_norm(std::span(grads), opt_.clip);
        detail::check(std::isfinite(r.grad_norm), "step ", s + 1, ": the gradient is not finite");
        r.lr = sched_.at(s);
        apply(grads, r.lr);
        losses_.push_back(static_cast<float>(loss));
        r.step = s + 1;
        r.epoch = epoch;
        r.loss = loss;
        return r;
    }

    // Held-out masses on the head's fastest exact path.
    eval_report evaluate() const { return evaluate(heldout_); }
    eval_report evaluate(std::span<const train_sample> set) const {
        eval_report r;
        r.examples = static_cast<std::int64_t>(set.size());
        if (set.empty()) return r;
        for (const auto& ex : set) {
            const image_features<B>& f = images_[ex.image];
            detail::check(ex.eval.size() == 3, "trainer: evaluation example ", ex.where, " lacks its three boxes");
            for (std::size_t b = 0; b < 3; ++b) {
                const auto v = focus_evaluate(*be_, *head_, f.x.cv(), f.cos.cv(), f.sin.cv(), f.x_sum_sq, ex.eval[b]);
                r.mass[b] += v.mass;
                r.feature += v.feature / 3.0;
                r.uniform[b] += static_cast<double>(ex.eval[b].count) / static_cast<double>(ex.eval[b].in_box.size());
            }
        }
        for (std::size_t b = 0; b < 3; ++b) {
            r.mass[b] /= static_cast<double>(set.size());
            r.uniform[b] /= static_cast<double>(set.size());
        }
        r.feature /= static_cast<double>(set.size());
        return r;
    }

    // What the run records about itself (merged into the caller's record).
    nlohmann::json training_record() const {
        nlohmann::json j;
        std::vector<std::string> boxes;
        for (const auto k : opt_.objective.boxes) boxes.emplace_back(name(k));
        j["objective"] = {{"name", "box_focus"},
                          {"boxes", boxes},
                          {"feature_weight", opt_.objective.feature_weight},
                          {"form",
                           "mean over examples and boxes of -log(mass_on_box_patches) + feature_weight * "
                           "sum(delta^2) / sum(x^2)"},
                          {"doc", "docs/training.md"}};
        j["hyperparameters"] = {{"epochs", opt_.epochs},
                                {"batch", opt_.batch},
                                {"lr", opt_.lr},
                                {"warmup_steps", sched_.warmup},
                                {"schedule", "linear warm-up, cosine decay"},
                                {"min_lr_ratio", opt_.min_lr_ratio},
                                {"clip_grad_norm", opt_.clip},
                                {"optimizer", "adamw"},
                                {"beta1", opt_.adam.beta1},
                                {"beta2", opt_.adam.beta2},
                                {"eps", opt_.adam.eps},
                                {"weight_decay", opt_.adam.weight_decay},
                                {"weight_decay_on", std::string(name(opt_.adam.decay))},
                                {"seed", opt_.seed},
                                {"save_every", opt_.save_every}};
        j["progress"] = {{"step", step()},
                         {"total_steps", total_steps()},
                         {"steps_per_epoch", steps_per_epoch_},
                         {"epoch", step() / steps_per_epoch_},
                         {"epochs", opt_.epochs},
                         {"complete", step() == total_steps()},
                         {"train_examples", train_.size()},
                         {"heldout_examples", heldout_.size()}};
        j["metrics"] = history_;
        return j;
    }

    // A checkpoint of the current state; `base` is the caller's part of the record.
    train_state state(const nlohmann::json& base) const {
        train_state st;
        st.step = step();
        head_->visit(prefix_, [&](const std::string& n, const tensor_t& p) {
            st.names.push_back(n);
            st.params.push_back(be_->download(p.cv()));
        });
        for (const auto& m : optim_.exp_avg()) st.exp_avg.push_back(m.clone());
        for (const auto& v : optim_.exp_avg_sq()) st.exp_avg_sq.push_back(v.clone());
        st.losses = losses_;
        st.record = base;
        const nlohmann::json own = training_record();
        for (const auto& [k, v] : own.items()) st.record[k] = v;
        return st;
    }

    // Continues from a checkpoint of this same run (parameters by name).
    void restore(const train_state& st) {
        detail::check(st.step <= total_steps(), "resume: the checkpoint is at step ", st.step, " of a run of ",
                      total_steps(), " steps");
        std::vector<std::size_t> at;  // checkpoint index of each head parameter, in visit order
        head_->visit(prefix_, [&](const std::string& n, tensor_t& p) {
            const auto it = std::find(st.names.begin(), st.names.end(), n);
            detail::check(it != st.names.end(), "resume: the checkpoint has no parameter '", n, "'");
            const auto i = static_cast<std::size_t>(it - st.names.begin());
            detail::check(st.params[i].shape() == p.shape(), "resume: the checkpoint's '", n, "' is ",
                          st.params[i].shape(), ", the head's ", p.shape());
            be_->copy(st.params[i].cv(), p.v());
            at.push_back(i);
        });
        detail::check(at.size() == st.names.size(), "resume: the checkpoint has ", st.names.size(),
                      " parameters, the head ", at.size());
        std::vector<tensor> m, v;
        for (const auto i : at) {
            m.push_back(st.exp_avg[i].clone());
            v.push_back(st.exp_avg_sq[i].clone());
        }
        optim_.restore(st.step, std::move(m), std::move(v));
        losses_ = st.losses;
        history_ = st.record.contains("metrics") ? st.record.at("metrics") : nlohmann::json::array();
    }

    // The whole run (or its rest, after restore): evaluates before the first
    // step, after every epoch; checkpoints into `out` every save_every steps,
    // at every epoch's end, at the end, and when stop_requested() says so.
    // Returns true when the run is complete.
    bool run(const std::filesystem::path& out, const nlohmann::json& base, const run_hooks& hooks = {}) {
        if (history_.empty()) {
            history_.push_back(epoch_record(0, 0, nullptr));
            if (hooks.on_epoch) hooks.on_epoch(history_.back());
        }
        const auto save = [&] {
            save_checkpoint(out, state(base), hooks.on_save_stage);
            if (hooks.on_checkpoint) hooks.on_checkpoint(step());
        };
        while (step() < total_steps()) {
            if (hooks.stop_requested && hooks.stop_requested()) {
                save();
                return false;
            }
            const step_report r = run_step();
            if (hooks.on_step) hooks.on_step(r);
            const bool epoch_end = step() % steps_per_epoch_ == 0;
            if (epoch_end) {
                const std::int64_t e = step() / steps_per_epoch_;
                double sum = 0;
                for (std::int64_t i = step() - steps_per_epoch_; i < step(); ++i)
                    sum += losses_[static_cast<std::size_t>(i)];
                history_.push_back(epoch_record(e, step(), sum / static_cast<double>(steps_per_epoch_)));
                if (hooks.on_epoch) hooks.on_epoch(history_.back());
            }
            if (epoch_end || step() == total_steps() || (opt_.save_every > 0 && step() % opt_.save_every == 0)) save();
        }
        return true;
    }

private:
    nlohmann::json epoch_record(std::int64_t epoch, std::int64_t s, const nlohmann::json& train_loss) const {
        nlohmann::json j;
        j["epoch"] = epoch;
        j["step"] = s;
        j["train_loss"] = train_loss;
        j["lr"] = s == 0 ? 0.0 : sched_.at(s - 1);
        j["heldout"] = heldout_.empty() ? nlohmann::json(nullptr) : evaluate().to_json();
        return j;
    }

    void apply(std::span<const tensor> grads, double lr) {
        if constexpr (std::is_same_v<tensor_t, glimpse::tensor>) {
            // Host memory: update the parameters in place.
            std::vector<view> pv;
            head_->visit(prefix_, [&](const std::string&, tensor_t& p) { pv.push_back(p.v()); });
            optim_.step(pv, grads, lr);
        } else {
            std::vector<tensor> host;
            head_->visit(prefix_,
                         [&](const std::string&, const tensor_t& p) { host.push_back(be_->download(p.cv())); });
            std::vector<view> pv;
            for (auto& h : host) pv.push_back(h.v());
            optim_.step(pv, grads, lr);
            std::size_t i = 0;
            head_->visit(prefix_, [&](const std::string&, tensor_t& p) { p = be_->upload(host[i++].cv()); });
        }
    }

    B* be_;
    head_t* head_;
    std::span<const image_features<B>> images_;
    std::vector<train_sample> train_, heldout_;
    train_options opt_;
    std::string prefix_;
    adamw optim_;
    lr_schedule sched_;
    std::int64_t steps_per_epoch_ = 0;
    std::vector<float> losses_;
    nlohmann::json history_ = nlohmann::json::array();
    std::vector<std::size_t> order_;
    std::int64_t order_epoch_ = -1;
};

}  // namespace glimpse::train
