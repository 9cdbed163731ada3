//! Status lights and buttons on a Raspberry Pi's GPIO pins (feature `rpi`).
//!
//! LEDs are driven active-high (through a transistor or a resistor to ground);
//! buttons connect their pin to ground, with the internal pull-up enabled, so a
//! pressed button reads low.

use rppal::gpio::{Gpio, InputPin, OutputPin};

use super::driven::{ButtonInput, DrivenLights, DriverTiming, LedOutput};
use super::{Button, LedState, LightsError};

/// BCM pin numbers of the LEDs and buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpioPins {
    /// Green LED.
    pub green: u8,
    /// Amber LED.
    pub amber: u8,
    /// Red LED.
    pub red: u8,
    /// "Call next" button.
    pub call_next: u8,
    /// "Reset" button.
    pub reset: u8,
}

impl Default for GpioPins {
    /// Adjacent pins on the 40-pin header (BCM 17, 27, 22; buttons 23, 24).
    fn default() -> Self {
        GpioPins {
            green: 17,
            amber: 27,
            red: 22,
            call_next: 23,
            reset: 24,
        }
    }
}

/// Lights on GPIO pins: [`DrivenLights`] over [`rppal`] pins.
#[derive(Debug)]
pub struct GpioLights;

impl GpioLights {
    /// Claims the pins and starts the driver thread.
    pub fn open(pins: GpioPins, timing: DriverTiming) -> Result<DrivenLights, LightsError> {
        let gpio = Gpio::new().map_err(hardware)?;
        let output = |pin: u8| gpio.get(pin).map(|p| p.into_output_low()).map_err(hardware);
        let input = |pin: u8| {
            gpio.get(pin)
                .map(|p| p.into_input_pullup())
                .map_err(hardware)
        };
        let leds = GpioLeds {
            green: output(pins.green)?,
            amber: output(pins.amber)?,
            red: output(pins.red)?,
        };
        let buttons = GpioButtons {
            call_next: input(pins.call_next)?,
            reset: input(pins.reset)?,
        };
        DrivenLights::spawn(leds, buttons, timing)
    }
}

fn hardware(e: rppal::gpio::Error) -> LightsError {
    LightsError::Hardware(e.to_string())
}

struct GpioLeds {
    green: OutputPin,
    amber: OutputPin,
    red: OutputPin,
}

impl LedOutput for GpioLeds {
    fn set(&mut self, leds: LedState) -> Result<(), LightsError> {
        for (pin, lit) in [
            (&mut self.green, leds.green),
            (&mut self.amber, leds.amber),
            (&mut self.red, leds.red),
        ] {
            if lit {
                pin.set_high();
            } else {
                pin.set_low();
            }
        }
        Ok(())
    }
}

struct GpioButtons {
    call_next: InputPin,
    reset: InputPin,
}

impl ButtonInput for GpioButtons {
    fn is_pressed(&mut self, button: Button) -> Result<bool, LightsError> {
        let pin = match button {
            Button::CallNext => &self.call_next,
            Button::Reset => &self.reset,
        };
        Ok(pin.is_low())
    }
}
