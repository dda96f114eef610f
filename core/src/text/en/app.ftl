# What the web app's handlers say (api/src/web/*.rs, api/src/routes/recipient.rs), and the
# formats every surface shares. Templates' own words are in pages.ftl; emails' in mail.ftl.

## Formats (core/src/text/mod.rs)

# A moment: $date and $time are formatted by ICU4X for the locale.
date-utc = { $date }, { $time } UTC
# $shown is $count formatted for the locale.
size-bytes = { $count ->
    [one] { $shown } byte
   *[other] { $shown } bytes
}
size-kb = { $shown } kB
size-mb = { $shown } MB
size-gb = { $shown } GB
size-tb = { $shown } TB

## Error pages (api/src/web/page.rs)

error-csrf-heading = This form could not be accepted
error-csrf-text = It was sent without a valid security token, so nothing was done. Go back, reload the page and try again.
error-admins-heading = Admins only
error-admins-text = This page is for administrators. Ask an admin if you need something from it.
error-failed-heading = That did not work
error-forbidden-heading = Not allowed
error-not-found-heading = Not found
# $what is what was looked for: file, share, user, …
error-not-found-text = There is no such { $what ->
    [file] file
    [share] share
    [user] user
   *[other] { $what }
}, or it is not yours.
error-too-large-heading = The file is too large
error-too-large-text = Files may be at most { $limit }.
error-form-too-large-heading = The form is too large
error-rate-limited-heading = Too many attempts
error-rate-limited-text = Wait a while before trying again.
error-limit-heading = Limit reached
error-integrity-heading = The file failed its integrity check
error-integrity-text = It was not sent. The event was logged for the administrators.
error-busy-heading = Try again shortly
error-busy-text = The service is busy at the moment.
error-unavailable-text = The service is briefly unavailable.
error-internal-heading = Something went wrong
error-internal-text = The page could not be shown. If this persists, tell the operator (reference { $id }).
error-no-page-heading = Page not found
error-no-page-text = There is no page at this address.
error-method-heading = Not here
error-method-text = This page does not accept that kind of request.
error-unreadable-request-text = The request could not be read. Go back and try again.
error-unreadable-form-text = The form could not be read. Go back and try again.

## Sign-in, sign-up and password forms (api/src/web/account.rs, emailed_links.rs)

signin-notice-welcome = Your account is ready. Sign in to start sharing files.
signin-notice-reset = Your new password is set. Sign in with it.
signin-error-empty = Enter your email address and your password.
signin-error-no-match = That email address and password do not match an account that can sign in.
signin-error-rate-limited = Too many attempts to sign in. Wait a while before trying again.

## Single sign-on (api/src/web/sso.rs)

continue-signed-in-heading = Signed in
continue-signed-in-text = You are signed in. Taking you on…
continue-to-provider-heading = Connecting your account
# $provider is COFFER_OIDC_PROVIDER_NAME.
continue-to-provider-text = Taking you to { $provider } to sign in there…
continue-signed-out-heading = Signed out
continue-signed-out-text = You are signed out of Coffer. Taking you to { $provider } to sign out there too…
signup-notice-invited = You were invited: create your account with the address the invitation was sent to.
signup-error-empty = Enter an email address and a password.
signup-error-passwords-differ = The two passwords are not the same. Type them again.
password-error-empty = Enter your current password and a new one.
password-error-passwords-differ = The two new passwords are not the same. Type them again.
password-error-wrong-current = That is not your current password.
password-error-rate-limited = Too many attempts. Wait a while before trying again.
password-notice-changed = Your password is changed. Everywhere else you were signed in, you are signed out.
tokens-error-expiry = Choose how many days the token lasts.
mfa-notice-on = The second factor is on.
mfa-notice-off = The second factor is off: the password alone signs you in.
mfa-signin-error-empty = Type the code your authenticator app shows, or a recovery code.
mfa-signin-error-wrong = That code did not work. Type the code your app shows now; after several tries, sign in again from the start.
sessions-unknown-agent = An unnamed client
sessions-unknown-ip = an unknown address
forgot-error-empty = Enter the email address of your account.
forgot-error-rate-limited = Too many requests from here. Wait a while before trying again.
forgot-notice-sent = If an account has this address, a link to choose a new password is on its way to it. It works once, for an hour.
verify-email-done-heading = Your address is confirmed
verify-email-done-text = Coffer may now email links to your files in your name.

## Files, uploads and shares (api/src/web/files.rs, shares.rs)

files-notice-deleted = The file was deleted; its links no longer work.
# $count files were uploaded at once (always more than one).
files-notice-uploaded = { $count } files uploaded. Each is checked and encrypted before it can be downloaded.
files-notice-uploaded-shared = { $count } files uploaded. Each is checked and encrypted before it can be downloaded; every recipient's link to all of them goes out once they are ready (a file refused meanwhile is left out).
upload-error-no-file = Choose a file to upload.
upload-error-too-large = The file is larger than the { $limit } allowed.
share-error-expiry = The expiry must be a whole number.
share-error-download-limit = The download limit must be a whole number.
expiry-1-hour = 1 hour
expiry-1-day = 1 day
expiry-3-days = 3 days
expiry-7-days = 7 days
expiry-30-days = 30 days
expiry-longest = the longest allowed
# What a share's state reads as on its file's page.
share-state-pending = pending
share-state-emailed = emailed
share-state-outbox = in the outbox (not sent)
share-state-email-failed = email failed
share-state-active = link
share-state-revoked = revoked
share-state-expired = expired
share-state-cancelled = cancelled

## Admin pages (api/src/web/admin.rs, audit.rs)

users-error-role = The role must be user or admin.
users-error-disabled = Choose to enable or to disable the account.
audit-error-format = The format must be jsonl or csv.

## The recipient's pages (api/src/routes/recipient.rs)

recipient-broken-text = The page could not be shown.
recipient-unknown-heading = Link not found
recipient-unknown-text = This link does not exist. Check that you copied all of it, or ask the sender for a new one.
recipient-gone-heading = This link no longer works
# $reason is why the link is gone: expired, revoked, used up.
recipient-gone-text = { $reason ->
    [expired] The link has expired. Ask the sender to share the file again.
    [revoked] The sender has withdrawn this link.
    [used-up] This link has been used as many times as the sender allowed.
   *[other] The file is no longer available through this link.
}
recipient-not-ready-heading = Not ready yet
recipient-not-ready-text = The file is still being checked and encrypted. Try again in a moment.
recipient-in-progress-heading = A download is under way
recipient-in-progress-text = Every download this link allows is complete or under way. If one under way stops before the end, its place is free again: try again in a moment.
recipient-range-heading = Outside the file
recipient-range-text = The part of the file asked for lies beyond its end. Download it whole instead.
recipient-rate-limited-text = Too many wrong passwords were tried. Wait a while before trying again.
recipient-wrong-password = That password is not right.
recipient-password-required = This file needs a password.
recipient-password-heading = Password needed
recipient-code-rate-limited-text = Too many codes were asked for or tried. Wait a while before trying again.
recipient-wrong-code = That code is not right. Check the latest email, or ask for a new code.
recipient-no-code = That code no longer works (a code works once, for a few minutes). Ask for a new one.
recipient-verify-required = Confirm that the link reached you before downloading.
recipient-internal-text = The file could not be delivered. If this persists, tell the sender (reference { $id }).
audit-error-since = “Since” is not a time: write it like 2026-03-01T09:30 (UTC).
audit-error-until = “Until” is not a time: write it like 2026-03-01T09:30 (UTC).
# What a file's status reads as in lists and on its page.
file-status-quarantined = quarantined
file-status-validated = validated
file-status-ready = ready
file-status-rejected = rejected
file-status-deleted = deleted
# What a master-key version's state, a rotation's and an invitation's read as.
key-state-active = active
key-state-retiring = retiring
key-state-retired = retired
rotation-state-running = running
rotation-state-finished = finished
invite-state-pending = pending
invite-state-used = used
invite-state-expired = expired
