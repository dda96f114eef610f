//! Who is acting: a signed-in account, as every service that acts for someone takes it.

use uuid::Uuid;

use entity::user;

use crate::audit::Actor;
use crate::types::Role;

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
}

impl User {
    /// The audit actor this user acts as.
    pub fn actor(&self) -> Actor {
        match self.role {
            Role::Admin => Actor::Admin(self.id),
            Role::User => Actor::User(self.id),
        }
    }
}

impl From<user::Model> for User {
    fn from(m: user::Model) -> Self {
        Self {
            id: m.id,
            email: m.email,
            role: m.role,
        }
    }
}

/// A signed-in user, as proven by a bearer token.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub user: User,
}
