//! Table algorithms: how rows come and go.

use std::fmt;
use std::str::FromStr;

/// The replication algorithm of a table. All share per-column last-writer-wins; they
/// differ in how inserts, updates and deletes of whole rows interact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Algo {
    /// Causal-length set (default): a delete beats updates it has not seen; a re-insert
    /// after a delete starts a new life of the row and beats that delete.
    #[default]
    Cls,
    /// Grow-only set: rows are only ever inserted. Local UPDATE and DELETE are refused.
    Gos,
    /// Add-wins: an update made concurrently with a delete of the same life brings the
    /// row back (the update starts a new life carrying the whole row).
    Aws,
    /// Delete-wins: deletes are final. A deleted key can never be inserted again, locally
    /// or by a merge.
    Dws,
}

impl Algo {
    /// The lowercase name used in SQL and in settings.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Cls => "cls",
            Algo::Gos => "gos",
            Algo::Aws => "aws",
            Algo::Dws => "dws",
        }
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The text of an unknown algorithm name.
#[derive(Debug, thiserror::Error)]
#[error("unknown table algorithm '{0}' (expected one of: cls, gos, aws, dws)")]
pub struct UnknownAlgo(pub String);

impl FromStr for Algo {
    type Err = UnknownAlgo;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cls" | "" => Ok(Algo::Cls),
            "gos" => Ok(Algo::Gos),
            "aws" => Ok(Algo::Aws),
            "dws" => Ok(Algo::Dws),
            _ => Err(UnknownAlgo(s.to_string())),
        }
    }
}
