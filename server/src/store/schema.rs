//! Opening the database file: refuse foreign or corrupt files, set pragmas, run migrations.

use super::lifecycle::{self, OnDisk};
use super::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// Marks the file as ours (`PRAGMA application_id`): "CDS1".
pub const APPLICATION_ID: i32 = 0x4344_5331;

/// Migrations, applied in order. `PRAGMA user_version` records how many ran. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE accounts (
        id            INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, even after a deletion
        first_name    TEXT NOT NULL,
        last_name     TEXT NOT NULL,
        email         TEXT NOT NULL,
        email_key     TEXT NOT NULL UNIQUE,          -- lower-cased email: unique case-insensitively
        password_hash TEXT NOT NULL,                 -- argon2id PHC string
        card_brand    TEXT,                          -- only brand, last four and expiry are kept
        card_last4    TEXT CHECK (card_last4 IS NULL OR length(card_last4) = 4),
        card_exp_month INTEGER,
        card_exp_year INTEGER,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_hash    BLOB PRIMARY KEY,              -- sha256 of the token; the token itself is never stored
        account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        expires_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_account ON sessions(account_id);
    CREATE TABLE manufacturers (
        id        INTEGER PRIMARY KEY,
        name      TEXT NOT NULL UNIQUE,
        acked_seq INTEGER NOT NULL DEFAULT 0 CHECK (acked_seq >= 0)
    );
    CREATE TABLE listings (
        id              INTEGER PRIMARY KEY,
        manufacturer_id INTEGER NOT NULL REFERENCES manufacturers(id),
        sku             TEXT NOT NULL,
        product         TEXT NOT NULL,
        category        TEXT NOT NULL,
        UNIQUE (manufacturer_id, sku)
    );
    CREATE TABLE months (
        id            INTEGER PRIMARY KEY,
        opened_at_ms  INTEGER NOT NULL,
        ends_at_ms    INTEGER NOT NULL,
        closed_at_ms  INTEGER,
        close_reason  INTEGER
    );
    CREATE TABLE month_manufacturers (            -- who was expected to offer, and who did
        month_id        INTEGER NOT NULL REFERENCES months(id),
        manufacturer_id INTEGER NOT NULL REFERENCES manufacturers(id),
        offered         INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (month_id, manufacturer_id)
    ) WITHOUT ROWID;
    CREATE TABLE offers (
        month_id   INTEGER NOT NULL REFERENCES months(id),
        listing_id INTEGER NOT NULL REFERENCES listings(id),
        unit_price INTEGER NOT NULL CHECK (unit_price > 0),
        offered    INTEGER NOT NULL CHECK (offered >= 0),
        remaining  INTEGER NOT NULL CHECK (remaining >= 0 AND remaining <= offered),
        PRIMARY KEY (month_id, listing_id)
    ) WITHOUT ROWID;
    CREATE TABLE orders (
        id           INTEGER PRIMARY KEY,
        checkout_id  BLOB NOT NULL UNIQUE,            -- client-chosen, time-ordered: retries find it
        account_id   INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
        month_id     INTEGER NOT NULL REFERENCES months(id),
        placed_at_ms INTEGER NOT NULL,
        total        INTEGER NOT NULL CHECK (total >= 0)
    );
    CREATE INDEX orders_by_account ON orders(account_id, id);
    CREATE TABLE order_lines (
        order_id          INTEGER NOT NULL REFERENCES orders(id),
        listing_id        INTEGER NOT NULL REFERENCES listings(id),
        manufacturer_id   INTEGER NOT NULL REFERENCES manufacturers(id),
        product           TEXT NOT NULL,              -- names and price as they were at purchase
        manufacturer_name TEXT NOT NULL,
        unit_price        INTEGER NOT NULL CHECK (unit_price > 0),
        quantity          INTEGER NOT NULL CHECK (quantity > 0),
        status            INTEGER NOT NULL DEFAULT 0, -- 0 placed, 1 confirmed, 2 dispatched
        PRIMARY KEY (order_id, listing_id)
    ) WITHOUT ROWID;
    CREATE TABLE outbox (
        manufacturer_id INTEGER NOT NULL REFERENCES manufacturers(id),
        seq             INTEGER NOT NULL CHECK (seq > 0),
        order_id        INTEGER,                      -- NULL for settlements
        body            BLOB NOT NULL,                -- the encoded protocol::NoticeBody
        PRIMARY KEY (manufacturer_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE cart_lines (
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        listing_id INTEGER NOT NULL REFERENCES listings(id),
        quantity   INTEGER NOT NULL CHECK (quantity > 0),
        position   INTEGER NOT NULL,
        PRIMARY KEY (account_id, listing_id)
    ) WITHOUT ROWID;
    "#,
    // 2: SSH keys that log straight in (`shop serve-ssh`). Only the fingerprint is kept, never the
    // key; a key belongs to one account at most.
    r#"
    CREATE TABLE ssh_keys (
        fingerprint   TEXT PRIMARY KEY,              -- SHA256:... as `ssh-keygen -lf` prints it
        account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        created_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX ssh_keys_by_account ON ssh_keys(account_id);
    "#,
    // 3: manufacturer credentials, and the running/stopped mark (see `lifecycle`).
    r#"
    ALTER TABLE manufacturers ADD COLUMN credential_hash BLOB; -- sha256 of its token; NULL: the next to connect registers
    CREATE TABLE lifecycle (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        running INTEGER NOT NULL                      -- 1 from start until a clean stop
    );
    INSERT INTO lifecycle (id, running) VALUES (1, 0);
    "#,
    // 4: when each order line reached its status, for the order detail view. NULL: at checkout
    // (lines bought before this column, and lines still placed).
    r#"
    ALTER TABLE order_lines ADD COLUMN status_at_ms INTEGER;
    "#,
    // 5: login throttling that survives restarts, and email keys under full Unicode case folding.
    // Old keys were `lower()`-ed, which folds only ASCII: `ÖZIL@x` was keyed `Özil@x` and could not be
    // found. Every key is recomputed; should two accounts now fold to one key, the older keeps it and
    // the newer gets a key no login can type (`#` cannot stand in a domain), for the operator to sort out.
    r#"
    CREATE TABLE login_failures (
        account_key TEXT NOT NULL,                    -- the email key that was tried (may name no account)
        address     TEXT NOT NULL,                    -- the client's IP address; '' for the whole account
        failures    INTEGER NOT NULL CHECK (failures >= 0),
        last_at_ms  INTEGER NOT NULL,
        PRIMARY KEY (account_key, address)
    ) WITHOUT ROWID;
    CREATE TABLE login_addresses (                  -- addresses that logged in: the account ceiling spares them
        account_key TEXT NOT NULL,
        address     TEXT NOT NULL,
        last_at_ms  INTEGER NOT NULL,
        PRIMARY KEY (account_key, address)
    ) WITHOUT ROWID;
    UPDATE accounts SET email_key = '#rekeying-' || id;
    UPDATE accounts SET email_key = email_key(email) ||
        CASE WHEN EXISTS (SELECT 1 FROM accounts older WHERE older.id < accounts.id
                          AND email_key(older.email) = email_key(accounts.email))
             THEN '#duplicate-of-an-older-account-' || id ELSE '' END;
    "#,
    // 6: a checkout writes less. An order line no longer copies its product and maker names; the names at purchase are the
    // month's offer's product (kept per month here) and the maker's stable name. Two short rows per
    // checkout instead of two long ones.
    r#"
    ALTER TABLE offers ADD COLUMN product TEXT NOT NULL DEFAULT ''; -- the product name as offered that month
    UPDATE offers SET product = (SELECT product FROM listings WHERE listings.id = offers.listing_id);
    UPDATE offers SET product = sold.product
        FROM (SELECT o.month_id AS month_id, l.listing_id AS listing_id, max(l.product) AS product
              FROM order_lines l JOIN orders o ON o.id = l.order_id GROUP BY 1, 2) AS sold
        WHERE offers.month_id = sold.month_id AND offers.listing_id = sold.listing_id;
    ALTER TABLE order_lines DROP COLUMN product;
    ALTER TABLE order_lines DROP COLUMN manufacturer_name;
    -- A sale notice is no longer a second encoded copy of the order: its lines are the order's lines
    -- of that maker (see `read::notices`). Only settlements keep a body.
    CREATE TABLE outbox_v6 (
        manufacturer_id INTEGER NOT NULL REFERENCES manufacturers(id),
        seq             INTEGER NOT NULL CHECK (seq > 0),
        order_id        INTEGER,                      -- a sale's order; NULL for settlements
        body            BLOB,                         -- a settlement's encoded protocol::NoticeBody; NULL for sales
        PRIMARY KEY (manufacturer_id, seq),
        CHECK ((order_id IS NULL) <> (body IS NULL))
    ) WITHOUT ROWID;
    INSERT INTO outbox_v6 (manufacturer_id, seq, order_id, body)
        SELECT manufacturer_id, seq, order_id, CASE WHEN order_id IS NULL THEN body END FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_v6 RENAME TO outbox;
    -- Each month's sales, kept as checkouts commit, so that a restart need not sum every order line
    -- ever sold (the operator's history and totals start from here; `audit` checks it against the lines).
    CREATE TABLE month_sales (
        month_id INTEGER PRIMARY KEY REFERENCES months(id),
        orders   INTEGER NOT NULL CHECK (orders >= 0),
        units    INTEGER NOT NULL CHECK (units >= 0),
        revenue  INTEGER NOT NULL CHECK (revenue >= 0)
    );
    INSERT INTO month_sales (month_id, orders, units, revenue)
        SELECT o.month_id, count(DISTINCT o.id), sum(l.quantity), sum(l.quantity * l.unit_price)
        FROM orders o JOIN order_lines l ON l.order_id = o.id GROUP BY o.month_id;
    "#,
    // 7: an account's orders are indexed a batch at a time (see `account_orders`), not by an index
    // on `orders` that every checkout wrote a random leaf of.
    r#"
    CREATE TABLE account_orders (
        account_id INTEGER NOT NULL,
        order_id   INTEGER NOT NULL,
        PRIMARY KEY (account_id, order_id)
    ) WITHOUT ROWID;
    CREATE TABLE account_orders_mark (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        through INTEGER NOT NULL CHECK (through >= 0)  -- every order up to this id is in account_orders
    );
    INSERT INTO account_orders (account_id, order_id)
        SELECT account_id, id FROM orders WHERE account_id IS NOT NULL ORDER BY account_id, id;
    INSERT INTO account_orders_mark (id, through) SELECT 1, coalesce(max(id), 0) FROM orders;
    DROP INDEX orders_by_account;
    "#,
    // 8: an ack no longer rewrites every line it confirms. A line keeps the sequence number of the
    // sale notice that told its maker; it is confirmed once the maker's `acked_seq` reaches it, at the
    // time of the first ack that did (`acks`, one row per ack). Lines confirmed before keep status 1.
    r#"
    ALTER TABLE order_lines ADD COLUMN notice_seq INTEGER;  -- its maker's sale notice; NULL before migration 8
    -- Only lines not yet confirmed need it. The outbox has no index by order: one for this update
    -- only, else each line would scan its maker's whole outbox.
    CREATE INDEX migration_8_outbox_by_order ON outbox(manufacturer_id, order_id);
    UPDATE order_lines SET notice_seq = o.seq FROM outbox o
        WHERE order_lines.status = 0
          AND o.manufacturer_id = order_lines.manufacturer_id AND o.order_id = order_lines.order_id;
    DROP INDEX migration_8_outbox_by_order;
    CREATE TABLE acks (
        manufacturer_id INTEGER NOT NULL,
        through_seq     INTEGER NOT NULL,              -- every notice up to here was acked ...
        at_ms           INTEGER NOT NULL,              -- ... at this time (the first ack that reached it)
        PRIMARY KEY (manufacturer_id, through_seq)
    ) WITHOUT ROWID;
    "#,
];

/// Opens (or creates) the database for writing, refusing files that are not ours or that lost commits
/// with their `-wal`. Marks the database running and checkpoints, so the main file holds the schema.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let on_disk = OnDisk::inspect(path);
    let existed = path.exists();
    if !existed {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Foreign(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
    }
    check_writable(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(read_only(path));
    }
    check_identity(&conn, path, Check::Deep)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    lifecycle::refuse_if_lost(&conn, path, on_disk, version, tables)?;
    // Before any migration: migration 4 re-keys emails with `email_key()`.
    super::logins::register_functions(&conn)?;
    if version == 0 {
        // Still in rollback-journal mode: the schema goes straight into the main file.
        migrate(&conn)?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit the client was told about survives power loss, not only a crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Scratch b-trees that statements need (measured: one per batch) stay in memory: on the default,
    // every batch created, opened and unlinked a file in /var/tmp (four syscalls and an inode).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // The writer checkpoints itself after answering a batch, not inside its COMMIT (`checkpoint`).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&conn)?;
    lifecycle::mark(&conn, true)?;
    Ok(conn)
}

fn read_only(path: &Path) -> StoreError {
    StoreError::Foreign(format!(
        "{}: the database file is read-only; the distributor needs to write it (check its permissions)",
        path.display()
    ))
}

/// Refuses to start on a file or directory this process cannot write, before SQLite would quietly
/// open it read-only and fail the first sign-up. WAL mode also creates `-wal` and `-shm` files
/// beside the database, so the directory must be writable too.
fn check_writable(path: &Path) -> Result<(), StoreError> {
    let denied = |e: &std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
    if path.exists() {
        if let Err(e) = std::fs::OpenOptions::new().write(true).open(path) {
            return Err(if denied(&e) {
                read_only(path)
            } else {
                StoreError::Foreign(format!("{}: cannot open the database: {e}", path.display()))
            });
        }
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".distributor-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(StoreError::Foreign(format!(
            "{}: cannot write to the database's directory ({e}); the distributor keeps its \
             write-ahead log there",
            dir.display()
        ))),
    }
}

/// How thoroughly to check a file before using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Identity only: for the server's read pool, whose file the writer already checked at start-up.
    Identity,
    /// Identity and `PRAGMA quick_check`: at start-up and for `audit`.
    Deep,
}

/// Opens an existing database read-only (for reads and for `audit`). Never creates a file.
pub fn open_reader(path: &Path, check: Check) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Foreign(format!(
            "{}: no such database file",
            path.display()
        )));
    }
    let on_disk = OnDisk::inspect(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    check_identity(&conn, path, check)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if check == Check::Deep {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        lifecycle::refuse_if_lost(&conn, path, on_disk, version, tables)?;
    }
    if version == 0 {
        return Err(StoreError::Foreign(format!(
            "{}: database has no distributor schema",
            path.display()
        )));
    }
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Refuses a file that is not SQLite, is corrupt, or belongs to another program.
fn check_identity(conn: &Connection, path: &Path, check: Check) -> Result<(), StoreError> {
    let describe = |e: rusqlite::Error| {
        StoreError::Foreign(format!(
            "{}: not a usable distributor database ({e}); refusing to touch it",
            path.display()
        ))
    };
    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(describe)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(describe)?;
    if app_id == APPLICATION_ID {
        if check == Check::Identity {
            return Ok(());
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(describe)?;
        if check != "ok" {
            return Err(StoreError::Foreign(format!(
                "{}: database is corrupt ({check}); refusing to touch it",
                path.display()
            )));
        }
        return Ok(());
    }
    if app_id == 0 && tables == 0 {
        return Ok(()); // A fresh, empty file: ours to initialise.
    }
    Err(StoreError::Foreign(format!(
        "{}: this SQLite file belongs to another program (application_id {app_id:#x}, {tables} schema objects); refusing to touch it",
        path.display()
    )))
}

/// Creates a database file as schema `version` left it (the first `version` migrations), for tests
/// that check what a later migration does to rows written before it.
#[doc(hidden)]
pub fn create_at_version(path: &Path, version: usize) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    super::logins::register_functions(&conn)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().take(version) {
        conn.execute_batch(sql)?;
        conn.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Foreign(format!(
            "database schema version {version} is newer than this program ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{LineStatus, OrderId};

    /// A file as schema 7 left it: one order with a line from each of two makers, both lines still
    /// placed, each maker's notice in the outbox. The first maker's `acked_seq` already covers its
    /// notice (its ack came in the same transaction that would have rewritten the line).
    fn schema_7_file(path: &Path) {
        let conn = create_at_version(path, 7).unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO manufacturers (id, name, acked_seq) VALUES (1, 'acked', 4), (2, 'behind', 0);
             INSERT INTO listings (id, manufacturer_id, sku, product, category)
                 VALUES (10, 1, 'A', 'Apples', 'fruit'), (20, 2, 'B', 'Bread', 'bakery');
             INSERT INTO months (id, opened_at_ms, ends_at_ms) VALUES (1, 0, 1);
             INSERT INTO offers (month_id, listing_id, unit_price, offered, remaining, product)
                 VALUES (1, 10, 100, 5, 4, 'Apples'), (1, 20, 200, 5, 4, 'Bread');
             INSERT INTO orders (id, checkout_id, account_id, month_id, placed_at_ms, total)
                 VALUES (1, x'00000000000000000000000000000001', 7, 1, 1000, 300);
             INSERT INTO order_lines (order_id, listing_id, manufacturer_id, unit_price, quantity, status)
                 VALUES (1, 10, 1, 100, 1, 0), (1, 20, 2, 200, 1, 0);
             INSERT INTO outbox (manufacturer_id, seq, order_id) VALUES (1, 4, 1), (2, 1, 1);",
        )
        .unwrap();
    }

    #[test]
    fn migrating_to_8_gives_placed_lines_their_notice_so_an_ack_confirms_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v7.db");
        schema_7_file(&path);
        let conn = open_writer(&path).unwrap();
        let seqs: Vec<Option<i64>> = conn
            .prepare("SELECT notice_seq FROM order_lines ORDER BY listing_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(seqs, vec![Some(4), Some(1)]);
        let order = crate::store::read::order(&conn, OrderId(1))
            .unwrap()
            .unwrap();
        let statuses: Vec<LineStatus> = order.lines.iter().map(|l| l.status).collect();
        // The first maker acked through seq 4: confirmed. The second has acked nothing: placed.
        assert_eq!(statuses, vec![LineStatus::Confirmed, LineStatus::Placed]);
    }
}
