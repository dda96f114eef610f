# The words of the page templates (api/templates: base.html, landing.html, message.html and
# app/*.html), called there as {{ t(id, name=value) }}. What the handlers put into a page
# (headings and texts of message pages, errors, notices, states) is in app.ftl.
# Where a sentence has markup in it (a link, <strong>), it is split around the markup; the
# spaces between the pieces are in the template.

## Shared by several templates

common-download = Download
common-share = Share
common-size = Size
common-password = Password
common-password-hint = At least 10 characters. A few unrelated words are easy to remember and hard to guess.
common-email-address = Email address
common-state = State
common-pages = Pages
common-first-page = First page
common-my-files = My files
common-upload = Upload
common-upload-file = Upload a file
common-audit-log = Audit log
common-users = Users
common-sign-up = Sign-up
common-sign-in = Sign in
common-create-account = Create an account
# $reason is why the file was rejected.
common-rejected = Rejected: { $reason }

## api/templates/base.html

base-footer = Shared securely with Coffer

## api/templates/landing.html

# Follows the sender's name, in bold: “Ann shared this file with you.”
landing-shared-with-you = { $count ->
    [one] shared this file with you.
   *[other] shared these files with you.
}
landing-files-title = { $count } files
landing-name = Name
landing-download-one = Download { $name }
landing-file-not-ready = Being checked…
landing-download-all = Download all ({ $count } files, as one ZIP)
landing-link-expires = Link expires
landing-downloads-left = Downloads left
landing-password-hint = { $sender } will have given you the password separately.
landing-verify-heading = Confirm it is you
landing-verify-intro = The sender asks you to confirm that this link reached you before you download. Coffer will email a six-digit code to { $to }, the address the link was sent to.
landing-verify-send = Email me a code
landing-verify-sent = A code is on its way to { $to }. Type it here within { $minutes } minutes.
landing-verify-code = Code from the email
landing-verify-confirm = Confirm
landing-verify-resend = Email me a new code
landing-verify-nobody = This link may only be opened by the person it was sent to, and it was sent to nobody. Ask the sender for a new link.
landing-not-ready = The file is still being checked and encrypted. This page refreshes by itself; the download appears in a moment.

## api/templates/app/layout.html

layout-skip = Skip to content
layout-nav-main = Main
layout-nav-account = Account
layout-nav-keys = Keys
layout-nav-tokens = API tokens
layout-nav-sessions = Sessions
layout-nav-mfa = Second factor
layout-nav-preferences = Preferences
layout-sign-out = Sign out
layout-footer = Coffer · secure file sharing

## api/templates/app/message.html

message-back-to-files = Back to my files
message-go-to-sign-in = Go to sign in

## api/templates/app/signin.html

signin-forgot = Forgot your password?
# $provider is COFFER_OIDC_PROVIDER_NAME, such as Keycloak or Microsoft.
signin-with-provider = Sign in with { $provider }
signin-or-password = Or sign in with your email address and password:
# With local passwords turned off, the form is kept for the break-glass admin.
signin-break-glass = Administrator sign-in with a password
# “No account yet? Create one.”, with “Create one” a link.
signin-no-account-before = No account yet?
signin-no-account-link = Create one
signin-no-account-after = .

## api/templates/app/signup.html

signup-password-again = Password, once more
signup-submit = Create the account
# “Already have an account? Sign in.”, with “Sign in” a link.
signup-have-account-before = Already have an account?
signup-have-account-link = Sign in
signup-have-account-after = .

## api/templates/app/verify_email.html

verify-email-title = Confirm your email address
verify-email-lead = Confirm that the address this link was sent to is yours. Until then Coffer emails no link in your name.
verify-email-submit = Confirm my address

## api/templates/app/password_reset.html

password-reset-title = Choose a new password
password-reset-new = New password
password-reset-again = New password, once more
password-reset-submit = Set the password

## api/templates/app/password.html

# $provider is COFFER_OIDC_PROVIDER_NAME.
password-sso-link = Sign in with { $provider } (single sign-on)
password-title = Change your password
password-current = Current password
password-new = New password (at least 10 characters)
password-new-again = New password, again
password-submit = Change password
password-hint = Every other place where you are signed in is signed out; this one stays.

## api/templates/app/mfa.html

mfa-title = Second factor
mfa-off = A second factor is off. With it on, signing in also needs a 6-digit code from an authenticator app on your phone (any app that reads a QR code: Aegis, FreeOTP, Google or Microsoft Authenticator, 1Password…).
mfa-set-up = Set up a second factor
mfa-scan = Scan this code with your authenticator app, then type the 6 digits it shows.
mfa-secret-instead = If your app cannot scan, type this key into it:
mfa-first-code = The code your app shows
mfa-confirm = Turn it on
mfa-codes-heading = Your recovery codes
mfa-codes-once = Each of these codes signs you in once without your phone. Keep them somewhere safe: they are shown only now.
mfa-on = A second factor is on: signing in needs a code from your authenticator app (or a recovery code).
mfa-password-to-turn-off = Your password, to turn it off
mfa-turn-off = Turn the second factor off

## api/templates/app/signin_mfa.html

mfa-signin-title = Your second factor
mfa-signin-lead = Type the 6-digit code your authenticator app shows for Coffer, or one of your recovery codes.
mfa-signin-code = Code
mfa-signin-submit = Sign in
mfa-signin-start-over = Start over

## api/templates/app/sessions.html

sessions-title = Where you are signed in
sessions-lead = Each session ends by itself after { $minutes } minutes without use, or when its lifetime is over. End one you do not recognise, then change your password.
sessions-this-one = this browser
sessions-from = from { $ip }
sessions-signed-in = signed in { $when }
sessions-last-seen = last used { $when }
sessions-ends = ends { $when } unless used
sessions-end = Sign out
sessions-end-all = Sign out everywhere
sessions-end-all-hint = Signs out every session, this browser included. Personal API tokens are not sessions: revoke them on the API tokens page.

## api/templates/app/forgot_password.html

forgot-title = Forgot your password?
forgot-lead = Give the address of your account. If it has one, we email it a link to choose a new password; the link works once, for an hour.
forgot-submit = Email me a link
forgot-back = Back to sign in

## api/templates/app/tokens.html

tokens-title = API tokens
tokens-lead = A token lets a script or an integration act for you, only within the scopes you give it, until it expires or you revoke it. It cannot manage your account.
tokens-secret-once = Your new token is below. Copy it now: it is shown only this once.
tokens-name = What it is for
tokens-scopes = What it may do
tokens-scope-files-read = list, read and download your files
tokens-scope-files-write = upload and delete your files
tokens-scope-shares-write = share your files and revoke shares
tokens-scope-audit-read = query, export and verify the audit log
tokens-expiry = Expires after
tokens-days = { $days } days
tokens-create = Make a token
tokens-yours = Your tokens
tokens-none = You have no tokens.
tokens-state-active = active
tokens-state-expired = expired
tokens-state-revoked = revoked
tokens-made = made { $when }
tokens-expires = expires { $when }
tokens-last-used = last used { $when }
tokens-never-used = never used
tokens-revoke = Revoke

## api/templates/app/signup_admin.html

signup-admin-who-heading = Who may create an account
# “The policy is <policy>, fixed by COFFER_SIGNUP: change it there.” or “The policy is <policy>.”,
# with the policy in bold and the variable's name as code.
signup-admin-policy-before = The policy is
signup-admin-policy-fixed-middle = , fixed by
signup-admin-policy-fixed-after = : change it there.
signup-admin-policy-after = .
signup-admin-who-legend = Who may sign up
signup-admin-kind-open = Anyone
signup-admin-kind-domains = Addresses at these domains
signup-admin-kind-invite = Invited addresses only
signup-admin-domains = Domains (comma-separated)
signup-admin-domains-placeholder = clinic.example, law.example
signup-admin-save = Save
signup-admin-invitations = Invitations
signup-admin-invitations-hint = An invitation emails a link that signs up its address once, within 7 days, whatever the policy.
signup-admin-invite = Send an invitation
signup-admin-col-address = Address
signup-admin-col-sent = Sent
signup-admin-col-expires = Expires

## api/templates/app/files.html

files-refreshing = Some files are still being checked and encrypted. This page refreshes by itself.
# $size is already formatted (“1.5 MB”), $when is a date.
files-item-meta = { $size } · uploaded { $when }
files-pending = Being checked and encrypted…
files-delete = Delete
files-select-form = Choose files to share together
files-select = Select { $name }
files-share-selected = Share selected
bundle-title = { $count ->
    [one] Share a file
   *[other] Share { $count } files together
}
bundle-lead = Each recipient gets one link to all of them: the page lists the files, each downloads on its own, and “Download all” gives them as one ZIP. The download limit counts each file's downloads. Files still being checked go out once they are ready.
bundle-back = Back to my files
files-details = Details
files-no-more = No more files.
# “You have no files yet. Upload one to share it.”, with “Upload one” a link.
files-empty-before = You have no files yet.
files-empty-link = Upload one
files-empty-after = to share it.
files-older = Older files

## api/templates/app/upload.html

# $max is a size, already formatted (“2 GB”).
upload-lead = Each file is checked and encrypted before anyone can download it. Files may be up to { $max } each.
upload-file = Files
upload-file-hint = Choose one or more files, or drop them here.
upload-share-legend = Share them (optional)
upload-share-hint = Each recipient gets their own link to every file chosen, by email once the files are ready.
upload-progress = Upload progress
upload-cancel = Cancel upload

## api/templates/app/file.html

file-pending = Being checked and encrypted; this page refreshes by itself.
file-type = Type
file-uploaded = Uploaded
file-ready = Ready
file-sha256 = SHA-256
file-delete = Delete…
file-shares = Shares
file-share-no-recipient = Link without recipient
# A share's complete downloads: $used so far, of at most $max.
file-share-downloads = Downloads: { $used }
file-share-downloads-of = Downloads: { $used } of { $max }
# Downloads started and not finished yet (each gives its place back if it stops short).
file-share-under-way = ({ $count } under way)
file-share-used-up = (used up)
# $when is a date.
file-share-expires = expires { $when }
file-share-bundle = one link to { $count } files
file-share-password = password
file-share-verify = code by email
file-share-receipts = receipts
file-share-emailed = emailed { $when }
file-revoke = Revoke
# Read by screen readers after “Revoke”.
file-revoke-recipient = the link of { $recipient }
file-not-shared = Not shared yet.
# Link to a share's access report; read by screen readers with the recipient after it.
file-share-activity = Activity
file-share-activity-of = of the link of { $recipient }
file-share-edit = Change
# A button: email the recipient a fresh link (the old one stops working).
file-share-resend = Send a new link
file-share-heading = Share it
file-share-hint-ready = Each recipient gets their own link by email. With no recipient you get one link to pass on yourself.
file-share-hint-pending = Each recipient gets their own link by email once the file is ready. With no recipient you get one link to pass on yourself.

## api/templates/app/share_fields.html

share-fields-recipients = Recipients
share-fields-recipients-hint = Email addresses, one per line or separated by commas.
share-fields-expiry = Links expire after
share-fields-max-downloads = Downloads per link
share-fields-max-downloads-hint = Leave empty for no limit.
share-fields-password = Password for the links
share-fields-password-hint = Optional, at least 8 characters. Tell it to the recipients another way (by phone, say).
share-fields-verify = Ask each recipient to confirm their address with a code
share-fields-verify-hint = Before downloading, each recipient asks for a six-digit code on the download page and types it in: only someone who reads their email can open the link.
share-fields-verify-required = Recipients confirm their address with a code emailed to them before downloading: this server requires it.
share-fields-receipts = Email me when a recipient has downloaded
share-fields-receipts-hint = Who, which file, when and from where; at once, or once a day as your preferences say.
share-fields-message = Message

## api/templates/app/delete.html

delete-title = Delete { $name }
delete-heading = Delete “{ $name }”?
delete-lead = Its key is destroyed first, then its data: nobody can download it again, and every link to it stops working. This cannot be undone.
delete-confirm = Delete the file
delete-keep = Keep it

## api/templates/app/link.html

link-title = Your link
link-lead = Pass this link on to whoever should download the file. It is shown only this once: Coffer keeps no copy of it.
link-label = Link
link-back = Back to the file

## api/templates/app/audit.html

audit-verified = Log verified: ok
audit-not-intact = Log not intact
audit-result = Result
audit-result-ok = ok
audit-result-broken = broken
audit-events-checked = Events checked
audit-head = Head
audit-none-yet = none yet
audit-first-bad = First bad sequence number
audit-newest-checkpoint = Newest checkpoint
# A signed checkpoint: sequence number and hash, when it was made, and the version of the key
# that signed it.
audit-checkpoint = { $seq }:{ $hash } at { $at } (audit key { $key })
audit-filters = Filters
audit-action = Action
audit-actor-id = Actor id
audit-target-id = Target id
audit-since = Since (UTC)
audit-until = Until (UTC)
audit-filter = Filter
audit-clear = Clear
audit-verify-chain = Verify chain
# Followed by the links to the two export formats.
audit-export-period = Export this period:
audit-export-everything = Export everything:
audit-export-jsonl = JSON lines
audit-export-csv = CSV
audit-events = Audit events
audit-col-seq = Seq
audit-col-when = When
audit-col-outcome = Outcome
audit-col-actor = Actor
audit-col-target = Target
audit-col-details = Details
audit-no-events = No events match.
audit-no-events-after = No events match after this point.
audit-later-events = Later events

## api/templates/app/keys.html

keys-title = Master keys
keys-lead = Every file's own key is stored wrapped under a master-key version. Rotating adds a version for new files and rewraps every existing key; no file data is re-encrypted.
keys-versions = Key versions
keys-col-version = Version
keys-col-created = Created
keys-col-wrapped = Wrapped keys
keys-rotation = Rotation
# Followed by the rotation's state.
keys-rotation-from-to = From version { $from } to { $to }:
keys-rotation-progress = Keys rewrapped: { $done } of { $total }
keys-rotation-started = Started { $started }.
keys-rotation-started-finished = Started { $started }, finished { $finished }.
keys-rotation-refreshing = This page refreshes by itself while the rotation runs.
keys-no-rotation = No rotation yet.
keys-rotate = Rotate to a new version

## api/templates/app/users.html

users-lead = Disabling an account signs it out everywhere at once. You cannot demote or disable your own account.
users-disabled = disabled
users-you = (you)
# $when is a date.
users-since = Since { $when }
users-role = Role
# Read by screen readers after “Role” and “Change role”.
users-role-of = of { $email }
users-role-user = user
users-role-admin = admin
users-change-role = Change role
users-change-role-of = of { $email }
users-reset-mfa = Reset second factor
# Hidden text after the button, for screen readers.
users-reset-mfa-of = of { $email }
users-enable = Enable
users-disable = Disable
users-more = More users

## api/templates/app/continue.html

continue-link = Continue

## api/templates/app/sso.html

sso-title = Single sign-on
# $provider is COFFER_OIDC_PROVIDER_NAME.
sso-linked = Your account at { $provider } is connected: sign in with it.
sso-not-linked = Connect your account at { $provider } to sign in with it.
sso-connect = Connect { $provider }
sso-connect-hint = You will sign in at { $provider } and come back here. Your password keeps working where passwords are allowed.

## api/templates/app/activity.html

# $recipient is an email address.
activity-title = Activity of the link of { $recipient }
activity-title-no-recipient = Activity of the link without recipient
activity-lead = Every view, refusal and download of this link, from the audit log: each entry carries its place in the log's chain, which verification vouches for.
activity-col-what = What
activity-col-from = From
activity-col-browser = Browser
activity-none = Nothing has happened to this link yet.
activity-none-after = No later events.
activity-export = Download as CSV
activity-created = Link created
activity-emailed = Link emailed to the recipient
activity-outbox = Link written to the outbox (no mail server configured)
activity-email-failed = The email could not be sent
activity-revoked = Link revoked
activity-viewed = Download page opened
# $count further views between $from and $to (dates), counted together.
activity-viewed-repeated = Download page opened { $count ->
    [one] once more
   *[other] { $count } more times
  } between { $from } and { $to }
# $reason is the recorded reason, such as “wrong password” or “expired”.
activity-denied = Refused: { $reason }
activity-download-started = Download of { $file } started
activity-downloaded = Downloaded { $file }, complete
# $size is what was delivered, such as “1.5 MB”.
activity-download-stopped = Download of { $file } stopped after { $size }

## api/templates/app/share_edit.html

share-edit-title = Change a link
share-edit-back = Back to the file
# $recipient is an email address.
share-edit-heading = Change the link of { $recipient }
share-edit-heading-no-recipient = Change the link without recipient
share-edit-expiry = Expiry
# $when is a date.
share-edit-expiry-keep = Keep: { $when }
# $choice is a duration such as “1 day”.
share-edit-expiry-from-now = { $choice } from now
share-edit-max-downloads-hint = In all, counting those already made. Empty: no limit.
share-edit-password = New password
share-edit-password-hint = Leave empty to keep the password as it is. Tell the recipient separately.
share-edit-remove-password = Remove the password
share-edit-add-files = Add files to this link
share-edit-add-files-hint = The recipient's page lists them after the others, and “Download all” includes them. Files still being checked appear once they are ready.
share-edit-save = Save changes
share-edit-ended = This link has ended and cannot be changed. Share the file again instead.

## api/templates/app/preferences.html

preferences-title = Preferences
preferences-saved = Saved.
preferences-receipts = Download receipts
preferences-receipts-hint = A share that asks for receipts emails you when a recipient completes a download: who, which file, when and from where.
preferences-on-new-shares = New shares ask for receipts
preferences-how-often = How receipts come
preferences-each = One email per download, at once
preferences-daily = At most one email a day, listing the downloads since the last
preferences-save = Save preferences
