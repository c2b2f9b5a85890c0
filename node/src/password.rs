//! Password hashes: argon2id in the PHC string format, computed in working memory that is
//! reused from one hash to the next.
//!
//! Argon2 needs 19 MiB per hash with the default parameters. Allocated and freed per hash,
//! glibc keeps those buffers in the arenas of the blocking threads that ran them (its mmap
//! threshold rises to the freed size), and a node went from 14 MB to 1.8 GB of RSS after a
//! few hundred logins. Here each hash borrows a buffer from a small pool instead. The node
//! runs at most [`MAX_PARALLEL`] hashes at once (its hashing budget), so the pool allocates
//! that many buffers at most, once, and never frees one: a freed 19 MiB buffer is exactly
//! what raises glibc's threshold and makes later ones stay in the arenas.
//!
//! **Invariant:** the strings written and accepted are standard PHC argon2 strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), interchangeable with those of
//! `argon2::PasswordHasher`; a hash with other parameters still verifies.

use std::sync::{Mutex, PoisonError};

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Hashes that may run at once (the node's hashing budget is the lower of this and its
/// cores): the pool holds as many buffers, 19 MiB each.
pub const MAX_PARALLEL: usize = 4;
/// Buffers kept for reuse at most (a hash beyond the budget frees its own).
const POOLED: usize = MAX_PARALLEL;

static FREE: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs `f` with at least `blocks` blocks of working memory from the pool.
fn with_memory<R>(blocks: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    let taken = FREE.lock().unwrap_or_else(PoisonError::into_inner).pop();
    let mut memory = match taken {
        Some(memory) if memory.len() >= blocks => memory,
        _ => vec![Block::default(); blocks],
    };
    let result = f(&mut memory[..blocks]);
    let mut free = FREE.lock().unwrap_or_else(PoisonError::into_inner);
    if free.len() < POOLED {
        free.push(memory);
    }
    result
}

/// The raw argon2 output of `password` under `argon2` and `salt`, `len` bytes long.
fn compute(argon2: &Argon2<'_>, params: &Params, password: &[u8], salt: &[u8], len: usize) -> argon2::Result<Vec<u8>> {
    let mut out = vec![0; len];
    with_memory(params.block_count(), |memory| {
        argon2.hash_password_into_with_memory(password, salt, &mut out, memory)
    })?;
    Ok(out)
}

/// Hashes `password` with argon2id, the default parameters and a random salt, as a PHC
/// string. CPU-heavy: call it off the async threads.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let out = compute(&argon2, &params, password.as_bytes(), salt_bytes, Params::DEFAULT_OUTPUT_LEN)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash` (any argon2 variant and parameters).
pub fn verify(password: &str, hash: &str) -> bool {
    let check = || -> Result<bool, argon2::password_hash::Error> {
        let parsed = PasswordHash::new(hash)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return Ok(false) };
        let algorithm = Algorithm::try_from(parsed.algorithm)?;
        let version = parsed.version.map(Version::try_from).transpose()?.unwrap_or_default();
        let params = Params::try_from(&parsed)?;
        let mut salt_bytes = [0; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let out = compute(&argon2, &params, password.as_bytes(), salt_bytes, expected.len())?;
        // `Output` compares in constant time.
        Ok(Output::new(&out)? == expected)
    };
    check().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_verify_and_match_the_standard_format_both_ways() {
        let ours = hash("correct horse").unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{ours}");
        assert!(verify("correct horse", &ours));
        assert!(!verify("wrong horse", &ours));
        // Strings of the argon2 crate's own hasher verify here, and ours there.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default().hash_password(b"battery staple", &salt).unwrap().to_string();
        assert!(verify("battery staple", &theirs));
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
    }

    #[test]
    fn other_parameters_and_garbage_are_handled() {
        let params = Params::new(1024, 1, 1, None).unwrap();
        let light = Argon2::new(Algorithm::Argon2i, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let hashed = light.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(verify("pw", &hashed), "a hash with other parameters and variant still verifies");
        assert!(!verify("pw", "not a hash"));
        assert!(!verify("pw", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ"), "no hash part");
    }

    #[test]
    fn working_memory_is_reused_not_reallocated() {
        for _ in 0..3 {
            assert!(verify("x", &hash("x").unwrap()));
        }
        let free = FREE.lock().unwrap();
        assert!(!free.is_empty() && free.len() <= POOLED, "the pool keeps the buffers: {}", free.len());
    }
}
