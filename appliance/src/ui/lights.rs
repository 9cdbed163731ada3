//! The counter lights follow the counter's state: a pure mapping from what the
//! appliance knows ([`Signals`]) to a [`Pattern`] of `kakanai_hw::lights`, and a
//! [`LightsDriver`] that shows each new pattern on any [`Lights`] (GPIO on a
//! Raspberry Pi, simulated elsewhere).
//!
//! Priority, highest first (one pattern at a time, the most urgent wins):
//! 1. control plane unreachable → [`Pattern::Offline`] (red blinking: the counter
//!    cannot work, and it recovers by itself);
//! 2. a device fault needing staff (printer out of paper, reader failing) →
//!    [`Pattern::Error`] (red steady);
//! 3. working (card being identified or read, a document printing) →
//!    [`Pattern::Busy`] (amber blinking: "do not remove");
//! 4. a card on the reader → [`Pattern::CardPresent`];
//! 5. otherwise [`Pattern::Online`] (green steady: ready).

use kakanai_hw::lights::{Lights, Pattern};

/// What the lights depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Signals {
    /// The link to the control plane is up.
    pub online: bool,
    /// A device needs staff (printer stopped, reader failing).
    pub device_fault: bool,
    /// A card read or a print job is in progress.
    pub busy: bool,
    /// A card is on the reader.
    pub card_present: bool,
}

/// The pattern the lights show for `signals`.
pub fn pattern_for(signals: Signals) -> Pattern {
    if !signals.online {
        Pattern::Offline
    } else if signals.device_fault {
        Pattern::Error
    } else if signals.busy {
        Pattern::Busy
    } else if signals.card_present {
        Pattern::CardPresent
    } else {
        Pattern::Online
    }
}

/// A short name of a pattern for the status JSON and the logs.
pub fn pattern_name(pattern: Pattern) -> &'static str {
    match pattern {
        Pattern::Off => "off",
        Pattern::Online => "online",
        Pattern::Offline => "offline",
        Pattern::CardPresent => "card-present",
        Pattern::Busy => "busy",
        Pattern::Error => "error",
    }
}

/// Shows the pattern for each new set of signals on the lights it owns.
pub struct LightsDriver {
    lights: Box<dyn Lights + Send>,
}

impl std::fmt::Debug for LightsDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LightsDriver")
            .field("pattern", &self.lights.pattern())
            .finish()
    }
}

impl LightsDriver {
    /// Drives `lights`.
    pub fn new(lights: Box<dyn Lights + Send>) -> Self {
        Self { lights }
    }

    /// Shows the pattern for `signals` (nothing changes when it is already shown, so
    /// a blink goes on without a restart); returns the pattern.
    pub fn update(&mut self, signals: Signals) -> Pattern {
        let pattern = pattern_for(signals);
        if self.lights.pattern() != pattern {
            match self.lights.show(pattern) {
                Ok(()) => tracing::info!(lights = pattern_name(pattern), "lights changed"),
                Err(e) => tracing::warn!(error = %e, "cannot change the lights"),
            }
        }
        pattern
    }

    /// The pattern shown.
    pub fn pattern(&self) -> Pattern {
        self.lights.pattern()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kakanai_hw::lights::{LedState, SimulatedLights};

    const READY: Signals = Signals {
        online: true,
        device_fault: false,
        busy: false,
        card_present: false,
    };

    #[test]
    fn the_most_urgent_state_wins() {
        assert_eq!(pattern_for(READY), Pattern::Online);
        let card = Signals {
            card_present: true,
            ..READY
        };
        assert_eq!(pattern_for(card), Pattern::CardPresent);
        let reading = Signals { busy: true, ..card };
        assert_eq!(pattern_for(reading), Pattern::Busy);
        let fault = Signals {
            device_fault: true,
            ..reading
        };
        assert_eq!(pattern_for(fault), Pattern::Error);
        let offline = Signals {
            online: false,
            ..fault
        };
        assert_eq!(pattern_for(offline), Pattern::Offline);
        assert_eq!(pattern_for(Signals::default()), Pattern::Offline);
    }

    #[test]
    fn leds_follow_the_link_going_down_and_coming_back() {
        let mut driver = LightsDriver::new(Box::new(SimulatedLights::new()));
        assert_eq!(driver.update(READY), Pattern::Online);
        let green = LedState {
            green: true,
            amber: false,
            red: false,
        };
        assert_eq!(
            Pattern::Online.spec().state_at(std::time::Duration::ZERO),
            green
        );
        assert_eq!(
            driver.update(Signals {
                online: false,
                ..READY
            }),
            Pattern::Offline
        );
        let red_phase = Pattern::Offline
            .spec()
            .state_at(std::time::Duration::from_millis(100));
        assert!(red_phase.red && !red_phase.green);
        assert_eq!(driver.update(READY), Pattern::Online);
        assert_eq!(driver.pattern(), Pattern::Online);
    }
}
