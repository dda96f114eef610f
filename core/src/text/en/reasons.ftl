# The reasons core's services give when they refuse something: the detail of the API's problem
# responses, and the messages the web app's pages show. What the web app's handlers say
# themselves is in app.ftl.
# Arguments are inserted as given: where a value is shown quoted, the code quotes it.

## core/src/types.rs

email-error-too-long = email address is longer than 254 characters
email-error-characters = email address contains spaces, control characters or punctuation that addresses cannot hold
email-error-no-at = email address needs an @
email-error-parts = email address needs one @ with a name before it and a domain after it
email-error-domain = email address has a malformed domain
email-error-invalid = email address is not valid
name-error-empty = file name is empty
name-error-trailing-dot-or-space = file name must not end in a dot or a space
name-error-leading-space = file name must not start with a space
# $max is the most bytes a file name may have.
name-error-too-long = file name is longer than { $max } bytes
name-error-path = file name must not contain a path (/ or \)
name-error-dots = file name must not be . or ..
name-error-hidden-characters = file name contains control, invisible or text-direction characters
signup-error-policy-syntax = expected `open`, `invite` or `domains:example.org,…`
# $domain is the text that was given as a domain.
signup-error-policy-domain = `{ $domain }` is not a domain name

## core/src/services/shares/request.rs

share-error-no-recipient = add at least one recipient to share the file, or leave the share fields out (a link without recipient can be made once the file is uploaded)
# $recipient is the address as given, quoted; $reason is why it is not an address
# (one of the email-error-… messages).
share-error-recipient = recipient { $recipient }: { $reason }
share-error-too-many-recipients = at most { $max } recipients per request
share-error-expiry-both = give expires_at or expires_in_hours, not both
share-error-expiry-hours = expires_in_hours must be at least 1
share-error-expiry-too-long = a link may live at most { $hours } hours
share-error-expiry-past = the expiry is in the past
share-error-expiry-max-ttl = a link may live at most { $hours } hours (COFFER_SHARE_MAX_TTL)
share-error-max-downloads = max_downloads must be between 1 and { $max }
share-error-password-too-short = a share password needs at least { $min } characters
share-error-password-too-long = the share password is too long
share-error-message-too-long = the message may have at most { $max } characters
share-error-message-control = the message contains control characters
share-error-verify-no-recipient = a recipient can only confirm their address on a link sent to them: add a recipient, or leave verify_recipient out
share-error-verify-policy = this server requires every recipient to confirm their address (COFFER_REQUIRE_RECIPIENT_VERIFICATION): share with at least one recipient
share-error-verify-policy-off = this server requires every recipient to confirm their address (COFFER_REQUIRE_RECIPIENT_VERIFICATION): it cannot be turned off for one share
share-error-nothing-to-change = nothing to change: give expires_at or expires_in_hours, max_downloads, password, verify_recipient, receipts or add_file_ids
share-error-ended = this link has ended (revoked, expired or cancelled) and cannot be changed; share the file again instead
share-error-resend-no-recipient = this link has no recipient to email; revoke it and make a new one instead
share-error-resend-not-ready = the file is not ready yet: its links go out the moment it is

## core/src/services/files/form.rs

form-error-no-file = the form has no `file` part
# $error is why the body could not be read.
form-error-malformed = malformed multipart body: { $error }
# $name is the form field's name.
form-error-field-too-long = the `{ $name }` field is too long
form-error-field-not-text = the `{ $name }` field is not UTF-8 text
form-error-not-a-number = `{ $name }` must be a whole number
form-error-not-a-flag = `{ $name }` must be on or off (true or false)
form-error-too-many-parts = an upload form may have at most { $max } parts
form-error-fields-too-large = the fields beside the file may hold at most { $kib } KiB together
form-error-too-many-files = an upload form may hold at most { $max } files
# $name is the file's name, $error what is wrong with it.
form-error-in-file = “{ $name }”: { $error }
form-error-empty-file-input = the file input holds no file name
form-error-no-filename = the `file` part needs a filename
form-error-expires-at = `expires_at` must be an RFC 3339 time
# $field is the name the part was sent with.
form-error-unknown-field = unknown form field `{ $field }`

## core/src/services/signup.rs, verification.rs, password_reset.rs

# $error is why the configured sender address is not an address.
email-error-mail-from = COFFER_MAIL_FROM: { $error }
signup-error-policy-fixed = the sign-up policy is fixed by COFFER_SIGNUP; change it there
verify-error-already-verified = this account's email address is verified already
verify-error-link = this verification link is not valid: it was used, it expired, or it was mistyped; sign in and ask for a new one
reset-error-own-password = change your own password with your current one (POST /api/v1/me/password)
reset-error-link = this password link is not valid: it was used, it expired, or it was mistyped; ask an administrator for a new one

## core/src/services/users/mod.rs

user-error-exists = an account with this email address already exists
user-error-exists-promote = an account with this address exists: add --promote to make it an admin with the password given (it is signed out everywhere)

## core/src/services/rotation.rs

# $from is the master-key version in use.
rotation-error-no-newer-version = the keyring has no version newer than { $from }: add one to COFFER_MASTER_KEYS or COFFER_MASTER_KEYS_FILE on every process (`coffer keys generate` prints one), restart, then rotate
rotation-error-just-started = another rotation has just started
# $to is the version being rotated to; $done and $total count the file keys.
rotation-error-running = a rotation to version { $to } is running ({ $done } of { $total } keys done)

## core/src/services/shares/mod.rs

# $limit is the daily budget; $wanted the recipients asked for.
share-error-email-budget = an account may email links to at most { $limit } recipients a day; these { $wanted } would pass that: try again later, or share a link without recipients
# $reason is why the file was rejected.
share-error-file-rejected = the file was rejected and cannot be shared: { $reason }
share-error-no-files = a share needs at least one file: give `file_ids`
share-error-too-many-files = a share holds at most { $max } files
share-error-file-ids-here = `file_ids` is for POST /api/v1/shares; this route shares the file in its path

## core/src/services/files/upload.rs

upload-error-empty = the file is empty (0 bytes); there is nothing to share
# $error is what interrupted the body.
upload-error-interrupted = the upload was interrupted: { $error }

## core/src/services/accounts.rs

account-error-nothing-to-change = nothing to change: give `role` and/or `disabled`
account-error-own-account = admins cannot demote or disable their own account; ask another admin

## core/src/password.rs

password-error-too-short = password must have at least { $min } characters
password-error-too-long = password must have at most { $max } bytes

## core/src/services/files/mod.rs

# $status is the file's status, as the API names it (quarantined, validated, …).
file-error-not-ready = the file is not ready for download (status: { $status })

## Refusals (ServiceError::Forbidden: core/src/services/signup.rs, verification.rs, users/signin.rs; api/src/auth.rs)

signup-error-invite-refused = this invitation is not for this address, or it has expired or been used: ask an administrator for a new one
signup-error-domains-only = sign-up is open to this organisation's email domains only; ask an administrator for an invitation
signup-error-invitation-only = sign-up is by invitation only; ask an administrator for one
verify-error-required = confirm your email address before Coffer emails links in your name: follow the link sent to it at sign-up (POST /api/v1/me/verify-email sends a new one); links without recipients work meanwhile
password-error-current-wrong = the current password is not right
user-error-admin-only = this needs an admin account
# $scope is the scope word the request needed (files:read, …).
token-error-scope = this token does not have the { $scope } scope
token-error-session-only = this needs a signed-in session: a personal API token cannot manage the account or administer Coffer

## Why a file was rejected (core/src/jobs/, core/src/filetype.rs): stored with the file

file-rejected-integrity = the stored upload failed its integrity check
file-rejected-unscanned = could not be scanned, try again later
file-rejected-unsealed = could not be encrypted, try again later
file-rejected-over-limit = the file exceeds the upload limit of { $limit } bytes
file-rejected-mismatch = the stored upload does not match what was received
file-rejected-malware = malware detected: { $signature }
file-rejected-too-large-to-scan = the file is larger than the malware scanner accepts (clamd's StreamMaxLength)
file-rejected-executable = the content is an executable program ({ $type }); executables are not accepted
file-rejected-type = files of type { $type } are not accepted here
file-rejected-extension = the name ends in .{ $extension } but the content is { $type }

## Personal API tokens (core/src/services/tokens.rs)

token-error-name = a token needs a name of 1 to { $max } characters, without control characters
# $scope is what was asked for, cut to 40 characters.
token-error-unknown-scope = unknown scope { $scope }: the scopes are files:read, files:write, shares:write and audit:read
token-error-audit-scope = the audit:read scope is for admins' tokens
token-error-no-scope = a token needs at least one scope
token-error-expiry = a token expires after 1 to { $max } days
token-error-too-many = an account may hold { $max } live tokens: revoke one first

## The second factor (core/src/services/mfa.rs)

mfa-error-enrol-first = this organisation requires a second factor: set one up first (POST /api/v1/me/mfa/totp, or the web app's Second factor page)
mfa-error-enrolment-busy = another set-up of this account started at the same moment: start again
mfa-error-already-on = a second factor is on already: turn it off first to enrol a new one
mfa-error-no-enrolment = no enrolment is waiting: start one first (POST /api/v1/me/mfa/totp)
mfa-error-wrong-code = that code is not right: type the 6 digits your authenticator app shows now

## core/src/services/oidc, users (single sign-on and local passwords)

signin-error-local-off = sign-in with a password is turned off here: sign in with the organisation's identity provider
signup-error-local-off = sign-up with a password is turned off here: sign in with the organisation's identity provider
oidc-error-expired = this sign-in has expired, was used already, or was started in another browser: start it again
oidc-error-provider-refused = the identity provider did not sign you in
oidc-error-not-verified = the identity provider's answer could not be verified, so you were not signed in: start again, and tell an admin if it happens again
oidc-error-unknown-account = no Coffer account is linked to your account at the identity provider, and this Coffer does not make accounts on first sign-in: ask an admin for access
oidc-error-address-taken = a Coffer account already has your email address, and accounts are never joined by address alone: sign in with your password and connect the identity provider on the Single sign-on page, or ask an admin
oidc-error-linked-elsewhere = your account at the identity provider and this Coffer account cannot be linked: one of them is linked to another account already
oidc-error-no-address = the identity provider gave no verified email address for your account, which a new Coffer account needs
oidc-error-disabled = this Coffer account is disabled
