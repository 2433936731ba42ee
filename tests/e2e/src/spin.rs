//! A real `spin up` of the app, and the Redis server SpinKube's key-value store runs on.
//!
//! `spin up` starts its triggers as child processes (`spin trigger http`, the `trigger-cron` plugin), so
//! each [`SpinProcess`] runs in a process group of its own and is stopped as a group: killing only the
//! `spin` parent leaves the HTTP trigger listening on its port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};

use crate::workspace_root;

/// Where the app keeps its key-value store on real Spin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValueBackend {
    /// Spin's default: an SQLite file (`kv.db` in the state directory).
    SpinSqlite,
    /// Redis at this URL, as on SpinKube (`deploy/runtime-config.spinkube.toml`).
    Redis(String),
}

/// Writes the runtime config of one run: the key-value store on `key_value`, the app's database in
/// `database` and the intake database in `intake` (absolute paths, so replicas with their own state
/// directories share them).
pub fn write_runtime_config(
    file: &Path,
    key_value: &KeyValueBackend,
    key_value_file: &Path,
    database: &Path,
    intake: &Path,
) -> anyhow::Result<()> {
    let quote = |path: &Path| toml::Value::String(path.display().to_string()).to_string();
    let key_value = match key_value {
        KeyValueBackend::SpinSqlite => {
            format!("type = \"spin\"\npath = {}", quote(key_value_file))
        }
        KeyValueBackend::Redis(url) => {
            format!(
                "type = \"redis\"\nurl = {}",
                toml::Value::String(url.clone())
            )
        }
    };
    let config = format!(
        "[key_value_store.default]\n{key_value}\n\n[sqlite_database.default]\ntype = \"spin\"\npath = {}\n\n\
         [sqlite_database.intake]\ntype = \"spin\"\npath = {}\n",
        quote(database),
        quote(intake)
    );
    std::fs::write(file, config).with_context(|| format!("writing {}", file.display()))
}

/// One `spin up` of the app, every component included (the cron component needs the `trigger-cron`
/// plugin, which `../shared/tools/spin/install` installs).
pub struct SpinProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl SpinProcess {
    /// Starts `spin up` from the workspace's `spin.toml` on a free loopback port, with its own state
    /// directory `state_dir`, the runtime config `runtime_config` and `variables` as `SPIN_VARIABLE_*`.
    /// Everything Spin and the components print goes to `state_dir/spin.log`.
    pub fn start(
        spin: &Path,
        state_dir: &Path,
        runtime_config: &Path,
        variables: &[(String, String)],
    ) -> anyhow::Result<SpinProcess> {
        use std::os::unix::process::CommandExt;

        std::fs::create_dir_all(state_dir)?;
        let port = free_port()?;
        let log = state_dir.join("spin.log");
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut command = Command::new(spin);
        command
            .current_dir(workspace_root())
            .args(["up", "--from", "spin.toml", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--runtime-config-file")
            .arg(runtime_config)
            .arg("--state-dir")
            .arg(state_dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .process_group(0);
        for (name, value) in variables {
            command.env(format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", spin.display()))?;
        Ok(SpinProcess { child, port, log })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The CPU time (user and system) Spin's processes have used so far: `spin up` and the trigger
    /// processes of its group ([`process_group_cpu`]).
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        process_group_cpu(self.child.id())
    }

    /// What Spin and the components printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether `spin up` has exited (it does when the manifest or the runtime config is refused).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the whole process group at once, as `kill -9` or a lost machine would.
    pub fn kill(mut self) {
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Stops the process group as an operator does (`SIGTERM`), then `SIGKILL` after 5 s.
    fn stop_group(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            self.signal_group(libc::SIGKILL);
            return;
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The triggers may outlive the parent: the group goes either way.
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }

    fn signal_group(&self, signal: libc::c_int) {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // The group was made for this child alone (`process_group(0)`), so its id is the child's pid.
        // SAFETY: `kill` has no memory effects; a group that is gone answers ESRCH, which is ignored.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

impl Drop for SpinProcess {
    fn drop(&mut self) {
        self.stop_group();
    }
}

/// A `redis-server` of one test, on a free loopback port, keeping nothing on disk. Debian's package is
/// what `scripts/install-test-deps` installs.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub fn start() -> anyhow::Result<RedisServer> {
        let port = free_port()?;
        let child = Command::new(redis_binary("redis-server")?)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting redis-server (scripts/install-test-deps installs it)")?;
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.command(&["PING"]).map(|o| o.trim() == "PONG") != Ok(true) {
            ensure!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every key matching `pattern` (Redis glob).
    fn keys(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        let output = self
            .command(&["--scan", "--pattern", pattern])
            .map_err(anyhow::Error::msg)?;
        Ok(output.lines().map(str::to_owned).collect())
    }

    /// Deletes every key matching `pattern`; returns how many there were.
    pub fn delete_matching(&self, pattern: &str) -> anyhow::Result<usize> {
        let keys = self.keys(pattern)?;
        for chunk in keys.chunks(100) {
            let mut args = vec!["DEL"];
            args.extend(chunk.iter().map(String::as_str));
            self.command(&args).map_err(anyhow::Error::msg)?;
        }
        Ok(keys.len())
    }

    fn command(&self, args: &[&str]) -> Result<String, String> {
        let cli = redis_binary("redis-cli").map_err(|e| format!("{e:#}"))?;
        let output = Command::new(cli)
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(args)
            .output()
            .map_err(|e| format!("running redis-cli: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` on the `PATH` or where Debian puts it.
fn redis_binary(name: &str) -> anyhow::Result<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .with_context(|| format!("{name} is not installed (scripts/install-test-deps installs it)"))
}

/// The CPU time (user and system, `/proc/<pid>/stat`) of every live process in process group `group`,
/// with what their exited children used: how a benchmark charges a `spin up` (which starts its
/// triggers as processes of its own group) for the work a load gave it.
pub fn process_group_cpu(group: u32) -> anyhow::Result<Duration> {
    // SAFETY: sysconf only reads a constant of the system.
    let ticks_per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&t| t > 0)
        .context("the clock ticks per second are unknown")?;
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(stat) = std::fs::read_to_string(entry?.path().join("stat")) else {
            continue; // not a process, or one that exited meanwhile
        };
        // The command name, in parentheses, may hold spaces: the fields after it are what counts.
        let Some((_, fields)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = fields.split_whitespace().collect();
        // From the state (field 3 of proc(5)) on: pgrp is field 5; utime, stime, cutime, cstime 14-17.
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(group) {
            continue;
        }
        for field in fields.get(11..15).unwrap_or_default() {
            ticks += field.parse::<u64>().unwrap_or(0);
        }
    }
    Ok(Duration::from_secs_f64(
        ticks as f64 / ticks_per_second as f64,
    ))
}

/// A loopback port nothing listens on now. Another process may take it before the caller binds it: a
/// server started on it then exits, which the caller notices (`start_replica` starts Spin again).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `GET url/health` answers 2xx, or `spin` exits, or 60 s pass.
pub async fn wait_until_healthy(
    process: &mut SpinProcess,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("{}/health", process.base_url());
    loop {
        if let Ok(response) = http.get(&url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if let Some(status) = process.exited() {
            bail!("spin up exited ({status}):\n{}", process.output());
        }
        if Instant::now() > deadline {
            bail!(
                "spin up did not answer /health within 60 s:\n{}",
                process.output()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
