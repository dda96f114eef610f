pub mod accounts;
pub mod admin;
pub mod files;
pub mod health;
pub mod recipient;
pub mod shares;

#[derive(poem_openapi::Tags)]
pub enum Tag {
    /// Accounts and sessions
    Auth,
    /// Uploading, reading and deleting files
    Files,
    /// Sharing files through expiring links
    Shares,
    /// The pages and downloads behind a share link
    Recipients,
    /// Administration: master keys and the audit log
    Admin,
}
