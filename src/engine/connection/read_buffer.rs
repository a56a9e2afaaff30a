//! [`ReadBuffer`]: the reader's one buffer. The socket's bytes land where the frames are read
//! (a scratch buffer copied into a second one cost a copy of every byte received: ~2 % of a
//! core sending single messages).
//!
//! ```text
//!  [ consumed | pending (received, not yet taken) | room (the next read goes here) ]
//!             ^start                              ^end                            ^len
//! ```
//!
//! The reader takes every whole frame before it reads again, so what is pending at a read is
//! part of one frame: moving it to the front to make room copies less than a frame. A frame
//! larger than the buffer grows it to that frame's size (at most `max_frame_bytes`, which the
//! frame check enforces first); once the frame pending fits the base size again, it shrinks
//! back.

/// Received bytes and the room for the next read, in one initialised allocation.
pub(super) struct ReadBuffer {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
    /// The size it is made with and shrinks back to.
    base: usize,
}

impl ReadBuffer {
    /// A buffer of `base` bytes (at least one).
    pub(super) fn new(base: usize) -> Self {
        let base = base.max(1);
        ReadBuffer {
            bytes: vec![0; base],
            start: 0,
            end: 0,
            base,
        }
    }

    /// The bytes received and not taken yet.
    #[inline]
    pub(super) fn pending(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Takes the first `n` pending bytes (no more than are pending).
    #[inline]
    pub(super) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room for the next read, for a pending frame of `frame_size` bytes in all (`None`: its
    /// size is not known yet, before the first read): the pending bytes move to the front when
    /// the room left is below half the base size, and the buffer grows to the frame's size when
    /// the frame would not fit. A buffer that grew goes back to its base size once the pending
    /// frame fits that again.
    pub(super) fn room(&mut self, frame_size: Option<usize>) -> &mut [u8] {
        let pending = self.end - self.start;
        if self.bytes.len() > self.base && frame_size.unwrap_or(0).max(pending + 1) <= self.base {
            let mut smaller = vec![0; self.base];
            smaller[..pending].copy_from_slice(&self.bytes[self.start..self.end]);
            self.bytes = smaller;
            self.start = 0;
            self.end = pending;
        }
        if self.start > 0 && self.bytes.len() - self.end < self.base / 2 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let wanted = frame_size.unwrap_or(0).max(self.end - self.start + 1);
        if self.start + wanted > self.bytes.len() {
            if self.start > 0 {
                self.bytes.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if wanted > self.bytes.len() {
                // Exactly the frame's size: growth by doubling could hold twice the largest
                // frame allowed.
                self.bytes.reserve_exact(wanted - self.bytes.len());
                self.bytes.resize(wanted, 0);
            }
        }
        &mut self.bytes[self.end..]
    }

    /// Counts `n` bytes just read into [`ReadBuffer::room`] as pending.
    #[inline]
    pub(super) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.bytes.len());
    }

    /// Bytes it holds in all (pending, taken and room).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `data` into `buffer` as a socket would, at most `chunk` bytes at a time.
    fn receive(buffer: &mut ReadBuffer, data: &[u8], chunk: usize, frame_size: Option<usize>) {
        let room = buffer.room(frame_size);
        let n = data.len().min(chunk).min(room.len());
        assert!(n > 0 || data.is_empty(), "no room for the next read");
        room[..n].copy_from_slice(&data[..n]);
        buffer.filled(n);
        if n < data.len() {
            receive(buffer, &data[n..], chunk, frame_size);
        }
    }

    #[test]
    fn frames_split_across_reads_come_out_whole_and_in_order() {
        // Frames of 1..=40 bytes, each byte its frame's number, read 7 bytes at a time into a
        // buffer of 16: every frame is taken as soon as it is whole.
        let frames: Vec<Vec<u8>> = (1..=40u8).map(|n| vec![n; n as usize]).collect();
        let stream: Vec<u8> = frames.concat();
        let mut buffer = ReadBuffer::new(16);
        let mut taken = Vec::new();
        let mut next = 0;
        let mut at = 0;
        while next < frames.len() {
            let size = frames[next].len();
            let n = 7.min(stream.len() - at);
            receive(&mut buffer, &stream[at..at + n], 7, Some(size));
            at += n;
            while next < frames.len() && buffer.pending().len() >= frames[next].len() {
                let size = frames[next].len();
                taken.push(buffer.pending()[..size].to_vec());
                buffer.consume(size);
                next += 1;
            }
        }
        assert_eq!(taken, frames);
        assert!(buffer.pending().is_empty());
    }

    #[test]
    fn a_frame_larger_than_the_buffer_grows_it_and_it_shrinks_back_once_a_frame_fits() {
        let mut buffer = ReadBuffer::new(64);
        // A partial small frame first, so the big one does not start at the front.
        receive(&mut buffer, &[1; 10], 64, Some(10));
        buffer.consume(10);
        receive(&mut buffer, &[9; 3], 64, None);
        let big = vec![7u8; 1000];
        let mut whole = vec![9u8; 3];
        whole.extend_from_slice(&big);
        receive(&mut buffer, &big, 100, Some(whole.len()));
        assert_eq!(buffer.pending(), &whole[..]);
        assert!(buffer.capacity() >= whole.len());
        buffer.consume(whole.len());
        // Part of a frame still larger than the base size keeps it grown...
        receive(&mut buffer, &[5; 40], 64, Some(150));
        assert!(buffer.capacity() >= 150);
        // ...and once the frame pending fits the base size, it shrinks back with what is
        // pending (not only once empty).
        let _ = buffer.room(Some(50));
        assert_eq!(buffer.capacity(), 64, "shrank back to its base size");
        assert_eq!(buffer.pending(), &[5; 40], "keeping what was pending");
        buffer.consume(40);
        let _ = buffer.room(None);
        assert_eq!(buffer.capacity(), 64);
    }

    #[test]
    fn room_is_never_empty_and_consuming_too_much_takes_only_what_is_pending() {
        let mut buffer = ReadBuffer::new(8);
        receive(&mut buffer, &[1; 8], 8, None);
        // Full, size unknown: the room still holds at least one byte.
        assert!(!buffer.room(None).is_empty());
        buffer.consume(3);
        assert_eq!(buffer.pending(), &[1; 5]);
        buffer.consume(100);
        assert!(buffer.pending().is_empty());
        assert_eq!(buffer.room(Some(4)).len(), 8);
    }
}
