//! The deterministic simulation of the whole runtime (`paycode_tests::sim`),
//! over many seeds. `cargo test` runs a few hundred; a long run takes more:
//!
//! ```sh
//! PAYCODE_SIM_SEEDS=10000 cargo test --release -p paycode-tests --test it sim::seeds -- --nocapture
//! ```
//!
//! A failing seed prints its findings, its trace and the one line that
//! replays it alone:
//!
//! ```sh
//! PAYCODE_SIM_SEED=1234 cargo test -p paycode-tests --test it sim::replay -- --ignored --nocapture
//! ```

use std::time::Instant;

use paycode_tests::sim::{Outcome, SimOptions, run};

/// Seeds `cargo test` runs when `PAYCODE_SIM_SEEDS` does not say.
const SEEDS_DEFAULT: u64 = 200;
/// The run stops after this many failing seeds; each is listed, the first traced.
const FAILURES_SHOWN_MAX: usize = 20;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

fn report(outcome: &Outcome) -> String {
    let traced = run(SimOptions {
        seed: outcome.seed,
        trace: true,
    });
    let mut text = format!(
        "seed {} ({} orders, {} instances, {} events): {} finding(s)\n",
        outcome.seed,
        outcome.orders,
        outcome.instances,
        outcome.events,
        outcome.violations.len()
    );
    for violation in &outcome.violations {
        text.push_str(&format!("  {violation}\n"));
    }
    text.push_str("trace:\n");
    for line in &traced.trace {
        text.push_str(&format!("  {line}\n"));
    }
    text.push_str(&format!(
        "replay: PAYCODE_SIM_SEED={} cargo test -p paycode-tests --test it sim::replay -- --ignored --nocapture\n",
        outcome.seed
    ));
    text
}

#[test]
fn seeds() {
    // Every seed keeps every rule: never charged twice, no acknowledged event
    // lost, every final status one the channel's truth allows, all settled.
    let count = env_u64("PAYCODE_SIM_SEEDS").unwrap_or(SEEDS_DEFAULT);
    let first = env_u64("PAYCODE_SIM_FIRST_SEED").unwrap_or(1);
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut events = 0;
    for seed in first..first + count {
        let outcome = run(SimOptions { seed, trace: false });
        events += outcome.events;
        if !outcome.violations.is_empty() {
            failures.push(outcome);
            if failures.len() >= FAILURES_SHOWN_MAX {
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "simulated {count} seeds from {first} in {:.1} s ({} ms a seed), {events} events",
        elapsed.as_secs_f64(),
        elapsed.as_millis() / u128::from(count.max(1))
    );
    if let Some(first_failure) = failures.first() {
        let mut listed = String::new();
        for outcome in &failures {
            for violation in &outcome.violations {
                listed.push_str(&format!("  seed {}: {violation}\n", outcome.seed));
            }
        }
        panic!(
            "{} failing seed(s):\n{listed}the first:\n{}",
            failures.len(),
            report(first_failure)
        );
    }
}

#[test]
fn the_same_seed_writes_the_same_log() {
    // Determinism: two runs of a seed store the same events, byte for byte.
    for seed in [3, 17, 101] {
        let first = run(SimOptions { seed, trace: false });
        let second = run(SimOptions { seed, trace: false });
        assert!(first.events > 0, "seed {seed} wrote something");
        assert_eq!(first.log_hash, second.log_hash, "seed {seed}");
    }
}

#[test]
#[ignore = "replays the seed in PAYCODE_SIM_SEED, with its trace"]
fn replay() {
    let seed = env_u64("PAYCODE_SIM_SEED").expect("PAYCODE_SIM_SEED=<seed>");
    let outcome = run(SimOptions { seed, trace: true });
    for line in &outcome.trace {
        println!("{line}");
    }
    assert!(outcome.violations.is_empty(), "{}", report(&outcome));
}
