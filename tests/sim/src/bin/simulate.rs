//! Runs the deterministic simulation (`sim`) over many seeds and prints one table.
//!
//! ```text
//! cargo run --release -p sim --bin simulate -- --seeds 10000          # seeds 0..10000
//! cargo run --release -p sim --bin simulate -- --seed 4711            # one seed, every violation
//! cargo run --release -p sim --bin simulate -- --seeds 200 --from 5000 --threads 2
//! ```
//!
//! A failing seed prints itself with its fault plan; running it again with `--seed` replays it bit for
//! bit (the digest of its requests is printed to compare). Exits non-zero when any seed failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use sim::{SimOptions, SimReport};

struct Args {
    from: u64,
    seeds: u64,
    threads: usize,
    verbose: bool,
}

fn parse() -> anyhow::Result<Args> {
    let mut args = Args {
        from: 0,
        seeds: 100,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || -> anyhow::Result<u64> {
            it.next()
                .with_context(|| format!("{arg} needs a value"))?
                .parse()
                .with_context(|| format!("{arg} needs a number"))
        };
        match arg.as_str() {
            "--seeds" => args.seeds = value()?,
            "--from" => args.from = value()?,
            "--threads" => args.threads = usize::try_from(value()?)?.max(1),
            "--seed" => {
                args.from = value()?;
                args.seeds = 1;
                args.verbose = true;
            }
            other => bail!("unknown argument {other} (--seeds N, --from N, --seed S, --threads N)"),
        }
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse()?;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(args.from));
    let reports: Arc<Mutex<Vec<SimReport>>> = Arc::default();
    let end = args.from + args.seeds;
    let workers: Vec<_> = (0..args.threads)
        .map(|_| {
            let (next, reports) = (next.clone(), reports.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        return Ok(());
                    }
                    let report = sim::run(SimOptions::of(seed))
                        .with_context(|| format!("seed {seed}"))?;
                    if !report.violations.is_empty() {
                        eprintln!(
                            "seed {seed} FAILED ({} violations; replay: --seed {seed}): {}\n  plan: {}",
                            report.violations.len(),
                            report.violations[0],
                            report.plan
                        );
                    }
                    reports.lock().unwrap_or_else(|e| e.into_inner()).push(report);
                }
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
    }
    let reports = reports.lock().unwrap_or_else(|e| e.into_inner());
    if args.verbose {
        for report in reports.iter() {
            println!("seed {}: plan {}", report.seed, report.plan);
            println!("digest {:016x}, {} steps", report.digest, report.steps);
            for violation in &report.violations {
                println!("  violation: {violation}");
            }
        }
    }
    let failed: Vec<u64> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| r.seed)
        .collect();
    let sum = |f: fn(&SimReport) -> u64| reports.iter().map(f).sum::<u64>();
    let hours = reports.iter().map(|r| r.simulated_ms).sum::<i64>() as f64 / 3_600_000.0;
    let long = reports
        .iter()
        .filter(|r| SimOptions::of(r.seed).long_outage)
        .count();
    println!("| metric | value |");
    println!("|---|---|");
    println!("| seeds | {} (from {}) |", reports.len(), args.from);
    println!("| of which with a 48-hour Notion outage | {long} |");
    let retention = reports
        .iter()
        .filter(|r| SimOptions::of(r.seed).retention)
        .count();
    println!("| of which keeping recordings a day | {retention} |");
    let slow = reports
        .iter()
        .filter(|r| SimOptions::of(r.seed).slow_notion)
        .count();
    println!("| of which with a slow Notion | {slow} |");
    let holder = reports
        .iter()
        .filter(|r| SimOptions::of(r.seed).crash_holder)
        .count();
    println!("| of which crashing lease holders | {holder} |");
    println!("| simulated hours | {hours:.0} |");
    println!("| webhook deliveries | {} |", sum(|r| r.deliveries));
    println!("| events accepted | {} |", sum(|r| r.accepted as u64));
    println!("| requests to the doubles | {} |", sum(|r| r.requests));
    println!("| faults injected | {} |", sum(|r| r.faults));
    println!(
        "| objects written to the bucket | {} |",
        sum(|r| r.objects_written)
    );
    println!(
        "| objects deleted by retention | {} |",
        sum(|r| r.objects_retired)
    );
    println!(
        "| lease acquisitions checked | {} |",
        sum(|r| r.acquisitions)
    );
    println!(
        "| violations | {} in {} seeds |",
        sum(|r| r.violations.len() as u64),
        failed.len()
    );
    println!("| wall time | {:.1} s |", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        bail!("failing seeds: {failed:?}");
    }
    Ok(())
}
