//! Manufacturer credentials.
//!
//! The first connection under a new name (or a name whose credential an operator revoked) registers
//! it and receives a random 256-bit token in [`protocol::Welcome::credential`]; the distributor keeps
//! only its SHA-256. From then on the name is admitted only with that token, so nobody can take over
//! a manufacturer's link, ack its notices or sell under its name. The engine owns the table (one
//! task, no locks); the writer stores it.

use crate::store::StoreError;
use protocol::{ErrorCode, ManufacturerId, WireError};
use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// What a connection under a name is allowed.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// It presented the name's credential.
    Admitted,
    /// The name has no credential yet: it registers, and gets this one.
    Issue(Issued),
    /// The name belongs to a credential that this connection did not present.
    Refused,
}

/// A freshly issued credential: the token goes to the manufacturer, the hash to the database.
#[derive(Debug, PartialEq, Eq)]
pub struct Issued {
    /// Hex, 64 characters.
    pub token: String,
    /// SHA-256 of the token.
    pub hash: [u8; 32],
}

/// Every registered name's credential hash, by manufacturer id.
#[derive(Debug, Default)]
pub struct Credentials {
    hashes: HashMap<ManufacturerId, [u8; 32]>,
}

/// SHA-256 of a presented token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// A new random 256-bit credential.
pub fn issue() -> Issued {
    let bytes: [u8; 32] = rand::random();
    let token = hex::encode(bytes);
    let hash = hash(&token);
    Issued { token, hash }
}

/// The refusal a connection gets under a name it does not hold.
pub fn refusal(name: &str) -> WireError {
    WireError::new(
        ErrorCode::WrongCredential,
        format!(
            "the manufacturer name {name:?} is registered to another credential; connect with the \
             books that registered it, or ask the operator to revoke it \
             (`distributor revoke-manufacturer --name {name:?}`)"
        ),
    )
}

impl Credentials {
    /// Loads every stored hash.
    pub fn load(conn: &Connection) -> Result<Credentials, StoreError> {
        let mut stmt = conn.prepare(
            "SELECT id, credential_hash FROM manufacturers WHERE credential_hash IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut hashes = HashMap::new();
        for row in rows {
            let (id, bytes) = row?;
            let hash: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                StoreError::Corrupt(format!(
                    "manufacturer {id}: credential hash is not 32 bytes"
                ))
            })?;
            hashes.insert(ManufacturerId(id), hash);
        }
        Ok(Credentials { hashes })
    }

    /// Decides about a connection under a name: `id` is the name's registration, if it has one.
    pub fn admit(&self, id: Option<ManufacturerId>, presented: Option<&str>) -> Admission {
        match id.and_then(|id| self.hashes.get(&id)) {
            None => Admission::Issue(issue()),
            Some(stored) if presented.is_some_and(|p| hash(p) == *stored) => Admission::Admitted,
            Some(_) => Admission::Refused,
        }
    }

    /// Records a newly issued credential (once it is durable, or about to be).
    pub fn set(&mut self, id: ManufacturerId, hash: [u8; 32]) {
        self.hashes.insert(id, hash);
    }

    /// Forgets a credential. Returns whether there was one.
    pub fn revoke(&mut self, id: ManufacturerId) -> bool {
        self.hashes.remove(&id).is_some()
    }
}

/// The writer's part: store or clear a hash.
pub fn write(
    conn: &Connection,
    id: ManufacturerId,
    hash: Option<&[u8; 32]>,
) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached("UPDATE manufacturers SET credential_hash = ?2 WHERE id = ?1")?
        .execute(params![id.0, hash.map(|h| h.as_slice())])?;
    if changed != 1 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_name_admits_only_its_own_token() {
        let mut c = Credentials::default();
        let id = ManufacturerId(1);
        let Admission::Issue(issued) = c.admit(Some(id), None) else {
            panic!("a name without a credential registers")
        };
        assert_eq!(issued.token.len(), 64);
        c.set(id, issued.hash);
        assert_eq!(c.admit(Some(id), Some(&issued.token)), Admission::Admitted);
        assert_eq!(c.admit(Some(id), None), Admission::Refused);
        assert_eq!(c.admit(Some(id), Some(&issue().token)), Admission::Refused);
        assert!(c.revoke(id));
        assert!(matches!(
            c.admit(Some(id), Some(&issued.token)),
            Admission::Issue(_)
        ));
    }
}
