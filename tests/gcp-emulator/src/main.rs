//! `gcp-emulator --listen 127.0.0.1:8080 --dns-listen 127.0.0.1:8053 --project demo-project`

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// A local Google Cloud for tests: Compute load balancing, Cloud DNS (with
/// authoritative DNS servers), IAP, Cloud Run, Service Usage, Resource Manager and
/// the metadata server, on one HTTP listener.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// HTTP listen address for every API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the first authoritative DNS server (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:8053")]
    dns_listen: SocketAddr,
    /// Number of simulated authoritative name servers (the others take the
    /// following ports).
    #[arg(long, default_value_t = 2)]
    dns_servers: usize,
    /// The project that exists at start.
    #[arg(long, default_value = "demo-project")]
    project: String,
    /// Its project number.
    #[arg(long, default_value_t = 123_456_789_012)]
    project_number: u64,
    /// Milliseconds a compute Operation takes to reach DONE.
    #[arg(long, default_value_t = 30)]
    operation_delay_ms: u64,
    /// Milliseconds a Cloud DNS change stays pending.
    #[arg(long, default_value_t = 30)]
    dns_change_delay_ms: u64,
    /// Latency model: `none` (loopback speed, the default) or `google` (Google's
    /// round trips, operation durations and DNS propagation; see
    /// docs/benchmarks.md). Finer knobs: `POST /emulator/latency`.
    #[arg(long, default_value = "none")]
    latency_profile: String,
    /// Seed of the latency model's jitter (same seed, same request order: same
    /// latencies).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Require this bearer token on every API (the metadata server hands it out).
    #[arg(long)]
    require_token: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let latency = match gcp_emulator::latency::LatencyModel::profile(&args.latency_profile) {
        Ok(m) => m.map(|m| gcp_emulator::latency::LatencyModel {
            seed: args.seed,
            ..m
        }),
        Err(e) => {
            eprintln!("gcp-emulator: --latency-profile: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = gcp_emulator::Config {
        listen: args.listen,
        dns_listen: args.dns_listen,
        dns_servers: args.dns_servers,
        project: args.project,
        project_number: args.project_number,
        operation_delay: Duration::from_millis(args.operation_delay_ms),
        dns_change_delay: Duration::from_millis(args.dns_change_delay_ms),
        required_token: args.require_token,
        latency,
    };
    let emu = match gcp_emulator::Emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("gcp-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dns: Vec<String> = emu.dns_addrs().iter().map(|a| a.to_string()).collect();
    // One machine-readable line, so scripts can wait for it and read the addresses.
    println!(
        "gcp-emulator listening http={} dns={}",
        emu.http_addr(),
        dns.join(",")
    );
    let _ = tokio::signal::ctrl_c().await;
    emu.stop().await;
    ExitCode::SUCCESS
}
