//! Peak memory of copying one recording from the media host to the object store, natively, for
//! recordings of 1 MiB, 20 MiB and 100 MiB: memory must not grow with the file's size.
//!
//! Each size runs in a process of its own (this example starts itself with `--one <bytes>`), because
//! the peak resident set size (`VmHWM` in `/proc/self/status`) only ever grows within a process. The
//! media host is `test_servers`' OpenPhone stand-in, in this process (it generates the file while
//! streaming it, 64 KiB at a time); the store is `s3s-fs` in its own process, so its memory is not
//! counted.
//!
//! ```text
//! scripts/install-test-deps   # s3s-fs
//! cargo run --release -p common --example media_memory
//! ```

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use common::platform::native::NativePlatformBuilder;
use common::storage::media::{MediaCopier, MediaSource, StoredMedia};
use test_servers::{OpenPhoneServer, S3Server};

const MIB: u64 = 1024 * 1024;
const SIZES_MIB: [u64; 3] = [1, 20, 100];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, bytes] = args.as_slice() {
        if flag == "--one" {
            return copy_one(bytes.parse().context("--one takes a size in bytes")?);
        }
    }
    println!(
        "{:>10} | {:>13} | {:>14} | {:>16} | {:>11} | {:>9}",
        "recording", "VmHWM before", "VmHWM after", "growth by copy", "S3 requests", "time"
    );
    println!("{}", "-".repeat(89));
    let exe = std::env::current_exe().context("finding this example's executable")?;
    for size in SIZES_MIB {
        let output = Command::new(&exe)
            .args(["--one", &(size * MIB).to_string()])
            .output()
            .context("running one copy")?;
        if !output.status.success() {
            bail!(
                "the {size} MiB copy failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let line = String::from_utf8(output.stdout).context("reading its report")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .with_context(|| format!("{name} missing from {line:?}"))?
                .parse()
                .with_context(|| format!("{name} in {line:?}"))
        };
        let (before, after) = (field("before_kib")?, field("after_kib")?);
        println!(
            "{:>6} MiB | {:>9.1} MiB | {:>10.1} MiB | {:>12.1} MiB | {:>11} | {:>6} ms",
            size,
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            after.saturating_sub(before) as f64 / 1024.0,
            field("s3_requests")?,
            field("elapsed_ms")?,
        );
    }
    Ok(())
}

/// Peak resident set size of this process so far, in KiB.
fn vm_hwm_kib() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

/// Copies one generated recording of `bytes` bytes and prints what it cost.
fn copy_one(bytes: u64) -> anyhow::Result<()> {
    let s3 = S3Server::start()?;
    let media = OpenPhoneServer::start("bench-key")?;
    let url = media.add_generated_media("/opstatics/bench.mp3", "audio/mpeg", bytes);
    let dir = tempfile::tempdir()?;
    let platform = NativePlatformBuilder::new(dir.path()).build()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        common::migrations::ensure_checked(&platform).await?;
        let storage = common::testing::storage_config(&s3);
        let copier = MediaCopier::new(&platform, &storage, &media.media_base_url())?;
        let created_at: DateTime<Utc> = "2025-10-20T19:28:34Z".parse()?;
        let source = MediaSource {
            url,
            content_type: Some("audio/mpeg".into()),
            duration: Some(112.0),
        };
        let before = vm_hwm_kib()?;
        let started = Instant::now();
        let stored = copier
            .copy_recording("ACbench", created_at, 1, &source)
            .await?;
        let elapsed_ms = started.elapsed().as_millis();
        let after = vm_hwm_kib()?;
        let StoredMedia::Stored(object) = stored else {
            bail!("the media host lost the file");
        };
        let on_disk = s3
            .objects()?
            .into_iter()
            .find(|o| o.key == object.key)
            .context("the object is not in the bucket")?;
        if on_disk.size != bytes || object.size != bytes {
            bail!("stored {} of {bytes} bytes", on_disk.size);
        }
        let requests = common::metrics::today(&platform, "requests.s3")?;
        let s3_requests: i64 = requests.iter().map(|(_, n)| n).sum();
        println!(
            "before_kib={before} after_kib={after} s3_requests={s3_requests} elapsed_ms={elapsed_ms}"
        );
        Ok(())
    })
}
