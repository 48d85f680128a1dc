//! The SPI LCD display: an ST7789 or ILI9341 panel driven from user space with `mipidsi` over
//! spidev and the GPIO character device, for kiosks whose panel has no kernel driver set up.
//!
//! The overlay is drawn into an RGB565 back buffer in memory, and the finished frame goes to
//! the panel as one `set_pixels` over the whole screen: one address window, one RAMWR, then the
//! pixel bytes in as few SPI transfers as spidev takes. Drawing primitive by primitive over SPI
//! would send every box edge and glyph with its own window: slower, and it flickers.
//!
//! Driving the panel is generic over embedded-hal 1.0 `SpiDevice`, `OutputPin` and `DelayNs`,
//! so it is tested on any machine with a recording fake bus; [`open`] is the thin Linux
//! constructor (spidev and gpio-cdev through `linux-embedded-hal`).

use super::packed::{PackedCanvas, PixelLayout};
use super::{draw_overlay, Display, Status};
use crate::capture::Frame;
use crate::config::{LcdColorOrder, LcdController, SpiLcdConfig};
use crate::face::FaceResult;
use crate::Error;
use embedded_graphics::pixelcolor::raw::RawU16;
use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::DrawTarget;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType, OutputPin};
use embedded_hal::spi::SpiDevice;
use mipidsi::interface::{Interface, InterfaceKind};
use mipidsi::models::{ILI9341Rgb565, ST7789};
use mipidsi::options::{ColorInversion, ColorOrder, Orientation, Rotation};
use mipidsi::Builder;
use std::path::{Path, PathBuf};

/// What one full frame costs on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameCost {
    /// Pixel data plus the CASET, RASET and RAMWR commands and their arguments.
    pub bytes: usize,
    /// SPI writes for the pixel data (spidev caps one transfer at `spidev.bufsiz`).
    pub transfers: usize,
    /// Time on the wire at the configured clock; gaps between transfers come on top.
    pub wire_ms: f64,
}

impl FrameCost {
    /// 11 command bytes: CASET and RASET (1 + 4 each) and RAMWR.
    const COMMAND_BYTES: usize = 11;

    pub fn new(width: u32, height: u32, clock_hz: u32, max_transfer: usize) -> FrameCost {
        let pixel_bytes = width as usize * height as usize * 2;
        let bytes = pixel_bytes + Self::COMMAND_BYTES;
        FrameCost {
            bytes,
            transfers: pixel_bytes.div_ceil(max_transfer.max(2)),
            wire_ms: bytes as f64 * 8.0 / clock_hz.max(1) as f64 * 1000.0,
        }
    }
}

/// spidev's largest transfer, `spidev.bufsiz` (4096 unless raised on the kernel command line).
pub fn spidev_max_transfer() -> usize {
    std::fs::read_to_string("/sys/module/spidev/parameters/bufsiz")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .filter(|&size: &usize| size >= 64)
        .unwrap_or(4096)
}

/// Why the bus failed: the SPI write or the data/command line.
#[derive(Debug)]
pub enum BusError<S, P> {
    Spi(S),
    Pin(P),
}

/// Why the panel could not be blanked: clearing it over the bus, or turning the backlight off.
/// Shown as the driver's own description of the error.
#[derive(Debug, thiserror::Error)]
enum BlankError<B: std::fmt::Debug, L: std::fmt::Debug> {
    #[error("{0:?}")]
    Panel(B),
    #[error("{0:?}")]
    Backlight(L),
}

/// [`BlankError`] of a panel wired with these bus and line types.
type PanelBlankError<SPI, DC, BL> = BlankError<
    BusError<<SPI as embedded_hal::spi::ErrorType>::Error, <DC as ErrorType>::Error>,
    <BL as ErrorType>::Error,
>;

/// Commands and pixels over SPI with a data/command line. mipidsi's own `SpiInterface`
/// borrows its buffer, which cannot live beside it in a display the daemon keeps for its
/// whole run; this one owns it, and never sends empty writes (commands without arguments).
struct SpiBus<SPI, DC> {
    spi: SPI,
    dc: DC,
    /// Pixel bytes gathered for one write; its length is the largest write.
    buffer: Vec<u8>,
}

impl<SPI: SpiDevice, DC: OutputPin> SpiBus<SPI, DC> {
    fn write(&mut self, len: usize) -> Result<(), BusError<SPI::Error, DC::Error>> {
        self.spi.write(&self.buffer[..len]).map_err(BusError::Spi)
    }
}

impl<SPI: SpiDevice, DC: OutputPin> Interface for SpiBus<SPI, DC> {
    type Word = u8;
    type Error = BusError<SPI::Error, DC::Error>;

    const KIND: InterfaceKind = InterfaceKind::Serial4Line;

    fn send_command(&mut self, command: u8, args: &[u8]) -> Result<(), Self::Error> {
        self.dc.set_low().map_err(BusError::Pin)?;
        self.spi.write(&[command]).map_err(BusError::Spi)?;
        // Data follows with DC high, also the pixels after RAMWR.
        self.dc.set_high().map_err(BusError::Pin)?;
        if !args.is_empty() {
            self.spi.write(args).map_err(BusError::Spi)?;
        }
        Ok(())
    }

    fn send_pixels<const N: usize>(
        &mut self,
        pixels: impl IntoIterator<Item = [u8; N]>,
    ) -> Result<(), Self::Error> {
        let capacity = self.buffer.len() / N * N;
        let mut pixels = pixels.into_iter();
        loop {
            let mut filled = 0;
            while filled < capacity {
                let Some(pixel) = pixels.next() else { break };
                self.buffer[filled..filled + N].copy_from_slice(&pixel);
                filled += N;
            }
            if filled > 0 {
                self.write(filled)?;
            }
            if filled < capacity {
                return Ok(());
            }
        }
    }

    fn send_repeated_pixel<const N: usize>(
        &mut self,
        pixel: [u8; N],
        count: u32,
    ) -> Result<(), Self::Error> {
        let per_write = self.buffer.len() / N;
        for slot in self.buffer.as_chunks_mut::<N>().0 {
            *slot = pixel;
        }
        let mut left = count as usize;
        while left > 0 {
            let n = left.min(per_write);
            self.write(n * N)?;
            left -= n;
        }
        Ok(())
    }
}

/// An optional output line: the reset line is optional in the config, and mipidsi's types
/// need one pin type either way.
struct MaybePin<P>(Option<P>);

impl<P: OutputPin> ErrorType for MaybePin<P> {
    type Error = P::Error;
}

impl<P: OutputPin> OutputPin for MaybePin<P> {
    fn set_low(&mut self) -> Result<(), P::Error> {
        self.0.as_mut().map_or(Ok(()), |pin| pin.set_low())
    }

    fn set_high(&mut self) -> Result<(), P::Error> {
        self.0.as_mut().map_or(Ok(()), |pin| pin.set_high())
    }
}

/// The two controllers are different mipidsi types with the same RGB565 pixels.
enum Panel<SPI: SpiDevice, DC: OutputPin, RST: OutputPin> {
    St7789(mipidsi::Display<SpiBus<SPI, DC>, ST7789, MaybePin<RST>>),
    Ili9341(mipidsi::Display<SpiBus<SPI, DC>, ILI9341Rgb565, MaybePin<RST>>),
}

/// The lines a panel is wired to.
pub struct Wiring<SPI, DC, RST, BL> {
    pub spi: SPI,
    pub dc: DC,
    pub reset: Option<RST>,
    pub backlight: Option<BL>,
}

/// An SPI panel with a back buffer.
pub struct SpiLcd<SPI: SpiDevice, DC: OutputPin, RST: OutputPin, BL: OutputPin> {
    panel: Panel<SPI, DC, RST>,
    canvas: PackedCanvas,
    backlight: Option<BL>,
    width: u16,
    height: u16,
    device: PathBuf,
    description: String,
}

impl<SPI, DC, RST, BL> SpiLcd<SPI, DC, RST, BL>
where
    SPI: SpiDevice,
    DC: OutputPin,
    RST: OutputPin,
    BL: OutputPin,
{
    /// Resets and initialises the panel (about 0.3 s of the controller's own delays), then
    /// turns the backlight on. `max_transfer` is the largest single SPI write.
    pub fn new(
        config: &SpiLcdConfig,
        wiring: Wiring<SPI, DC, RST, BL>,
        max_transfer: usize,
        delay: &mut impl DelayNs,
    ) -> Result<Self, Error> {
        let device = config.device.clone();
        let fail = |problem: String| Error::Output {
            path: device.clone(),
            problem,
        };
        let (width, height) = config.size();
        let (native_w, native_h) = config.unrotated_size();
        let canvas = PackedCanvas::new(width, height, width as usize * 2, PixelLayout::RGB565)
            .ok_or_else(|| fail(format!("unusable panel size {width}x{height}")))?;
        let frame_bytes = canvas.bytes().len();
        let mut bus = SpiBus {
            spi: wiring.spi,
            dc: wiring.dc,
            buffer: vec![0; max_transfer.clamp(64, frame_bytes.max(64))],
        };
        let controller = config.controller.name();
        let init_error = |what: String| {
            fail(format!(
                "cannot initialise the {controller} panel ({what}); check the wiring and [display.spi_lcd]"
            ))
        };
        // mipidsi resets by command only when it has no reset pin at all; with the pin
        // optional at run time it always has one, so the command is sent here.
        if wiring.reset.is_none() {
            bus.send_command(0x01, &[])
                .map_err(|e| init_error(format!("{e:?}")))?;
        }
        let rotation = match config.rotation() {
            90 => Rotation::Deg90,
            180 => Rotation::Deg180,
            270 => Rotation::Deg270,
            _ => Rotation::Deg0,
        };
        let orientation = Orientation::new().rotate(rotation);
        let inversion = if config.invert_colors() {
            ColorInversion::Inverted
        } else {
            ColorInversion::Normal
        };
        let order = match config.color_order {
            LcdColorOrder::Rgb => ColorOrder::Rgb,
            LcdColorOrder::Bgr => ColorOrder::Bgr,
        };
        let to_u16 = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        let reset = MaybePin(wiring.reset);
        macro_rules! build {
            ($model:expr) => {
                Builder::new($model, bus)
                    .reset_pin(reset)
                    .display_size(to_u16(native_w), to_u16(native_h))
                    .display_offset(to_u16(config.offset_x), to_u16(config.offset_y))
                    .orientation(orientation)
                    .invert_colors(inversion)
                    .color_order(order)
                    .init(delay)
                    .map_err(|e| init_error(format!("{e:?}")))?
            };
        }
        let panel = match config.controller {
            LcdController::St7789 => Panel::St7789(build!(ST7789)),
            LcdController::Ili9341 => Panel::Ili9341(build!(ILI9341Rgb565)),
        };
        let mut backlight = wiring.backlight;
        if let Some(pin) = backlight.as_mut() {
            pin.set_high()
                .map_err(|e| fail(format!("cannot turn the backlight on ({e:?})")))?;
        }
        let cost = FrameCost::new(width, height, config.clock_hz, max_transfer);
        log::info!(
            "SPI LCD: {} bytes per frame in {} writes of up to {} bytes; at least {:.1} ms per frame on the wire at {:.1} MHz (at most {:.0} fps)",
            cost.bytes,
            cost.transfers,
            max_transfer,
            cost.wire_ms,
            config.clock_hz as f64 / 1e6,
            1000.0 / cost.wire_ms
        );
        let pin = |p: Option<u32>| p.map_or("none".to_string(), |p| p.to_string());
        let description = format!(
            "SPI LCD {controller} {width}x{height} on {} (dc {}, rst {}, backlight {}, {} MHz)",
            config.device.display(),
            config.dc_pin,
            pin(config.reset_pin),
            pin(config.backlight_pin),
            config.clock_hz as f64 / 1e6
        );
        Ok(SpiLcd {
            panel,
            canvas,
            backlight,
            width: to_u16(width),
            height: to_u16(height),
            device,
            description,
        })
    }

    /// Sends the back buffer to the panel: one window over the whole screen, one RAMWR.
    pub fn flush(&mut self) -> Result<(), Error> {
        let pixels = self
            .canvas
            .bytes()
            .as_chunks::<2>()
            .0
            .iter()
            .map(|b| Rgb565::from(RawU16::new(u16::from_le_bytes([b[0], b[1]]))));
        let (right, bottom) = (self.width - 1, self.height - 1);
        let sent = match &mut self.panel {
            Panel::St7789(panel) => panel.set_pixels(0, 0, right, bottom, pixels),
            Panel::Ili9341(panel) => panel.set_pixels(0, 0, right, bottom, pixels),
        };
        sent.map_err(|e| Error::Output {
            path: self.device.clone(),
            problem: format!(
                "cannot send the frame to the panel ({e:?}); check the wiring, or lower display.spi_lcd.clock_hz"
            ),
        })
    }

    /// Blanks the panel, so no face stays on it once agecam has stopped.
    fn blank(&mut self) -> Result<(), PanelBlankError<SPI, DC, BL>> {
        let black = Rgb565::new(0, 0, 0);
        match &mut self.panel {
            Panel::St7789(panel) => panel.clear(black),
            Panel::Ili9341(panel) => panel.clear(black),
        }
        .map_err(BlankError::Panel)?;
        if let Some(pin) = self.backlight.as_mut() {
            pin.set_low().map_err(BlankError::Backlight)?;
        }
        Ok(())
    }
}

impl<SPI, DC, RST, BL> Drop for SpiLcd<SPI, DC, RST, BL>
where
    SPI: SpiDevice,
    DC: OutputPin,
    RST: OutputPin,
    BL: OutputPin,
{
    fn drop(&mut self) {
        if let Err(e) = self.blank() {
            log::warn!("cannot blank the SPI LCD on exit ({e}); the last frame may stay on it");
        }
    }
}

impl<SPI, DC, RST, BL> Display for SpiLcd<SPI, DC, RST, BL>
where
    SPI: SpiDevice,
    DC: OutputPin,
    RST: OutputPin,
    BL: OutputPin,
{
    fn show(&mut self, frame: &Frame, faces: &[FaceResult], status: &Status) -> Result<(), Error> {
        match draw_overlay(&mut self.canvas, &frame.image, faces, status) {
            Ok(()) => self.flush(),
            Err(never) => match never {},
        }
    }

    /// The frame scaled onto the panel (320×240 of a 640×480 frame on a 320×240 panel).
    fn reads(&self, frame: (u32, u32), _: u64) -> Option<(u32, u32)> {
        let panel = (u32::from(self.width), u32::from(self.height));
        Some(crate::display::fitted_size(frame, panel))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// The panel on Linux: spidev for the bus, the GPIO character device for the lines.
pub type LinuxSpiLcd = SpiLcd<
    linux_embedded_hal::SpidevDevice,
    linux_embedded_hal::CdevPin,
    linux_embedded_hal::CdevPin,
    linux_embedded_hal::CdevPin,
>;

/// Opens the SPI device and the GPIO lines of `config` and initialises the panel.
pub fn open(config: &SpiLcdConfig) -> Result<LinuxSpiLcd, Error> {
    use linux_embedded_hal::spidev::{SpiModeFlags, Spidev, SpidevOptions};
    use std::io::ErrorKind;

    let device = &config.device;
    let fail = |problem: String| Error::Output {
        path: device.clone(),
        problem,
    };
    let mut spi = Spidev::open(device).map_err(|e| {
        fail(match e.kind() {
            ErrorKind::NotFound => "no such SPI device; enable SPI (`dtparam=spi=on` in /boot/firmware/config.txt, or `sudo raspi-config nonint do_spi 0`), reboot, and check display.spi_lcd.device against `ls /dev/spidev*`".to_string(),
            ErrorKind::PermissionDenied => "permission denied; run agecam as a user in the `spi` group (`sudo usermod -aG spi USER`)".to_string(),
            _ => format!("cannot open it ({e})"),
        })
    })?;
    // Two programs driving one panel corrupt each other's pixels, and a second one's init
    // sequence blanks the first one's picture: one owner at a time (the lock goes with the file).
    lock_exclusively(spi.inner(), device)?;
    let mode = match config.spi_mode {
        1 => SpiModeFlags::SPI_MODE_1,
        2 => SpiModeFlags::SPI_MODE_2,
        3 => SpiModeFlags::SPI_MODE_3,
        _ => SpiModeFlags::SPI_MODE_0,
    };
    spi.configure(
        &SpidevOptions::new()
            .bits_per_word(8)
            .max_speed_hz(config.clock_hz)
            .mode(mode)
            .build(),
    )
    .map_err(|e| {
        fail(format!(
            "not an SPI device, or it refuses {} Hz in mode {} ({e}); check display.spi_lcd.device, clock_hz and spi_mode",
            config.clock_hz, config.spi_mode
        ))
    })?;

    let mut chip = open_gpio_chip(&config.gpio_chip)?;
    let dc = output_line(&mut chip, &config.gpio_chip, config.dc_pin, "dc_pin", false)?;
    // Reset is active low: held high (running) until the init sequence pulses it.
    let reset = config
        .reset_pin
        .map(|pin| output_line(&mut chip, &config.gpio_chip, pin, "reset_pin", true))
        .transpose()?;
    // The backlight stays off until the panel shows something other than noise.
    let backlight = config
        .backlight_pin
        .map(|pin| output_line(&mut chip, &config.gpio_chip, pin, "backlight_pin", false))
        .transpose()?;
    let wiring = Wiring {
        spi: linux_embedded_hal::SpidevDevice(spi),
        dc,
        reset,
        backlight,
    };
    SpiLcd::new(
        config,
        wiring,
        spidev_max_transfer(),
        &mut linux_embedded_hal::Delay,
    )
}

fn open_gpio_chip(path: &Path) -> Result<linux_embedded_hal::gpio_cdev::Chip, Error> {
    let fail = |problem: String| Error::Output {
        path: path.to_path_buf(),
        problem,
    };
    if !path.exists() {
        return Err(fail(
            "no such GPIO chip; check display.spi_lcd.gpio_chip against `ls /dev/gpiochip*` (a Raspberry Pi 5's header is /dev/gpiochip4 on older kernels)".to_string(),
        ));
    }
    linux_embedded_hal::gpio_cdev::Chip::new(path).map_err(|e| {
        fail(format!(
            "cannot open it ({e}); run agecam as a user in the `gpio` group (`sudo usermod -aG gpio USER`)"
        ))
    })
}

/// Takes an exclusive advisory lock on the open device `file`, or says who to stop.
fn lock_exclusively(file: &std::fs::File, path: &Path) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor that `file` keeps open for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    Err(Error::Output {
        path: path.to_path_buf(),
        problem: if e.kind() == std::io::ErrorKind::WouldBlock {
            "in use by another program driving the panel, usually the running daemon; stop it first (`sudo systemctl stop agecam`), e.g. before `agecam selftest`".to_string()
        } else {
            format!("cannot lock it for this program alone ({e})")
        },
    })
}

fn output_line(
    chip: &mut linux_embedded_hal::gpio_cdev::Chip,
    chip_path: &Path,
    line: u32,
    key: &str,
    high: bool,
) -> Result<linux_embedded_hal::CdevPin, Error> {
    use linux_embedded_hal::gpio_cdev::LineRequestFlags;
    let fail = |e: &dyn std::fmt::Display| {
        Error::Output {
        path: chip_path.to_path_buf(),
        problem: format!(
            "cannot claim line {line} as an output for display.spi_lcd.{key} ({e}); check the number, and that no other program and no kernel driver (an fbtft or SPI display overlay in config.txt) holds it"
        ),
    }
    };
    let handle = chip
        .get_line(line)
        .and_then(|l| l.request(LineRequestFlags::OUTPUT, u8::from(high), "agecam-lcd"))
        .map_err(|e| fail(&e))?;
    linux_embedded_hal::CdevPin::new(handle).map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::overlay::FACE_COLOUR;
    use embedded_hal::spi::{ErrorKind, ErrorType as SpiErrorType, Operation};
    use std::cell::{Cell, RefCell};
    use std::convert::Infallible;
    use std::rc::Rc;

    /// flock locks belong to an open file, so a second open in this process stands in for a
    /// second program (a selftest beside the running daemon).
    #[test]
    fn second_opener_of_the_panel_device_is_told_to_stop_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spidev0.0");
        std::fs::write(&path, b"").unwrap();
        let daemon = std::fs::File::open(&path).unwrap();
        lock_exclusively(&daemon, &path).unwrap();
        let selftest = std::fs::File::open(&path).unwrap();
        let text = lock_exclusively(&selftest, &path).unwrap_err().to_string();
        assert!(
            text.contains("spidev0.0") && text.contains("systemctl stop agecam"),
            "{text}"
        );
        drop(daemon);
        lock_exclusively(&selftest, &path).unwrap();
    }

    /// Everything that went over the wire: each write with the DC level it was sent at, and
    /// each change of the reset and backlight lines.
    #[derive(Default)]
    struct Wire {
        dc_high: Cell<bool>,
        writes: RefCell<Vec<(bool, Vec<u8>)>>,
        lines: RefCell<Vec<(&'static str, bool)>>,
        /// Writes fail once this is set (a pulled cable).
        broken: Cell<bool>,
    }

    impl Wire {
        /// The writes as (command, its data bytes) in order.
        fn commands(&self) -> Vec<(u8, Vec<u8>)> {
            let mut commands: Vec<(u8, Vec<u8>)> = Vec::new();
            for (data, bytes) in self.writes.borrow().iter() {
                if *data {
                    commands
                        .last_mut()
                        .expect("data before any command")
                        .1
                        .extend_from_slice(bytes);
                } else {
                    assert_eq!(bytes.len(), 1, "one command byte per write with DC low");
                    commands.push((bytes[0], Vec::new()));
                }
            }
            commands
        }

        fn codes(&self) -> Vec<u8> {
            self.commands().iter().map(|(code, _)| *code).collect()
        }
    }

    struct FakeSpi(Rc<Wire>);

    impl SpiErrorType for FakeSpi {
        type Error = ErrorKind;
    }

    impl SpiDevice for FakeSpi {
        fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), ErrorKind> {
            if self.0.broken.get() {
                return Err(ErrorKind::Other);
            }
            for op in operations {
                match op {
                    Operation::Write(bytes) => self
                        .0
                        .writes
                        .borrow_mut()
                        .push((self.0.dc_high.get(), bytes.to_vec())),
                    _ => panic!("the panel is write-only"),
                }
            }
            Ok(())
        }
    }

    struct FakeDc(Rc<Wire>);

    impl ErrorType for FakeDc {
        type Error = Infallible;
    }

    impl OutputPin for FakeDc {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0.dc_high.set(false);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0.dc_high.set(true);
            Ok(())
        }
    }

    struct FakeLine(Rc<Wire>, &'static str);

    impl ErrorType for FakeLine {
        type Error = Infallible;
    }

    impl OutputPin for FakeLine {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0.lines.borrow_mut().push((self.1, false));
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0.lines.borrow_mut().push((self.1, true));
            Ok(())
        }
    }

    struct NoDelay;

    impl DelayNs for NoDelay {
        fn delay_ns(&mut self, _: u32) {}
    }

    const CHUNK: usize = 4096;
    const SWRESET: u8 = 0x01;
    const SLPOUT: u8 = 0x11;
    const INVOFF: u8 = 0x20;
    const INVON: u8 = 0x21;
    const DISPON: u8 = 0x29;
    const CASET: u8 = 0x2A;
    const RASET: u8 = 0x2B;
    const RAMWR: u8 = 0x2C;
    const MADCTL: u8 = 0x36;
    const COLMOD: u8 = 0x3A;

    type TestLcd = SpiLcd<FakeSpi, FakeDc, FakeLine, FakeLine>;

    fn lcd(config: &SpiLcdConfig, with_pins: bool) -> (TestLcd, Rc<Wire>) {
        let wire = Rc::new(Wire::default());
        let wiring = Wiring {
            spi: FakeSpi(wire.clone()),
            dc: FakeDc(wire.clone()),
            reset: with_pins.then(|| FakeLine(wire.clone(), "reset")),
            backlight: with_pins.then(|| FakeLine(wire.clone(), "backlight")),
        };
        let lcd = SpiLcd::new(config, wiring, CHUNK, &mut NoDelay).unwrap();
        (lcd, wire)
    }

    fn be(colour: u16) -> [u8; 2] {
        colour.to_be_bytes()
    }

    #[test]
    fn st7789_without_reset_line_is_reset_by_command_and_initialised() {
        let (_lcd, wire) = lcd(&SpiLcdConfig::default(), false);
        let commands = wire.commands();
        let codes = wire.codes();
        assert_eq!(codes[0], SWRESET, "{codes:02X?}");
        let at = |code: u8| codes.iter().position(|&c| c == code).unwrap();
        assert!(at(SWRESET) < at(SLPOUT) && at(SLPOUT) < at(COLMOD) && at(COLMOD) < at(DISPON));
        assert!(
            codes.contains(&MADCTL) && codes.contains(&INVON),
            "{codes:02X?}"
        );
        // 16 bits per pixel on both interfaces.
        assert_eq!(commands[at(COLMOD)].1, vec![0x55]);
        assert!(wire.lines.borrow().is_empty());
    }

    #[test]
    fn a_frame_is_one_window_over_the_panel_and_one_ramwr_of_big_endian_rgb565() {
        let (mut lcd, wire) = lcd(&SpiLcdConfig::default(), false);
        wire.writes.borrow_mut().clear();
        let (frame, face) = crate::display::blue_frame_with_one_face();
        lcd.show(&frame, &[face], &Status::default()).unwrap();

        let commands = wire.commands();
        let codes: Vec<u8> = commands.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, vec![CASET, RASET, RAMWR]);
        assert_eq!(commands[0].1, vec![0, 0, 0, 239], "columns 0..=239");
        assert_eq!(commands[1].1, vec![0, 0, 0, 239], "rows 0..=239");
        let pixels = &commands[2].1;
        assert_eq!(pixels.len(), 240 * 240 * 2);
        // Pixel writes respect spidev's transfer limit and fill it.
        let writes = wire.writes.borrow();
        let data_writes: Vec<usize> = writes.iter().skip(5).map(|(_, b)| b.len()).collect();
        assert_eq!(data_writes.len(), (240 * 240 * 2usize).div_ceil(CHUNK));
        assert!(data_writes[..data_writes.len() - 1]
            .iter()
            .all(|&n| n == CHUNK));
        let cost = FrameCost::new(240, 240, 40_000_000, CHUNK);
        assert_eq!(
            cost.bytes,
            writes.iter().map(|(_, b)| b.len()).sum::<usize>()
        );
        assert_eq!(cost.transfers, data_writes.len());

        let at = |x: usize, y: usize| [pixels[(y * 240 + x) * 2], pixels[(y * 240 + x) * 2 + 1]];
        // 640x480 on 240x240: scale 0.375, picture rows 30..210; the face box's left edge at
        // x = 200 × 0.375 = 75, rows 90 … 150.
        let yellow = PixelLayout::RGB565.pack(FACE_COLOUR) as u16;
        assert_eq!(at(75, 120), be(yellow), "face box edge");
        assert_eq!(at(76, 120), be(0x001F), "blue picture inside the box");
        assert_eq!(at(120, 20), [0, 0], "letterbox bar");
    }

    #[test]
    fn ili9341_landscape_with_reset_and_backlight_lines() {
        let config = SpiLcdConfig {
            controller: LcdController::Ili9341,
            color_order: LcdColorOrder::Bgr,
            reset_pin: Some(27),
            backlight_pin: Some(24),
            ..SpiLcdConfig::default()
        };
        let (mut lcd, wire) = lcd(&config, true);
        assert_eq!(
            *wire.lines.borrow(),
            vec![("reset", false), ("reset", true), ("backlight", true)],
            "reset pulsed low, backlight on after init"
        );
        let commands = wire.commands();
        let codes = wire.codes();
        assert!(!codes.contains(&SWRESET), "reset by the line: {codes:02X?}");
        assert!(codes.contains(&SLPOUT) && codes.contains(&DISPON) && codes.contains(&INVOFF));
        let madctl = commands.iter().find(|(c, _)| *c == MADCTL).unwrap().1[0];
        assert_eq!(madctl & 0x20, 0x20, "90 degrees swaps rows and columns");
        assert_eq!(madctl & 0x08, 0x08, "BGR order");

        wire.writes.borrow_mut().clear();
        let (frame, _) = crate::display::blue_frame_with_one_face();
        lcd.show(&frame, &[], &Status::default()).unwrap();
        let commands = wire.commands();
        assert_eq!(
            commands[0],
            (CASET, vec![0, 0, 0x01, 0x3F]),
            "columns 0..=319"
        );
        assert_eq!(commands[1], (RASET, vec![0, 0, 0, 239]), "rows 0..=239");
        assert_eq!(commands[2].1.len(), 320 * 240 * 2);
        assert_eq!(
            lcd.describe(),
            "SPI LCD ILI9341 320x240 on /dev/spidev0.0 (dc 25, rst 27, backlight 24, 40 MHz)"
        );
    }

    #[test]
    fn a_failed_spi_write_is_an_error_naming_the_device_and_the_next_frame_is_tried() {
        let (mut lcd, wire) = lcd(&SpiLcdConfig::default(), false);
        let (frame, face) = crate::display::blue_frame_with_one_face();
        wire.broken.set(true);
        let err = lcd
            .show(&frame, std::slice::from_ref(&face), &Status::default())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/dev/spidev0.0") && text.contains("clock_hz"),
            "{text}"
        );
        wire.broken.set(false);
        wire.writes.borrow_mut().clear();
        lcd.show(&frame, &[face], &Status::default()).unwrap();
        assert_eq!(wire.codes(), vec![CASET, RASET, RAMWR]);
    }

    #[test]
    fn dropping_the_display_blanks_the_panel_and_turns_the_backlight_off() {
        let (mut lcd, wire) = lcd(&SpiLcdConfig::default(), true);
        let (frame, face) = crate::display::blue_frame_with_one_face();
        lcd.show(&frame, &[face], &Status::default()).unwrap();
        wire.writes.borrow_mut().clear();
        drop(lcd);
        let commands = wire.commands();
        assert_eq!(commands.last().unwrap().0, RAMWR);
        let pixels = &commands.last().unwrap().1;
        assert_eq!(pixels.len(), 240 * 240 * 2);
        assert!(pixels.iter().all(|&b| b == 0), "all black");
        // Sent from a repeated pixel, still within spidev's transfer limit.
        assert!(wire.writes.borrow().iter().all(|(_, b)| b.len() <= CHUNK));
        assert_eq!(wire.lines.borrow().last(), Some(&("backlight", false)));
    }

    #[test]
    fn rotation_and_size_reach_the_address_window() {
        // A 135x240 module seen in landscape, its window 52 columns and 40 rows into memory.
        let config = SpiLcdConfig {
            width: Some(240),
            height: Some(135),
            rotation: Some(90),
            offset_x: 52,
            offset_y: 40,
            ..SpiLcdConfig::default()
        };
        let (mut lcd, wire) = lcd(&config, false);
        wire.writes.borrow_mut().clear();
        lcd.flush().unwrap();
        let commands = wire.commands();
        // Rotated 90 degrees the columns sent are memory rows, 40 ..= 279, and the rows are
        // memory columns counted from the far edge: 240 - 135 - 52 = 53 ..= 187 (the 52/53
        // pair other drivers use for these modules).
        assert_eq!(commands[0], (CASET, vec![0, 40, 0x01, 0x17]));
        assert_eq!(commands[1], (RASET, vec![0, 53, 0, 187]));
        assert_eq!(commands[2].1.len(), 240 * 135 * 2);
    }

    #[test]
    fn frame_cost_at_common_clocks() {
        let square = FrameCost::new(240, 240, 40_000_000, 4096);
        assert_eq!(square.bytes, 115_211);
        assert_eq!(square.transfers, 29);
        assert!((square.wire_ms - 23.04).abs() < 0.01, "{square:?}");
        let fast = FrameCost::new(240, 240, 62_500_000, 4096);
        assert!((fast.wire_ms - 14.75).abs() < 0.01, "{fast:?}");
        let wide = FrameCost::new(320, 240, 40_000_000, 65_536);
        assert_eq!((wide.bytes, wide.transfers), (153_611, 3));
        assert!((wide.wire_ms - 30.72).abs() < 0.01, "{wide:?}");
    }

    #[test]
    fn a_missing_spi_device_says_how_to_enable_spi() {
        let config = SpiLcdConfig {
            device: PathBuf::from("/dev/spidev-agecam-none"),
            ..SpiLcdConfig::default()
        };
        let text = open(&config).err().unwrap().to_string();
        assert!(
            text.contains("/dev/spidev-agecam-none")
                && text.contains("dtparam=spi=on")
                && text.contains("display.spi_lcd.device"),
            "{text}"
        );
    }
}
