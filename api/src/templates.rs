//! The page templates (minijinja, autoescaped: every `.html` template escapes what it prints)
//! shared by the recipient pages and the web app.

use minijinja::Environment;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("landing.html", include_str!("../templates/landing.html")),
    ("message.html", include_str!("../templates/message.html")),
    (
        "app/layout.html",
        include_str!("../templates/app/layout.html"),
    ),
    (
        "app/message.html",
        include_str!("../templates/app/message.html"),
    ),
    (
        "app/signin.html",
        include_str!("../templates/app/signin.html"),
    ),
    (
        "app/continue.html",
        include_str!("../templates/app/continue.html"),
    ),
    ("app/sso.html", include_str!("../templates/app/sso.html")),
    (
        "app/signup.html",
        include_str!("../templates/app/signup.html"),
    ),
    (
        "app/verify_email.html",
        include_str!("../templates/app/verify_email.html"),
    ),
    (
        "app/password_reset.html",
        include_str!("../templates/app/password_reset.html"),
    ),
    (
        "app/signup_admin.html",
        include_str!("../templates/app/signup_admin.html"),
    ),
    (
        "app/password.html",
        include_str!("../templates/app/password.html"),
    ),
    ("app/mfa.html", include_str!("../templates/app/mfa.html")),
    (
        "app/signin_mfa.html",
        include_str!("../templates/app/signin_mfa.html"),
    ),
    (
        "app/tokens.html",
        include_str!("../templates/app/tokens.html"),
    ),
    (
        "app/sessions.html",
        include_str!("../templates/app/sessions.html"),
    ),
    (
        "app/preferences.html",
        include_str!("../templates/app/preferences.html"),
    ),
    (
        "app/forgot_password.html",
        include_str!("../templates/app/forgot_password.html"),
    ),
    (
        "app/files.html",
        include_str!("../templates/app/files.html"),
    ),
    (
        "app/upload.html",
        include_str!("../templates/app/upload.html"),
    ),
    ("app/file.html", include_str!("../templates/app/file.html")),
    (
        "app/share_edit.html",
        include_str!("../templates/app/share_edit.html"),
    ),
    (
        "app/activity.html",
        include_str!("../templates/app/activity.html"),
    ),
    (
        "app/share_fields.html",
        include_str!("../templates/app/share_fields.html"),
    ),
    (
        "app/delete.html",
        include_str!("../templates/app/delete.html"),
    ),
    ("app/link.html", include_str!("../templates/app/link.html")),
    (
        "app/bundle.html",
        include_str!("../templates/app/bundle.html"),
    ),
    (
        "app/audit.html",
        include_str!("../templates/app/audit.html"),
    ),
    ("app/keys.html", include_str!("../templates/app/keys.html")),
    (
        "app/users.html",
        include_str!("../templates/app/users.html"),
    ),
];

#[allow(
    clippy::expect_used,
    reason = "templates compiled in, each rendered by the web tests"
)]
fn environment() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // `{{ t(id, name=value) }}`: every word of a page comes from the message catalog.
        env.add_function("t", coffer_core::text::template_function);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .expect("page templates parse");
        }
        env
    })
}

/// Renders a page; a template error is logged and a bare error page shown instead.
pub fn render(name: &str, ctx: minijinja::Value) -> String {
    try_render(name, ctx).unwrap_or_else(|| RENDER_FAILED.to_owned())
}

/// The page shown when a template fails (the failure is logged).
pub const RENDER_FAILED: &str = "<!DOCTYPE html><title>Error</title><p>Something went wrong.</p>";

/// The page, or `None` (logged) when its template fails: the caller answers 500.
pub fn try_render(name: &str, ctx: minijinja::Value) -> Option<String> {
    environment()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|err| tracing::error!(error = %err, template = name, "rendering a page failed"))
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_parses() {
        for (name, _) in super::TEMPLATES {
            assert!(super::environment().get_template(name).is_ok(), "{name}");
        }
    }
}
