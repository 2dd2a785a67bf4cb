//! Keys, secrets and random values.

pub mod key_sealing;
pub mod keys;
pub mod password;
pub mod random;
pub mod seal;
pub mod secret;

pub use keys::{Keyring, SigningAlgorithm};
pub use seal::Sealer;
pub use secret::Secret;
