//! proptest strategies over simulator configurations.

use proptest::prelude::*;

use crate::config::{Handoff, Loss, SimConfig};

/// Lossless configurations over the whole space the brief names.
pub fn lossless() -> impl Strategy<Value = SimConfig> {
    (
        any::<u64>(),
        2usize..=6,
        1usize..=4,
        1usize..=16,
        1usize..=30,
        any::<[bool; 11]>(),
        0u64..=3_000_000,
    )
        .prop_map(
            |(seed, services, hosts, client_threads, requests, b, skew)| SimConfig {
                seed,
                services,
                hosts,
                client_threads,
                requests,
                seq_mode: b[0],
                noise: b[1],
                eof_reads: b[2],
                containers: b[3],
                ipv6: b[4],
                per_connection: b[5],
                // Reuse hand-offs cannot always be recovered: they have a
                // property of their own (see `reuse`).
                handoff: if (seed >> 8) % 2 == 0 {
                    Handoff::None
                } else {
                    Handoff::Acceptor
                },
                unobserved_backend: b[6],
                unobserved_clients: b[7],
                skew_ns: if b[8] { skew } else { 0 },
                checkpoint_every: if b[9] {
                    Some((seed % 50) as u32 + 1)
                } else {
                    None
                },
                teardown: b[10],
                max_uses: (seed % 5) as u32 + 1,
                ..SimConfig::default()
            },
        )
}

/// Lossy configurations: losses of 0.1%..10% with checkpoints every 1..64
/// events, with every hand-off model.
pub fn lossy() -> impl Strategy<Value = SimConfig> {
    (lossless(), 1_000u32..=100_000, 1u32..=64, 0u8..3, 0u32..=12).prop_map(
        |(c, ppm, k, h, burst)| SimConfig {
            loss: Some(Loss { drop_ppm: ppm }),
            checkpoint_every: Some(k),
            handoff: [Handoff::None, Handoff::Acceptor, Handoff::Reuse][h as usize],
            loss_burst: burst,
            ..c
        },
    )
}

/// Lossless configurations whose pools hand requests off and reuse the
/// reading thread ([`Handoff::Reuse`]): checked for safety (no wrong edge, no
/// inexact complete path), not for full recovery.
pub fn reuse() -> impl Strategy<Value = SimConfig> {
    lossless().prop_map(|c| SimConfig {
        handoff: Handoff::Reuse,
        ..c
    })
}
