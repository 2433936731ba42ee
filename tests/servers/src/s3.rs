//! [`S3Server`]: a real S3-compatible server that checks SigV4, `s3s-fs` 0.14.1 (installed by
//! `scripts/install-test-deps`), run as a child process on a free loopback port.
//!
//! `s3s-fs` maps a bucket to a directory under its root and an object to a file at `<bucket>/<key>`,
//! keeping object attributes in dot-files at the root; [`S3Server::objects`] reads the files directly.
//! It serves path-style requests (`<endpoint>/<bucket>/<key>`) and accepts any region in the credential
//! scope.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How long `s3s-fs` gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One stored object, as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// The object key (`recordings/2025/10/20/AC…-1.mp3`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// A running `s3s-fs` with one bucket and one key pair; dropping it kills the process and deletes the
/// data.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    root: tempfile::TempDir,
    endpoint: String,
    bucket: String,
    access_key: String,
    secret_key: String,
}

impl S3Server {
    /// Starts `s3s-fs` with a fresh root, a generated key pair and a bucket named `recordings`.
    pub fn start() -> Result<Self> {
        Self::start_with_bucket("recordings")
    }

    /// Like [`S3Server::start`] with the bucket named `bucket`.
    pub fn start_with_bucket(bucket: &str) -> Result<Self> {
        let binary = find_binary()?;
        let root = tempfile::Builder::new()
            .prefix("s3s-fs-")
            .tempdir()
            .context("creating the s3s-fs root directory")?;
        std::fs::create_dir(root.path().join(bucket))
            .with_context(|| format!("creating the bucket directory {bucket}"))?;
        // Fresh keys per server, so a client cannot pass by using a key it saw in another test.
        let seed = crate::stats::unix_now().as_nanos() as u64 ^ u64::from(std::process::id());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let access_key = format!("AKIATEST{:012X}", rng.gen::<u64>() & 0xFFFF_FFFF_FFFF);
        let secret_key: String = (0..40)
            .map(|_| {
                const CHARS: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+";
                CHARS[rng.gen_range(0..CHARS.len())] as char
            })
            .collect();
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(root.path())
            // The startup line with the bound port is logged at info level.
            .env("RUST_LOG", "s3s_fs=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("taking the stdout of s3s-fs")?;
        let (found, port) = mpsc::channel();
        // The reader keeps draining stdout after the address is found: a full pipe would block the server.
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.split("server is running at http://").nth(1) {
                    if let Some(found) = found.take() {
                        let _ = found.send(address.trim().to_owned());
                    }
                }
            }
        });
        let mut server = Self {
            child,
            root,
            endpoint: String::new(),
            bucket: bucket.to_owned(),
            access_key,
            secret_key,
        };
        let address = match port.recv_timeout(START_TIMEOUT) {
            Ok(address) => address,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                bail!("s3s-fs did not report its address within {START_TIMEOUT:?} (exit status: {status:?})");
            }
        };
        let address: SocketAddr = address
            .parse()
            .with_context(|| format!("parsing the address s3s-fs reported: {address:?}"))?;
        wait_until_listening(address)?;
        server.endpoint = format!("http://{address}");
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`, for `s3_endpoint` (path-style addressing).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bucket, for `r2_bucket`.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The access key id, for `r2_access_key_id`.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key, for `r2_secret_access_key`.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The directory holding the bucket directories.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Every object of the bucket, sorted by key, read from the filesystem.
    pub fn objects(&self) -> Result<Vec<StoredObject>> {
        let bucket_dir = self.root.path().join(&self.bucket);
        let mut objects = Vec::new();
        collect(&bucket_dir, &bucket_dir, &mut objects)?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// The bytes of object `key`.
    pub fn object_bytes(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.root.path().join(&self.bucket).join(key);
        std::fs::read(&path).with_context(|| format!("reading object {key} at {}", path.display()))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // Killing fails only if the process already exited; waiting reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(dir: &Path, bucket_dir: &Path, out: &mut Vec<StoredObject>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let metadata = entry
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?;
        if metadata.is_dir() {
            collect(&path, bucket_dir, out)?;
        } else {
            let key = path
                .strip_prefix(bucket_dir)
                .context("an object outside its bucket")?
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            out.push(StoredObject {
                key,
                size: metadata.len(),
            });
        }
    }
    Ok(())
}

/// `s3s-fs` on `PATH`, else in Cargo's bin directory (where `scripts/install-test-deps` puts it).
fn find_binary() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("s3s-fs"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    on_path
        .into_iter()
        .chain(cargo_home.map(|home| home.join("bin").join("s3s-fs")))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            anyhow!("s3s-fs not found on PATH or in $CARGO_HOME/bin: run scripts/install-test-deps")
        })
}

fn wait_until_listening(address: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() > deadline => {
                return Err(err).with_context(|| format!("s3s-fs is not answering on {address}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
