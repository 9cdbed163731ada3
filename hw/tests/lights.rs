//! Status lights: the pattern table, blinking as a function of time, transitions
//! and history, button presses; and the driver thread over recording fakes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kakanai_hw::lights::{
    Button, ButtonInput, DrivenLights, DriverTiming, LedOutput, LedState, Light, Lights,
    LightsError, Pattern, SimulatedLights,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn leds(green: bool, amber: bool, red: bool) -> LedState {
    LedState { green, amber, red }
}

#[test]
fn lights_pattern_table() {
    let half_hz = |period| Light::Blink {
        period: ms(period),
        on: ms(period / 2),
    };
    let table = [
        (Pattern::Off, Light::Off, Light::Off, Light::Off),
        (Pattern::Online, Light::On, Light::Off, Light::Off),
        (Pattern::Offline, Light::Off, Light::Off, half_hz(1000)),
        (Pattern::CardPresent, Light::On, Light::On, Light::Off),
        (Pattern::Busy, Light::Off, half_hz(500), Light::Off),
        (Pattern::Error, Light::Off, Light::Off, Light::On),
    ];
    for (pattern, green, amber, red) in table {
        let spec = pattern.spec();
        assert_eq!(
            (spec.green, spec.amber, spec.red),
            (green, amber, red),
            "{pattern:?}"
        );
    }
    assert_eq!(Pattern::ALL.len(), table.len());
    // Patterns are told apart at any moment, at least over a blink cycle.
    for (i, a) in Pattern::ALL.iter().enumerate() {
        for b in &Pattern::ALL[i + 1..] {
            let differ =
                (0..20).any(|t| a.spec().state_at(ms(t * 50)) != b.spec().state_at(ms(t * 50)));
            assert!(differ, "{a:?} and {b:?} look alike");
        }
    }
}

#[test]
fn lights_blink_from_the_moment_shown() {
    let busy = Pattern::Busy.spec();
    assert!(busy.blinks() && !Pattern::Error.spec().blinks());
    // Amber at 2 Hz: on for 250 ms, off for 250 ms, starting on.
    for (t, lit) in [
        (0, true),
        (249, true),
        (250, false),
        (499, false),
        (500, true),
        (1250, false),
    ] {
        assert_eq!(busy.state_at(ms(t)), leds(false, lit, false), "at {t} ms");
    }
    let error = Pattern::Error.spec();
    for t in [0, 250, 777, 10_000] {
        assert_eq!(error.state_at(ms(t)), leds(false, false, true));
    }
}

#[test]
fn lights_simulated_transitions_and_history() {
    let t0 = Instant::now();
    let mut lights = SimulatedLights::new();
    assert_eq!(lights.pattern(), Pattern::Off);
    assert_eq!(lights.state_at(t0 + ms(5)), LedState::default());

    lights.show_at(Pattern::Online, t0);
    assert_eq!(lights.state_at(t0 + ms(300)), leds(true, false, false));

    lights.show_at(Pattern::Busy, t0 + ms(1000));
    assert_eq!(lights.state_at(t0 + ms(1000)), leds(false, true, false));
    assert_eq!(lights.state_at(t0 + ms(1300)), leds(false, false, false));
    // Showing the same pattern again neither restarts the blink nor adds history.
    lights.show_at(Pattern::Busy, t0 + ms(1300));
    assert_eq!(lights.state_at(t0 + ms(1300)), leds(false, false, false));

    lights.show(Pattern::Error).unwrap();
    assert_eq!(lights.state(), leds(false, false, true));
    let history: Vec<Pattern> = lights.history().iter().map(|s| s.pattern).collect();
    assert_eq!(
        history,
        [Pattern::Off, Pattern::Online, Pattern::Busy, Pattern::Error]
    );
    assert_eq!(lights.history()[2].since, t0 + ms(1000));

    let mut bounded = SimulatedLights::with_history(2);
    for p in [Pattern::Online, Pattern::Busy, Pattern::Error] {
        bounded.show(p).unwrap();
    }
    let kept: Vec<Pattern> = bounded.history().iter().map(|s| s.pattern).collect();
    assert_eq!(kept, [Pattern::Busy, Pattern::Error]);
}

#[test]
fn lights_simulated_buttons_in_order() {
    let mut lights = SimulatedLights::new();
    assert_eq!(lights.poll_button(), None);
    lights.press(Button::CallNext);
    lights.press(Button::Reset);
    lights.press(Button::CallNext);
    let order: Vec<Button> = std::iter::from_fn(|| lights.poll_button())
        .map(|e| e.button)
        .collect();
    assert_eq!(order, [Button::CallNext, Button::Reset, Button::CallNext]);
    assert_eq!(lights.poll_button(), None);
}

/// Records every LED state written, with its time.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(Instant, LedState)>>>);

impl LedOutput for Recorder {
    fn set(&mut self, leds: LedState) -> Result<(), LightsError> {
        self.0.lock().unwrap().push((Instant::now(), leds));
        Ok(())
    }
}

/// Buttons held down, set by the test.
#[derive(Clone, Default)]
struct Held(Arc<Mutex<HashSet<Button>>>);

impl ButtonInput for Held {
    fn is_pressed(&mut self, button: Button) -> Result<bool, LightsError> {
        Ok(self.0.lock().unwrap().contains(&button))
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(ms(5));
    }
}

#[test]
fn lights_driven_thread_blinks_outputs_and_debounces_buttons() {
    let recorder = Recorder::default();
    let held = Held::default();
    let timing = DriverTiming {
        tick: ms(5),
        debounce_samples: 3,
    };
    let mut lights = DrivenLights::spawn(recorder.clone(), held.clone(), timing).unwrap();
    wait_until("LEDs off at start", || {
        recorder.0.lock().unwrap().first().map(|w| w.1) == Some(LedState::default())
    });

    lights.show(Pattern::Busy).unwrap();
    assert_eq!(lights.pattern(), Pattern::Busy);
    // Two full blink cycles: amber on, off, on, off (the thread writes changes only).
    wait_until("two amber blink cycles", || {
        let writes = recorder.0.lock().unwrap();
        writes
            .iter()
            .filter(|w| w.1 == leds(false, true, false))
            .count()
            >= 2
            && writes
                .iter()
                .skip(1)
                .filter(|w| w.1 == LedState::default())
                .count()
                >= 2
    });
    lights.show(Pattern::Error).unwrap();
    wait_until("red steady", || {
        recorder.0.lock().unwrap().last().map(|w| w.1) == Some(leds(false, false, true))
    });

    // One press, held for several samples, gives one event; a one-sample glitch none.
    assert_eq!(lights.poll_button(), None);
    held.0.lock().unwrap().insert(Button::CallNext);
    let mut pressed = None;
    wait_until("the press", || {
        pressed = lights.poll_button();
        pressed.is_some()
    });
    assert_eq!(pressed.unwrap().button, Button::CallNext);
    std::thread::sleep(ms(50));
    held.0.lock().unwrap().clear();
    std::thread::sleep(ms(50));
    assert_eq!(lights.poll_button(), None, "one press, one event");

    let glitch = Instant::now();
    held.0.lock().unwrap().insert(Button::Reset);
    held.0.lock().unwrap().clear();
    let glitch = glitch.elapsed();
    std::thread::sleep(ms(60));
    // Only meaningful if this thread was not descheduled for the debounce time.
    if glitch < timing.tick {
        assert_eq!(lights.poll_button(), None, "a glitch is not a press");
    }

    // Dropping stops the thread and darkens the LEDs.
    drop(lights);
    assert_eq!(
        recorder.0.lock().unwrap().last().map(|w| w.1),
        Some(LedState::default())
    );
}
