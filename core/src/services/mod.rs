//! Domain operations. Handlers parse input, call one of these, and map the outcome.

pub mod accounts;
pub mod audit;
pub mod files;
pub mod health;
pub mod keys;
pub mod mfa;
pub mod oidc;
pub mod orphans;
pub mod password_reset;
pub mod receipts;
pub mod recipients;
pub mod rotation;
pub mod shares;
pub mod signup;
pub mod tokens;
pub mod users;
pub mod verification;
