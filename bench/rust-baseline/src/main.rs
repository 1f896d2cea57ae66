//! Measures the `tailscale` crate on its own, against the loopback tailnet's echo peer, so the
//! addon and the Effect service have a ceiling to be compared with in the same run.
//!
//! Usage: `tailscale-rust-baseline <control-url> <auth-key> <peer-ip> <tcp-port> <udp-port>
//! <bulk-bytes> <rounds> <lookups>`. Prints `{"ipv4": ...}` once joined, waits for a line on
//! stdin (the caller makes sure the peer sees us), then prints one JSON line of results.
//!
//! With `BENCH_WAIT_DIRECT=1` it first echoes 32 KiB probes until this network namespace sends
//! them over UDP and not to the relay (a direct path), for up to 20 s. With
//! `BENCH_WARMUP_BYTES` it echoes that many bytes, not measured, before the bulk transfer. With
//! `BENCH_HARNESS_PID` it also reports the CPU time that process (the echo peer's) used during
//! the bulk transfer. With `BENCH_PROFILE_CONTROL`, a perf control FIFO, it turns `perf record`
//! on for the bulk transfer only.

#![allow(clippy::print_stdout, reason = "its results are its standard output")]

use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// CPU seconds (user and system, every thread) process `pid` has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // USER_HZ is 100 on Linux.
    (ticks(14) + ticks(15)) / 100.0
}

/// Writes `bytes` to the echo in 64 KiB chunks while reading them back.
async fn echo_bulk(
    stream: &std::sync::Arc<tailscale::netstack::TcpStream>,
    bytes: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let writer = {
        let stream = std::sync::Arc::clone(stream);
        tokio::spawn(async move {
            let chunk = vec![42u8; 64 * 1024];
            let mut written = 0;
            while written < bytes {
                let end = chunk.len().min(bytes - written);
                written += stream.send(&chunk[..end]).await.expect("send");
            }
        })
    };
    let mut read = 0;
    while read < bytes {
        read += stream.recv_bytes().await?.len();
    }
    writer.await?;
    Ok(())
}

/// UDP datagrams sent and TCP segments sent in this network namespace.
fn sent_packets() -> (u64, u64) {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let counter = |proto: &str, name: &str| -> u64 {
        let mut rows = snmp.lines().filter(|l| l.starts_with(&format!("{proto}:")));
        let (Some(names), Some(values)) = (rows.next(), rows.next()) else { return 0 };
        let at = names.split_whitespace().position(|n| n == name);
        at.and_then(|i| values.split_whitespace().nth(i)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (counter("Udp", "OutDatagrams"), counter("Tcp", "OutSegs"))
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, control, auth_key, peer, tcp_port, udp_port, bulk, rounds, lookups] = args.as_slice() else {
        return Err("usage: control-url auth-key peer-ip tcp-port udp-port bulk-bytes rounds lookups".into());
    };
    let peer: IpAddr = peer.parse()?;
    let (bulk, rounds, lookups): (usize, usize, usize) = (bulk.parse()?, rounds.parse()?, lookups.parse()?);

    let config = tailscale::Config {
        control_server_url: control.parse()?,
        requested_hostname: Some("rust-baseline".into()),
        ephemeral: true,
        ..Default::default()
    };
    let device = tailscale::Device::new(&config, Some(auth_key.clone())).await?;
    let ipv4 = device.ipv4_addr().await?;
    println!("{}", serde_json::json!({ "ipv4": ipv4.to_string() }));
    std::io::stdin().lock().lines().next();

    let tcp = SocketAddr::new(peer, tcp_port.parse()?);
    let stream = std::sync::Arc::new(device.tcp_connect(tcp).await?);

    // On a LAN: echo probes until they leave as UDP datagrams (the direct path), then measure.
    if std::env::var("BENCH_WAIT_DIRECT").is_ok_and(|v| v == "1") {
        let probe = vec![9u8; 32 * 1024];
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let (udp_before, tcp_before) = sent_packets();
            let mut sent = 0;
            while sent < probe.len() {
                sent += stream.send(&probe[sent..]).await?;
            }
            let mut got = 0;
            while got < probe.len() {
                got += stream.recv_bytes().await?.len();
            }
            let (udp, tcp) = sent_packets();
            // Through the relay a probe is at least 23 TCP segments; over UDP, a run of packets
            // sent together may be one datagram.
            if udp > udp_before && (tcp - tcp_before) * 4 < (probe.len() / 1280) as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Round trips: one small message at a time.
    let message = [7u8; 64];
    let mut tcp_rtt = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let mut sent = 0;
        while sent < message.len() {
            sent += stream.send(&message[sent..]).await?;
        }
        let mut got = 0;
        while got < message.len() {
            got += stream.recv_bytes().await?.len();
        }
        tcp_rtt.push(started.elapsed().as_secs_f64() * 1e6);
    }

    // Bulk: write everything while reading the echo back, after a warm-up that is not measured.
    let warmup: usize = std::env::var("BENCH_WARMUP_BYTES").ok().map_or(Ok(0), |v| v.parse())?;
    if warmup > 0 {
        echo_bulk(&stream, warmup).await?;
    }
    let harness = std::env::var("BENCH_HARNESS_PID").ok();
    let peer_cpu_before = harness.as_deref().map(cpu_seconds);
    // With `--profile`, the bench records this process only between these two writes.
    let profile = |command: &str| {
        if let Ok(control) = std::env::var("BENCH_PROFILE_CONTROL") {
            let _ = std::fs::write(control, format!("{command}\n"));
        }
    };
    profile("enable");
    let cpu_before = cpu_seconds("self");
    let started = Instant::now();
    echo_bulk(&stream, bulk).await?;
    let seconds = started.elapsed().as_secs_f64();
    let bulk_cpu_seconds = cpu_seconds("self") - cpu_before;
    profile("disable");
    let peer_bulk_cpu_seconds = harness.as_deref().map(cpu_seconds).zip(peer_cpu_before).map(|(a, b)| a - b);
    // Each byte crossed the tailnet twice (there and back); MB/s counts the payload once.
    let tcp_mbps = bulk as f64 / seconds / 1e6;

    let ip = IpAddr::V4(ipv4);
    let udp = device.udp_bind(SocketAddr::new(ip, 5600)).await?;
    let udp_peer = SocketAddr::new(peer, udp_port.parse()?);
    let mut udp_rtt = Vec::with_capacity(rounds);
    // One receive stays pending across rounds: a receive dropped on its timeout would stay queued
    // in the netstack and take (and lose) the next datagram, so every later round would time out.
    let mut receive = Box::pin(udp.recv_from_bytes());
    for _ in 0..rounds {
        let started = Instant::now();
        udp.send_to(udp_peer, &message).await?;
        match tokio::time::timeout(Duration::from_secs(2), receive.as_mut()).await {
            Ok(reply) => {
                reply?;
                udp_rtt.push(started.elapsed().as_secs_f64() * 1e6);
                receive = Box::pin(udp.recv_from_bytes());
            }
            Err(_) => continue,
        }
    }
    drop(receive);

    let started = Instant::now();
    for _ in 0..lookups {
        device.peer_by_name("echo-peer").await?;
    }
    let lookups_per_sec = lookups as f64 / started.elapsed().as_secs_f64();

    println!(
        "{}",
        serde_json::json!({
            "tcpMBps": tcp_mbps,
            "rttP50Us": { "tcp": percentile(&mut tcp_rtt, 0.5), "udp": percentile(&mut udp_rtt, 0.5) },
            "rttP99Us": { "tcp": percentile(&mut tcp_rtt, 0.99), "udp": percentile(&mut udp_rtt, 0.99) },
            "lookupsPerSec": lookups_per_sec,
            "bulkCpuSeconds": bulk_cpu_seconds,
            "peerBulkCpuSeconds": peer_bulk_cpu_seconds,
        })
    );
    drop(udp);
    drop(stream);
    device.shutdown(Some(Duration::from_secs(5))).await;
    Ok(())
}
