//! The recorder's clock: events carry CLOCK_MONOTONIC nanoseconds (the clock
//! of `bpf_ktime_get_ns`); [`ClockOffset`] maps them to wall-clock time.

/// Reads a clock in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// CLOCK_MONOTONIC now, in nanoseconds: the timestamps' clock.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// Wall-clock (CLOCK_REALTIME) minus CLOCK_MONOTONIC, measured once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockOffset {
    /// Add to a monotonic timestamp to get nanoseconds since the Unix epoch.
    pub wall_minus_mono_ns: i64,
    /// Half the width of the measurement window: the offset's uncertainty.
    pub error_ns: u64,
}

impl ClockOffset {
    /// Reads monotonic, realtime, monotonic, and keeps the tightest of a few
    /// tries, centring realtime between the two monotonic reads.
    pub fn measure() -> ClockOffset {
        let mut best = ClockOffset {
            wall_minus_mono_ns: 0,
            error_ns: u64::MAX,
        };
        for _ in 0..5 {
            let m1 = clock_ns(libc::CLOCK_MONOTONIC);
            let w = clock_ns(libc::CLOCK_REALTIME);
            let m2 = clock_ns(libc::CLOCK_MONOTONIC);
            let err = ((m2 - m1) / 2) as u64;
            if err < best.error_ns {
                best = ClockOffset {
                    wall_minus_mono_ns: (w - (m1 + m2) / 2) as i64,
                    error_ns: err,
                };
            }
        }
        best
    }

    /// Wall-clock nanoseconds since the Unix epoch for a monotonic timestamp.
    pub fn to_wall_ns(&self, mono_ns: u64) -> i64 {
        (mono_ns as i64).saturating_add(self.wall_minus_mono_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_maps_monotonic_now_to_wall_now() {
        let off = ClockOffset::measure();
        let wall = clock_ns(libc::CLOCK_REALTIME) as i64;
        let mapped = off.to_wall_ns(monotonic_ns());
        assert!((wall - mapped).abs() < 50_000_000, "{wall} vs {mapped}");
        assert!(off.error_ns < 1_000_000);
        assert!(monotonic_ns() > 0);
    }
}
