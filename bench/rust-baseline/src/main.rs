//! Measures the `tailscale` crate on its own, against the loopback tailnet's echo peer, so the
//! addon and the Effect service have a ceiling to be compared with in the same run.
//!
//! Usage: `tailscale-rust-baseline <control-url> <auth-key> <peer-ip> <tcp-port> <udp-port>
//! <bulk-bytes> <rounds> <lookups>`. Prints `{"ipv4": ...}` once joined, waits for a line on
//! stdin (the caller makes sure the peer sees us), then prints one JSON line of results.

#![allow(clippy::print_stdout, reason = "its results are its standard output")]

use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

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

    // Bulk: write everything while reading the echo back.
    let chunk = vec![42u8; 64 * 1024];
    let started = Instant::now();
    let writer = {
        let stream = stream.clone();
        let chunk = chunk.clone();
        tokio::spawn(async move {
            let mut written = 0;
            while written < bulk {
                let end = chunk.len().min(bulk - written);
                written += stream.send(&chunk[..end]).await.expect("send");
            }
        })
    };
    let mut read = 0;
    while read < bulk {
        read += stream.recv_bytes().await?.len();
    }
    writer.await?;
    let seconds = started.elapsed().as_secs_f64();
    // Each byte crossed the tailnet twice (there and back); MB/s counts the payload once.
    let tcp_mbps = bulk as f64 / seconds / 1e6;

    let ip = IpAddr::V4(ipv4);
    let udp = device.udp_bind(SocketAddr::new(ip, 5600)).await?;
    let udp_peer = SocketAddr::new(peer, udp_port.parse()?);
    let mut udp_rtt = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        udp.send_to(udp_peer, &message).await?;
        match tokio::time::timeout(Duration::from_secs(2), udp.recv_from_bytes()).await {
            Ok(reply) => {
                reply?;
                udp_rtt.push(started.elapsed().as_secs_f64() * 1e6);
            }
            Err(_) => continue,
        }
    }

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
        })
    );
    drop(udp);
    drop(stream);
    device.shutdown(Some(Duration::from_secs(5))).await;
    Ok(())
}
