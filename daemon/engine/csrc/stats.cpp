// Fused statistics of a float32 CPU tensor, for the activation and parameter reports.
//
// The generic path (inspection.rs) reduces a tensor with one libtorch op per figure:
// isfinite, std_mean, aminmax, norm, eq(0), histc, le(0), a per-channel amax, each a
// pass over memory and most with a temporary. On the CPU an activation report of
// resnet18 at batch 32 reads ~1 GB of layer outputs, so those passes cost several
// times the forward pass itself. Here everything comes from two passes:
//
//   1. counts (NaN, ±Inf, zeros, ≤ 0, and on request sigmoid/tanh saturation), min and max of the
//      finite values, and shifted sums Σ(x−s), Σ(x−s)² (s = the first finite value,
//      which keeps the variance free of cancellation when |mean| ≫ std), plus which
//      channels (dimension 1) hold anything positive;
//   2. the histogram over [min, max].
//
// Work is split into a fixed number of chunks (of ≥ 64 Ki values) that do not depend on
// the thread count, spread over libtorch's intra-op threads, and partial results are merged in chunk order, so answers are the same however many
// threads libtorch runs. Inner loops run over blocks of ≤ 1024 elements with float
// accumulators (vectorised with `omp simd`), which are added into doubles per block.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/contiguous.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

extern "C" {

// Mirrors `FusedStats` in daemon/engine/src/inspection.rs.
struct LayerlensFusedStats {
    int64_t count;
    int64_t finite_count;
    int64_t nan_count;
    int64_t inf_count;
    int64_t zero_count;
    int64_t nonpositive_count;
    // x < 0.01 or x > 0.99: a sigmoid output near the ends of its range.
    int64_t sigmoid_saturated;
    // |x| > 0.99: a tanh output near the ends of its range.
    int64_t tanh_saturated;
    // Channels (dimension 1) with no value > 0 and no NaN; -1 when the tensor has < 2 dims.
    int64_t dead_channels;
    int64_t channels;
    double shift;
    double shifted_sum;
    double shifted_sum_squares;
    double min;
    double max;
};
}

namespace {

constexpr int64_t kBlock = 1024;
constexpr int64_t kMaxChunks = 64;
constexpr int64_t kMinChunk = 1 << 16;

struct Partial {
    int64_t finite = 0, nan = 0, inf = 0, zero = 0, nonpositive = 0, sigmoid = 0, tanh = 0;
    double sum = 0.0, sum_squares = 0.0;
    float min = std::numeric_limits<float>::infinity();
    float max = -std::numeric_limits<float>::infinity();
};

// The exact path for a block that holds NaN or ±Inf: those are counted and left out
// of the sums, min and max.
void count_block_with_nonfinite(const float* data, int64_t n, float shift, Partial& partial, int64_t& nonpositive) {
    for (int64_t i = 0; i < n; ++i) {
        const float x = data[i];
        nonpositive += x <= 0.f;
        partial.zero += x == 0.f;
        if (std::isnan(x)) {
            partial.nan += 1;
        } else if (std::isinf(x)) {
            partial.inf += 1;
        } else {
            const double d = static_cast<double>(x) - shift;
            partial.finite += 1;
            partial.sum += d;
            partial.sum_squares += d * d;
            partial.min = std::min(partial.min, x);
            partial.max = std::max(partial.max, x);
        }
    }
}

// Pass 1 over `length` values that lie inside one channel's run. Each block of ≤ 1024
// values first goes through a branch-free loop that assumes every value is finite and
// counts the ones that are not (x − x ≠ 0 for NaN and ±Inf); a block where some are
// is redone by the exact path. `saturation` adds the sigmoid/tanh counts.
template <bool saturation>
__attribute__((target_clones("avx2", "default")))
void count_run(const float* data, int64_t length, float shift, Partial& partial, int64_t& not_nonpositive) {
    const float infinity = std::numeric_limits<float>::infinity();
    for (int64_t start = 0; start < length; start += kBlock) {
        const int64_t n = std::min(length, start + kBlock) - start;
        const float* block = data + start;
        float sum = 0.f, sum_squares = 0.f, low = infinity, high = -infinity;
        int32_t zero = 0, nonpositive = 0, nonfinite = 0;
#pragma omp simd reduction(+ : sum, sum_squares, zero, nonpositive, nonfinite) reduction(min : low) reduction(max : high)
        for (int64_t i = 0; i < n; ++i) {
            const float x = block[i];
            const float d = x - shift;
            sum += d;
            sum_squares += d * d;
            low = std::min(low, x);
            high = std::max(high, x);
            zero += x == 0.f;
            nonpositive += x <= 0.f;
            nonfinite += (x - x) != 0.f;
        }
        if (nonfinite == 0) {
            partial.finite += n;
            partial.zero += zero;
            partial.sum += sum;
            partial.sum_squares += sum_squares;
            partial.min = std::min(partial.min, low);
            partial.max = std::max(partial.max, high);
        } else {
            int64_t exact_nonpositive = 0;
            count_block_with_nonfinite(block, n, shift, partial, exact_nonpositive);
            nonpositive = static_cast<int32_t>(exact_nonpositive);
        }
        partial.nonpositive += nonpositive;
        // NaN counts as "not ≤ 0", as amax(...) <= 0 does in the generic path.
        not_nonpositive += n - nonpositive;
        if (saturation) {
            int32_t sigmoid = 0, tanh = 0;
#pragma omp simd reduction(+ : sigmoid, tanh)
            for (int64_t i = 0; i < n; ++i) {
                const float x = block[i];
                sigmoid += (x < 0.01f) | (x > 0.99f);
                tanh += std::fabs(x) > 0.99f;
            }
            partial.sigmoid += sigmoid;
            partial.tanh += tanh;
        }
    }
}

// Pass 2: bins of width (high - low) / bins, the top edge in the last bin. Bin indices
// are found a block at a time (vectorised, non-finite values sent to a spare bin
// `bins`), then counted into four interleaved copies of the counts so that runs of
// equal indices do not wait on each other.
__attribute__((target_clones("avx2", "default")))
void bin_values(const float* data, int64_t length, float low, float scale, int64_t bins, int64_t* counts) {
    int32_t index[kBlock];
    const float top = static_cast<float>(bins - 1);
    std::vector<int64_t> lanes((bins + 1) * 4, 0);
    for (int64_t start = 0; start < length; start += kBlock) {
        const int64_t n = std::min(length, start + kBlock) - start;
        const float* block = data + start;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
            const float x = block[i];
            const float position = std::min(std::max((x - low) * scale, 0.f), top);
            index[i] = (x - x) == 0.f ? static_cast<int32_t>(position) : static_cast<int32_t>(bins);
        }
        int64_t i = 0;
        for (; i + 4 <= n; i += 4) {
            lanes[index[i] * 4] += 1;
            lanes[index[i + 1] * 4 + 1] += 1;
            lanes[index[i + 2] * 4 + 2] += 1;
            lanes[index[i + 3] * 4 + 3] += 1;
        }
        for (; i < n; ++i) lanes[index[i] * 4] += 1;
    }
    for (int64_t bin = 0; bin < bins; ++bin) {
        counts[bin] += lanes[bin * 4] + lanes[bin * 4 + 1] + lanes[bin * 4 + 2] + lanes[bin * 4 + 3];
    }
}

// Runs `work(chunk)` for every chunk in [0, n_chunks) on libtorch's intra-op threads.
// This file is built with -fopenmp and the binary links the libgomp that libtorch
// loads (one OpenMP runtime, one thread pool), so at::parallel_for here shares the
// threads the forward pass uses instead of competing with them while they spin.
template <typename Work>
void for_each_chunk(int64_t n_chunks, Work&& work) {
    at::parallel_for(0, n_chunks, 1, [&](int64_t first, int64_t last) {
        for (int64_t chunk = first; chunk < last; ++chunk) work(chunk);
    });
}

char* copy_message(const std::string& text) {
    char* copy = static_cast<char*>(std::malloc(text.size() + 1));
    std::memcpy(copy, text.c_str(), text.size() + 1);
    return copy;
}

}  // namespace

extern "C" {

// Reduces `*tensor` (float32, on the CPU) into `*out` (the sigmoid/tanh counts only
// when `saturation` is set) and, when `bins` > 0 and some
// value is finite, `histogram[0 .. bins)` over [min, max] (widened by 1 each way when
// min == max, as torch.histc does). Returns 0, or 1 with `*out_error` set.
int layerlens_fused_stats(const at::Tensor* tensor, int64_t bins, int saturation, LayerlensFusedStats* out,
                          int64_t* histogram, char** out_error) {
    *out_error = nullptr;
    try {
        TORCH_CHECK(tensor->device().is_cpu(), "fused statistics need a CPU tensor");
        TORCH_CHECK(tensor->scalar_type() == at::kFloat, "fused statistics need a float32 tensor");
        const at::Tensor values = tensor->contiguous();
        const float* data = values.const_data_ptr<float>();
        const int64_t count = values.numel();
        const int64_t channels = values.dim() >= 2 ? values.size(1) : 1;
        const int64_t inner = values.dim() >= 2 ? values.numel() / std::max<int64_t>(1, values.size(0) * channels) : count;
        std::memset(out, 0, sizeof(*out));
        out->count = count;
        out->channels = values.dim() >= 2 ? channels : 0;
        out->dead_channels = values.dim() >= 2 ? 0 : -1;
        out->min = out->max = std::nan("");
        if (count == 0) return 0;

        float shift = 0.f;
        for (int64_t i = 0; i < count; ++i) {
            if (std::isfinite(data[i])) {
                shift = data[i];
                break;
            }
        }
        const int64_t chunk = std::max(kMinChunk, (count + kMaxChunks - 1) / kMaxChunks);
        const int64_t n_chunks = (count + chunk - 1) / chunk;
        std::vector<Partial> partials(n_chunks);
        // Per chunk and channel: how many values were > 0 or NaN.
        std::vector<int64_t> alive(values.dim() >= 2 ? n_chunks * channels : 0, 0);
        // Runs of one channel's values: [run * inner, (run + 1) * inner), channel = run % channels.
        auto for_each_run = [&](int64_t begin, int64_t end, auto&& visit) {
            for (int64_t position = begin; position < end;) {
                const int64_t run = inner > 0 ? position / inner : 0;
                const int64_t stop = std::min(end, inner > 0 ? (run + 1) * inner : end);
                visit(position, stop - position, run % channels);
                position = stop;
            }
        };
        for_each_chunk(n_chunks, [&](int64_t c) {
            {
                const int64_t begin = c * chunk, end = std::min(count, begin + chunk);
                auto count = saturation ? count_run<true> : count_run<false>;
                if (alive.empty()) {
                    int64_t unused = 0;
                    count(data + begin, end - begin, shift, partials[c], unused);
                } else {
                    for_each_run(begin, end, [&](int64_t start, int64_t length, int64_t channel) {
                        count(data + start, length, shift, partials[c], alive[c * channels + channel]);
                    });
                }
            }
        });
        Partial total;
        for (const Partial& partial : partials) {
            total.finite += partial.finite;
            total.nan += partial.nan;
            total.inf += partial.inf;
            total.zero += partial.zero;
            total.nonpositive += partial.nonpositive;
            total.sigmoid += partial.sigmoid;
            total.tanh += partial.tanh;
            total.sum += partial.sum;
            total.sum_squares += partial.sum_squares;
            total.min = std::min(total.min, partial.min);
            total.max = std::max(total.max, partial.max);
        }
        out->finite_count = total.finite;
        out->nan_count = total.nan;
        out->inf_count = total.inf;
        out->zero_count = total.zero;
        out->nonpositive_count = total.nonpositive;
        out->sigmoid_saturated = total.sigmoid;
        out->tanh_saturated = total.tanh;
        out->shift = shift;
        out->shifted_sum = total.sum;
        out->shifted_sum_squares = total.sum_squares;
        if (!alive.empty()) {
            for (int64_t channel = 0; channel < channels; ++channel) {
                int64_t seen = 0;
                for (int64_t c = 0; c < n_chunks; ++c) seen += alive[c * channels + channel];
                out->dead_channels += seen == 0;
            }
        }
        if (total.finite == 0) return 0;
        out->min = total.min;
        out->max = total.max;
        if (bins <= 0) return 0;

        float low = total.min, high = total.max;
        if (!(high > low)) {
            low -= 1.f;
            high += 1.f;
        }
        const float scale = static_cast<float>(bins) / (high - low);
        std::vector<int64_t> counts(n_chunks * bins, 0);
        for_each_chunk(n_chunks, [&](int64_t c) {
            {
                const int64_t begin = c * chunk, end = std::min(count, begin + chunk);
                bin_values(data + begin, end - begin, low, scale, bins, counts.data() + c * bins);
            }
        });
        for (int64_t bin = 0; bin < bins; ++bin) {
            int64_t sum = 0;
            for (int64_t c = 0; c < n_chunks; ++c) sum += counts[c * bins + bin];
            histogram[bin] = sum;
        }
        return 0;
    } catch (const c10::Error& error) {
        *out_error = copy_message(error.what_without_backtrace());
    } catch (const std::exception& error) {
        *out_error = copy_message(error.what());
    } catch (...) {
        *out_error = copy_message("unknown C++ exception");
    }
    return 1;
}

}  // extern "C"
