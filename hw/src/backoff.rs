//! Jittered exponential backoff: the one retry-delay type every reconnect loop uses
//! (scanner reopening, the appliance's MQTT link, device supervision).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// An invalid [`Backoff`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffError {
    /// The first delay is zero: reconnection would spin.
    #[error("the initial backoff delay must be positive")]
    ZeroInitial,
    /// The cap is below the first delay.
    #[error("the maximum backoff delay ({max:?}) is below the initial one ({initial:?})")]
    MaxBelowInitial {
        /// The initial delay.
        initial: Duration,
        /// The maximum delay.
        max: Duration,
    },
    /// The jitter fraction is outside 0..=1 (or not a number).
    #[error("the backoff jitter must be within 0 and 1, not {0}")]
    Jitter(f64),
}

/// Delays that double from `initial` up to `max`, each shortened by a random
/// fraction of up to `jitter` so that many appliances whose scanners vanished at the
/// same moment (a USB hub reset) do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// A validated backoff.
    pub fn new(initial: Duration, max: Duration, jitter: f64) -> Result<Self, BackoffError> {
        if initial.is_zero() {
            return Err(BackoffError::ZeroInitial);
        }
        if max < initial {
            return Err(BackoffError::MaxBelowInitial { initial, max });
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(BackoffError::Jitter(jitter));
        }
        Ok(Backoff {
            initial,
            max,
            jitter,
        })
    }

    /// The first delay.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The largest fraction taken off a delay at random.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The delay before retry number `attempt` (0 for the first), given `unit`, a
    /// random number in 0..=1 (clamped): `min(max, initial·2^attempt)·(1 − jitter·unit)`.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let factor = 2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
        let base = self
            .initial
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max);
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        base.mul_f64(1.0 - self.jitter * unit)
    }

    /// The delay before retry number `attempt`, with fresh randomness.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, random_unit())
    }
}

impl Default for Backoff {
    /// 250 ms doubling up to 5 s, up to half of each delay taken off at random.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            jitter: 0.5,
        }
    }
}

/// A number in 0..1 that differs between calls and processes: each `RandomState` is
/// freshly keyed. Not cryptographic, and need not be: it only spreads retries.
fn random_unit() -> f64 {
    let bits = RandomState::new().hash_one(0u8);
    // The top 53 bits, as many as an f64's mantissa holds.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
