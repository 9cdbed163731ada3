//! Lights on real outputs: a small thread that refreshes the LEDs while a pattern
//! blinks and samples the buttons, debouncing them.
//!
//! The hardware is behind two traits, [`LedOutput`] and [`ButtonInput`], so the
//! thread is the same for GPIO pins and for the tests' recording fakes.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Button, ButtonEvent, LedState, Lights, LightsError, Pattern, Shown};

/// Where the LED states go.
pub trait LedOutput {
    /// Lights exactly the LEDs set in `leds`.
    fn set(&mut self, leds: LedState) -> Result<(), LightsError>;
}

/// Where button levels come from.
pub trait ButtonInput {
    /// Whether `button` is held down right now (raw, bouncing level).
    fn is_pressed(&mut self, button: Button) -> Result<bool, LightsError>;
}

/// Timing of the driver thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverTiming {
    /// How often LEDs are refreshed and buttons sampled. 10 ms is far finer than the
    /// eye sees a 2 Hz blink, and costs nothing.
    pub tick: Duration,
    /// How many consecutive equal samples make a button level stable: contacts
    /// bounce for a few milliseconds, and one press must give one event.
    pub debounce_samples: u32,
}

impl Default for DriverTiming {
    fn default() -> Self {
        DriverTiming {
            tick: Duration::from_millis(10),
            debounce_samples: 3,
        }
    }
}

/// Lights driven by a background thread over any [`LedOutput`] and [`ButtonInput`].
/// Dropping it stops the thread (the LEDs are switched off first).
#[derive(Debug)]
pub struct DrivenLights {
    commands: Option<Sender<Shown>>,
    presses: Receiver<ButtonEvent>,
    pattern: Pattern,
    thread: Option<JoinHandle<()>>,
}

impl DrivenLights {
    /// Starts the driver thread, showing [`Pattern::Off`].
    pub fn spawn<O, I>(output: O, input: I, timing: DriverTiming) -> Result<Self, LightsError>
    where
        O: LedOutput + Send + 'static,
        I: ButtonInput + Send + 'static,
    {
        let timing = DriverTiming {
            tick: timing.tick.max(Duration::from_millis(1)),
            debounce_samples: timing.debounce_samples.max(1),
        };
        let (commands, command_rx) = mpsc::channel();
        let (press_tx, presses) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kakanai-lights".into())
            .spawn(move || drive(output, input, timing, &command_rx, &press_tx))
            .map_err(LightsError::Thread)?;
        Ok(DrivenLights {
            commands: Some(commands),
            presses,
            pattern: Pattern::Off,
            thread: Some(thread),
        })
    }
}

impl Lights for DrivenLights {
    fn show(&mut self, pattern: Pattern) -> Result<(), LightsError> {
        if pattern == self.pattern {
            return Ok(());
        }
        let shown = Shown {
            pattern,
            since: Instant::now(),
        };
        self.commands
            .as_ref()
            .ok_or(LightsError::Stopped)?
            .send(shown)
            .map_err(|_| LightsError::Stopped)?;
        self.pattern = pattern;
        Ok(())
    }

    fn pattern(&self) -> Pattern {
        self.pattern
    }

    fn poll_button(&mut self) -> Option<ButtonEvent> {
        self.presses.try_recv().ok()
    }
}

impl Drop for DrivenLights {
    fn drop(&mut self) {
        // Closing the command channel is the stop signal.
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("lights thread panicked");
            }
        }
    }
}

/// One button's debouncer.
#[derive(Debug, Clone, Copy, Default)]
struct Debounce {
    stable: bool,
    same: u32,
}

impl Debounce {
    /// Takes a raw sample; true when the stable level just became "pressed".
    fn sample(&mut self, pressed: bool, needed: u32) -> bool {
        if pressed == self.stable {
            self.same = 0;
            return false;
        }
        self.same += 1;
        if self.same < needed {
            return false;
        }
        self.same = 0;
        self.stable = pressed;
        pressed
    }
}

/// The driver thread: until the command channel closes, follow the latest pattern,
/// write the LEDs when their state changes, and report debounced presses.
fn drive<O: LedOutput, I: ButtonInput>(
    mut output: O,
    mut input: I,
    timing: DriverTiming,
    commands: &Receiver<Shown>,
    presses: &Sender<ButtonEvent>,
) {
    let mut shown = Shown {
        pattern: Pattern::Off,
        since: Instant::now(),
    };
    let mut written: Option<LedState> = None;
    let mut debounce = [Debounce::default(); Button::ALL.len()];
    let mut failing = false;
    loop {
        let now = Instant::now();
        let leds = shown.pattern.spec().state_at(now - shown.since);
        if written != Some(leds) {
            match output.set(leds) {
                Ok(()) => {
                    written = Some(leds);
                    failing = false;
                }
                // Logged once per failure streak; retried at the next tick.
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "cannot set the status LEDs");
                    failing = true;
                }
                Err(_) => {}
            }
        }
        for (button, state) in Button::ALL.iter().zip(debounce.iter_mut()) {
            match input.is_pressed(*button) {
                Ok(level) => {
                    if state.sample(level, timing.debounce_samples) {
                        // Nobody polling any more is not an error for the lights.
                        let _ = presses.send(ButtonEvent {
                            button: *button,
                            at: now,
                        });
                    }
                }
                Err(e) => tracing::debug!(error = %e, ?button, "cannot read a button"),
            }
        }
        match commands.recv_timeout(timing.tick) {
            Ok(next) => shown = next,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // Apply every queued pattern at once: only the latest one matters.
        while let Ok(next) = commands.try_recv() {
            shown = next;
        }
    }
    if let Err(e) = output.set(LedState::default()) {
        tracing::warn!(error = %e, "cannot switch the status LEDs off");
    }
}
