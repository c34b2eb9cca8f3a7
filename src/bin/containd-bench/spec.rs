//! What each signal of the workload makes containd produce: per signal, its output records
//! (topic, payload size, command or decision). Computed once by containd's own processor;
//! the copier replays it, the watcher knows from it when a system is done.
//!
//! Stored compactly (1.75 M signals ≈ 40 MB) and handed to the copier process as a file.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::Path;

/// One output record of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Out {
    /// Index into [`Spec::topics`]: 0 is the decisions topic, then one per target.
    pub topic: u8,
    /// Commands carry a 32-byte `containd.command_id` header.
    pub command: bool,
    pub len: u32,
}

#[derive(Debug, Default)]
pub struct Spec {
    pub topics: Vec<String>,
    /// `starts[i]..starts[i + 1]` are signal `i`'s entries in `outs`.
    starts: Vec<u32>,
    outs: Vec<Out>,
}

const MAGIC: &[u8; 8] = b"cdbspec1";

impl Spec {
    pub fn new(topics: Vec<String>) -> Self {
        Self {
            topics,
            starts: vec![0],
            outs: Vec::new(),
        }
    }

    /// Appends signal `i`'s outputs; signals arrive in index order.
    pub fn push(&mut self, i: u64, outs: &[Out]) {
        debug_assert_eq!(i as usize + 1, self.starts.len());
        self.outs.extend_from_slice(outs);
        self.starts.push(self.outs.len() as u32);
    }

    pub fn outputs(&self, i: usize) -> &[Out] {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(a), Some(b)) => &self.outs[*a as usize..*b as usize],
            _ => &[],
        }
    }

    /// Records per output topic that signals `range` cause.
    pub fn totals(&self, range: std::ops::Range<usize>) -> Vec<u64> {
        let mut t = vec![0u64; self.topics.len()];
        for i in range {
            for o in self.outputs(i) {
                t[o.topic as usize] += 1;
            }
        }
        t
    }

    /// Writes the spec with topic names replaced by `topics` (the copier's own).
    pub fn write(&self, path: &Path, topics: &[String]) -> Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        w.write_all(MAGIC)?;
        w.write_all(&(topics.len() as u32).to_le_bytes())?;
        for t in topics {
            w.write_all(&(t.len() as u32).to_le_bytes())?;
            w.write_all(t.as_bytes())?;
        }
        w.write_all(&(self.starts.len() as u32).to_le_bytes())?;
        for s in &self.starts {
            w.write_all(&s.to_le_bytes())?;
        }
        w.write_all(&(self.outs.len() as u32).to_le_bytes())?;
        for o in &self.outs {
            w.write_all(&[o.topic, u8::from(o.command)])?;
            w.write_all(&o.len.to_le_bytes())?;
        }
        w.flush()?;
        Ok(())
    }

    pub fn read(path: &Path) -> Result<Self> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| path.display().to_string())?;
        let mut r = Reader(&bytes);
        if r.take(8)? != MAGIC {
            bail!("{}: not a containd-bench spec", path.display());
        }
        let n = r.u32()?;
        let mut topics = Vec::new();
        for _ in 0..n {
            let len = r.u32()? as usize;
            topics.push(String::from_utf8(r.take(len)?.to_vec())?);
        }
        let n = r.u32()? as usize;
        let starts = (0..n).map(|_| r.u32()).collect::<Result<Vec<_>>>()?;
        let n = r.u32()? as usize;
        let mut outs = Vec::with_capacity(n);
        for _ in 0..n {
            let b = r.take(2)?;
            let (topic, command) = (b[0], b[1] != 0);
            outs.push(Out {
                topic,
                command,
                len: r.u32()?,
            });
        }
        Ok(Self {
            topics,
            starts,
            outs,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            bail!("spec file truncated");
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_file() {
        let mut s = Spec::new(vec!["d".into(), "c".into()]);
        let a = Out {
            topic: 1,
            command: true,
            len: 300,
        };
        let b = Out {
            topic: 0,
            command: false,
            len: 700,
        };
        s.push(0, &[a, b]);
        s.push(1, &[b]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec");
        s.write(&path, &["x".into(), "y".into()]).unwrap();
        let r = Spec::read(&path).unwrap();
        assert_eq!(r.topics, vec!["x".to_string(), "y".into()]);
        assert_eq!(r.outputs(0), &[a, b]);
        assert_eq!(r.outputs(1), &[b]);
        assert_eq!(r.outputs(2), &[] as &[Out]);
        assert_eq!(r.totals(0..2), vec![2, 1]);
    }
}
