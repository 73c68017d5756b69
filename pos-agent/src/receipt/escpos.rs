//! Receipts to ESC/POS thermal printers, through the `escpos` crate: the
//! raster in bands (`GS v 0`), a feed and a cut, sent to a printer on the
//! network (`host:9100`), a device file (`/dev/usb/lp0`) or a file.
//!
//! [`read`] is our own small reader of what we send (initialise, cancel,
//! raster, feed, cut), so that tests check the bytes a printer would get,
//! not just the picture we meant.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use escpos::driver::{Driver, FileDriver, NetworkDriver};
use escpos::printer::Printer;
use escpos::utils::{BitImageOption, BitImageSize, Protocol};

use super::render::Raster;

/// Rows of raster per `GS v 0` command: small enough for a cheap
/// printer's buffer, large enough to print without visible seams.
pub const BAND_ROWS: u32 = 128;

/// Lines fed after the receipt, so that the cut clears the last text.
const FEED_LINES: u8 = 4;

/// How long a network printer may take to accept the receipt.
const NETWORK_TIMEOUT_MS: u64 = 5_000;

/// Where a receipt is printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A printer on the network: `host:port` (9100, raw).
    Network { host: String, port: u16 },
    /// A device file (`/dev/usb/lp0`) or an ordinary file.
    File(PathBuf),
}

impl Target {
    /// `tcp:HOST:PORT` or `HOST:PORT` (a port after the last colon) is a
    /// network printer; anything else is a path.
    pub fn parse(s: &str) -> Result<Target, String> {
        let network = s.strip_prefix("tcp:").or_else(|| {
            (!s.contains('/'))
                .then(|| s.rsplit_once(':'))
                .flatten()
                .filter(|(_, p)| p.parse::<u16>().is_ok())
                .map(|_| s)
        });
        match network {
            Some(address) => {
                let (host, port) = address
                    .rsplit_once(':')
                    .ok_or_else(|| format!("a network printer is HOST:PORT, not {s:?}"))?;
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("{port:?} is not a port"))?;
                Ok(Target::Network {
                    host: host.to_string(),
                    port,
                })
            }
            None if s.is_empty() => Err("no printer given".to_string()),
            None => Ok(Target::File(PathBuf::from(s))),
        }
    }
}

/// Collects what the printer would be sent.
#[derive(Clone, Default)]
struct Capture(Rc<RefCell<Vec<u8>>>);

impl Driver for Capture {
    fn name(&self) -> String {
        "capture".to_string()
    }
    fn write(&self, data: &[u8]) -> escpos::errors::Result<()> {
        self.0.borrow_mut().extend_from_slice(data);
        Ok(())
    }
    fn read(&self, _: &mut [u8]) -> escpos::errors::Result<usize> {
        Ok(0)
    }
    fn flush(&self) -> escpos::errors::Result<()> {
        Ok(())
    }
}

/// The bytes that print `raster`, then feed and cut.
pub fn commands(raster: &Raster) -> Result<Vec<u8>, String> {
    let capture = Capture::default();
    let mut printer = Printer::new(capture.clone(), Protocol::default(), None);
    let e = |e: escpos::errors::PrinterError| e.to_string();
    printer.init().map_err(e)?;
    let mut top = 0;
    while top < raster.height {
        let band = raster.band(top, BAND_ROWS);
        let option =
            BitImageOption::new(Some(raster.width), None, BitImageSize::Normal).map_err(e)?;
        printer
            .bit_image_from_bytes_option(&band.png(), option)
            .map_err(e)?;
        top += band.height;
    }
    printer.feeds(FEED_LINES).map_err(e)?;
    printer.print_cut().map_err(e)?;
    let bytes = capture.0.borrow().clone();
    Ok(bytes)
}

/// Print `raster` on `target`.
pub fn print(raster: &Raster, target: &Target) -> Result<(), String> {
    send(&commands(raster)?, target)
}

/// Print `receipt` on `paper`: its printer bytes kept at `kept` first (a
/// terminal's electronic journal of what it printed), then sent to
/// `target` where there is one.
pub fn print_kept(
    receipt: &super::Receipt,
    paper: super::Paper,
    kept: &std::path::Path,
    target: Option<&Target>,
) -> Result<(), String> {
    let raster = super::render::render(receipt, paper);
    let bytes = commands(&raster)?;
    std::fs::write(kept, &bytes).map_err(|e| format!("{}: {e}", kept.display()))?;
    match target {
        Some(t) => send(&bytes, t),
        None => Ok(()),
    }
}

/// Send printer commands (from [`commands`]) to `target`.
pub fn send(bytes: &[u8], target: &Target) -> Result<(), String> {
    let e = |e: escpos::errors::PrinterError| e.to_string();
    match target {
        Target::Network { host, port } => {
            let driver =
                NetworkDriver::open(host, *port, Some(Duration::from_millis(NETWORK_TIMEOUT_MS)))
                    .map_err(|x| format!("printer {host}:{port}: {}", e(x)))?;
            driver.write(bytes).map_err(e)?;
            driver.flush().map_err(e)
        }
        Target::File(path) => {
            // A device file exists; an ordinary one is made (or replaced).
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            let driver = FileDriver::open_with_options(path, &options)
                .map_err(|x| format!("{}: {}", path.display(), e(x)))?;
            driver.write(bytes).map_err(e)?;
            driver.flush().map_err(e)
        }
    }
}

/// What [`read`] found in a stream of printer commands.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Printed {
    /// The raster images, stacked in the order printed.
    pub raster: Option<Raster>,
    pub initialised: bool,
    /// Lines fed (`ESC d n`, `LF`).
    pub fed_lines: u32,
    pub cuts: u32,
}

/// Read ESC/POS commands as a printer would: `ESC @` (initialise), `CAN`
/// (cancel page data), `GS v 0` (raster), `ESC d n` and `LF` (feed),
/// `GS V` (cut). Anything else is an error naming its offset: we send
/// nothing else.
pub fn read(bytes: &[u8]) -> Result<Printed, String> {
    let mut out = Printed::default();
    let mut i = 0;
    let need = |i: usize, n: usize| {
        if i + n <= bytes.len() {
            Ok(())
        } else {
            Err(format!("command at {i} is cut short"))
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            0x1b if bytes.get(i + 1) == Some(&b'@') => {
                out.initialised = true;
                i += 2;
            }
            0x1b if bytes.get(i + 1) == Some(&b'd') => {
                need(i, 3)?;
                out.fed_lines += u32::from(bytes[i + 2]);
                i += 3;
            }
            0x0a => {
                out.fed_lines += 1;
                i += 1;
            }
            0x18 => i += 1,
            0x1d if bytes.get(i + 1) == Some(&b'v') && bytes.get(i + 2) == Some(&b'0') => {
                need(i, 8)?;
                let mode = bytes[i + 3];
                if mode != 0 {
                    return Err(format!("raster at {i} in scaled mode {mode}"));
                }
                let width_bytes = usize::from(u16::from_le_bytes([bytes[i + 4], bytes[i + 5]]));
                let rows = usize::from(u16::from_le_bytes([bytes[i + 6], bytes[i + 7]]));
                let data_len = width_bytes * rows;
                need(i + 8, data_len)?;
                let data = &bytes[i + 8..i + 8 + data_len];
                let width = (width_bytes * 8) as u32;
                let raster = out.raster.get_or_insert(Raster {
                    width,
                    height: 0,
                    pixels: Vec::new(),
                });
                if raster.width != width {
                    return Err(format!(
                        "raster at {i} is {width} dots wide, after {}",
                        raster.width
                    ));
                }
                for row in data.chunks(width_bytes) {
                    for byte in row {
                        for bit in (0..8).rev() {
                            raster
                                .pixels
                                .push(if byte >> bit & 1 == 1 { 0 } else { 255 });
                        }
                    }
                }
                raster.height += rows as u32;
                i += 8 + data_len;
            }
            0x1d if bytes.get(i + 1) == Some(&b'V') => {
                need(i, 3)?;
                out.cuts += 1;
                // Function B (65, 66) carries a feed count.
                i += if matches!(bytes[i + 2], 65 | 66) {
                    4
                } else {
                    3
                };
            }
            other => return Err(format!("unexpected byte {other:#04x} at {i}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_printers_on_the_network_or_files() {
        let cases = [
            (
                "192.168.1.50:9100",
                Target::Network {
                    host: "192.168.1.50".into(),
                    port: 9100,
                },
            ),
            (
                "tcp:printer.local:9100",
                Target::Network {
                    host: "printer.local".into(),
                    port: 9100,
                },
            ),
            ("/dev/usb/lp0", Target::File("/dev/usb/lp0".into())),
            ("receipt.bin", Target::File("receipt.bin".into())),
            ("./a:9100", Target::File("./a:9100".into())),
        ];
        for (s, target) in cases {
            assert_eq!(Target::parse(s).unwrap(), target, "{s}");
        }
        assert!(Target::parse("").is_err());
        assert!(Target::parse("tcp:host:99999").is_err());
    }

    #[test]
    fn what_is_sent_reads_back_as_the_same_raster_fed_and_cut() {
        let mut raster = Raster {
            width: 384,
            height: 300,
            pixels: vec![255; 384 * 300],
        };
        // A diagonal, and a block across a band's edge.
        for y in 0..300u32 {
            raster.pixels[(y * 384 + y) as usize] = 0;
        }
        for y in 120..140u32 {
            for x in 10..30u32 {
                raster.pixels[(y * 384 + x) as usize] = 0;
            }
        }
        let printed = read(&commands(&raster).unwrap()).unwrap();
        assert!(printed.initialised);
        assert_eq!(printed.cuts, 1);
        assert!(printed.fed_lines >= u32::from(FEED_LINES));
        assert_eq!(printed.raster.unwrap(), raster);
        assert!(read(&[0x1d, b'v', b'0', 0, 48]).is_err());
        assert!(read(&[0x07]).is_err());
    }
}
