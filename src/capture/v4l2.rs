//! The V4L2 camera (feature `device`): mmap streaming through the `v4l` crate, with format
//! negotiation and recovery from unplugging.
//!
//! Pixel conversion lives in [`super::convert`], so tests exercise the same decoding on any
//! machine; this file is only the thin part that needs a real `/dev/videoN`.

pub use super::convert::PixelFormat;
use super::{CaptureError, Frame, FrameSource, RawFrame, RawPixels};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

/// Pixel formats we can turn into RGB, most preferred first: MJPEG moves the least data over
/// USB; YUYV is what nearly every camera offers uncompressed.
const PREFERRED: [(&[u8; 4], PixelFormat); 4] = [
    (b"MJPG", PixelFormat::Mjpeg),
    (b"YUYV", PixelFormat::Yuyv),
    (b"RGB3", PixelFormat::Rgb3),
    (b"GREY", PixelFormat::Grey),
];

/// What the configuration asks of the camera.
#[derive(Debug, Clone)]
pub struct CameraRequest {
    pub device: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

struct OpenCamera {
    // The stream keeps its own handle to the device; the device is kept for clarity of ownership.
    _device: Device,
    stream: Stream<'static>,
    format: PixelFormat,
    width: u32,
    height: u32,
}

/// A V4L2 camera that reopens itself after it is unplugged, backing off up to 8 s between tries.
pub struct V4l2Camera {
    request: CameraRequest,
    open: Option<OpenCamera>,
    seq: u64,
    backoff: Duration,
    retry_at: Instant,
}

const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// A frame not delivered within this time counts as a stall.
const FRAME_TIMEOUT: Duration = Duration::from_secs(3);

impl V4l2Camera {
    /// Opens the camera once, so a wrong path or missing permission is reported at start.
    pub fn open(request: CameraRequest) -> Result<V4l2Camera, CaptureError> {
        let open = open_camera(&request)?;
        log::info!(
            "camera {}: {}x{} {:?}",
            request.device.display(),
            open.width,
            open.height,
            open.format
        );
        Ok(V4l2Camera {
            request,
            open: Some(open),
            seq: 0,
            backoff: Duration::from_millis(250),
            retry_at: Instant::now(),
        })
    }

    fn origin(&self) -> String {
        self.request.device.display().to_string()
    }

    /// Drops the stream after a device error and schedules a reopen.
    fn lose(&mut self, reason: String) -> CaptureError {
        self.open = None;
        self.retry_at = Instant::now() + self.backoff;
        CaptureError::Disconnected {
            origin: self.origin(),
            reason,
        }
    }
}

impl FrameSource for V4l2Camera {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        match self.next_raw()? {
            Some(raw) => raw.decode().map(Some),
            None => Ok(None),
        }
    }

    /// The driver's buffer, copied out (the mmap buffer goes back to the driver) and not
    /// decoded: [`NewestFrame`](super::NewestFrame) decodes only the frames the daemon takes.
    fn next_raw(&mut self) -> Result<Option<RawFrame>, CaptureError> {
        if self.open.is_none() {
            let wait = self.retry_at.saturating_duration_since(Instant::now());
            std::thread::sleep(wait);
            match open_camera(&self.request) {
                Ok(open) => {
                    log::info!("camera {} is back", self.origin());
                    self.open = Some(open);
                    self.backoff = Duration::from_millis(250);
                }
                Err(e) => {
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    self.retry_at = Instant::now() + self.backoff;
                    return Err(CaptureError::Disconnected {
                        origin: self.origin(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        let Some(open) = self.open.as_mut() else {
            unreachable!("opened above")
        };
        let (format, width, height) = (open.format, open.width, open.height);
        let captured = Instant::now();
        let (buf, meta) = match open.stream.next() {
            Ok(next) => next,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                let reason = format!("no frame for {} s (stalled)", FRAME_TIMEOUT.as_secs());
                return Err(self.lose(reason));
            }
            Err(e) => return Err(self.lose(format!("{e}; waiting for it to come back"))),
        };
        let used = (meta.bytesused as usize).min(buf.len());
        let frame = RawFrame {
            pixels: RawPixels::Buffer {
                bytes: buf[..used].to_vec(),
                format,
                width,
                height,
            },
            seq: self.seq,
            captured,
            origin: self.origin(),
        };
        self.seq += 1;
        Ok(Some(frame))
    }

    fn describe(&self) -> String {
        match &self.open {
            Some(o) => format!(
                "camera {} ({}x{} {:?})",
                self.origin(),
                o.width,
                o.height,
                o.format
            ),
            None => format!("camera {} (reconnecting)", self.origin()),
        }
    }
}

fn open_camera(request: &CameraRequest) -> Result<OpenCamera, CaptureError> {
    let path = &request.device;
    let unavailable = |reason: String| CaptureError::Unavailable {
        origin: path.display().to_string(),
        reason,
    };
    let device = Device::with_path(path).map_err(|e| unavailable(explain_open_error(path, &e)))?;
    let offered = device.enum_formats().map_err(|e| {
        unavailable(format!(
            "cannot list its pixel formats ({e}); is it a capture device?"
        ))
    })?;
    let offered: Vec<FourCC> = offered.iter().map(|d| d.fourcc).collect();
    let supports_size = |fourcc: FourCC| {
        device.enum_framesizes(fourcc).is_ok_and(|sizes| {
            sizes.into_iter().any(|s| {
                s.size
                    .to_discrete()
                    .into_iter()
                    .any(|d| d.width == request.width && d.height == request.height)
            })
        })
    };
    // MJPEG only when it is offered at the requested size; otherwise the first we can convert.
    let (fourcc, pixel) = PREFERRED
        .iter()
        .map(|(code, pixel)| (FourCC::new(code), *pixel))
        .filter(|(fourcc, _)| offered.contains(fourcc))
        .find(|(fourcc, pixel)| *pixel != PixelFormat::Mjpeg || supports_size(*fourcc))
        .ok_or_else(|| {
            let names: Vec<String> = offered.iter().map(|f| f.to_string()).collect();
            unavailable(format!(
                "offers none of MJPG, YUYV, RGB3, GREY (it offers {})",
                names.join(", ")
            ))
        })?;
    let mut format = device
        .format()
        .map_err(|e| unavailable(format!("cannot read its format ({e})")))?;
    format.width = request.width;
    format.height = request.height;
    format.fourcc = fourcc;
    let format = device
        .set_format(&format)
        .map_err(|e| unavailable(explain_open_error(path, &e)))?;
    if format.fourcc != fourcc {
        return Err(unavailable(format!(
            "asked for {fourcc}, the driver chose {}",
            format.fourcc
        )));
    }
    if let Err(e) = device.set_params(&v4l::video::capture::Parameters::with_fps(request.fps)) {
        log::warn!(
            "camera {}: cannot set {} fps ({e}); using its default",
            path.display(),
            request.fps
        );
    }
    let mut stream = Stream::with_buffers(&device, Type::VideoCapture, 4)
        .map_err(|e| unavailable(explain_open_error(path, &e)))?;
    stream.set_timeout(FRAME_TIMEOUT);
    Ok(OpenCamera {
        _device: device,
        stream,
        format: pixel,
        width: format.width,
        height: format.height,
    })
}

/// Turns an errno from opening or starting the camera into advice.
fn explain_open_error(path: &Path, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(2) => {
            "no such device; is the camera plugged in? (see `ls /dev/video*`, camera.device)".into()
        }
        Some(13) => "permission denied; run agecam as a user in the `video` group".into(),
        Some(16) => match process_holding(path) {
            Some(holder) => {
                format!("device busy: {holder} has it open; stop it or pick another camera")
            }
            None => "device busy: another program is using the camera".into(),
        },
        Some(19) | Some(5) => format!("{e}; the camera was unplugged or failed"),
        _ => e.to_string(),
    }
}

/// `name (pid N)` of a process with `path` open, found through /proc (only those we may see).
fn process_holding(path: &Path) -> Option<String> {
    let target = std::fs::canonicalize(path).ok()?;
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = proc_entry.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
        {
            let name = std::fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
            return Some(format!("{} (pid {pid})", name.trim()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_is_unavailable_with_advice() {
        let request = CameraRequest {
            device: "/dev/video-agecam-test-none".into(),
            width: 640,
            height: 480,
            fps: 30,
        };
        let err = V4l2Camera::open(request).err().unwrap().to_string();
        assert!(
            err.contains("/dev/video-agecam-test-none") && err.contains("plugged in"),
            "{err}"
        );
    }
}
