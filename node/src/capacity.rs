//! Fair degradation: when the node cannot keep up, every camera gives up the same share of its
//! analysis rate, instead of some cameras losing frames while others keep theirs.
//!
//! Every [`PERIOD`] the governor looks at the inference workers (the share of the period they
//! were busy), at the frames the cameras' queues dropped because analysis fell behind, and at
//! the share of the machine's cores the process used (decoders run below the detector, so a
//! saturated machine means decoding is what waits). Over capacity (busy or CPU more than
//! [`HIGH`] of the time, or frames dropped), the node-wide rate factor
//! falls to what the worker can serve, at most by a quarter a step; with room again (busy less
//! than [`LOW`] for [`CALM_PERIODS`] periods, nothing dropped), it rises by [`RAISE`] a step
//! back to 1. The gap between the two thresholds keeps it from flapping. Each camera's status
//! carries the rate it is analysed at now and `degraded`, and the change is logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pantau_analytics::detect::service::{Load, LoadSample};
use pantau_ingest::Ingest;
use tokio_util::sync::CancellationToken;

/// How often the governor looks.
pub const PERIOD: Duration = Duration::from_secs(2);
/// Busier than this share of the time: over capacity.
pub const HIGH: f64 = 0.92;
/// Using more than this share of the machine's cores: over capacity (the decoders, which run
/// below the detector, are then what waits).
pub const CPU_HIGH: f64 = 0.97;
/// Less busy than this: room to raise the rates again.
pub const LOW: f64 = 0.75;
/// Periods with room before the rates go up.
pub const CALM_PERIODS: u32 = 2;
/// While the node stays over capacity, its rate is logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// How much the rates go up after that.
pub const RAISE: f64 = 1.15;

/// The next factor, from the current one and what one period showed (`busy`: the larger of
/// the detector's and the CPU's share). Pure, for tests.
pub fn next_factor(factor: f64, busy: f64, dropped: u64, calm: &mut u32) -> f64 {
    if busy > HIGH || dropped > 0 {
        *calm = 0;
        // What the worker can serve at the target load, never more than a quarter less.
        let fit = if busy > 0.0 {
            factor * (HIGH - 0.04) / busy
        } else {
            factor
        };
        let stepped = if dropped > 0 { factor * 0.9 } else { factor };
        fit.min(stepped).max(factor * 0.75).min(factor)
    } else if busy < LOW && factor < 1.0 {
        *calm += 1;
        if *calm >= CALM_PERIODS {
            *calm = 0;
            (factor * RAISE).min(1.0)
        } else {
            factor
        }
    } else {
        *calm = 0;
        factor
    }
}

/// Runs until `stop`.
pub async fn govern(ingest: Arc<Ingest>, load: Arc<Load>, workers: usize, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now; the first look is one period later.
    tick.tick().await;
    let dropped_total =
        |ingest: &Ingest| -> u64 { ingest.statuses().iter().map(|s| s.frames_dropped).sum() };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut before: (Instant, LoadSample, u64, Option<f64>) =
        (Instant::now(), load.sample(), 0, process_cpu_s());
    before.2 = dropped_total(&ingest);
    let mut calm = 0;
    let mut last_said: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = (
            Instant::now(),
            load.sample(),
            dropped_total(&ingest),
            process_cpu_s(),
        );
        let elapsed = now.0.duration_since(before.0).as_nanos().max(1) as f64;
        let detector = now.1.busy_ns.saturating_sub(before.1.busy_ns) as f64
            / (elapsed * workers.max(1) as f64);
        let cpu = match (before.3, now.3) {
            (Some(a), Some(b)) => (b - a) * 1e9 / elapsed / cores,
            _ => 0.0,
        };
        // A CPU share above CPU_HIGH counts as over HIGH; below it, the detector's share rules.
        let busy = if cpu > CPU_HIGH {
            detector.max(cpu * HIGH / CPU_HIGH)
        } else {
            detector
        };
        // A camera removed takes its count with it: only growth counts.
        let dropped = now.2.saturating_sub(before.2);
        before = now;
        let rate = ingest.rate();
        let factor = rate.factor();
        let next = next_factor(factor, busy, dropped, &mut calm);
        if (next - factor).abs() > 1e-3 {
            rate.set_factor(next);
            // Say when it starts and ends; while it lasts, at most once a minute.
            let starts = factor >= 1.0;
            let due = last_said.is_none_or(|t: Instant| t.elapsed() >= LOG_EVERY);
            if next < 1.0 && (starts || due) {
                last_said = Some(Instant::now());
                tracing::warn!(
                    detector = format!("{:.0} %", detector * 100.0),
                    cpu = format!("{:.0} %", cpu * 100.0),
                    dropped,
                    "node over capacity: every camera is analysed at {:.0} % of its rate",
                    next * 100.0
                );
            } else if next >= 1.0 {
                last_said = None;
                tracing::info!("node back within capacity: every camera at its full analysis rate");
            }
        }
    }
}

/// CPU seconds this process has used (Linux `/proc/self/stat`; `None` elsewhere).
pub fn process_cpu_s() -> Option<f64> {
    cpu_s_of(None)
}

/// CPU seconds (user + system) process `pid` (or this one) has used; `None` off Linux or when
/// it is gone.
pub fn cpu_s_of(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_string(),
        |p| format!("/proc/{p}/stat"),
    );
    // Fields after the command name, which is in parentheses and may hold spaces.
    let text = std::fs::read_to_string(path).ok()?;
    let rest = text.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    // USER_HZ: 100 on Linux.
    Some((user + system) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_capacity_lowers_every_rate_to_what_fits_and_recovers_slowly() {
        let mut calm = 0;
        // 1.5x over: the factor falls at most a quarter a step, to what fits.
        let f1 = next_factor(1.0, 1.5, 0, &mut calm);
        assert!((f1 - 0.75).abs() < 1e-9, "{f1}");
        let f2 = next_factor(f1, 1.0, 0, &mut calm);
        assert!((f2 - 0.75 * 0.88).abs() < 1e-9, "{f2}");
        // Dropped frames alone lower it by a tenth.
        let f3 = next_factor(f2, 0.8, 4, &mut calm);
        assert!((f3 - f2 * 0.9).abs() < 1e-9);
        // Between the thresholds nothing moves.
        assert_eq!(next_factor(f3, 0.85, 0, &mut calm), f3);
        // Room: up after two calm periods, never above 1.
        assert_eq!(next_factor(f3, 0.5, 0, &mut calm), f3);
        let up = next_factor(f3, 0.5, 0, &mut calm);
        assert!((up - f3 * RAISE).abs() < 1e-9);
        let mut f = up;
        for _ in 0..100 {
            f = next_factor(f, 0.5, 0, &mut calm);
        }
        assert_eq!(f, 1.0);
        // At full rate with room nothing changes.
        assert_eq!(next_factor(1.0, 0.3, 0, &mut calm), 1.0);
    }

    #[test]
    fn this_process_cpu_time_is_read() {
        let a = process_cpu_s().expect("Linux");
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_add(i ^ (i >> 3));
        }
        assert!(x > 0);
        assert!(process_cpu_s().expect("Linux") > a);
    }
}
