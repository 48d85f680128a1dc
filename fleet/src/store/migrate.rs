//! The one migration runner of both stores. Each schema version is a pair of files in
//! fleet/migrations/ — `postgres/NNNN_name.sql` and `sqlite/NNNN_name.sql`, the same tables in
//! each database's types — applied in order, each at most once (recorded in
//! `schema_migrations`), all inside the one transaction the store opened and locked (an
//! advisory lock in PostgreSQL, an immediate transaction in SQLite), so two collectors starting
//! together do not race and a failed migration leaves nothing half-done.

/// One schema version, in both dialects.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

/// `migration!(1, "0001_init")`: both files of a version, so neither can be forgotten.
macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            postgres: include_str!(concat!("../../migrations/postgres/", $name, ".sql")),
            sqlite: include_str!(concat!("../../migrations/sqlite/", $name, ".sql")),
        }
    };
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[migration!(1, "0001_init"), migration!(2, "0002_attention")];

/// What the runner needs of a store's open, locked transaction.
pub trait MigrationTx {
    type Error;
    /// The `schema_migrations` table, created when missing.
    const BOOKKEEPING: &'static str;
    /// This database's SQL of `m`.
    fn sql(m: &Migration) -> &'static str;
    /// Runs statements separated by `;`.
    fn batch(&mut self, sql: &str) -> Result<(), Self::Error>;
    /// Whether `version` is in `schema_migrations`.
    fn applied(&mut self, version: i64) -> Result<bool, Self::Error>;
    /// Records `m` in `schema_migrations`.
    fn record(&mut self, m: &Migration, applied_at: i64) -> Result<(), Self::Error>;
}

/// Applies each migration not yet recorded, in order; the caller commits. Returns how many
/// were applied.
pub fn apply<T: MigrationTx>(tx: &mut T) -> Result<usize, T::Error> {
    tx.batch(T::BOOKKEEPING)?;
    let mut applied = 0;
    for m in MIGRATIONS {
        if !tx.applied(m.version)? {
            tx.batch(T::sql(m))?;
            tx.record(m, crate::clock::now())?;
            log::info!("database: applied migration {} {}", m.version, m.name);
            applied += 1;
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_and_each_has_both_dialects() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
            assert!(!m.postgres.trim().is_empty() && !m.sqlite.trim().is_empty());
        }
    }
}
