//! Bodies too large to hold whole. At 100,000 users a run's JSON report is 20 MB and its text log 13 MB; made whole
//! before upload they set the run's peak memory. Instead the caller hands the store a [`WriteBody`] that writes the
//! body out, and the store takes it as it is written: the directory store writes it straight into the file, the
//! Azure store takes it in parts of [`PART_SIZE`] (one Put Block each, then Put Block List), so only a few parts are
//! in memory at any time.

use std::{io, sync::Arc};

use tokio::{sync::mpsc, task::JoinHandle};

/// Writes a whole body to the writer it is given. Called once per upload attempt, so a retry writes it afresh.
pub type WriteBody = Arc<dyn Fn(&mut dyn io::Write) -> io::Result<()> + Send + Sync>;

/// Size of the parts a written body is cut into. Azure accepts blocks of up to 4,000 MiB and 50,000 blocks per blob
/// ("Put Block"); 1 MiB keeps three parts (being written, queued, being sent) at 3 MiB and a 20 MB report at 20 blocks.
pub(super) const PART_SIZE: usize = 1 << 20;

enum Message {
    Part(Vec<u8>),
    End,
    Failed(io::Error),
}

/// A body being written on a blocking thread, received here part by part.
pub(super) struct BodyParts {
    messages: mpsc::Receiver<Message>,
    writer: JoinHandle<()>,
    ended: bool,
}

impl BodyParts {
    /// Starts writing the body on a blocking thread (serializing 20 MB takes long enough to stall other tasks).
    pub(super) fn spawn(write: WriteBody, part_size: usize) -> Self {
        // One part queued while the next is written: the writer never runs further ahead than that.
        let (sender, messages) = mpsc::channel(1);
        let writer = tokio::task::spawn_blocking(move || {
            let mut parts = PartWriter { part: Vec::new(), part_size, sender: &sender };
            let last = match write(&mut parts).and_then(|()| parts.send_part()) {
                Ok(()) => Message::End,
                Err(error) => Message::Failed(error),
            };
            // The receiver may be gone (the upload failed); then nobody needs to know.
            let _ = sender.blocking_send(last);
        });
        BodyParts { messages, writer, ended: false }
    }

    /// The next part; `None` once the whole body has been received. An error when the writer failed or stopped before
    /// the end: the caller must then not commit what it received, a truncated report is worse than none.
    pub(super) async fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.ended {
            return Ok(None);
        }
        match self.messages.recv().await {
            Some(Message::Part(part)) => Ok(Some(part)),
            Some(Message::End) => {
                self.ended = true;
                Ok(None)
            }
            Some(Message::Failed(error)) => Err(error),
            None => Err(io::Error::other("the body's writer stopped before the end of the body")),
        }
    }

    /// Stops the writer if it is still running and waits for it, so that whatever it holds is released on return.
    pub(super) async fn finish(self) {
        let BodyParts { mut messages, writer, .. } = self;
        // Closing makes the writer's next send fail, which ends its write with an error.
        messages.close();
        drop(messages);
        let _ = writer.await;
    }
}

/// Cuts what is written into parts of `part_size` bytes and sends each full part.
struct PartWriter<'a> {
    part: Vec<u8>,
    part_size: usize,
    sender: &'a mpsc::Sender<Message>,
}

impl PartWriter<'_> {
    fn send_part(&mut self) -> io::Result<()> {
        if self.part.is_empty() {
            return Ok(());
        }
        let part = std::mem::take(&mut self.part);
        self.sender
            .blocking_send(Message::Part(part))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped taking the body"))
    }
}

impl io::Write for PartWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.part.capacity() == 0 {
            self.part.reserve_exact(self.part_size);
        }
        let taken = bytes.len().min(self.part_size - self.part.len());
        self.part.extend_from_slice(&bytes[..taken]);
        if self.part.len() == self.part_size {
            self.send_part()?;
        }
        Ok(taken)
    }

    /// Parts are sent when full or at the end; a flush does not cut one short (blocks would multiply).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn received(write: WriteBody, part_size: usize) -> (Vec<Vec<u8>>, io::Result<()>) {
        let mut parts = BodyParts::spawn(write, part_size);
        let mut received = vec![];
        let outcome = loop {
            match parts.next().await {
                Ok(Some(part)) => received.push(part),
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        parts.finish().await;
        (received, outcome)
    }

    #[tokio::test]
    async fn a_body_arrives_whole_in_parts_of_the_given_size() {
        let body: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let expected = body.clone();
        let (parts, outcome) = received(Arc::new(move |out| out.write_all(&body)), 1000).await;
        outcome.expect("complete");
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [1000, 1000, 500]);
        assert_eq!(parts.concat(), expected);
    }

    #[tokio::test]
    async fn an_empty_body_has_no_parts_and_stays_ended() {
        let mut parts = BodyParts::spawn(Arc::new(|_| Ok(())), 1000);
        assert!(parts.next().await.expect("complete").is_none());
        assert!(parts.next().await.expect("still complete").is_none(), "asking again is not an error");
        parts.finish().await;
    }

    #[tokio::test]
    async fn a_failing_writer_is_reported_after_the_parts_it_sent() {
        let write: WriteBody = Arc::new(|out| {
            out.write_all(&[7; 1500])?;
            Err(io::Error::other("report could not be serialized"))
        });
        let (parts, outcome) = received(write, 1000).await;
        assert_eq!(parts.len(), 1, "the full part was sent, the half part never");
        assert_eq!(outcome.unwrap_err().to_string(), "report could not be serialized");
    }

    #[tokio::test]
    async fn a_panicking_writer_is_an_error_not_the_end_of_the_body() {
        let write: WriteBody = Arc::new(|out| {
            out.write_all(&[7; 10])?;
            panic!("writer bug");
        });
        let (_, outcome) = received(write, 1000).await;
        assert!(outcome.unwrap_err().to_string().contains("stopped before the end"));
    }

    #[tokio::test]
    async fn finishing_early_stops_the_writer_and_releases_what_it_holds() {
        let held = Arc::new(());
        let in_writer = held.clone();
        let write: WriteBody = Arc::new(move |out| {
            let _held = &in_writer;
            loop {
                out.write_all(&[1; 100])?;
            }
        });
        let mut parts = BodyParts::spawn(write, 1000);
        assert!(parts.next().await.expect("a part").is_some());
        parts.finish().await;
        // The writer thread owned the only other reference (in its closure); it has returned and dropped it.
        assert_eq!(Arc::strong_count(&held), 1, "the writer's closure was dropped when the writer stopped");
    }
}
