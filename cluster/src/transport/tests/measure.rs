//! What TLS costs between two transports on loopback. A measurement, not a check:
//! `cargo test -p cluster --release -- --ignored --nocapture what_tls_costs`.

use super::*;

const ROUND_TRIPS: usize = 2_000;
const PIPELINED: usize = 20_000;

struct Figures {
    connect: Duration,
    p50: Duration,
    p99: Duration,
    sequential_per_sec: f64,
    pipelined_per_sec: f64,
}

async fn measure(server_security: Security, client_security: Security) -> Figures {
    let (_server, addr, _) = server_with(server_security).await;
    let (client, _) = client_with(client_security);
    let started = Instant::now();
    client.call(&addr, Service::Actors, vec![0; 64], WAIT).await.unwrap();
    let connect = started.elapsed();

    let mut latencies = Vec::with_capacity(ROUND_TRIPS);
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        let sent = Instant::now();
        client.call(&addr, Service::Actors, vec![0; 64], WAIT).await.unwrap();
        latencies.push(sent.elapsed());
    }
    let sequential = started.elapsed();
    latencies.sort();

    let started = Instant::now();
    let answers: Vec<_> =
        (0..PIPELINED).map(|_| client.request(&addr, Service::Actors, vec![0; 1024]).unwrap()).collect();
    for answer in answers {
        answer.await.unwrap().unwrap();
    }
    let pipelined = started.elapsed();
    Figures {
        connect,
        p50: latencies[ROUND_TRIPS / 2],
        p99: latencies[ROUND_TRIPS * 99 / 100],
        sequential_per_sec: ROUND_TRIPS as f64 / sequential.as_secs_f64(),
        pipelined_per_sec: PIPELINED as f64 / pipelined.as_secs_f64(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn what_tls_costs() {
    // Alternated, so neither side always runs on a warmer (or busier) machine.
    let mut runs = Vec::new();
    for _ in 0..2 {
        runs.push(("plaintext", measure(Security::Plaintext, Security::Plaintext).await));
        runs.push(("tls 1.3", measure(tls("s3cret"), tls("s3cret")).await));
    }
    for (name, figures) in runs {
        eprintln!(
            "{name}: connect {:?}; {ROUND_TRIPS} round trips of 64 B: p50 {:?} p99 {:?} ({:.0}/s); \
             {PIPELINED} pipelined requests of 1 KiB: {:.0}/s",
            figures.connect, figures.p50, figures.p99, figures.sequential_per_sec, figures.pipelined_per_sec
        );
    }
}
