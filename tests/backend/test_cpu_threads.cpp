// Threads as a property of the cpu backend (cpu_options::threads, the tools' --threads): each op
// runs its parallel regions on the backend's count and hands the calling thread's OpenMP setting
// back as it found it; the count is per calling thread, so backends with different counts on
// different threads do not disturb each other.

#include <catch2/catch.hpp>

#include <cstring>
#include <latch>
#include <thread>
#include <tuple>
#include <type_traits>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/device.hpp>

#include "test_util.hpp"

namespace {

int max_threads() {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// The size of the team a parallel region opened here gets.
int team_size() {
    int n = 1;
#if defined(_OPENMP)
#pragma omp parallel
    {
#pragma omp single
        n = omp_get_num_threads();
    }
#endif
    return n;
}

}  // namespace

TEST_CASE("cpu_options: threads is the backend's, checked, and --threads reaches it through with_backend",
          "[backend][threads]") {
    glimpse::cpu dflt;
    CHECK(dflt.threads() == 0);
    glimpse::cpu one(glimpse::cpu_options{.precision = glimpse::matmul_precision::bf16, .threads = 1});
    CHECK(one.threads() == 1);
    CHECK(one.matmul_precision() == glimpse::matmul_precision::bf16);
    CHECK_THROWS_WITH(glimpse::cpu(glimpse::cpu_options{.threads = -2}), Catch::Contains("threads must be >= 0"));

    glimpse::device_spec d = glimpse::parse_device("cpu");
    d.threads = 3;
    CHECK(glimpse::with_backend(d, [](auto& be) {
              if constexpr (std::is_same_v<std::remove_cvref_t<decltype(be)>, glimpse::cpu>)
                  return be.threads();
              else
                  return -1;
          }) == 3);
}

TEST_CASE("cpu threads: an op's regions get the backend's count, the caller's setting comes back",
          "[backend][threads]") {
#if !defined(_OPENMP)
    WARN("built without OpenMP: no thread count to apply: test skipped");
    return;
#else
    const int before = max_threads();
    {
        const glimpse::detail::cpu_impl::team_scope scope(1);
        CHECK(max_threads() == 1);
        CHECK(team_size() == 1);
        {  // an op inside an op (copy inside gemm's widening) keeps the outer count
            const glimpse::detail::cpu_impl::team_scope inner(1);
            CHECK(max_threads() == 1);
        }
        CHECK(max_threads() == 1);
    }
    CHECK(max_threads() == before);
    {
        const glimpse::detail::cpu_impl::team_scope scope(0);  // 0: OpenMP's default, untouched
        CHECK(max_threads() == before);
    }

    // Through the backend: ops on a 1-thread backend leave the caller as it was.
    glimpse::cpu be(glimpse::cpu_options{.threads = 1});
    const auto a = glimpse::test::randn(glimpse::shape{96, 80}, 1);
    const auto b = glimpse::test::randn(glimpse::shape{64, 80}, 2);
    glimpse::tensor c(glimpse::shape{96, 64});
    be.gemm(a.cv(), b.cv(), c.v(), {.trans_b = true}, {});
    be.softmax_rows(c.v(), 1.0f);
    CHECK(max_threads() == before);

    // Per calling thread: two threads, two counts, at the same time.
    std::latch both_set(2), both_checked(2);
    int seen[2] = {0, 0};
    const auto worker = [&](int i, int n) {
        const glimpse::detail::cpu_impl::team_scope scope(n);
        both_set.arrive_and_wait();
        seen[i] = team_size();
        both_checked.arrive_and_wait();
    };
    std::thread t0(worker, 0, 1), t1(worker, 1, 3);
    t0.join();
    t1.join();
    CHECK(seen[0] == 1);
    CHECK(seen[1] == 3);
#endif
}

TEST_CASE("cpu threads: what is promised not to depend on the count is the same bits on 1 and 3 threads",
          "[backend][threads]") {
    // Norm backward sums dw over fixed row blocks in block order (cpu/backward.hpp), and every other output
    // of these ops is one row's own arithmetic: no split may change a bit.
    const std::int64_t m = 300, n = 96;
    const auto x = glimpse::test::randn(glimpse::shape{m, n}, 3);
    const auto dy = glimpse::test::randn(glimpse::shape{m, n}, 4);
    const auto w = glimpse::test::randn(glimpse::shape{n}, 5);
    const auto run = [&](int threads) {
        glimpse::cpu be(glimpse::cpu_options{.threads = threads});
        glimpse::tensor dx(glimpse::shape{m, n}), dw(glimpse::shape{n}), y(glimpse::shape{m, n});
        be.rms_norm_backward(x.cv(), w.cv(), 1e-6f, dy.cv(), dx.v(), dw.v());
        be.rms_norm(x.cv(), w.cv(), 1e-6f, y.v());
        return std::tuple{std::move(dx), std::move(dw), std::move(y)};
    };
    const auto [dx1, dw1, y1] = run(1);
    const auto [dx3, dw3, y3] = run(3);
    const auto same = [](const glimpse::tensor& p, const glimpse::tensor& q) {
        return std::memcmp(p.data(), q.data(), static_cast<std::size_t>(p.numel()) * sizeof(float)) == 0;
    };
    CHECK(same(dx1, dx3));
    CHECK(same(dw1, dw3));
    CHECK(same(y1, y3));
}
