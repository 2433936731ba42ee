//! What running the app costs the machine: peak memory while a 100 MiB recording is copied (on the test
//! host, and on a real `spin up`), and each component's cold start on a real `spin up`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::Utc;
use e2e::app::{Runner, ADMIN_TOKEN};
use e2e::spin::{free_port, write_runtime_config, KeyValueBackend};
use e2e::workload::{contact, CallScript};
use e2e::{component_wasm, workspace_root, COMPONENTS};
use test_servers::{NotionServer, OpenPhoneServer};

use super::{single_component_manifest, start, until_finished, Table, MIB, PHASE_LIMIT};

/// Whose peak resident memory a measurement reads.
enum Processes {
    /// The bench process itself: the test host runs the components in it.
    ThisOne,
    /// Every process this one started except the S3 server: `spin up` and its trigger processes.
    Spin,
}

impl Processes {
    fn pids(&self) -> anyhow::Result<Vec<u32>> {
        match self {
            Processes::ThisOne => Ok(vec![std::process::id()]),
            Processes::Spin => {
                let pids = descendants(std::process::id())?
                    .into_iter()
                    .filter(|pid| comm(*pid).is_some_and(|c| c != "s3s-fs"))
                    .collect::<Vec<_>>();
                ensure!(!pids.is_empty(), "no spin process runs under the bench");
                Ok(pids)
            }
        }
    }

    /// Resets each process's peak to its current RSS (Linux: `echo 5 > /proc/PID/clear_refs`).
    fn reset_peak(&self) -> anyhow::Result<()> {
        for pid in self.pids()? {
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
                .with_context(|| format!("resetting the peak RSS of process {pid}"))?;
        }
        Ok(())
    }

    /// The sum of the processes' peak RSS (`VmHWM`), in KiB.
    fn peak_kib(&self) -> anyhow::Result<u64> {
        self.pids()?
            .into_iter()
            .map(|pid| vm_kib(pid, "VmHWM:"))
            .sum()
    }
}

/// Every live process below `root` in the process tree.
fn descendants(root: u32) -> anyhow::Result<Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the name may hold spaces and parentheses, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if seen.insert(*child) {
                found.push(*child);
                next.push(*child);
            }
        }
    }
    Ok(found)
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_owned())
}

fn vm_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Peak RSS growth while the app copies a 100 MiB recording to the local S3 server, on `runner`.
pub(super) async fn memory_per_recording(
    table: &mut Table,
    runner: Runner,
    label: &str,
) -> anyhow::Result<()> {
    let processes = match runner {
        Runner::Spin(_) => Processes::Spin,
        _ => Processes::ThisOne,
    };
    let (app, line) = start(runner, true).await?;
    let started = Utc::now();
    // A call with a 1 MiB recording first, so what a copy allocates once is allocated before measuring.
    app.openphone.add_generated_recording("ACwarmup", MIB);
    let mut warmup =
        CallScript::answered(&app.openphone, &line, &contact(1), "ACwarmup", started).events();
    warmup.truncate(2);
    for event in &warmup {
        app.deliver(event).await;
    }
    until_finished(&app, 2, PHASE_LIMIT).await?;
    processes.reset_peak()?;
    let before = processes.peak_kib()?;
    let size = 100 * MIB;
    let call = CallScript::answered(&app.openphone, &line, &contact(2), "ACbig", started);
    // `answered` gave the call a small segment; the one measured is the second, of 100 MiB.
    app.openphone.add_generated_recording("ACbig", size);
    let copied = Instant::now();
    for event in call.events().iter().take(2) {
        app.deliver(event).await;
    }
    until_finished(&app, 4, PHASE_LIMIT).await?;
    let took = copied.elapsed();
    let after = processes.peak_kib()?;
    let s3 = app.s3.as_ref().context("S3 is running")?;
    let stored = s3
        .objects()?
        .into_iter()
        .find(|o| o.key.ends_with("ACbig-2.mp3"))
        .context("the 100 MiB recording is not in the bucket")?;
    ensure!(
        stored.size == size,
        "the stored recording has {} bytes",
        stored.size
    );
    let whose = match processes {
        Processes::ThisOne => {
            "of the host process (local servers included; s3s-fs is another process)"
        }
        Processes::Spin => "summed over spin up and its trigger processes (s3s-fs left out)",
    };
    table.add(
        format!("memory: peak RSS growth copying a 100 MiB recording ({label})"),
        format!("+{} MiB", after.saturating_sub(before) / 1024),
        format!(
            "VmHWM {} → {} MiB {whose}; copied in {:.1?}",
            before / 1024,
            after / 1024,
            took
        ),
    );
    Ok(())
}

/// A `spin up` of one component, stopped (its whole process group) when dropped.
struct SpinUp(Child);

impl Drop for SpinUp {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: `kill` has no memory effects; the group was made for this child alone.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.0.wait();
    }
}

/// Each component alone on a real `spin up`: the time from starting `spin up` to the component's first
/// answer (for `cron`, to the end of its first tick, with the tick moved to every second), cold (an empty
/// Wasmtime cache: Spin compiles the component) and warm (the next `spin up` on that cache, as every start
/// after the first on a machine).
pub(super) async fn cold_starts_on_spin(table: &mut Table, spin: &Path) -> anyhow::Result<()> {
    let manifest: toml::Table = std::fs::read_to_string(workspace_root().join("spin.toml"))?
        .parse()
        .context("parsing spin.toml")?;
    let openphone = OpenPhoneServer::start("op-bench-key")?;
    let notion = NotionServer::start("secret_bench")?;
    let variables = super::cold_start_variables(&openphone, &notion);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    for (id, _) in COMPONENTS {
        let mut cold = Vec::with_capacity(COLD_START_RUNS);
        let mut warm = Vec::with_capacity(COLD_START_RUNS);
        for _ in 0..COLD_START_RUNS {
            let cache = WasmtimeCache::new()?;
            cold.push(start_on_spin(spin, &manifest, id, &variables, &client, &cache).await?);
            warm.push(start_on_spin(spin, &manifest, id, &variables, &client, &cache).await?);
        }
        let until = match *id {
            "cron" => "to the end of the first tick (ticking every second)",
            _ => "to the first answer (polled every 10 ms)",
        };
        let size = std::fs::metadata(component_wasm(id)?)?.len();
        for (start, runs, cache) in [
            ("cold", &mut cold, "an empty Wasmtime cache"),
            ("warm", &mut warm, "the cache the cold start filled"),
        ] {
            runs.sort();
            table.add(
                format!("{start} start on spin up: {id}"),
                format!("{} ms", runs[runs.len() / 2].as_millis()),
                format!(
                    "median of {COLD_START_RUNS} (min {} ms, max {} ms, load average {}); start of `spin up` \
                     on {cache} {until}; .wasm {size} bytes",
                    runs[0].as_millis(),
                    runs[runs.len() - 1].as_millis(),
                    load_average(),
                ),
            );
        }
    }
    Ok(())
}

/// A Wasmtime cache of our own for `spin up --cache`: empty at first, and never the user's.
struct WasmtimeCache {
    dir: tempfile::TempDir,
}

impl WasmtimeCache {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = format!(
            "[cache]\ndirectory = {}\n",
            toml::Value::String(dir.path().join("compiled").display().to_string())
        );
        std::fs::write(dir.path().join("cache.toml"), config)?;
        Ok(Self { dir })
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("cache.toml")
    }
}

/// Cold starts per component: one is noise on a shared machine, the median of several is not.
const COLD_START_RUNS: usize = 5;

/// The 1-minute load average (`/proc/loadavg`), to read a cold start against; `?` when unknown.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// One start of component `id` alone on a fresh `spin up` and state directory, with Wasmtime's `cache`.
async fn start_on_spin(
    spin: &Path,
    manifest: &toml::Table,
    id: &str,
    variables: &HashMap<String, String>,
    client: &reqwest::Client,
    cache: &WasmtimeCache,
) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let mut single = single_component_manifest(manifest, id, &component_wasm(id)?)?
        .parse::<toml::Table>()
        .context("re-reading the one-component manifest")?;
    if id == "cron" {
        every_second(&mut single)?;
    }
    let manifest_path = dir.path().join("spin.toml");
    std::fs::write(&manifest_path, toml::to_string(&single)?)?;
    let database = dir.path().join("sqlite_db.db");
    let runtime_config = dir.path().join("runtime-config.toml");
    write_runtime_config(
        &runtime_config,
        &KeyValueBackend::SpinSqlite,
        &dir.path().join("kv.db"),
        &database,
        &dir.path().join("intake.db"),
    )?;
    let port = free_port()?;
    let listen = (id != "cron").then_some(port);
    let started = Instant::now();
    let spin_up = spawn(
        spin,
        &manifest_path,
        &runtime_config,
        dir.path(),
        listen,
        variables,
        &cache.config(),
    )?;
    let answered = match id {
        "cron" => first_tick(&database, started).await,
        other => {
            let (method, path) = match other {
                "webhook" => ("GET", "/health"),
                "queue-drain" => ("GET", "/stats"),
                // `/admin/sync` answers at once and syncs after answering.
                _ => ("POST", "/admin/sync"),
            };
            first_answer(
                client,
                method,
                &format!("http://127.0.0.1:{port}{path}"),
                started,
            )
            .await
        }
    };
    drop(spin_up);
    answered.with_context(|| {
        format!(
            "{id} on spin up:\n{}",
            std::fs::read_to_string(dir.path().join("spin.log")).unwrap_or_default()
        )
    })
}

/// Moves the manifest's cron trigger to every second, so the first tick comes right after start-up.
fn every_second(manifest: &mut toml::Table) -> anyhow::Result<()> {
    let triggers = manifest
        .get_mut("trigger")
        .and_then(|t| t.get_mut("cron"))
        .and_then(|c| c.as_array_mut())
        .context("the cron component has no cron trigger")?;
    for trigger in triggers {
        let table = trigger
            .as_table_mut()
            .context("a cron trigger is a table")?;
        table.insert("cron_expression".into(), "* * * * * *".into());
    }
    Ok(())
}

fn spawn(
    spin: &Path,
    manifest: &Path,
    runtime_config: &Path,
    state_dir: &Path,
    port: Option<u16>,
    variables: &HashMap<String, String>,
    cache: &Path,
) -> anyhow::Result<SpinUp> {
    use std::os::unix::process::CommandExt;

    let log = std::fs::File::create(state_dir.join("spin.log"))?;
    let mut command = Command::new(spin);
    command
        .args(["up", "--cache"])
        .arg(cache)
        .arg("--from")
        .arg(manifest);
    // `spin up` refuses `--listen` for an app without an HTTP trigger (cron alone).
    if let Some(port) = port {
        command.arg("--listen").arg(format!("127.0.0.1:{port}"));
    }
    command
        .arg("--runtime-config-file")
        .arg(runtime_config)
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    for (name, value) in variables {
        command.env(format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
    }
    Ok(SpinUp(
        command
            .spawn()
            .with_context(|| format!("starting {}", spin.display()))?,
    ))
}

async fn first_answer(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    started: Instant,
) -> anyhow::Result<Duration> {
    loop {
        let sent = client
            .request(method.parse()?, url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return Ok(started.elapsed()),
            Ok(response) => bail!("{url} answered {}", response.status()),
            // Not listening yet.
            Err(e) if e.is_connect() => {}
            Err(e) => bail!("{url}: {e}"),
        }
        if started.elapsed() > PHASE_LIMIT {
            bail!("no answer from {url} within {PHASE_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the first finished tick in `sync_runs` of the database at `database`.
async fn first_tick(database: &Path, started: Instant) -> anyhow::Result<Duration> {
    let finished = |path: &PathBuf| -> Option<i64> {
        let conn =
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .ok()?;
        conn.query_row(
            "SELECT count(*) FROM sync_runs WHERE finished_at IS NOT NULL",
            [],
            |row| row.get(0),
        )
        .ok()
    };
    let path = database.to_path_buf();
    loop {
        if finished(&path).is_some_and(|n| n > 0) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > PHASE_LIMIT {
            bail!("no tick finished within {PHASE_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
