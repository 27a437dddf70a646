//! A database's synced tables, as the control plane reports them: what provisioning
//! created and what a database holds. The same for every backend.

use serde::{Deserialize, Serialize};

/// A table created by provisioning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Provisioned {
    /// Table name.
    pub table: String,
    /// Its algorithm.
    pub algo: String,
}

/// What provisioning did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Provisioning {
    /// The statements run in the database, in order, as the database received them.
    pub statements: Vec<String>,
    /// The tables created, with the algorithm sync was enabled with.
    pub tables: Vec<Provisioned>,
    /// What was done otherwise than the SQL says, each with why: a temporary table or
    /// an index on one left out, an index renamed, a reference SQLite cannot enforce
    /// either left out, a table without a primary key created but not synced.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The database's schema version after the call (unchanged by a dry run or when
    /// nothing changed; 0 from the extension, which keeps none).
    #[serde(default)]
    pub schema_version: i64,
}

/// A synced table of a database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableInfo {
    /// Table name.
    pub table: String,
    /// Sync algorithm.
    pub algo: String,
    /// Whether writes are tracked.
    pub enabled: bool,
    /// Primary-key columns, in key order.
    pub key: Vec<String>,
    /// Synced non-key columns.
    pub columns: Vec<String>,
    /// Rows in the table.
    pub rows: i64,
}

/// The synced tables of a database (`GET …/tables`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tables {
    /// The tables, by name.
    pub tables: Vec<TableInfo>,
}
