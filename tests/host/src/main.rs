//! `spin-test-host`: runs a Spin app locally without Spin, the way the end-to-end tests do.
//!
//! ```text
//! spin-test-host --manifest spin.toml --state-dir .spin --listen 127.0.0.1:3000 \
//!     [--runtime-config-file runtime-config.toml] [--variable name=value]... [-c component]... \
//!     [--request-timeout SECONDS] [--cron-every SECONDS]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use spin_test_host::{HostOptions, SpinHost};

const USAGE: &str = "usage: spin-test-host [--manifest spin.toml] [--state-dir .spin] [--listen 127.0.0.1:3000]
                      [--runtime-config-file runtime-config.toml] [--variable name=value]...
                      [-c component]... [--request-timeout SECONDS] [--cron-every SECONDS]

Serves the app like `spin up`. The runtime config file may define SQLite databases and key-value stores
of type \"spin\" only. Variables also come from SPIN_VARIABLE_<NAME>. Guest output goes to stderr.
Cron triggers are run every --cron-every seconds when given (the manifest's cron expression is not read);
without it, select components with -c and drive the app's tick over HTTP instead.";

struct Args {
    options: HostOptions,
    listen: SocketAddr,
    cron_every: Option<Duration>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args> {
    let mut options = HostOptions::new("spin.toml", ".spin");
    let mut listen: SocketAddr = "127.0.0.1:3000".parse()?;
    let mut cron_every = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--manifest" | "-f" => options.manifest = PathBuf::from(value()?),
            "--state-dir" => options.state_dir = PathBuf::from(value()?),
            "--runtime-config-file" => options.runtime_config = Some(PathBuf::from(value()?)),
            "--listen" => listen = value()?.parse().context("--listen needs host:port")?,
            "--variable" => {
                let pair = value()?;
                let (name, val) = pair
                    .split_once('=')
                    .with_context(|| format!("--variable {pair:?} is not name=value"))?;
                options.variables.insert(name.to_owned(), val.to_owned());
            }
            "-c" | "--component-id" => options
                .components
                .get_or_insert_with(Vec::new)
                .push(value()?),
            "--request-timeout" => {
                options.request_timeout = Duration::from_secs(
                    value()?
                        .parse()
                        .context("--request-timeout needs seconds")?,
                )
            }
            "--cron-every" => {
                cron_every = Some(Duration::from_secs(
                    value()?.parse().context("--cron-every needs seconds")?,
                ))
            }
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(Args {
        options,
        listen,
        cron_every,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    // A person running the app wants to see its logs as they happen.
    if std::env::var_os("SPIN_TEST_HOST_ECHO").is_none() {
        std::env::set_var("SPIN_TEST_HOST_ECHO", "1");
    }
    let args = parse_args(std::env::args().skip(1))?;
    let host = SpinHost::start_on(args.options, args.listen).await?;
    eprintln!("Serving {}", host.base_url());
    let cron = async {
        let Some(every) = args.cron_every else {
            return std::future::pending().await;
        };
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            match host.invoke_cron().await {
                Ok(Ok(())) => {}
                Ok(Err(message)) => eprintln!("cron tick failed: {message}"),
                Err(e) => eprintln!("cron tick failed: {e:#}"),
            }
        }
    };
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C")?,
        never = cron => never,
    }
    host.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn flags_fill_the_options() -> Result<()> {
        let args = parse(&[
            "--manifest",
            "app/spin.toml",
            "--state-dir",
            "st",
            "--runtime-config-file",
            "rc.toml",
            "--listen",
            "127.0.0.1:4000",
            "--variable",
            "a=b=c",
            "-c",
            "webhook",
            "-c",
            "queue-drain",
            "--request-timeout",
            "5",
            "--cron-every",
            "60",
        ])?;
        assert_eq!(args.options.manifest, PathBuf::from("app/spin.toml"));
        assert_eq!(args.options.state_dir, PathBuf::from("st"));
        assert_eq!(args.options.runtime_config, Some(PathBuf::from("rc.toml")));
        assert_eq!(args.listen, "127.0.0.1:4000".parse()?);
        assert_eq!(args.options.variables["a"], "b=c");
        assert_eq!(
            args.options.components,
            Some(vec!["webhook".to_owned(), "queue-drain".to_owned()])
        );
        assert_eq!(args.options.request_timeout, Duration::from_secs(5));
        assert_eq!(args.cron_every, Some(Duration::from_secs(60)));
        Ok(())
    }

    #[test]
    fn defaults_and_mistakes() -> Result<()> {
        let args = parse(&[])?;
        assert_eq!(args.options.manifest, PathBuf::from("spin.toml"));
        assert_eq!(args.options.components, None);
        assert_eq!(args.options.runtime_config, None);
        assert_eq!(args.cron_every, None);
        for bad in [
            &["--variable", "novalue"][..],
            &["--listen"],
            &["--runtime-config-file"],
            &["--what"],
            &["--listen", "nope"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }
}
