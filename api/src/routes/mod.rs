pub mod accounts;
pub mod files;
pub mod health;

#[derive(poem_openapi::Tags)]
pub enum Tag {
    /// Accounts and sessions
    Auth,
    /// Uploading, reading and deleting files
    Files,
}
