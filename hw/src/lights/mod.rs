//! Status lights and buttons at the counter: three LEDs (green, amber, red) showing
//! a [`Pattern`], and buttons ("call next", "reset") whose presses are polled.
//!
//! Code map:
//! - this module — [`Pattern`] and its table ([`Pattern::spec`]: each LED steady,
//!   off or blinking), [`LedState`], [`Button`], the [`Lights`] trait, and
//!   [`SimulatedLights`] (computes blinking from time, records the history; for tests
//!   and the staff UI's diagnostics);
//! - [`driven`] — [`DrivenLights`]: a thread that blinks real outputs and debounces
//!   real buttons, over the [`LedOutput`] / [`ButtonInput`] traits;
//! - `gpio` (feature `rpi`) — `GpioLights`: [`DrivenLights`] over Raspberry Pi GPIO
//!   pins through `rppal`.
//!
//! Blinking is a function of the time since the pattern was shown
//! ([`PatternSpec::state_at`]), so it is tested without sleeping and every
//! implementation blinks the same way. A blink starts in its "on" phase, so a new
//! pattern is visible at once.

pub mod driven;
#[cfg(feature = "rpi")]
pub mod gpio;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use driven::{ButtonInput, DrivenLights, DriverTiming, LedOutput};
#[cfg(feature = "rpi")]
pub use gpio::{GpioLights, GpioPins};

/// Errors driving lights.
#[derive(Debug, thiserror::Error)]
pub enum LightsError {
    /// The hardware refused (GPIO not available, pin busy …).
    #[error("lights hardware: {0}")]
    Hardware(String),
    /// The thread driving the lights has stopped.
    #[error("the lights driver thread has stopped")]
    Stopped,
    /// The driver thread could not be started.
    #[error("cannot start the lights thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// What the lights tell residents and staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// All off (appliance starting or shut down).
    Off,
    /// Ready: green steady.
    Online,
    /// No link to the control plane: red blinking at 1 Hz (red because the counter
    /// cannot work; blinking because it is expected to recover by itself).
    Offline,
    /// A card is on the reader: green and amber steady ("leave it there").
    CardPresent,
    /// Working (reading a card, printing): amber blinking at 2 Hz ("do not remove").
    Busy,
    /// A fault needing staff: red steady.
    Error,
}

impl Pattern {
    /// Every pattern.
    pub const ALL: [Pattern; 6] = [
        Pattern::Off,
        Pattern::Online,
        Pattern::Offline,
        Pattern::CardPresent,
        Pattern::Busy,
        Pattern::Error,
    ];

    /// The pattern table: what each LED does.
    pub fn spec(self) -> PatternSpec {
        use Light::{Off, On};
        let (green, amber, red) = match self {
            Pattern::Off => (Off, Off, Off),
            Pattern::Online => (On, Off, Off),
            Pattern::Offline => (Off, Off, Light::blink_hz(1)),
            Pattern::CardPresent => (On, On, Off),
            Pattern::Busy => (Off, Light::blink_hz(2), Off),
            Pattern::Error => (Off, Off, On),
        };
        PatternSpec { green, amber, red }
    }
}

/// What one LED does within a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Light {
    /// Dark.
    Off,
    /// Lit steadily.
    On,
    /// Lit for `on` at the start of every `period`, dark for the rest.
    Blink {
        /// A full cycle.
        period: Duration,
        /// The lit part of it.
        on: Duration,
    },
}

impl Light {
    /// A 50 % blink at `hz` cycles per second (`hz` ≥ 1).
    pub const fn blink_hz(hz: u32) -> Light {
        let hz = if hz == 0 { 1 } else { hz };
        let period_ms = 1000 / hz as u64;
        Light::Blink {
            period: Duration::from_millis(period_ms),
            on: Duration::from_millis(period_ms / 2),
        }
    }

    /// Whether the LED is lit `elapsed` after the pattern started.
    pub fn is_lit(self, elapsed: Duration) -> bool {
        match self {
            Light::Off => false,
            Light::On => true,
            Light::Blink { period, on } => {
                let period = period.as_nanos();
                period == 0 || elapsed.as_nanos() % period < on.as_nanos()
            }
        }
    }
}

/// The three LEDs' behaviour in a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternSpec {
    /// The green LED.
    pub green: Light,
    /// The amber LED.
    pub amber: Light,
    /// The red LED.
    pub red: Light,
}

impl PatternSpec {
    /// Which LEDs are lit `elapsed` after the pattern started.
    pub fn state_at(&self, elapsed: Duration) -> LedState {
        LedState {
            green: self.green.is_lit(elapsed),
            amber: self.amber.is_lit(elapsed),
            red: self.red.is_lit(elapsed),
        }
    }

    /// Whether any LED blinks (so the outputs need refreshing over time).
    pub fn blinks(&self) -> bool {
        [self.green, self.amber, self.red]
            .iter()
            .any(|l| matches!(l, Light::Blink { .. }))
    }
}

/// Which LEDs are lit at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedState {
    /// The green LED.
    pub green: bool,
    /// The amber LED.
    pub amber: bool,
    /// The red LED.
    pub red: bool,
}

/// The counter's buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Button {
    /// Staff call the next resident.
    CallNext,
    /// Staff abandon the screen in progress.
    Reset,
}

impl Button {
    /// Every button.
    pub const ALL: [Button; 2] = [Button::CallNext, Button::Reset];
}

/// A button was pressed (reported once per press, on the press).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonEvent {
    /// Which button.
    pub button: Button,
    /// When the press was seen.
    pub at: Instant,
}

/// Status lights and buttons.
pub trait Lights {
    /// Shows `pattern` from now on. Showing the pattern already shown changes
    /// nothing (its blinking goes on without a restart, so repeated status updates
    /// do not make it stutter).
    fn show(&mut self, pattern: Pattern) -> Result<(), LightsError>;

    /// The pattern shown.
    fn pattern(&self) -> Pattern;

    /// The oldest button press not yet taken, if any.
    fn poll_button(&mut self) -> Option<ButtonEvent>;
}

/// A pattern shown since a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// The pattern.
    pub pattern: Pattern,
    /// When it was shown.
    pub since: Instant,
}

/// Lights that exist only in memory: the current pattern, the history of patterns
/// shown, and button presses made by calling [`SimulatedLights::press`].
#[derive(Debug)]
pub struct SimulatedLights {
    history: Vec<Shown>,
    presses: VecDeque<ButtonEvent>,
    max_history: usize,
}

impl SimulatedLights {
    /// Simulated lights showing [`Pattern::Off`], keeping the last 1000 patterns.
    pub fn new() -> Self {
        Self::with_history(1000)
    }

    /// Simulated lights keeping at most `max_history` (at least 1) patterns.
    pub fn with_history(max_history: usize) -> Self {
        SimulatedLights {
            history: vec![Shown {
                pattern: Pattern::Off,
                since: Instant::now(),
            }],
            presses: VecDeque::new(),
            max_history: max_history.max(1),
        }
    }

    /// Shows `pattern` as if at `now` (tests pass their own clock).
    pub fn show_at(&mut self, pattern: Pattern, now: Instant) {
        if self.pattern() == pattern {
            return;
        }
        if self.history.len() >= self.max_history {
            self.history.remove(0);
        }
        self.history.push(Shown {
            pattern,
            since: now,
        });
    }

    /// The pattern shown and since when.
    pub fn current(&self) -> Shown {
        // `history` is never empty: it starts with one entry and is only trimmed
        // before a push.
        self.history.last().copied().unwrap_or(Shown {
            pattern: Pattern::Off,
            since: Instant::now(),
        })
    }

    /// Which LEDs are lit at `at` (at or after the current pattern's start).
    pub fn state_at(&self, at: Instant) -> LedState {
        let current = self.current();
        current
            .pattern
            .spec()
            .state_at(at.saturating_duration_since(current.since))
    }

    /// Which LEDs are lit now.
    pub fn state(&self) -> LedState {
        self.state_at(Instant::now())
    }

    /// The patterns shown, oldest first (the current one last).
    pub fn history(&self) -> &[Shown] {
        &self.history
    }

    /// Presses `button` now.
    pub fn press(&mut self, button: Button) {
        self.press_at(button, Instant::now());
    }

    /// Presses `button` at `at`.
    pub fn press_at(&mut self, button: Button, at: Instant) {
        self.presses.push_back(ButtonEvent { button, at });
    }
}

impl Default for SimulatedLights {
    fn default() -> Self {
        Self::new()
    }
}

impl Lights for SimulatedLights {
    fn show(&mut self, pattern: Pattern) -> Result<(), LightsError> {
        self.show_at(pattern, Instant::now());
        Ok(())
    }

    fn pattern(&self) -> Pattern {
        self.current().pattern
    }

    fn poll_button(&mut self) -> Option<ButtonEvent> {
        self.presses.pop_front()
    }
}
