//! Running the user-table parts of an apply or a feed read as another role, so that
//! the database's privileges and row-level security policies decide, exactly as for
//! that role's own statements. The sync metadata (clocks, sites, settings) is always
//! read and written as the calling role: the impersonated role needs privileges on
//! the user's tables only.
//!
//! The switch is `set_config('role', …, true)` (`SET LOCAL ROLE`): PostgreSQL checks
//! that the calling role may become the target (membership), so nothing is gained by
//! naming a role one could not `SET ROLE` to. It is transaction-local, and restored to
//! what it was when the switch was created.
//!
//! It runs as a plain SPI query: it modifies no data, so it does not ask pgrx to give
//! the transaction an id.

use pgrx::spi::SpiClient;

use crate::error::Result;
use crate::sql::query_opt;

fn set_role(c: &SpiClient<'_>, role: &str) -> Result<()> {
    query_opt(c, "SELECT pg_catalog.set_config('role', $1, true)", &[role.into()], |_| Ok(()))?;
    Ok(())
}

/// Switches between the calling role and a target role.
pub struct RoleSwitch {
    target: Option<String>,
    saved: String,
    active: bool,
}

impl RoleSwitch {
    /// A switch to `target` (no-op when None). Reads the current `role` setting.
    pub fn new(c: &SpiClient<'_>, target: Option<&str>) -> Result<Self> {
        let saved = match target {
            Some(_) => query_opt(c, "SELECT pg_catalog.current_setting('role')", &[], |r| {
                Ok(r.get::<String>(1)?.unwrap_or_else(|| "none".into()))
            })?
            .unwrap_or_else(|| "none".into()),
            None => "none".into(),
        };
        Ok(RoleSwitch { target: target.map(str::to_string), saved, active: false })
    }

    /// The role user-table statements run as, if any.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// Become the target role (until [`RoleSwitch::caller`]).
    pub fn user(&mut self, c: &mut SpiClient<'_>) -> Result<()> {
        if let (Some(t), false) = (&self.target, self.active) {
            set_role(c, t)?;
            self.active = true;
        }
        Ok(())
    }

    /// Back to the calling role.
    pub fn caller(&mut self, c: &mut SpiClient<'_>) -> Result<()> {
        if self.active {
            set_role(c, &self.saved)?;
            self.active = false;
        }
        Ok(())
    }
}
