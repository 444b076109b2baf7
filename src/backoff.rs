//! The one retry policy every part of earlykill uses between attempts at
//! something that failed for a reason that may pass (a broker, the
//! database or the schema registry unavailable).
//!
//! Delays start at `first` and double up to `max`, each stretched by a
//! random jitter of up to as much again (from [`backon`]) so that instances
//! that failed together do not retry together, and never above `max`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The delays between attempts: `first`, then doubling up to `max`, each
/// with jitter; `None` after `retries` delays (`None` for `retries`: never).
pub fn policy(first: Duration, max: Duration, retries: Option<usize>) -> Backoff {
    let builder = ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter();
    Backoff {
        delays: match retries {
            Some(n) => builder.with_max_times(n),
            None => builder.without_max_times(),
        }
        .build(),
        max,
        attempt: 0,
    }
}

/// A running sequence of delays, with the number of the attempt that just
/// failed.
#[derive(Debug)]
pub struct Backoff {
    delays: backon::ExponentialBackoff,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// The attempt that failed and how long to wait before the next one, or
    /// `None` when the retries are used up.
    pub fn after_failure(&mut self) -> Option<(u32, Duration)> {
        self.attempt += 1;
        let max = self.max;
        self.delays
            .next()
            .map(|delay| (self.attempt, delay.min(max)))
    }

    /// Attempts failed so far.
    pub fn failures(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_from_first_to_max_with_jitter_and_stop_after_the_retries() {
        let first = Duration::from_millis(100);
        let max = Duration::from_millis(400);
        let mut backoff = policy(first, max, Some(4));
        let mut delays = Vec::new();
        while let Some((attempt, delay)) = backoff.after_failure() {
            assert_eq!(attempt as usize, delays.len() + 1);
            delays.push(delay);
        }
        assert_eq!(delays.len(), 4);
        assert_eq!(backoff.failures(), 5);
        // Each delay is its exponential step plus a jitter below that step,
        // never above the maximum.
        for (delay, step) in delays.iter().zip([100, 200, 400, 400]) {
            let step = Duration::from_millis(step);
            assert!(
                *delay >= step && *delay <= (step * 2).min(max),
                "{delay:?} for {step:?}"
            );
        }
    }

    #[test]
    fn without_a_limit_the_retries_do_not_end() {
        let mut backoff = policy(Duration::from_millis(1), Duration::from_millis(2), None);
        assert!((0..1000).all(|_| backoff.after_failure().is_some()));
    }
}
