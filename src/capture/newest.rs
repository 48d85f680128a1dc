//! Newest-frame delivery: a camera keeps producing at its own rate on a thread of its own, and
//! the daemon always gets the most recent frame, never a queue of stale ones.
//!
//! The capture thread keeps the newest frame *undecoded* ([`RawFrame`]): the daemon decodes
//! the one it takes, so a frame replaced by a newer one costs no decoding. Such a frame is
//! counted as dropped; a frame that fails to decode once taken is a bad frame, as before.
//!
//! Without this, a kiosk whose inference is slower than the camera shows and counts frames
//! that are increasingly old: the V4L2 driver fills its buffers in order and hands out the
//! oldest first. Here the capture thread overwrites an unclaimed frame with the next one and
//! counts it as dropped. Errors are not overwritten: each bad frame or camera fault reaches the
//! daemon, so its fault counts stay exact (they may arrive just before a newer frame that came
//! after them in time, which changes no count).

use super::{CaptureError, Frame, FrameSource, RawFrame};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Errors waiting for the daemon beyond this many are counted but not kept; a camera that
/// fails faster than the daemon reads only needs its first faults reported.
const MAX_PENDING_ERRORS: usize = 64;

/// Runs a [`FrameSource`] on its own thread and hands out only its newest frame.
pub struct NewestFrame {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

#[derive(Default)]
struct State {
    /// The newest frame, as the source delivered it (decoded only when taken).
    frame: Option<RawFrame>,
    errors: VecDeque<CaptureError>,
    /// Set once the source has ended; `Some(error)` when it ended with an unrecoverable error.
    ended: Option<Option<CaptureError>>,
    dropped: u64,
    errors_not_kept: u64,
    description: String,
    /// The capture thread has returned.
    finished: bool,
}

/// How long dropping a [`NewestFrame`] waits for its capture thread: a camera read gives up
/// after a few seconds, so a thread still busy after this is stuck in its source.
const STOP_WAIT: Duration = Duration::from_secs(5);

impl NewestFrame {
    /// Starts capturing from `source` at once.
    pub fn start<S: FrameSource + Send + 'static>(mut source: S) -> std::io::Result<NewestFrame> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                description: source.describe(),
                ..State::default()
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let producer = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("capture".to_string())
            .spawn(move || {
                let _finished = Finished(Arc::clone(&producer));
                while !producer.stop.load(Ordering::Relaxed) {
                    let next = source.next_raw();
                    let mut state = producer.lock();
                    state.description = source.describe();
                    let ended = match next {
                        Ok(Some(frame)) => {
                            if state.frame.replace(frame).is_some() {
                                state.dropped += 1;
                            }
                            false
                        }
                        Ok(None) => {
                            state.ended = Some(None);
                            true
                        }
                        Err(e) if e.is_skippable() => {
                            if state.errors.len() < MAX_PENDING_ERRORS {
                                state.errors.push_back(e);
                            } else {
                                state.errors_not_kept += 1;
                            }
                            false
                        }
                        Err(e) => {
                            state.ended = Some(Some(e));
                            true
                        }
                    };
                    drop(state);
                    producer.changed.notify_all();
                    if ended {
                        return;
                    }
                }
            })?;
        Ok(NewestFrame {
            shared,
            thread: Some(thread),
        })
    }

    /// Frames the daemon never saw because a newer one arrived first.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }
}

/// Marks the capture thread finished however it ends, a panic included.
struct Finished(Arc<Shared>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.lock().finished = true;
        self.0.changed.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on the capture thread while it held the lock leaves consistent data (every
        // update is a single assignment), so the poison flag carries no information here.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl FrameSource for NewestFrame {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        // Decoded here, on the caller's thread, outside the lock: only taken frames are.
        match self.next_raw()? {
            Some(raw) => raw.decode().map(Some),
            None => Ok(None),
        }
    }

    fn next_raw(&mut self) -> Result<Option<RawFrame>, CaptureError> {
        let mut state = self.shared.lock();
        loop {
            if let Some(e) = state.errors.pop_front() {
                return Err(e);
            }
            if let Some(frame) = state.frame.take() {
                return Ok(Some(frame));
            }
            match state.ended.take() {
                Some(Some(e)) => {
                    // Later calls see a plain end rather than the same error again.
                    state.ended = Some(None);
                    return Err(e);
                }
                Some(None) => {
                    state.ended = Some(None);
                    return Ok(None);
                }
                None => {}
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn describe(&self) -> String {
        self.shared.lock().description.clone()
    }

    fn dropped_frames(&self) -> u64 {
        let state = self.shared.lock();
        state.dropped + state.errors_not_kept
    }
}

impl Drop for NewestFrame {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // The capture thread notices within one frame; joining it releases the device before
        // the daemon exits. A source stuck beyond any camera timeout is left behind rather
        // than hanging the shutdown.
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, STOP_WAIT, |s| !s.finished)
            .unwrap_or_else(|p| p.into_inner());
        let finished = state.finished;
        drop(state);
        let Some(thread) = self.thread.take() else {
            return;
        };
        if !finished {
            log::warn!(
                "the capture thread did not stop within {} s; leaving it behind",
                STOP_WAIT.as_secs()
            );
        } else if thread.join().is_err() {
            log::error!("the capture thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;
    use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
    use std::time::Instant;

    /// A source whose frames the test hands over one at a time: each send returns once the
    /// capture thread has taken the previous item, which makes the tests deterministic.
    struct Handed {
        items: Receiver<Result<Option<u64>, CaptureError>>,
    }

    impl FrameSource for Handed {
        fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
            match self.items.recv() {
                Ok(item) => item.map(|seq| {
                    seq.map(|seq| Frame {
                        image: RgbImage::new(4, 4),
                        seq,
                        captured: Instant::now(),
                        origin: "handed".to_string(),
                    })
                }),
                // The test dropped its sender: the camera is gone for good.
                Err(_) => Ok(None),
            }
        }

        fn describe(&self) -> String {
            "handed frames".to_string()
        }
    }

    /// The wrapper and the hand that feeds it; bound in this order, the hand is dropped
    /// first at the end of a test, which ends the source and lets the wrapper stop at once.
    fn handed() -> (NewestFrame, SyncSender<Result<Option<u64>, CaptureError>>) {
        let (send, items) = sync_channel(0);
        let newest = NewestFrame::start(Handed { items }).unwrap();
        (newest, send)
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn bad(n: u32) -> CaptureError {
        CaptureError::BadFrame {
            origin: "handed".to_string(),
            reason: format!("bad {n}"),
        }
    }

    #[test]
    fn a_slow_reader_gets_the_newest_frame_and_the_rest_count_as_dropped() {
        let (mut newest, send) = handed();
        for seq in 0..5 {
            send.send(Ok(Some(seq))).unwrap();
        }
        wait_until("four frames dropped", || newest.dropped() == 4);
        assert_eq!(newest.next_frame().unwrap().unwrap().seq, 4);
        send.send(Ok(Some(5))).unwrap();
        assert_eq!(newest.next_frame().unwrap().unwrap().seq, 5);
        assert_eq!(newest.dropped_frames(), 4);
        assert_eq!(newest.describe(), "handed frames");
    }

    /// A camera handing out MJPEG buffers undecoded, as the V4L2 source does.
    struct MjpegCamera {
        items: Receiver<(u64, Vec<u8>)>,
    }

    impl FrameSource for MjpegCamera {
        fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
            match self.next_raw()? {
                Some(raw) => raw.decode().map(Some),
                None => Ok(None),
            }
        }

        fn next_raw(&mut self) -> Result<Option<RawFrame>, CaptureError> {
            Ok(self.items.recv().ok().map(|(seq, bytes)| RawFrame {
                pixels: crate::capture::RawPixels::Buffer {
                    bytes,
                    format: crate::capture::convert::PixelFormat::Mjpeg,
                    width: 16,
                    height: 16,
                },
                seq,
                captured: Instant::now(),
                origin: "/dev/video9".to_string(),
            }))
        }

        fn describe(&self) -> String {
            "mjpeg camera".to_string()
        }
    }

    #[test]
    fn only_the_frame_taken_is_decoded_so_a_replaced_bad_frame_is_dropped_not_bad() {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
            .encode_image(&RgbImage::from_pixel(16, 16, image::Rgb([200, 120, 40])))
            .unwrap();
        let corrupt = b"\xff\xd8 not a jpeg".to_vec();
        let (send, items) = sync_channel(0);
        let mut newest = NewestFrame::start(MjpegCamera { items }).unwrap();
        // A corrupt frame replaced by a good one before the reader takes either: never
        // decoded, so it is a dropped frame, not a bad one.
        send.send((0, corrupt.clone())).unwrap();
        send.send((1, jpeg.clone())).unwrap();
        wait_until("one frame dropped", || newest.dropped() == 1);
        let frame = newest.next_frame().unwrap().unwrap();
        assert_eq!((frame.seq, frame.image.dimensions()), (1, (16, 16)));
        // A corrupt frame that is taken is decoded, and reported as bad, naming the camera.
        send.send((2, corrupt)).unwrap();
        let e = newest.next_frame().unwrap_err();
        assert!(matches!(e, CaptureError::BadFrame { .. }), "{e}");
        assert!(e.to_string().contains("/dev/video9"), "{e}");
        send.send((3, jpeg)).unwrap();
        assert_eq!(newest.next_frame().unwrap().unwrap().seq, 3);
        assert_eq!(newest.dropped_frames(), 1);
        drop(send);
    }

    #[test]
    fn every_fault_reaches_the_reader_even_when_frames_are_dropped() {
        let (mut newest, send) = handed();
        send.send(Ok(Some(0))).unwrap();
        send.send(Err(bad(1))).unwrap();
        send.send(Ok(Some(2))).unwrap();
        send.send(Err(CaptureError::Disconnected {
            origin: "handed".to_string(),
            reason: "unplugged".to_string(),
        }))
        .unwrap();
        send.send(Ok(Some(4))).unwrap();
        wait_until("two frames dropped", || newest.dropped() == 2);
        let first = newest.next_frame().unwrap_err();
        assert!(first.to_string().contains("bad 1"), "{first}");
        let second = newest.next_frame().unwrap_err();
        assert!(
            matches!(second, CaptureError::Disconnected { .. }),
            "{second}"
        );
        assert_eq!(newest.next_frame().unwrap().unwrap().seq, 4);
    }

    #[test]
    fn the_reader_waits_for_a_frame_and_sees_the_end() {
        let (mut newest, send) = handed();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            send.send(Ok(Some(7))).unwrap();
            send.send(Ok(None)).unwrap();
        });
        assert_eq!(newest.next_frame().unwrap().unwrap().seq, 7);
        assert!(newest.next_frame().unwrap().is_none());
        assert!(
            newest.next_frame().unwrap().is_none(),
            "the end stays the end"
        );
        sender.join().unwrap();
    }

    #[test]
    fn an_unrecoverable_error_ends_the_source_after_the_last_frame() {
        let (mut newest, send) = handed();
        send.send(Ok(Some(0))).unwrap();
        send.send(Err(CaptureError::Unavailable {
            origin: "/dev/video0".to_string(),
            reason: "permission denied".to_string(),
        }))
        .unwrap();
        assert_eq!(newest.next_frame().unwrap().unwrap().seq, 0);
        let e = newest.next_frame().unwrap_err();
        assert!(e.to_string().contains("permission denied"), "{e}");
        assert!(newest.next_frame().unwrap().is_none());
    }

    #[test]
    fn a_flood_of_faults_is_capped_and_counted() {
        let (mut newest, send) = handed();
        let total = MAX_PENDING_ERRORS as u32 + 10;
        for n in 0..total {
            send.send(Err(bad(n))).unwrap();
        }
        wait_until("the overflow counted", || newest.dropped_frames() == 10);
        for n in 0..MAX_PENDING_ERRORS as u32 {
            let e = newest.next_frame().unwrap_err();
            assert!(e.to_string().ends_with(&format!("bad {n}")), "{e}");
        }
        drop(send);
        assert!(newest.next_frame().unwrap().is_none());
    }

    /// A camera that always has another frame ready.
    struct Endless(u64);

    impl FrameSource for Endless {
        fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
            std::thread::sleep(Duration::from_millis(1));
            self.0 += 1;
            Ok(Some(Frame {
                image: RgbImage::new(4, 4),
                seq: self.0,
                captured: Instant::now(),
                origin: "endless".to_string(),
            }))
        }

        fn describe(&self) -> String {
            "endless".to_string()
        }
    }

    #[test]
    fn dropping_it_stops_the_capture_thread() {
        let mut newest = NewestFrame::start(Endless(0)).unwrap();
        let first = newest.next_frame().unwrap().unwrap().seq;
        let later = newest.next_frame().unwrap().unwrap().seq;
        assert!(later > first);
        // Returns only once the capture thread has seen the stop flag and ended.
        let started = Instant::now();
        drop(newest);
        assert!(started.elapsed() < STOP_WAIT);
    }

    /// A camera that hangs inside its read until released.
    struct Stuck {
        entered: Arc<AtomicBool>,
        release: Receiver<()>,
    }

    impl FrameSource for Stuck {
        fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
            self.entered.store(true, Ordering::SeqCst);
            let _ = self.release.recv();
            Ok(None)
        }

        fn describe(&self) -> String {
            "stuck".to_string()
        }
    }

    #[test]
    fn a_source_stuck_forever_does_not_hang_the_shutdown() {
        let entered = Arc::new(AtomicBool::new(false));
        let (release, waiting) = sync_channel(0);
        let newest = NewestFrame::start(Stuck {
            entered: Arc::clone(&entered),
            release: waiting,
        })
        .unwrap();
        wait_until("the read to start", || entered.load(Ordering::SeqCst));
        let started = Instant::now();
        drop(newest);
        let waited = started.elapsed();
        assert!(waited >= STOP_WAIT && waited < STOP_WAIT * 3, "{waited:?}");
        // Let the abandoned thread end.
        drop(release);
    }
}
