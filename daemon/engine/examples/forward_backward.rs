//! Times one forward and backward pass (the input gradient of one output, as saliency
//! needs) of a model file through the engine's `LoadedModel`, for
//! tests/bench/bench_exported.py, which times the same work in eager PyTorch in the same
//! run and reports the ratio.
//!
//!     forward_backward MODEL_FILE 1,3,224,224 ROUNDS REPEATS_PER_ROUND
//!
//! Each round prints one JSON line with the median milliseconds of its repeats, so the
//! caller can interleave rounds with its own and share out the machine's noise. The
//! input is fixed (uniform in [0, 1) from a seeded generator); thread count comes from
//! OMP_NUM_THREADS as for the daemon.

use layerlens_engine::{model, Device};
use std::io::{BufRead, Write};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: forward_backward MODEL_FILE SHAPE REPEATS_PER_ROUND  (then one line on stdin per round)");
        std::process::exit(2);
    }
    let shape: Vec<i64> = args[2].split(',').map(|dim| dim.parse().expect("shape is comma-separated integers")).collect();
    let repeats: usize = args[3].parse().expect("repeats is an integer");
    let loaded = model::load(std::path::Path::new(&args[1]), Device::Cpu, None).unwrap_or_else(|error| {
        eprintln!("cannot load {}: {error}", args[1]);
        std::process::exit(1);
    });
    tch::manual_seed(0);
    let input = tch::Tensor::rand(&shape[..], (tch::Kind::Float, tch::Device::Cpu));
    let pass = || {
        let x = input.detach().set_requires_grad(true);
        let output = loaded.forward(std::slice::from_ref(&x)).expect("forward pass");
        let score = output.select(1, 0).sum(tch::Kind::Float);
        let gradients = tch::Tensor::run_backward(&[score], &[&x], false, false);
        assert_eq!(gradients[0].size(), shape);
    };
    // Warm-up outside the timed rounds (allocator, first-call costs).
    tch::with_grad(|| {
        pass();
        pass();
    });
    println!("ready");
    std::io::stdout().flush().ok();
    // One round per line on stdin, so the caller interleaves its own rounds with ours.
    for _line in std::io::stdin().lock().lines() {
        let mut times: Vec<f64> = (0..repeats)
            .map(|_| {
                let start = Instant::now();
                tch::with_grad(pass);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("{{\"median_ms\": {}, \"min_ms\": {}}}", times[times.len() / 2], times[0]);
        std::io::stdout().flush().ok();
    }
}
